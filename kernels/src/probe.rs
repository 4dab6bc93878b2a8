//! Measuring the machine: how fast memory can be read, the bound every decode step is held to.
//!
//! Decoding a ternary model streams each weight once per token, so its speed limit is the read
//! bandwidth. The benchmarks compare the kernels with this figure; it is measured the way the
//! kernels read (wide loads, prefetching as far ahead as the kernels do, on 2 MiB pages), so a kernel at 100% streams as fast as a
//! loop that does nothing but read.

use rayon::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A buffer of `bytes` (rounded down to 8) of non-trivial data, for [`read_bandwidth`]. Like
/// the kernels' weights ([`crate::mem`]) it asks for 2 MiB pages, so the probe and the kernels
/// stream from the same kind of memory.
pub fn bandwidth_buffer(bytes: usize) -> Vec<u64> {
    let n = bytes / 8;
    let mut buf = Vec::with_capacity(n);
    crate::mem::advise_huge_pages(buf.as_mut_ptr() as *mut u8, n * 8);
    buf.extend((0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    buf
}

/// The last-level cache's size in bytes, where the system says (Linux sysfs), else `None`. A
/// "cold" measurement must cycle through more data than this, or it measures the cache.
pub fn last_level_cache_bytes() -> Option<usize> {
    let mut best = None;
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let Ok(size) = std::fs::read_to_string(format!("{dir}/size")) else {
            continue;
        };
        let size = size.trim();
        let (digits, unit) =
            size.split_at(size.trim_end_matches(|c: char| c.is_alphabetic()).len());
        let Ok(n) = digits.parse::<usize>() else {
            continue;
        };
        let bytes = match unit {
            "K" => n << 10,
            "M" => n << 20,
            "G" => n << 30,
            _ => n,
        };
        best = best.max(Some(bytes));
    }
    best
}

/// Bytes per second at which the current rayon pool's threads read `buf` together: the median
/// of repeated passes over at least `budget`, at least five passes. Use a buffer far larger than
/// the last-level cache (e.g. 512 MB). The median, not the best pass, because the kernels'
/// times are medians too: on a shared machine the bandwidth drifts, and a ratio of a median to a
/// maximum would flatter the machine and blame the kernel.
pub fn read_bandwidth(buf: &[u64], budget: Duration) -> f64 {
    let chunk = buf.len().div_ceil(rayon::current_num_threads()).max(1);
    let start = Instant::now();
    let mut passes = Vec::new();
    while passes.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        black_box(buf.par_chunks(chunk).map(fold).reduce(|| 0, |a, b| a ^ b));
        passes.push(t.elapsed().as_secs_f64());
    }
    passes.sort_by(|a, b| a.total_cmp(b));
    std::mem::size_of_val(buf) as f64 / passes[passes.len() / 2]
}

fn fold(chunk: &[u64]) -> u64 {
    fold_at(chunk, crate::backend::prefetch_distance())
}

fn fold_at(chunk: &[u64], distance: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just checked.
        return unsafe { fold_avx512(chunk, distance) };
    }
    let _ = distance;
    chunk.iter().fold(0, |x, &v| x ^ v)
}

/// 256 bytes per iteration in four independent 512-bit XORs, prefetching `distance` ahead
/// (none when 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fold_avx512(chunk: &[u64], distance: usize) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); 4];
    let blocks = chunk.len() / 32;
    let p = chunk.as_ptr() as *const __m512i;
    for i in 0..blocks {
        let base = p.add(4 * i);
        for (k, a) in acc.iter_mut().enumerate() {
            if distance > 0 {
                _mm_prefetch::<_MM_HINT_T0>((base.add(k) as *const i8).wrapping_add(distance));
            }
            *a = _mm512_xor_si512(*a, _mm512_loadu_si512(base.add(k)));
        }
    }
    let all = _mm512_xor_si512(
        _mm512_xor_si512(acc[0], acc[1]),
        _mm512_xor_si512(acc[2], acc[3]),
    );
    let mut lanes = [0u64; 8];
    _mm512_storeu_si512(lanes.as_mut_ptr() as *mut __m512i, all);
    lanes
        .iter()
        .chain(&chunk[blocks * 32..])
        .fold(0, |x, &v| x ^ v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_something_positive() {
        let buf = super::bandwidth_buffer(1 << 20);
        let bw = super::read_bandwidth(&buf, std::time::Duration::from_millis(1));
        assert!(bw.is_finite() && bw > 0.0);
    }
}
