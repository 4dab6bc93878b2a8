//! Ternary kernel benchmark: `cargo bench -p tritlab-kernels --bench kernels`
//!
//! For the linear-layer shapes of BitNet b1.58 2B-4T it prints, in one run, the time per call of
//! the I2 kernel (and the T1 table kernel), the weight bytes streamed per second, and two ratios:
//! against an f32 matrix product of the same shape (explicit SIMD, same threads) and against the
//! machine's read bandwidth, which this binary measures itself.
//!
//! * hot: one matrix, called repeatedly (it sits in the last-level cache if it fits);
//! * cold: a cycle over enough distinct matrices to exceed the last-level cache, as decoding a
//!   real model does (every layer's weights are read once per token).
//!
//! Environment: `TRITLAB_BENCH_SECONDS` (default 0.4) per measurement, `TRITLAB_BENCH_COLD_MB`
//! (default 192) of distinct weights for the cold case, `TRITLAB_BENCH_FILTER` (a substring of
//! the shape names) to run fewer shapes, `TRITLAB_KERNEL` to pick a backend.

use rayon::ThreadPool;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tritlab_kernels::{Backend, QuantizedActivations, T1Matrix, TernaryMatrix, WeightScale};

const SHAPES: [(&str, usize, usize); 4] = [
    ("attn q/o 2560x2560", 2560, 2560),
    ("attn k/v 640x2560", 640, 2560),
    ("ffn gate/up 6912x2560", 6912, 2560),
    ("ffn down 2560x6912", 2560, 6912),
];

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator so every run streams the same data.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Median seconds per call of `f`, measured in rounds for about `budget`.
fn time_per_call(budget: Duration, calls_per_round: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed() < budget && samples.len() < 2000) {
        let t = Instant::now();
        for _ in 0..calls_per_round {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() / calls_per_round as f64);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// The f32 baseline: y = W·x with explicit SIMD (AVX-512F where present, else portable code), rows split
/// over the pool's threads like the ternary kernel's.
mod f32_baseline {
    use rayon::prelude::*;

    pub fn matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], tokens: usize, y: &mut [f32]) {
        let chunk = rows.div_ceil(rayon::current_num_threads() * 4).max(16);
        let mut out = vec![0.0f32; rows * tokens];
        out.par_chunks_mut(chunk * tokens)
            .enumerate()
            .for_each(|(ci, oc)| {
                let r0 = ci * chunk;
                for (i, o) in oc.chunks_mut(tokens).enumerate() {
                    let row = &w[(r0 + i) * cols..(r0 + i + 1) * cols];
                    row_times_tokens(row, x, cols, o);
                }
            });
        for r in 0..rows {
            for t in 0..tokens {
                y[t * rows + r] = out[r * tokens + t];
            }
        }
    }

    fn row_times_tokens(row: &[f32], x: &[f32], cols: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: feature checked above.
                return unsafe { avx512(row, x, cols, out) };
            }
        }
        for (t, o) in out.iter_mut().enumerate() {
            let xt = &x[t * cols..(t + 1) * cols];
            let mut acc = [0.0f32; 16];
            for (wc, xc) in row.chunks_exact(16).zip(xt.chunks_exact(16)) {
                for k in 0..16 {
                    acc[k] += wc[k] * xc[k];
                }
            }
            *o = acc.iter().sum();
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(row: &[f32], x: &[f32], cols: usize, out: &mut [f32]) {
        use std::arch::x86_64::*;
        if out.len() == 1 && cols.is_multiple_of(64) {
            // One token: four independent FMA chains so the adds never wait on each other.
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in (0..cols).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>((row.as_ptr().add(c) as *const i8).wrapping_add(8192));
                _mm_prefetch::<_MM_HINT_T0>(
                    (row.as_ptr().add(c + 32) as *const i8).wrapping_add(8192),
                );
                for (k, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_ps(row.as_ptr().add(c + 16 * k));
                    let xv = _mm512_loadu_ps(x.as_ptr().add(c + 16 * k));
                    *a = _mm512_fmadd_ps(wv, xv, *a);
                }
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            out[0] = _mm512_reduce_add_ps(sum);
            return;
        }
        // Up to 8 tokens share each loaded weight vector.
        for (tc, oc) in out.chunks_mut(8).enumerate() {
            let mut acc = [_mm512_setzero_ps(); 8];
            for c in (0..cols).step_by(16) {
                // The same 8 KiB prefetch distance as the ternary kernel: a fair baseline streams
                // its weights as well as memory allows.
                _mm_prefetch::<_MM_HINT_T0>((row.as_ptr().add(c) as *const i8).wrapping_add(8192));
                let wv = _mm512_loadu_ps(row.as_ptr().add(c));
                for (t, a) in acc.iter_mut().enumerate().take(oc.len()) {
                    let xv = _mm512_loadu_ps(x.as_ptr().add((tc * 8 + t) * cols + c));
                    *a = _mm512_fmadd_ps(wv, xv, *a);
                }
            }
            for (t, o) in oc.iter_mut().enumerate() {
                *o = _mm512_reduce_add_ps(acc[t]);
            }
        }
    }
}

fn main() {
    let budget = Duration::from_secs_f64(env_f64("TRITLAB_BENCH_SECONDS", 0.4));
    let cold_bytes = (env_f64("TRITLAB_BENCH_COLD_MB", 192.0) * 1e6) as usize;
    if let Err(e) = Backend::requested() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let pools: Vec<(usize, ThreadPool)> = [1, 2]
        .into_iter()
        .map(|n| {
            (
                n,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("thread pool"),
            )
        })
        .collect();

    println!("tritlab-kernels benchmark");
    println!(
        "backend: {} (supported: {:?})",
        Backend::active(),
        Backend::supported()
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
    );
    println!(
        "cpu threads available: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Read bandwidth on 512 MB, once up front for the record and again next to every
    // measurement it is compared with: on a shared machine it drifts by tens of percent.
    let bw_buf = tritlab_kernels::probe::bandwidth_buffer(512 << 20);
    let read_bw = |pool: &ThreadPool| {
        pool.install(|| tritlab_kernels::probe::read_bandwidth(&bw_buf, budget))
    };
    for (n, pool) in &pools {
        println!(
            "read bandwidth, {n} thread(s): {:.2} GB/s",
            read_bw(pool) / 1e9
        );
    }
    println!();
    println!(
        "{:<24} {:>5} {:>3} {:>4} {:>6} {:>10} {:>9} {:>9} {:>8} {:>8}",
        "shape", "batch", "thr", "case", "kernel", "us/call", "GB/s", "%read-bw", "f32 us", "x f32"
    );
    let mut rng = SplitMix(1069);
    let filter = std::env::var("TRITLAB_BENCH_FILTER").unwrap_or_default();
    for &(name, rows, cols) in SHAPES.iter().filter(|s| s.0.contains(filter.as_str())) {
        // Distinct matrices for the cold case; the first doubles as the hot one.
        let one = (rows * cols / 4).max(1);
        let copies = (cold_bytes / one).max(2);
        let trits: Vec<i8> = (0..rows * cols)
            .map(|_| (rng.next() % 3) as i8 - 1)
            .collect();
        let mats: Vec<TernaryMatrix> = (0..copies)
            .map(|k| {
                // Rotate the pattern so copies differ in content, not only in address.
                let mut t = trits.clone();
                let n = t.len();
                t.rotate_left((k * 7919) % n);
                TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.01))
                    .expect("valid matrix")
            })
            .collect();
        let t1 = T1Matrix::from_trits(&trits, rows, cols, 0.01).expect("valid matrix");
        let w32: Vec<f32> = (0..rows * cols).map(|_| rng.unit()).collect();
        let f32_copies = (cold_bytes / (rows * cols * 4)).max(2);
        let w32s: Vec<Vec<f32>> = (0..f32_copies)
            .map(|k| {
                let mut w = w32.clone();
                w.rotate_left(k * 31);
                w
            })
            .collect();
        drop(w32);

        for batch in [1usize, 16] {
            let x: Vec<f32> = (0..batch * cols).map(|_| rng.unit()).collect();
            let q = QuantizedActivations::quantize(&x, batch, cols).expect("valid activations");
            let mut y = vec![0.0f32; batch * rows];
            for (threads, pool) in pools.iter() {
                for case in ["hot", "cold"] {
                    let bandwidth = read_bw(pool);
                    let (i2_secs, f32_secs) = pool.install(|| {
                        let mut k = 0;
                        let i2 = time_per_call(
                            budget,
                            if case == "hot" { 8 } else { mats.len() },
                            || {
                                let m = if case == "hot" {
                                    &mats[0]
                                } else {
                                    k = (k + 1) % mats.len();
                                    &mats[k]
                                };
                                m.matmul(&q, &mut y).expect("valid shapes");
                                black_box(&y);
                            },
                        );
                        let mut k = 0;
                        let f = time_per_call(
                            budget,
                            if case == "hot" { 2 } else { w32s.len() },
                            || {
                                let w = if case == "hot" {
                                    &w32s[0]
                                } else {
                                    k = (k + 1) % w32s.len();
                                    &w32s[k]
                                };
                                f32_baseline::matmul(w, rows, cols, &x, batch, &mut y);
                                black_box(&y);
                            },
                        );
                        (i2, f)
                    });
                    let bytes = mats[0].packed_bytes() as f64;
                    let gbs = bytes / i2_secs;
                    println!(
                        "{:<24} {:>5} {:>3} {:>4} {:>6} {:>10.1} {:>9.2} {:>8.0}% {:>8.1} {:>7.1}x",
                        name,
                        batch,
                        threads,
                        case,
                        "I2",
                        i2_secs * 1e6,
                        gbs / 1e9,
                        100.0 * gbs / bandwidth,
                        f32_secs * 1e6,
                        f32_secs / i2_secs
                    );
                }
                if batch == 1 {
                    let bandwidth = read_bw(pool);
                    let secs = pool.install(|| {
                        time_per_call(budget, 4, || {
                            t1.matmul(&q, &mut y).expect("valid shapes");
                            black_box(&y);
                        })
                    });
                    let gbs = t1.packed_bytes() as f64 / secs;
                    println!(
                        "{:<24} {:>5} {:>3} {:>4} {:>6} {:>10.1} {:>9.2} {:>8.0}%",
                        name,
                        batch,
                        threads,
                        "hot",
                        "T1",
                        secs * 1e6,
                        gbs / 1e9,
                        100.0 * gbs / bandwidth
                    );
                }
            }
        }
    }
    println!();
    println!("GB/s = packed weight bytes per second (I2: 0.25 B/weight, T1: 0.2 B/weight); f32 streams 4 B/weight.");
    println!("%read-bw = that rate over the read bandwidth (median of passes over 512 MB) measured just before it, same threads.");
}
