//! Dense float dot products: the output projection and attention of the transformer around the
//! ternary layers.
//!
//! Both products add in one fixed order on every CPU (independent lanes, no FMA, a fixed
//! reduction tree), so logits are bit-identical across machines, SIMD paths and thread counts;
//! the SIMD paths are the same body compiled with wider vectors.

/// Elements per dot-product step: independent accumulators, so the compiler can vectorise
/// without reassociating (and every machine adds in the same order). 64 lanes are 8 AVX2 or 4
/// AVX-512 registers: enough independent add chains to hide the adds' latency.
const LANES: usize = 64;

/// A bf16 value widened to f32 (exact).
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

#[inline(always)]
fn reduce_lanes(acc: [f32; LANES]) -> f32 {
    let mut a = acc;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for j in 0..n {
            a[j] += a[j + n];
        }
    }
    a[0]
}

/// A read hint; never faults, whatever the address.
#[inline(always)]
fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never dereferences or faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[inline(always)]
fn dot_bf16_body(w: &[u16], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, wt) = w.split_at(w.len() / LANES * LANES);
    let (xc, xt) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        // The output projection is the largest matrix a decode step streams: ask for its bytes
        // 8 KiB ahead, as the ternary kernels do, so loads overlap the arithmetic.
        prefetch(wb.as_ptr().cast::<u8>().wrapping_add(8192));
        prefetch(wb.as_ptr().cast::<u8>().wrapping_add(8192 + 64));
        for j in 0..LANES {
            acc[j] += bf16_to_f32(wb[j]) * xb[j];
        }
    }
    for (j, (&wv, &xv)) in wt.iter().zip(xt).enumerate() {
        acc[j] += bf16_to_f32(wv) * xv;
    }
    reduce_lanes(acc)
}

#[inline(always)]
fn dot_f32_body(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, wt) = w.split_at(w.len() / LANES * LANES);
    let (xc, xt) = x.split_at(wc.len());
    for (wb, xb) in wc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += wb[j] * xb[j];
        }
    }
    for (j, (&wv, &xv)) in wt.iter().zip(xt).enumerate() {
        acc[j] += wv * xv;
    }
    reduce_lanes(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_bf16_avx512(w: &[u16], x: &[f32]) -> f32 {
    dot_bf16_body(w, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_bf16_avx2(w: &[u16], x: &[f32]) -> f32 {
    dot_bf16_body(w, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_f32_avx2(w: &[f32], x: &[f32]) -> f32 {
    dot_f32_body(w, x)
}

/// `Σ bf16(w)·x` with f32 accumulation. Same operations in the same order on every CPU (no FMA),
/// so logits are bit-identical across machines and thread counts.
pub fn dot_bf16(w: &[u16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F support was just checked.
        return unsafe { dot_bf16_avx512(w, x) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked.
        return unsafe { dot_bf16_avx2(w, x) };
    }
    dot_bf16_body(w, x)
}

/// `Σ w·x` in f32, in the same fixed order as [`dot_bf16`].
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just checked.
        return unsafe { dot_f32_avx2(w, x) };
    }
    dot_f32_body(w, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(w: &[f32], x: &[f32]) -> f32 {
        // The same lanes and reduction as the kernels, written plainly.
        let mut acc = [0.0f32; LANES];
        for (i, (a, b)) in w.iter().zip(x).enumerate() {
            let lane = if i < w.len() / LANES * LANES {
                i % LANES
            } else {
                i - w.len() / LANES * LANES
            };
            acc[lane] += a * b;
        }
        reduce_lanes(acc)
    }

    proptest! {
        #[test]
        fn every_path_adds_in_the_reference_order(
            pairs in proptest::collection::vec((-1e3f32..1e3, -1e3f32..1e3), 0..700)
        ) {
            let w: Vec<f32> = pairs.iter().map(|p| p.0).collect();
            let x: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            prop_assert_eq!(dot_f32(&w, &x).to_bits(), reference(&w, &x).to_bits());
            prop_assert_eq!(dot_f32_body(&w, &x).to_bits(), reference(&w, &x).to_bits());
            let b: Vec<u16> = w.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
            let widened: Vec<f32> = b.iter().map(|&v| bf16_to_f32(v)).collect();
            prop_assert_eq!(dot_bf16(&b, &x).to_bits(), reference(&widened, &x).to_bits());
        }
    }
}
