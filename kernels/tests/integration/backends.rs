//! Every SIMD backend must equal the scalar reference bit for bit, and the scalar reference
//! must equal the definition (exact integer dot products, one scale multiply).

use proptest::prelude::*;
use tritlab_kernels::{Backend, QuantizedActivations, TernaryMatrix, WeightScale};

fn trits(len: usize) -> impl Strategy<Value = Vec<i8>> {
    prop::collection::vec(-1i8..=1, len)
}

/// A matrix shape, its trits, and int8 activations for a few tokens. Shapes straddle the
/// 128-column block and the 4-row / 2-row / 4-token tiles, including sizes that are not
/// multiples of any of them.
fn case() -> impl Strategy<Value = (usize, usize, usize, Vec<i8>, Vec<i8>, Vec<f32>)> {
    (1usize..40, 1usize..700, 1usize..7).prop_flat_map(|(rows, cols, tokens)| {
        (
            Just(rows),
            Just(cols),
            Just(tokens),
            trits(rows * cols),
            prop::collection::vec(any::<i8>(), tokens * cols),
            prop::collection::vec(1e-3f32..10.0, tokens),
        )
    })
}

/// The definition: y[t][r] = (Σ_c trit·q) · scale_w(r, c-group) · scale_x(t), per-group sums
/// accumulated in group order, exactly as the kernels' epilogue does.
fn reference(
    trits: &[i8],
    rows: usize,
    cols: usize,
    x: &[i8],
    xs: &[f32],
    scale: &WeightScale,
) -> Vec<f32> {
    let tokens = xs.len();
    let mut y = vec![0.0f32; tokens * rows];
    for t in 0..tokens {
        for r in 0..rows {
            let dot = |lo: usize, hi: usize| -> i32 {
                (lo..hi)
                    .map(|c| trits[r * cols + c] as i32 * x[t * cols + c] as i32)
                    .sum()
            };
            y[t * rows + r] = match scale {
                WeightScale::PerTensor(ws) => dot(0, cols) as f32 * (xs[t] * ws),
                WeightScale::PerGroup { group_size, scales } => {
                    let groups = cols.div_ceil(*group_size);
                    let mut sum = 0.0f32;
                    for g in 0..groups {
                        let hi = ((g + 1) * group_size).min(cols);
                        sum += scales[r * groups + g] * dot(g * group_size, hi) as f32;
                    }
                    sum * xs[t]
                }
            };
        }
    }
    y
}

fn run_all(m: &TernaryMatrix, x: &QuantizedActivations) -> Vec<(Backend, Vec<f32>)> {
    Backend::supported()
        .into_iter()
        .map(|b| {
            let mut y = vec![f32::NAN; x.tokens() * m.rows()];
            m.matmul_with(b, x, &mut y).expect("valid shapes");
            (b, y)
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn per_tensor_backends_equal_reference((rows, cols, tokens, t, x, xs) in case(), ws in 1e-3f32..4.0) {
        let m = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(ws)).unwrap();
        let q = QuantizedActivations::from_int8(&x, &xs, tokens, cols).unwrap();
        let expected = reference(&t, rows, cols, &x, &xs, m.scale());
        for (backend, y) in run_all(&m, &q) {
            prop_assert_eq!(bits(&y), bits(&expected), "backend {}", backend);
        }
    }

    #[test]
    fn per_group_backends_equal_reference(
        (rows, cols, tokens, t, x, xs) in case(),
        groups_of_128 in 1usize..4,
        seed_scales in prop::collection::vec(1e-3f32..4.0, 1..8),
    ) {
        let group_size = 128 * groups_of_128;
        let n = rows * cols.div_ceil(group_size);
        let scales: Vec<f32> = (0..n).map(|i| seed_scales[i % seed_scales.len()] * (1.0 + i as f32 * 1e-3)).collect();
        let scale = WeightScale::PerGroup { group_size, scales };
        let m = TernaryMatrix::from_trits(&t, rows, cols, scale).unwrap();
        let q = QuantizedActivations::from_int8(&x, &xs, tokens, cols).unwrap();
        let expected = reference(&t, rows, cols, &x, &xs, m.scale());
        for (backend, y) in run_all(&m, &q) {
            prop_assert_eq!(bits(&y), bits(&expected), "backend {}", backend);
        }
    }

    #[test]
    fn float_path_matches_quantized_definition(rows in 1usize..20, cols in 1usize..300, tokens in 1usize..5, seed in any::<u64>()) {
        // Deterministic pseudo-random floats from the seed (SplitMix64).
        let mut s = seed;
        let mut next = || { s = s.wrapping_add(0x9e3779b97f4a7c15); let mut z = s; z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9); z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb); ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5 };
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|_| next() * 8.0).collect();
        let m = TernaryMatrix::quantize(&w, rows, cols, tritlab_kernels::ScaleGranularity::PerTensor).unwrap();
        let y = m.forward_f32(&x, tokens).unwrap();
        // Against the dequantized product in f64: equal up to float rounding.
        let wq = m.to_weights().dequantize();
        let xq = QuantizedActivations::quantize(&x, tokens, cols).unwrap().dequantize();
        for t in 0..tokens {
            for r in 0..rows {
                let exact: f64 = (0..cols).map(|c| wq[r * cols + c] as f64 * xq[t * cols + c] as f64).sum();
                let got = y[t * rows + r] as f64;
                prop_assert!((got - exact).abs() <= 1e-4 * (1.0 + exact.abs()), "{got} vs {exact}");
            }
        }
    }
}

#[test]
fn threads_do_not_change_results() {
    let (rows, cols) = (1031, 2560);
    let t: Vec<i8> = (0..rows * cols)
        .map(|i| ((i * 7 + i / 13) % 3) as i8 - 1)
        .collect();
    let x: Vec<i8> = (0..3 * cols).map(|i| (i * 31 % 256) as u8 as i8).collect();
    let m = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.5)).unwrap();
    let q = QuantizedActivations::from_int8(&x, &[0.1, 0.2, 0.3], 3, cols).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut y = vec![0.0; 3 * rows];
            m.matmul(&q, &mut y).unwrap();
            bits(&y)
        })
    };
    assert_eq!(run(1), run(2));
    assert_eq!(run(1), run(5));
}

#[test]
fn amx_tiles_equal_the_reference_across_tile_edges() {
    // Token counts around the 16-token tile and the 32-token pass, row counts around the
    // 32-row band, depths of one to many 64-byte tile rows, on one and several threads (whose
    // tasks start bands at other rows). Without AMX there is nothing to compare.
    if !Backend::Amx.is_supported() {
        eprintln!("no AMX int8 on this machine: the tile products were not run");
        return;
    }
    let pools: Vec<rayon::ThreadPool> = [1, 3]
        .into_iter()
        .map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .collect();
    for (rows, cols) in [(1usize, 128usize), (31, 300), (33, 1000), (257, 2560)] {
        let t: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 11 + i / 7) % 3) as i8 - 1)
            .collect();
        let m = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.37)).unwrap();
        for tokens in [4usize, 15, 16, 17, 33, 64, 70] {
            let x: Vec<i8> = (0..tokens * cols)
                .map(|i| (i * 97 + i / 3) as u8 as i8)
                .collect();
            let xs: Vec<f32> = (0..tokens).map(|i| 0.01 + i as f32 * 0.003).collect();
            let q = QuantizedActivations::from_int8(&x, &xs, tokens, cols).unwrap();
            let expected = bits(&reference(&t, rows, cols, &x, &xs, m.scale()));
            for pool in &pools {
                let mut y = vec![f32::NAN; tokens * rows];
                pool.install(|| m.matmul_with(Backend::Amx, &q, &mut y))
                    .unwrap();
                assert_eq!(bits(&y), expected, "{rows}x{cols}, {tokens} tokens");
            }
        }
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let m = TernaryMatrix::from_trits(&[1, 0, -1, 1], 2, 2, WeightScale::PerTensor(1.0)).unwrap();
    let q = QuantizedActivations::quantize(&[1.0, 2.0, 3.0], 1, 3).unwrap();
    assert!(m.matmul(&q, &mut [0.0; 2]).is_err());
    let q = QuantizedActivations::quantize(&[1.0, 2.0], 1, 2).unwrap();
    assert!(m.matmul(&q, &mut [0.0; 3]).is_err());
    assert!(m.matmul(&q, &mut [0.0; 2]).is_ok());
    // Bad trits, bad lengths, bad scales and unsupported group sizes are rejected.
    assert!(TernaryMatrix::from_trits(&[2, 0, 0, 0], 2, 2, WeightScale::PerTensor(1.0)).is_err());
    assert!(TernaryMatrix::from_trits(&[1, 0, 0], 2, 2, WeightScale::PerTensor(1.0)).is_err());
    assert!(
        TernaryMatrix::from_trits(&[1, 0, 0, 0], 2, 2, WeightScale::PerTensor(f32::NAN)).is_err()
    );
    assert!(TernaryMatrix::from_trits(&[1, 0, 0, 0], 2, 2, WeightScale::PerTensor(-1.0)).is_err());
    assert!(TernaryMatrix::from_trits(&[1, 0, 0, 0], 0, 4, WeightScale::PerTensor(1.0)).is_err());
    let per_group = |group_size, n| WeightScale::PerGroup {
        group_size,
        scales: vec![1.0; n],
    };
    assert!(TernaryMatrix::from_trits(&[1, 0, 0, 0], 2, 2, per_group(64, 2)).is_err());
    assert!(TernaryMatrix::from_trits(&[1, 0, 0, 0], 2, 2, per_group(128, 3)).is_err());
    assert!(TernaryMatrix::from_trits(&[1, 0, 0, 0], 2, 2, per_group(128, 2)).is_ok());
    assert!(QuantizedActivations::from_int8(&[1, 2], &[1.0, 2.0], 1, 2).is_err());
}

#[test]
fn unsupported_backend_is_an_error_not_ub() {
    let m = TernaryMatrix::from_trits(&[1, 0, -1, 1], 2, 2, WeightScale::PerTensor(1.0)).unwrap();
    let q = QuantizedActivations::quantize(&[1.0, 2.0], 1, 2).unwrap();
    for b in Backend::ALL {
        let r = m.matmul_with(b, &q, &mut [0.0; 2]);
        assert_eq!(r.is_ok(), b.is_supported(), "{b}");
    }
}

#[test]
fn matmul_many_equals_separate_products() {
    let cols = 700;
    let shapes = [
        (37usize, WeightScale::PerTensor(0.3)),
        (300, WeightScale::PerTensor(1.7)),
        (5, WeightScale::PerTensor(0.01)),
    ];
    let mats: Vec<TernaryMatrix> = shapes
        .iter()
        .enumerate()
        .map(|(k, (rows, scale))| {
            let t: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * (k + 3) + i / 7) % 3) as i8 - 1)
                .collect();
            TernaryMatrix::from_trits(&t, *rows, cols, scale.clone()).unwrap()
        })
        .collect();
    for tokens in [1usize, 3] {
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| ((i * 31) % 97) as f32 / 40.0 - 1.2)
            .collect();
        let q = QuantizedActivations::quantize(&x, tokens, cols).unwrap();
        let mut separate: Vec<Vec<f32>> =
            mats.iter().map(|m| vec![0.0; tokens * m.rows()]).collect();
        for (m, y) in mats.iter().zip(separate.iter_mut()) {
            m.matmul(&q, y).unwrap();
        }
        let mut fused: Vec<Vec<f32>> = mats
            .iter()
            .map(|m| vec![f32::NAN; tokens * m.rows()])
            .collect();
        let refs: Vec<&TernaryMatrix> = mats.iter().collect();
        let mut outs: Vec<&mut [f32]> = fused.iter_mut().map(|v| v.as_mut_slice()).collect();
        TernaryMatrix::matmul_many(&refs, &q, &mut outs).unwrap();
        for (a, b) in separate.iter().zip(&fused) {
            assert_eq!(bits(a), bits(b));
        }
    }
    // A wrong output length is an error, not a panic.
    let q = QuantizedActivations::quantize(&vec![0.5; cols], 1, cols).unwrap();
    let mut short = vec![0.0; 3];
    assert!(TernaryMatrix::matmul_many(&[&mats[0]], &q, &mut [short.as_mut_slice()]).is_err());
}

#[test]
fn every_stream_setting_gives_the_same_products() {
    // Rows read one at a time or four side by side, at every prefetch distance the tuner tries
    // (and none): the same exact sums. Row counts straddle the four-row tile.
    for (rows, cols) in [(1usize, 128usize), (7, 700), (64, 2560), (67, 384)] {
        let t: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 5 + i / 11) % 3) as i8 - 1)
            .collect();
        let x: Vec<i8> = (0..cols).map(|i| (i * 37 % 256) as u8 as i8).collect();
        let m = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.7)).unwrap();
        let q = QuantizedActivations::from_int8(&x, &[0.3], 1, cols).unwrap();
        let expected = reference(&t, rows, cols, &x, &[0.3], m.scale());
        let mut settings = tritlab_kernels::tune::CANDIDATES.to_vec();
        settings.push(tritlab_kernels::tune::Setting {
            rows: 1,
            prefetch: 0,
        });
        settings.push(tritlab_kernels::tune::Setting {
            rows: 4,
            prefetch: 0,
        });
        for backend in Backend::supported() {
            for &s in &settings {
                let mut y = vec![f32::NAN; rows];
                m.matmul_streaming(backend, s, &q, &mut y).unwrap();
                assert_eq!(bits(&y), bits(&expected), "{backend}, {s}, {rows}x{cols}");
            }
        }
    }
}

#[test]
fn the_tuner_chooses_and_results_do_not_change() {
    // Enough single-token products for the tuner to choose (unless the environment turned it
    // off), every one equal to the first.
    let (rows, cols) = (96, 1024);
    let t: Vec<i8> = (0..rows * cols)
        .map(|i| ((i * 3 + i / 5) % 3) as i8 - 1)
        .collect();
    let m = TernaryMatrix::from_trits(&t, rows, cols, WeightScale::PerTensor(0.2)).unwrap();
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 13) % 29) as f32 / 7.0 - 2.0)
        .collect();
    let q = QuantizedActivations::quantize(&x, 1, cols).unwrap();
    let mut first = vec![0.0; rows];
    m.matmul(&q, &mut first).unwrap();
    let simd = Backend::active() != Backend::Scalar && Backend::active() != Backend::Neon;
    for _ in 0..20_000 {
        let mut y = vec![f32::NAN; rows];
        m.matmul(&q, &mut y).unwrap();
        assert_eq!(bits(&y), bits(&first));
        if tritlab_kernels::tune::report().chosen.is_some() {
            break;
        }
    }
    let report = tritlab_kernels::tune::report();
    if simd {
        assert!(
            report.chosen.is_some(),
            "no choice after 20,000 calls: {report}"
        );
        if report.enabled {
            assert_eq!(
                report.relative.len(),
                tritlab_kernels::tune::CANDIDATES.len()
            );
        }
    }
    assert_eq!(
        tritlab_kernels::tune::current(),
        report
            .chosen
            .unwrap_or(tritlab_kernels::tune::Setting::DEFAULT)
    );
}
