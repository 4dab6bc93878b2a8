//! The output head: every backend equals the scalar reference bit for bit, and each format's
//! decoded weights stay within its documented error bound.

use proptest::prelude::*;
use tritlab_kernels::{Backend, HeadMatrix, HeadPrecision, KernelError};

fn case() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>)> {
    (1usize..23, 1usize..300).prop_flat_map(|(rows, cols)| {
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(-4.0f32..4.0, rows * cols),
            prop::collection::vec(-2.0f32..2.0, cols),
        )
    })
}

/// The documented per-element bound for weight `c` of row `r`.
fn bound(p: HeadPrecision, w: &[f32], cols: usize, r: usize, c: usize) -> f32 {
    let row = &w[r * cols..(r + 1) * cols];
    let absmax = |s: &[f32]| s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    match p {
        HeadPrecision::Bf16 => row[c].abs() * 2f32.powi(-8),
        HeadPrecision::Int8 => absmax(row) / 127.0 / 2.0 * 1.0001,
        HeadPrecision::Q6 | HeadPrecision::Q4 => {
            let lo = c / 32 * 32;
            let qmax = if p == HeadPrecision::Q6 { 31.0 } else { 7.0 };
            absmax(&row[lo..(lo + 32).min(cols)]) / qmax * (1.0 + 2f32.powi(-7)) / 2.0 * 1.0001
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn backends_match_scalar((rows, cols, w, x) in case(), threads in 0usize..3) {
        for p in HeadPrecision::ALL {
            let m = HeadMatrix::from_f32(rows, cols, &w, p).unwrap();
            let mut want = vec![0.0f32; rows];
            m.gemv_with(Backend::Scalar, &x, &mut want, 1).unwrap();
            for b in Backend::supported() {
                let mut got = vec![f32::NAN; rows];
                m.gemv_with(b, &x, &mut got, threads).unwrap();
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same, "{p} on {b}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn weights_within_bounds((rows, cols, w, _x) in case()) {
        for p in HeadPrecision::ALL {
            let m = HeadMatrix::from_f32(rows, cols, &w, p).unwrap();
            let d = m.to_f32();
            for r in 0..rows {
                for c in 0..cols {
                    let e = (d[r * cols + c] - w[r * cols + c]).abs();
                    prop_assert!(e <= bound(p, &w, cols, r, c), "{p} r{r} c{c}: error {e}");
                }
            }
        }
    }

    /// The prompt's product: every token's row equals its one-token product bit for bit, on
    /// every backend (the engine relies on it: a prompt's last logits equal a decode step's).
    #[test]
    fn gemm_rows_are_gemvs((rows, cols, w, x) in case(), tokens in 1usize..5) {
        let xs: Vec<f32> = (0..tokens)
            .flat_map(|t| x.iter().map(move |v| v * (t as f32 + 1.0) - 0.25 * t as f32))
            .collect();
        for p in HeadPrecision::ALL {
            let m = HeadMatrix::from_f32(rows, cols, &w, p).unwrap();
            for b in Backend::supported() {
                let mut all = vec![f32::NAN; tokens * rows];
                m.gemm_with(b, &xs, tokens, &mut all).unwrap();
                for t in 0..tokens {
                    let mut one = vec![f32::NAN; rows];
                    m.gemv_with(b, &xs[t * cols..(t + 1) * cols], &mut one, 1).unwrap();
                    let same = all[t * rows..(t + 1) * rows]
                        .iter()
                        .zip(&one)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    prop_assert!(same, "{p} on {b}, token {t}");
                }
            }
        }
    }

    /// The reference itself: the canonical order over the decoded weights (int8 scaled last).
    #[test]
    fn scalar_is_the_canonical_sum((rows, cols, w, x) in case()) {
        for p in [HeadPrecision::Bf16, HeadPrecision::Q6, HeadPrecision::Q4] {
            let m = HeadMatrix::from_f32(rows, cols, &w, p).unwrap();
            let d = m.to_f32();
            let mut got = vec![0.0f32; rows];
            m.gemv_with(Backend::Scalar, &x, &mut got, 1).unwrap();
            for r in 0..rows {
                let mut s = [0.0f32; 16];
                for c in 0..cols {
                    s[c % 16] = d[r * cols + c].mul_add(x[c], s[c % 16]);
                }
                let mut n = 16;
                while n > 1 {
                    n /= 2;
                    for j in 0..n {
                        s[j] += s[j + n];
                    }
                }
                prop_assert_eq!(got[r].to_bits(), s[0].to_bits());
            }
        }
    }
}

#[test]
fn bf16_weights_are_exact() {
    let w: Vec<f32> = (0..64 * 40)
        .map(|i| ((i % 97) as f32 - 48.0) * 0.125)
        .collect();
    let m = HeadMatrix::from_f32(64, 40, &w, HeadPrecision::Bf16).unwrap();
    assert_eq!(m.to_f32(), w);
}

#[test]
fn precision_names_round_trip() {
    for p in HeadPrecision::ALL {
        assert_eq!(p.to_string().parse::<HeadPrecision>().unwrap(), p);
    }
    assert_eq!(
        "INT8".parse::<HeadPrecision>().unwrap(),
        HeadPrecision::Int8
    );
    assert!(matches!(
        "q3".parse::<HeadPrecision>(),
        Err(KernelError::UnknownHeadPrecision(_))
    ));
}

#[test]
fn bad_input_is_an_error() {
    assert!(HeadMatrix::from_f32(2, 3, &[0.0; 5], HeadPrecision::Q4).is_err());
    assert!(HeadMatrix::from_f32(1, 2, &[0.0, f32::NAN], HeadPrecision::Bf16).is_err());
    let m = HeadMatrix::from_f32(2, 3, &[1.0; 6], HeadPrecision::Q6).unwrap();
    let mut out = vec![0.0; 2];
    assert!(m.gemv(&[1.0; 2], &mut out, 1).is_err());
    assert!(m.gemv(&[1.0; 3], &mut out[..1], 1).is_err());
    m.gemv(&[1.0; 3], &mut out, 1).unwrap();
    assert!(out.iter().all(|v| (v - 3.0).abs() < 0.1));
}
