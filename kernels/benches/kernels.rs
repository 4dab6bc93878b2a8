//! Ternary kernel benchmark: `cargo bench -p tritlab-kernels --bench kernels`
//!
//! Sections (pick with `TRITLAB_BENCH_SECTIONS`, a comma list; default all):
//!
//! * `gemv` — batch-1 products of the BitNet b1.58 2B-4T linear shapes, I2 and T1, hot and
//!   cold, 1 and 2 threads: time per call, weight bytes per second, that rate as a fraction of
//!   the machine's read bandwidth (measured by this binary next to each figure), and the same
//!   shape's f32 GEMV (explicit SIMD, same threads, same hot/cold case) as the competitor.
//! * `head` — the 128256×2560 output head (`tritlab_kernels::head`) cold, per precision.
//! * `vnni` — the int8 multiply-accumulate peak (`vpdpbusd` throughput, or `vpmaddubsw` on
//!   AVX2 without VNNI) and prefill GEMM (batch 64, I2 and T1) as a fraction of it.
//!
//! hot: one matrix, called repeatedly (it sits in cache if it fits); cold: a cycle over enough
//! distinct matrices to exceed twice the last-level cache, as decoding a real model does (every
//! layer's weights are read once per token).
//!
//! Environment: `TRITLAB_BENCH_SECONDS` (default 0.4) per measurement, `TRITLAB_BENCH_COLD_MB`
//! (default: twice the last-level cache, at least 256) of distinct weights for the cold case,
//! `TRITLAB_BENCH_FILTER` (a substring of the shape names) to run fewer shapes,
//! `TRITLAB_KERNEL` to pick a backend.

// Index loops over arrays of SIMD accumulators read more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

use rayon::ThreadPool;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tritlab_kernels::tune::Setting;
use tritlab_kernels::{
    Backend, HeadMatrix, HeadPrecision, Packing, QuantizedActivations, TernaryMatrix, WeightScale,
};

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

fn sections() -> Vec<String> {
    std::env::var("TRITLAB_BENCH_SECTIONS")
        .unwrap_or_else(|_| "gemv,head,vnni".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

struct Ctx {
    budget: Duration,
    cold_bytes: usize,
    pools: Vec<(usize, ThreadPool)>,
    bw_buf: Vec<u64>,
}

impl Ctx {
    fn read_bw(&self, pool: &ThreadPool) -> f64 {
        pool.install(|| tritlab_kernels::probe::read_bandwidth(&self.bw_buf, self.budget))
    }
}

/// Times `f(k)` for `k` cycling over `copies` (a cold cycle) or fixed at 0 (hot).
fn time_case(budget: Duration, copies: usize, hot: bool, mut f: impl FnMut(usize)) -> f64 {
    let mut k = 0;
    time_per_call(budget, if hot { 4 } else { copies }, || {
        if !hot {
            k = (k + 1) % copies;
        }
        f(k)
    })
}

fn main() {
    let budget = Duration::from_secs_f64(env_f64("TRITLAB_BENCH_SECONDS", 0.4));
    let llc = tritlab_kernels::probe::last_level_cache_bytes();
    let default_cold = (2 * llc.unwrap_or(128 << 20)).max(256 << 20) as f64 / 1e6;
    let cold_bytes = (env_f64("TRITLAB_BENCH_COLD_MB", default_cold) * 1e6) as usize;
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
        "cpu threads available: {}; last-level cache: {}; cold set: {} MB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        llc.map_or("unknown".into(), |b| format!("{} MiB", b >> 20)),
        cold_bytes / 1_000_000
    );
    println!(
        "transparent huge pages: {}",
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map_or("unknown".into(), |s| s.trim().to_string())
    );
    let bw_buf = tritlab_kernels::probe::bandwidth_buffer(cold_bytes.max(512 << 20));
    // The single-token settings (rows side by side, prefetch distance) are measured, not
    // assumed: the kernels tune them on the first products a process runs, here a cold cycle
    // of 2560x6912 products on all threads, as a decode step streams its layers.
    {
        let (rows, cols) = (2560, 6912);
        let mut rng = SplitMix(7);
        let trits: Vec<i8> = (0..rows * cols)
            .map(|_| (rng.next() % 3) as i8 - 1)
            .collect();
        let m = TernaryMatrix::from_trits(&trits, rows, cols, WeightScale::PerTensor(0.01))
            .expect("valid matrix");
        let set: Vec<TernaryMatrix> = (0..(cold_bytes / m.packed_bytes()).max(2))
            .map(|_| m.clone())
            .collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.unit()).collect();
        let q = QuantizedActivations::quantize(&x, 1, cols).expect("valid activations");
        let mut y = vec![0.0f32; rows];
        let calls = pools[pools.len() - 1].1.install(|| {
            let mut calls = 0;
            while tritlab_kernels::tune::report().chosen.is_none() && calls < 20_000 {
                set.iter()
                    .for_each(|w| w.matmul(&q, &mut y).expect("valid shapes"));
                calls += set.len();
            }
            calls
        });
        black_box(&y);
        let report = tritlab_kernels::tune::report();
        println!("single-token settings: {report}, after {calls} calls of a cold 2560x6912 cycle");
        if !report.relative.is_empty() {
            let each: Vec<String> = report
                .relative
                .iter()
                .map(|(s, r, n)| format!("{s}: {r:.2}× ({n} calls)"))
                .collect();
            println!(
                "  time of each setting, relative to the fastest: {}",
                each.join("; ")
            );
        }
    }
    let ctx = Ctx {
        budget,
        cold_bytes,
        pools,
        bw_buf,
    };
    for (n, pool) in &ctx.pools {
        println!(
            "read bandwidth, {n} thread(s): {:.2} GB/s",
            ctx.read_bw(pool) / 1e9
        );
    }
    let sections = sections();
    if sections.iter().any(|s| s == "gemv") {
        gemv_section(&ctx);
    }
    if sections.iter().any(|s| s == "head") {
        head_section(&ctx);
    }
    if sections.iter().any(|s| s == "vnni") {
        vnni_section(&ctx);
    }
}

fn gemv_section(ctx: &Ctx) {
    println!();
    println!("== batch-1 GEMV (decode) ==");
    println!(
        "{:<24} {:>3} {:>4} {:>6} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "shape", "thr", "case", "kernel", "us/call", "GB/s", "%read-bw", "f32 us", "x f32"
    );
    let mut rng = SplitMix(1069);
    let filter = std::env::var("TRITLAB_BENCH_FILTER").unwrap_or_default();
    for &(name, rows, cols) in SHAPES.iter().filter(|s| s.0.contains(filter.as_str())) {
        let trits: Vec<i8> = (0..rows * cols)
            .map(|_| (rng.next() % 3) as i8 - 1)
            .collect();
        let i2 = TernaryMatrix::from_trits(&trits, rows, cols, WeightScale::PerTensor(0.01))
            .expect("valid matrix");
        let t1 = i2.repack(Packing::T1).expect("valid matrix");
        // Distinct copies for the cold case (each in its own memory).
        let i2s: Vec<TernaryMatrix> = (0..(ctx.cold_bytes / i2.packed_bytes()).max(2))
            .map(|_| i2.clone())
            .collect();
        let t1s: Vec<TernaryMatrix> = (0..(ctx.cold_bytes / t1.packed_bytes()).max(2))
            .map(|_| t1.clone())
            .collect();
        let w32: Vec<f32> = (0..rows * cols).map(|_| rng.unit()).collect();
        let w32s: Vec<Vec<f32>> = (0..(ctx.cold_bytes / (rows * cols * 4)).max(2))
            .map(|_| w32.clone())
            .collect();
        drop(w32);
        let x: Vec<f32> = (0..cols).map(|_| rng.unit()).collect();
        let q = QuantizedActivations::quantize(&x, 1, cols).expect("valid activations");
        let mut y = vec![0.0f32; rows];
        for (threads, pool) in ctx.pools.iter() {
            for hot in [true, false] {
                let case = if hot { "hot" } else { "cold" };
                let f32_secs = pool.install(|| {
                    time_case(ctx.budget, w32s.len(), hot, |k| {
                        f32_baseline::matmul(&w32s[k], rows, cols, &x, 1, &mut y);
                        black_box(&y);
                    })
                });
                // "I2-def": I2 with the untuned default setting, beside the tuned one.
                let tuned = tritlab_kernels::tune::current() != Setting::DEFAULT;
                for kernel in ["I2", "I2-def", "T1"] {
                    if kernel == "I2-def" && !tuned {
                        continue;
                    }
                    let bandwidth = ctx.read_bw(pool);
                    let (secs, bytes) = pool.install(|| {
                        if kernel == "I2" {
                            let s = time_case(ctx.budget, i2s.len(), hot, |k| {
                                i2s[k].matmul(&q, &mut y).expect("valid shapes");
                                black_box(&y);
                            });
                            (s, i2.packed_bytes())
                        } else if kernel == "I2-def" {
                            let backend = tritlab_kernels::Backend::active();
                            let s = time_case(ctx.budget, i2s.len(), hot, |k| {
                                i2s[k]
                                    .matmul_streaming(backend, Setting::DEFAULT, &q, &mut y)
                                    .expect("valid shapes");
                                black_box(&y);
                            });
                            (s, i2.packed_bytes())
                        } else {
                            let s = time_case(ctx.budget, t1s.len(), hot, |k| {
                                t1s[k].matmul(&q, &mut y).expect("valid shapes");
                                black_box(&y);
                            });
                            (s, t1.packed_bytes())
                        }
                    });
                    let gbs = bytes as f64 / secs;
                    println!(
                        "{:<24} {:>3} {:>4} {:>6} {:>10.1} {:>9.2} {:>8.0}% {:>9.1} {:>7.1}x",
                        name,
                        threads,
                        case,
                        kernel,
                        secs * 1e6,
                        gbs / 1e9,
                        100.0 * gbs / bandwidth,
                        f32_secs * 1e6,
                        f32_secs / secs
                    );
                }
            }
        }
    }
    println!("I2 = the single-token setting tuned at start; I2-def = the untuned default ({}), shown when they differ.", Setting::DEFAULT);
    println!("GB/s = packed weight bytes per second (I2: 0.25 B/weight, T1: 0.2 B/weight plus row padding to 64 bytes); f32 streams 4 B/weight.");
    println!("%read-bw = that rate over the read bandwidth (median of passes over the probe buffer) measured just before it, same threads.");
}

/// The tied output head of 2B-4T, cold, in every storage format.
fn head_section(ctx: &Ctx) {
    const VOCAB: usize = 128_256;
    const HIDDEN: usize = 2560;
    println!();
    println!("== output head {VOCAB}x{HIDDEN}, batch 1, cold ==");
    println!(
        "{:<8} {:>3} {:>9} {:>10} {:>9} {:>9}",
        "format", "thr", "MB", "ms/call", "GB/s", "%read-bw"
    );
    let mut rng = SplitMix(2560);
    // Embedding-like weights: small, with the occasional larger one.
    let w: Vec<f32> = (0..VOCAB * HIDDEN)
        .map(|_| rng.unit() * rng.unit() * 0.1)
        .collect();
    let x: Vec<f32> = (0..HIDDEN).map(|_| rng.unit()).collect();
    let mut y = vec![0.0f32; VOCAB];
    for precision in HeadPrecision::ALL {
        let head = HeadMatrix::from_f32(VOCAB, HIDDEN, &w, precision).expect("valid head");
        // One copy already exceeds the cache for bf16; smaller formats cycle over several.
        let copies = ctx.cold_bytes.div_ceil(head.bytes()).max(1);
        let heads: Vec<HeadMatrix> = (0..copies).map(|_| head.clone()).collect();
        drop(head);
        for (threads, pool) in ctx.pools.iter() {
            let bandwidth = ctx.read_bw(pool);
            let secs = pool.install(|| {
                time_case(ctx.budget, heads.len(), copies == 1, |k| {
                    heads[k].gemv(&x, &mut y, 0).expect("valid shapes");
                    black_box(&y);
                })
            });
            let gbs = heads[0].bytes() as f64 / secs;
            println!(
                "{:<8} {:>3} {:>9.1} {:>10.2} {:>9.2} {:>8.0}%",
                precision.to_string(),
                threads,
                heads[0].bytes() as f64 / 1e6,
                secs * 1e3,
                gbs / 1e9,
                100.0 * gbs / bandwidth
            );
        }
    }
}

/// `vpdpbusd` on 512-bit vectors, `chains` independent accumulators, `iters` rounds: the
/// machine's int8 multiply-accumulate peak when the chains outnumber latency × throughput.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dpbusd_loop(iters: usize) -> i32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_epi8(black_box(1));
    let b = _mm512_set1_epi8(black_box(2));
    let mut acc = [_mm512_setzero_si512(); 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, a, b);
        }
    }
    let mut s = _mm512_setzero_si512();
    for v in acc {
        s = _mm512_add_epi32(s, v);
    }
    _mm512_reduce_add_epi32(s)
}

/// `vpmaddubsw` on 256-bit vectors with the `vpaddw` that keeps its sums, 12 chains: AVX2's
/// int8 multiply-accumulate peak (32 products per `vpmaddubsw`), for CPUs without VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn maddubs_loop(iters: usize) -> i32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_epi8(black_box(1));
    let b = _mm256_set1_epi8(black_box(2));
    // Each chain feeds its sum back into the next multiply, so the compiler cannot hoist the
    // multiplies out of the loop; 12 chains outnumber latency × throughput.
    let mut acc = [a; 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_add_epi16(_mm256_maddubs_epi16(*v, b), a);
        }
    }
    let mut s = _mm256_setzero_si256();
    for v in acc {
        s = _mm256_add_epi16(s, v);
    }
    _mm256_extract_epi16::<0>(s)
}

/// The int8 multiply-accumulate peak of `threads` threads (median of several runs) and the
/// instruction it was measured with: `vpdpbusd` where AVX-512 VNNI exists, else AVX2's
/// `vpmaddubsw`.
fn vnni_peak(pool: &ThreadPool, threads: usize) -> Option<(&'static str, f64)> {
    #[cfg(target_arch = "x86_64")]
    {
        let (name, macs_per_round): (&str, usize) = if Backend::Avx512Vnni.is_supported() {
            ("vpdpbusd zmm", 12 * 64)
        } else if Backend::Avx2.is_supported() {
            ("vpmaddubsw+vpaddw ymm", 12 * 32)
        } else {
            return None;
        };
        let iters = 2_000_000;
        let mut rates = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            pool.install(|| {
                rayon::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|_| {
                            // SAFETY: the instruction set was checked above.
                            black_box(unsafe {
                                if Backend::Avx512Vnni.is_supported() {
                                    dpbusd_loop(iters)
                                } else {
                                    maddubs_loop(iters)
                                }
                            });
                        });
                    }
                })
            });
            rates.push((threads * iters * macs_per_round) as f64 / t.elapsed().as_secs_f64());
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        Some((name, rates[rates.len() / 2]))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (pool, threads);
        None
    }
}

/// The int8 multiply-accumulate peak and the prefill GEMM (64 tokens) as a fraction of it.
fn vnni_section(ctx: &Ctx) {
    println!();
    println!("== int8 peak (12 chains) and prefill GEMM, batch 64, hot ==");
    let peaks: Vec<Option<(&str, f64)>> = ctx
        .pools
        .iter()
        .map(|(n, pool)| vnni_peak(pool, *n))
        .collect();
    for ((n, _), peak) in ctx.pools.iter().zip(&peaks) {
        match peak {
            Some((name, p)) => println!("{name} peak, {n} thread(s): {:.1} G int8 MAC/s", p / 1e9),
            None => println!("int8 peak, {n} thread(s): no AVX2 or AVX-512 VNNI on this CPU"),
        }
    }
    println!(
        "{:<24} {:>3} {:>6} {:>10} {:>12} {:>8}",
        "shape", "thr", "kernel", "ms/call", "G MAC/s", "%peak"
    );
    let mut rng = SplitMix(64);
    let filter = std::env::var("TRITLAB_BENCH_FILTER").unwrap_or_default();
    const TOKENS: usize = 64;
    for &(name, rows, cols) in SHAPES.iter().filter(|s| s.0.contains(filter.as_str())) {
        let trits: Vec<i8> = (0..rows * cols)
            .map(|_| (rng.next() % 3) as i8 - 1)
            .collect();
        let i2 = TernaryMatrix::from_trits(&trits, rows, cols, WeightScale::PerTensor(0.01))
            .expect("valid matrix");
        let t1 = i2.repack(Packing::T1).expect("valid matrix");
        let x: Vec<f32> = (0..TOKENS * cols).map(|_| rng.unit()).collect();
        let q = QuantizedActivations::quantize(&x, TOKENS, cols).expect("valid activations");
        let mut y = vec![0.0f32; TOKENS * rows];
        for ((threads, pool), peak) in ctx.pools.iter().zip(&peaks) {
            // On AMX the active backend runs I2 on tiles; VNNI's own figure is shown beside it.
            let active = Backend::active();
            let mut kernels = vec![("I2", &i2, active), ("T1", &t1, active)];
            if active == Backend::Amx {
                kernels.push(("I2vnni", &i2, Backend::Avx512Vnni));
            }
            for (kernel, m, backend) in kernels {
                let secs = pool.install(|| {
                    time_per_call(ctx.budget, 1, || {
                        m.matmul_with(backend, &q, &mut y).expect("valid shapes");
                        black_box(&y);
                    })
                });
                let macs = (rows * cols * TOKENS) as f64 / secs;
                println!(
                    "{:<24} {:>3} {:>6} {:>10.2} {:>12.1} {:>7.0}%",
                    name,
                    threads,
                    kernel,
                    secs * 1e3,
                    macs / 1e9,
                    peak.map_or(f64::NAN, |(_, p)| 100.0 * macs / p)
                );
            }
        }
    }
    println!(
        "%peak = ternary MACs (rows x cols x 64) per second over the int8 peak above, same threads"
    );
    println!("(the vector peak: AMX tiles, where I2 runs on them, can pass 100%).");
}
