//! Quantizers as BitNet b1.58 defines them.
//!
//! Weights: absmean to {-1, 0, +1}: `s = 1 / max(mean|W|, 1e-5)`, `t = clamp(round(W·s), -1, 1)`,
//! `W ≈ t / s`, with the mean taken over the whole tensor or over groups of columns in a row.
//! Activations: per-token absmax to int8: `s = 127 / max(max|x|, 1e-5)`, `q = clamp(round(x·s), -128, 127)`.
//!
//! Rounding is half-to-even, as `torch.round` does, so quantized values match the reference
//! implementation exactly rather than differing on ties.

use crate::error::{KernelError, Result};
use crate::pack::check_matrix;
use std::sync::OnceLock;

/// The floor both BitNet quantizers put under their statistic, to avoid dividing by zero.
pub const QUANT_EPS: f32 = 1e-5;

/// How weight scales are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleGranularity {
    /// One scale for the whole tensor (BitNet b1.58).
    PerTensor,
    /// One scale for each run of `group_size` columns within a row (the last run of a row may be shorter).
    PerGroup { group_size: usize },
}

/// Dequantization multipliers of a ternary weight matrix: `W[r][c] ≈ trit[r][c] · scale`.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightScale {
    PerTensor(f32),
    /// `scales[r * groups_per_row + g]` for group `g` of row `r`.
    PerGroup {
        group_size: usize,
        scales: Vec<f32>,
    },
}

impl WeightScale {
    pub fn granularity(&self) -> ScaleGranularity {
        match self {
            WeightScale::PerTensor(_) => ScaleGranularity::PerTensor,
            WeightScale::PerGroup { group_size, .. } => ScaleGranularity::PerGroup {
                group_size: *group_size,
            },
        }
    }

    /// The scale that applies to element `(r, c)` of a matrix with `cols` columns.
    pub fn at(&self, r: usize, c: usize, cols: usize) -> f32 {
        match self {
            WeightScale::PerTensor(s) => *s,
            WeightScale::PerGroup { group_size, scales } => {
                let groups = cols.div_ceil(*group_size);
                scales[r * groups + c / group_size]
            }
        }
    }

    /// Checks the scale against a matrix shape: right count, finite and positive values.
    pub fn validate(&self, rows: usize, cols: usize) -> Result<()> {
        let check = |value: f32| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(KernelError::BadScale {
                    what: "weight scale",
                    value,
                })
            }
        };
        match self {
            WeightScale::PerTensor(s) => check(*s),
            WeightScale::PerGroup { group_size, scales } => {
                if *group_size == 0 {
                    return Err(KernelError::GroupSize {
                        group_size: 0,
                        reason: "must be at least 1",
                    });
                }
                let expected = rows * cols.div_ceil(*group_size);
                if scales.len() != expected {
                    return Err(KernelError::Length {
                        what: "per-group weight scales",
                        expected,
                        actual: scales.len(),
                    });
                }
                scales.iter().try_for_each(|&s| check(s))
            }
        }
    }
}

/// A ternary weight matrix in plain (unpacked, row-major) form.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryWeights {
    pub rows: usize,
    pub cols: usize,
    /// Row-major trits in {-1, 0, +1}.
    pub trits: Vec<i8>,
    pub scale: WeightScale,
}

impl TernaryWeights {
    /// `t · scale` for every element: the effective weights the model computes with.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.trits.len());
        for r in 0..self.rows {
            for c in 0..self.cols {
                let t = self.trits[r * self.cols + c];
                out.push(t as f32 * self.scale.at(r, c, self.cols));
            }
        }
        out
    }
}

fn check_finite(what: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(KernelError::NonFinite {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

/// Mean of |w| accumulated in f64, so large tensors do not lose precision.
fn abs_mean(values: &[f32]) -> f32 {
    let sum: f64 = values.iter().map(|v| v.abs() as f64).sum();
    (sum / values.len() as f64) as f32
}

/// Quantizes a row-major `[rows, cols]` f32 matrix by absmean.
pub fn quantize_absmean(
    weights: &[f32],
    rows: usize,
    cols: usize,
    granularity: ScaleGranularity,
) -> Result<TernaryWeights> {
    check_matrix("weights to quantize", weights.len(), rows, cols)?;
    check_finite("weights to quantize", weights)?;
    let mut trits = vec![0i8; weights.len()];
    let scale = match granularity {
        ScaleGranularity::PerTensor => {
            let inv = 1.0 / abs_mean(weights).max(QUANT_EPS);
            ternarize(weights, inv, &mut trits);
            WeightScale::PerTensor(1.0 / inv)
        }
        ScaleGranularity::PerGroup { group_size } => {
            if group_size == 0 {
                return Err(KernelError::GroupSize {
                    group_size,
                    reason: "must be at least 1",
                });
            }
            let mut scales = Vec::with_capacity(rows * cols.div_ceil(group_size));
            for r in 0..rows {
                for start in (0..cols).step_by(group_size) {
                    let end = (start + group_size).min(cols);
                    let range = r * cols + start..r * cols + end;
                    let inv = 1.0 / abs_mean(&weights[range.clone()]).max(QUANT_EPS);
                    ternarize(&weights[range.clone()], inv, &mut trits[range]);
                    scales.push(1.0 / inv);
                }
            }
            WeightScale::PerGroup { group_size, scales }
        }
    };
    Ok(TernaryWeights {
        rows,
        cols,
        trits,
        scale,
    })
}

fn ternarize(weights: &[f32], inv_scale: f32, out: &mut [i8]) {
    for (t, &w) in out.iter_mut().zip(weights) {
        // Clamping to ±2 first keeps the value in round_half_even's range without changing
        // the result: anything beyond ±1.5 ends at ±1 either way.
        *t = round_half_even((w * inv_scale).clamp(-2.0, 2.0)).clamp(-1.0, 1.0) as i8;
    }
}

/// Rounds half to even (as `torch.round` does) for |v| < 2²²: adding and subtracting 1.5·2²³
/// leaves no fraction bits, so the FPU's default rounding (to nearest, ties to even) does the
/// work. `f32::round_ties_even` is exact too, but on baseline x86-64 it is a library call per
/// element, which made quantising activations the slowest step of decoding.
#[inline(always)]
pub fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    (v + MAGIC) - MAGIC
}

/// Columns of an activation row are padded to a multiple of this, the kernels' block width.
pub const ACT_ALIGN: usize = crate::matrix::BLOCK_COLS;

/// One token's absmax int8 quantisation, BitLinear's activation quantiser: writes
/// `clamp(round_half_even(x · 127 / max(max|x|, ε)), −128, 127)` into `out` and returns the scale
/// that turns the integers back into activations. The engine's kernels ([`QuantizedActivations`])
/// and the trainer's fake quantisation both call this, so what training sees is bit for bit what
/// the engine computes with.
pub fn quantize_token(row: &[f32], out: &mut [i8]) -> f32 {
    let absmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let inv = 127.0 / absmax.max(QUANT_EPS);
    for (q, &v) in out.iter_mut().zip(row) {
        // |v · inv| ≤ 127 by construction: within round_half_even's range.
        *q = round_half_even(v * inv).clamp(-128.0, 127.0) as i8;
    }
    1.0 / inv
}

/// Per-token int8 activations, laid out for the kernels.
///
/// Each token's row is zero-padded to a multiple of [`ACT_ALIGN`] columns so kernels never need
/// a scalar tail; zeros contribute nothing to any dot product.
#[derive(Debug, Clone, Default)]
pub struct QuantizedActivations {
    tokens: usize,
    cols: usize,
    stride: usize,
    values: Vec<i8>,
    /// Dequantization multiplier per token: `x ≈ q · scale`.
    scales: Vec<f32>,
    /// Σ q per token, per block of [`ACT_ALIGN`] columns (`tokens × blocks`).
    block_sums: Vec<i32>,
    /// The same values in the pair-interleaved order the 512-bit kernels read (see `matrix`).
    pair_order: Vec<i8>,
    /// The same values regrouped by T1 digit, made when a T1 product first asks (see `t1`).
    t1_planes: OnceLock<T1Planes>,
}

/// Two activations are equal when their values and scales are: everything else is derived.
impl PartialEq for QuantizedActivations {
    fn eq(&self, other: &Self) -> bool {
        (self.tokens, self.cols, &self.values, &self.scales)
            == (other.tokens, other.cols, &other.values, &other.scales)
    }
}

/// Activations regrouped to meet the digits of T1 bytes, one row per token (see
/// `t1::digit_planes`).
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct T1Planes {
    tokens: usize,
    stride: usize,
    values: Vec<i8>,
}

impl T1Planes {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn tokens(&self) -> usize {
        self.tokens
    }
    pub(crate) fn token(&self, t: usize) -> &[i8] {
        &self.values[t * self.stride..(t + 1) * self.stride]
    }
}

impl QuantizedActivations {
    /// Quantizes `tokens` rows of `cols` f32 activations.
    pub fn quantize(x: &[f32], tokens: usize, cols: usize) -> Result<Self> {
        let mut q = Self::default();
        q.quantize_into(x, tokens, cols)?;
        Ok(q)
    }

    /// Like [`quantize`](Self::quantize) but reuses this value's buffers (for decode loops).
    pub fn quantize_into(&mut self, x: &[f32], tokens: usize, cols: usize) -> Result<()> {
        check_matrix("activations", x.len(), tokens, cols)?;
        check_finite("activations", x)?;
        let stride = cols.next_multiple_of(ACT_ALIGN);
        let blocks = stride / ACT_ALIGN;
        self.tokens = tokens;
        self.cols = cols;
        self.stride = stride;
        self.values.clear();
        self.values.resize(tokens * stride, 0);
        self.scales.clear();
        self.block_sums.clear();
        self.block_sums.resize(tokens * blocks, 0);
        for t in 0..tokens {
            let row = &x[t * cols..(t + 1) * cols];
            let dst = &mut self.values[t * stride..t * stride + cols];
            self.scales.push(quantize_token(row, dst));
            let padded = &self.values[t * stride..(t + 1) * stride];
            for (b, chunk) in padded.chunks_exact(ACT_ALIGN).enumerate() {
                self.block_sums[t * blocks + b] = chunk.iter().map(|&v| v as i32).sum();
            }
        }
        self.t1_planes = OnceLock::new();
        self.pair_order.clear();
        self.pair_order.resize(self.values.len(), 0);
        for t in 0..tokens {
            let src = &self.values[t * stride..(t + 1) * stride];
            let dst = &mut self.pair_order[t * stride..(t + 1) * stride];
            crate::matrix::to_pair_order(src, dst);
        }
        Ok(())
    }

    /// Builds activations from already-quantized int8 values and their scales (e.g. for tests).
    pub fn from_int8(values: &[i8], scales: &[f32], tokens: usize, cols: usize) -> Result<Self> {
        check_matrix("int8 activations", values.len(), tokens, cols)?;
        if scales.len() != tokens {
            return Err(KernelError::Length {
                what: "activation scales",
                expected: tokens,
                actual: scales.len(),
            });
        }
        if let Some(&value) = scales.iter().find(|s| !s.is_finite()) {
            return Err(KernelError::BadScale {
                what: "activation scale",
                value,
            });
        }
        let stride = cols.next_multiple_of(ACT_ALIGN);
        let blocks = stride / ACT_ALIGN;
        let mut padded = vec![0i8; tokens * stride];
        let mut block_sums = vec![0i32; tokens * blocks];
        let mut pair_order = vec![0i8; tokens * stride];
        for t in 0..tokens {
            padded[t * stride..t * stride + cols]
                .copy_from_slice(&values[t * cols..(t + 1) * cols]);
            let row = &padded[t * stride..(t + 1) * stride];
            for (b, chunk) in row.chunks_exact(ACT_ALIGN).enumerate() {
                block_sums[t * blocks + b] = chunk.iter().map(|&v| v as i32).sum();
            }
            crate::matrix::to_pair_order(row, &mut pair_order[t * stride..(t + 1) * stride]);
        }
        Ok(Self {
            tokens,
            cols,
            stride,
            values: padded,
            scales: scales.to_vec(),
            block_sums,
            pair_order,
            t1_planes: OnceLock::new(),
        })
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Padded row length in the buffers.
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// Token `t`'s int8 values, zero-padded to [`stride`](Self::stride).
    pub fn token(&self, t: usize) -> &[i8] {
        &self.values[t * self.stride..(t + 1) * self.stride]
    }
    pub(crate) fn token_pair_order(&self, t: usize) -> &[i8] {
        &self.pair_order[t * self.stride..(t + 1) * self.stride]
    }
    /// Every token regrouped for the T1 kernels, made on first use and kept with the values.
    pub(crate) fn t1_planes(&self) -> &T1Planes {
        self.t1_planes.get_or_init(|| {
            let stride = self.cols.div_ceil(crate::t1::CHUNK_COLS) * crate::t1::CHUNK_COLS;
            let mut values = vec![0i8; self.tokens * stride];
            for (t, planes) in values.chunks_exact_mut(stride.max(1)).enumerate() {
                crate::t1::digit_planes(self.token(t), self.cols, planes);
            }
            T1Planes {
                tokens: self.tokens,
                stride,
                values,
            }
        })
    }
    pub fn scale(&self, t: usize) -> f32 {
        self.scales[t]
    }
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// Σ q over block `b` of token `t`.
    pub fn block_sums(&self, t: usize) -> &[i32] {
        let blocks = self.stride / ACT_ALIGN;
        &self.block_sums[t * blocks..(t + 1) * blocks]
    }
    /// Σ q over token `t`.
    pub fn sum(&self, t: usize) -> i32 {
        self.block_sums(t).iter().sum()
    }
    /// `q · scale` for every element (without padding).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.tokens * self.cols);
        for t in 0..self.tokens {
            let s = self.scales[t];
            out.extend(self.token(t)[..self.cols].iter().map(|&q| q as f32 * s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absmean_matches_bitnet_definition() {
        // mean|W| = 0.5 → s = 2: 0.24 → 0, 0.26 → 1, -0.75 → -1 (1.5 clamps), 0.25 ties to 0.
        let w = [0.24f32, 0.26, -0.75, 0.25, -0.5, 1.0];
        let q = quantize_absmean(&w, 1, 6, ScaleGranularity::PerTensor).unwrap();
        assert_eq!(q.trits, vec![0, 1, -1, 0, -1, 1]);
        assert_eq!(q.scale, WeightScale::PerTensor(0.5));
    }

    #[test]
    fn per_group_scales_are_per_row_runs() {
        let w: Vec<f32> = (0..2 * 5).map(|i| i as f32 - 4.5).collect();
        let q = quantize_absmean(&w, 2, 5, ScaleGranularity::PerGroup { group_size: 2 }).unwrap();
        match &q.scale {
            WeightScale::PerGroup { scales, .. } => assert_eq!(scales.len(), 2 * 3),
            other => panic!("unexpected {other:?}"),
        }
        assert!(q.scale.validate(2, 5).is_ok());
    }

    #[test]
    fn activation_ties_round_to_even() {
        // absmax 127 → scale 1: 2.5 → 2, 3.5 → 4, -0.5 → -0.
        let x = [127.0f32, 2.5, 3.5, -0.5];
        let q = QuantizedActivations::quantize(&x, 1, 4).unwrap();
        assert_eq!(&q.token(0)[..4], &[127, 2, 4, 0]);
        assert_eq!(q.sum(0), 133);
    }

    #[test]
    fn round_half_even_matches_the_standard_library() {
        let mut v = -300.0f32;
        while v <= 300.0 {
            for x in [
                v,
                v + 0.5,
                v - 0.5,
                v + 0.499_999_97,
                v.next_up(),
                v.next_down(),
            ] {
                // Equal as numbers (a tie towards zero may give +0 for -0; both quantise to 0).
                assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
            }
            v += 0.25;
        }
    }

    #[test]
    fn rejects_non_finite_input() {
        assert!(QuantizedActivations::quantize(&[1.0, f32::NAN], 1, 2).is_err());
        assert!(quantize_absmean(&[f32::INFINITY], 1, 1, ScaleGranularity::PerTensor).is_err());
    }
}
