//! The three operations of quantisation-aware training that candle does not have, as custom ops
//! with hand-written backward passes.
//!
//! - [`TernaryWeights`]: the forward pass sees absmean-ternary weights `trit · scale`; the
//!   backward pass hands the gradient straight through to the latent weights (the STE).
//! - [`Int8Activations`]: per-token absmax int8 fake quantisation, also straight-through.
//! - [`CrossEntropy`]: mean next-token cross-entropy fused over the vocabulary, so the
//!   `[tokens, vocab]` softmax is never materialised as a chain of autograd nodes.
//!
//! The quantisers are the kernels' own ([`tritlab_kernels::quantize_absmean`] and
//! [`tritlab_kernels::quant::quantize_token`]), so what training sees is bit for bit what the
//! engine will compute with after export.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;
use tritlab_kernels::quant::quantize_token;
use tritlab_kernels::{quantize_absmean, ScaleGranularity};

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

fn matrix_dims(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    match layout.dims() {
        [rows, cols] => Ok((*rows, *cols)),
        dims => candle_core::bail!("{op}: expected a matrix, got shape {dims:?}"),
    }
}

/// Absmean ternarisation with a straight-through gradient.
pub struct TernaryWeights {
    pub granularity: ScaleGranularity,
}

impl CustomOp1 for TernaryWeights {
    fn name(&self) -> &'static str {
        "ternary-weights"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = contiguous_f32(storage, layout, self.name())?;
        let (rows, cols) = matrix_dims(layout, self.name())?;
        let q = quantize_absmean(w, rows, cols, self.granularity)
            .map_err(|e| candle_core::Error::Msg(format!("ternarising weights: {e}")))?;
        Ok((CpuStorage::F32(q.dequantize()), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}

/// Per-row absmax int8 fake quantisation: the kernels' own token quantiser
/// ([`tritlab_kernels::quant::quantize_token`]), its integers times its scale.
pub fn fake_quantize_row(row: &[f32], out: &mut [f32]) {
    let mut q = vec![0i8; row.len()];
    let scale = quantize_token(row, &mut q);
    for (o, &v) in out.iter_mut().zip(&q) {
        *o = f32::from(v) * scale;
    }
}

/// Per-token int8 activations with a straight-through gradient.
pub struct Int8Activations;

impl CustomOp1 for Int8Activations {
    fn name(&self) -> &'static str {
        "int8-activations"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let (_, cols) = matrix_dims(layout, self.name())?;
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(cols)
            .zip(x.par_chunks(cols))
            .for_each(|(o, row)| fake_quantize_row(row, o));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}

/// Mean cross-entropy of `[tokens, vocab]` logits against fixed targets; a scalar.
pub struct CrossEntropy {
    pub targets: Arc<Vec<u32>>,
}

/// `log Σ exp(row)` and the row's maximum.
fn log_sum_exp(row: &[f32]) -> (f32, f64) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = row.iter().map(|&v| (v - max).exp() as f64).sum();
    (max, sum.ln())
}

impl CrossEntropy {
    fn check(&self, rows: usize, vocab: usize) -> Result<()> {
        if self.targets.len() != rows {
            candle_core::bail!(
                "cross-entropy: {} targets for {rows} rows of logits",
                self.targets.len()
            );
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("cross-entropy: target {t} is outside the vocabulary of {vocab}");
        }
        Ok(())
    }

    /// Per-row losses, in f64.
    pub fn row_losses(&self, logits: &[f32], vocab: usize) -> Vec<f64> {
        logits
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let (max, lse) = log_sum_exp(row);
                lse - (row[t as usize] - max) as f64
            })
            .collect()
    }
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = contiguous_f32(storage, layout, self.name())?;
        let (rows, vocab) = matrix_dims(layout, self.name())?;
        self.check(rows, vocab)?;
        // Summed in order, so the loss does not depend on the thread count.
        let total: f64 = self.row_losses(logits, vocab).iter().sum();
        Ok((
            CpuStorage::F32(vec![(total / rows as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (rows, vocab) = arg.dims2()?;
        self.check(rows, vocab)?;
        let logits = arg.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?
            / rows as f32;
        let mut grad = vec![0.0f32; logits.len()];
        grad.par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .zip(self.targets.par_iter())
            .for_each(|((out, row), &t)| {
                let (max, lse) = log_sum_exp(row);
                let lse = lse as f32;
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = (v - max - lse).exp() * g;
                }
                out[t as usize] -= g;
            });
        Ok(Some(Tensor::from_vec(grad, (rows, vocab), arg.device())?))
    }
}

/// The same quantisers and loss as tensor operations, for devices the custom ops have no kernels
/// for (CUDA GPUs): nothing leaves the device between the forward and the backward pass.
///
/// The formulas are the kernels' step for step (the same epsilon, the same divisions, rounding
/// half to even), so they agree with the custom ops up to the order in which a device sums a
/// mean, which can move a scale by an ulp and, at an exact tie, one trit. The straight-through
/// estimator is written as `w − detach(w) + detach(q)`: its value is exactly `q` (`w − w` is
/// exactly zero) and its gradient with respect to `w` is the identity.
pub mod tensor {
    use candle_core::{Result, Tensor, D};
    use tritlab_kernels::quant::QUANT_EPS;
    use tritlab_kernels::ScaleGranularity;

    /// `1.5 · 2²³`: adding and subtracting it in two element-wise operations rounds to an integer,
    /// half to even, for |v| < 2²² (each operation rounds once, to nearest even).
    const ROUND_MAGIC: f64 = 12_582_912.0;

    fn round_half_even(x: &Tensor) -> Result<Tensor> {
        (x + ROUND_MAGIC)? - ROUND_MAGIC
    }

    /// `q` in the forward pass, the identity to `w` in the backward pass.
    fn straight_through(w: &Tensor, q: &Tensor) -> Result<Tensor> {
        (w - w.detach())? + q.detach()
    }

    /// `num / den` element-wise with one rounding, `num` broadcast.
    fn divide(num: f32, den: &Tensor) -> Result<Tensor> {
        Tensor::new(num, den.device())?
            .to_dtype(den.dtype())?
            .broadcast_div(den)
    }

    /// Absmean ternarisation (per tensor or per group of a row), straight-through.
    pub fn ternary_weights(w: &Tensor, granularity: ScaleGranularity) -> Result<Tensor> {
        let (rows, cols) = w.dims2()?;
        let x = w.detach();
        let q = match granularity {
            ScaleGranularity::PerTensor => {
                let inv = divide(1.0, &x.abs()?.mean_all()?.maximum(QUANT_EPS)?)?;
                ternarize(&x, &inv)?
            }
            ScaleGranularity::PerGroup { group_size } => {
                if group_size == 0 {
                    candle_core::bail!("ternary weights: a group size of 0");
                }
                // Pad each row to whole groups with zeros, which add nothing to a group's sum;
                // the mean divides by the group's real length (the last one may be short).
                let groups = cols.div_ceil(group_size);
                let padded = x.pad_with_zeros(1, 0, groups * group_size - cols)?;
                let grouped = padded.reshape((rows, groups, group_size))?;
                let lengths: Vec<f32> = (0..groups)
                    .map(|g| (cols - g * group_size).min(group_size) as f32)
                    .collect();
                let lengths = Tensor::from_vec(lengths, (1, groups, 1), w.device())?;
                let mean = grouped.abs()?.sum_keepdim(2)?.broadcast_div(&lengths)?;
                let inv = divide(1.0, &mean.maximum(QUANT_EPS)?)?;
                ternarize(&grouped, &inv)?
                    .reshape((rows, groups * group_size))?
                    .narrow(1, 0, cols)?
            }
        };
        straight_through(w, &q)
    }

    /// `round_half_even(clamp(w · inv, ±2)).clamp(±1) · (1 / inv)`, `inv` broadcast.
    fn ternarize(w: &Tensor, inv: &Tensor) -> Result<Tensor> {
        let trits =
            round_half_even(&w.broadcast_mul(inv)?.clamp(-2f32, 2f32)?)?.clamp(-1f32, 1f32)?;
        trits.broadcast_mul(&divide(1.0, inv)?)
    }

    /// Per-token (per-row) absmax int8 fake quantisation, straight-through.
    pub fn int8_activations(x: &Tensor) -> Result<Tensor> {
        let d = x.detach();
        let absmax = d.abs()?.max_keepdim(D::Minus1)?;
        let inv = divide(127.0, &absmax.maximum(QUANT_EPS)?)?;
        let q = round_half_even(&d.broadcast_mul(&inv)?)?.clamp(-128f32, 127f32)?;
        straight_through(x, &q.broadcast_mul(&divide(1.0, &inv)?)?)
    }

    /// Mean next-token cross-entropy of `[tokens, vocab]` logits against `targets`, a scalar
    /// whose gradient autograd derives (softmax minus the one-hot target, over tokens). The
    /// targets are checked here, on the host, before they index anything on the device.
    pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
        let (rows, vocab) = logits.dims2()?;
        if targets.len() != rows {
            candle_core::bail!(
                "cross-entropy: {} targets for {rows} rows of logits",
                targets.len()
            );
        }
        if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("cross-entropy: target {t} is outside the vocabulary of {vocab}");
        }
        let targets = Tensor::from_slice(targets, (rows, 1), logits.device())?;
        let shifted = logits.broadcast_sub(&logits.max_keepdim(1)?.detach())?;
        let log_z = shifted.exp()?.sum_keepdim(1)?.log()?;
        let picked = shifted.gather(&targets, 1)?;
        (log_z - picked)?.mean_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn cross_entropy_matches_the_composed_formula_and_its_gradient() {
        let dev = Device::Cpu;
        let logits: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.5).collect();
        let var = Var::from_vec(logits.clone(), (3, 4), &dev).unwrap();
        let targets = Arc::new(vec![1u32, 3, 0]);
        let loss = var
            .as_tensor()
            .apply_op1(CrossEntropy {
                targets: targets.clone(),
            })
            .unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut expect = 0.0f64;
        for r in 0..3 {
            let row = &logits[r * 4..r * 4 + 4];
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            expect += z.ln() - row[targets[r] as usize] as f64;
            for c in 0..4 {
                let p = (row[c] as f64).exp() / z;
                let want = (p - if c == targets[r] as usize { 1.0 } else { 0.0 }) / 3.0;
                assert!((g[r * 4 + c] as f64 - want).abs() < 1e-6, "{r},{c}");
            }
        }
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - expect / 3.0).abs() < 1e-6);
    }

    #[test]
    fn quantisers_pass_gradients_straight_through() {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![0.9f32, -0.05, 0.4, -1.2, 0.0, 0.3], (2, 3), &dev).unwrap();
        let q = w
            .as_tensor()
            .apply_op1(TernaryWeights {
                granularity: ScaleGranularity::PerTensor,
            })
            .unwrap();
        let values = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = (0.9 + 0.05 + 0.4 + 1.2 + 0.0 + 0.3) / 6.0f32;
        let trits: Vec<f32> = values.iter().map(|v| v / scale).collect();
        for (t, want) in trits.iter().zip([1.0, 0.0, 1.0, -1.0, 0.0, 1.0]) {
            assert!((t - want).abs() < 1e-5, "{trits:?}");
        }
        let x = q.apply_op1(Int8Activations).unwrap();
        let loss = (x * 2.0).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let gw = g
            .get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(gw, vec![2.0; 6]);
    }

    /// Deterministic values in about ±1.5 with a few exact zeros and ties.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(97));
                match h % 11 {
                    0 => 0.0,
                    _ => ((h >> 8) % 3001) as f32 / 1000.0 - 1.5,
                }
            })
            .collect()
    }

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn tensor_quantisers_compute_what_the_kernels_compute() {
        let dev = Device::Cpu;
        for (rows, cols, granularity) in [
            (7, 33, ScaleGranularity::PerTensor),
            (5, 64, ScaleGranularity::PerGroup { group_size: 16 }),
            // A short last group in every row.
            (3, 50, ScaleGranularity::PerGroup { group_size: 16 }),
        ] {
            let w = Tensor::from_vec(values(rows * cols, 3), (rows, cols), &dev).unwrap();
            let kernels = to_vec(&w.apply_op1(TernaryWeights { granularity }).unwrap());
            let tensors = to_vec(&tensor::ternary_weights(&w, granularity).unwrap());
            for (i, (a, b)) in kernels.iter().zip(&tensors).enumerate() {
                // The same trit; the scale may differ by the order of the mean's sum.
                assert!(
                    (a - b).abs() <= a.abs() * 1e-6,
                    "{granularity:?} [{i}]: {a} vs {b}"
                );
            }
            let x = Tensor::from_vec(values(rows * cols, 5), (rows, cols), &dev).unwrap();
            let kernels = to_vec(&x.apply_op1(Int8Activations).unwrap());
            let tensors = to_vec(&tensor::int8_activations(&x).unwrap());
            assert_eq!(kernels, tensors, "int8 activations of {rows}×{cols}");
        }
    }

    #[test]
    fn tensor_rounding_is_half_to_even() {
        let dev = Device::Cpu;
        // 0.5 and 1.5 of the scale: ties, which go to 0 and 2 → ±1 after clamping.
        let w = Tensor::from_vec(vec![0.5f32, -0.5, 1.5, -1.5, 2.5, 0.0], (1, 6), &dev).unwrap();
        let scale = (0.5 + 0.5 + 1.5 + 1.5 + 2.5) / 6.0f32;
        let t: Vec<f32> =
            to_vec(&tensor::ternary_weights(&w, ScaleGranularity::PerTensor).unwrap())
                .iter()
                .map(|v| (v / scale).round())
                .collect();
        let k: Vec<f32> = to_vec(
            &w.apply_op1(TernaryWeights {
                granularity: ScaleGranularity::PerTensor,
            })
            .unwrap(),
        )
        .iter()
        .map(|v| (v / scale).round())
        .collect();
        assert_eq!(t, k);
    }

    #[test]
    fn tensor_ops_pass_gradients_straight_through_and_the_loss_matches() {
        let dev = Device::Cpu;
        let w = Var::from_vec(values(24, 7), (4, 6), &dev).unwrap();
        let q = tensor::ternary_weights(w.as_tensor(), ScaleGranularity::PerTensor).unwrap();
        let x = tensor::int8_activations(&q).unwrap();
        let loss = (x * 2.0).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        assert_eq!(to_vec(g.get(w.as_tensor()).unwrap()), vec![2.0; 24]);

        let logits = Var::from_vec(values(3 * 5, 11), (3, 5), &dev).unwrap();
        let targets = vec![4u32, 0, 2];
        let ours = tensor::cross_entropy(logits.as_tensor(), &targets).unwrap();
        let theirs = logits
            .as_tensor()
            .apply_op1(CrossEntropy {
                targets: Arc::new(targets.clone()),
            })
            .unwrap();
        let (a, b) = (
            ours.to_scalar::<f32>().unwrap(),
            theirs.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let ga = to_vec(ours.backward().unwrap().get(logits.as_tensor()).unwrap());
        let gb = to_vec(theirs.backward().unwrap().get(logits.as_tensor()).unwrap());
        for (x, y) in ga.iter().zip(&gb) {
            assert!((x - y).abs() < 1e-6, "{ga:?} vs {gb:?}");
        }
        let e = tensor::cross_entropy(logits.as_tensor(), &[0, 5, 1]).unwrap_err();
        assert!(
            e.to_string()
                .contains("target 5 is outside the vocabulary of 5"),
            "{e}"
        );
        let e = tensor::cross_entropy(logits.as_tensor(), &[0]).unwrap_err();
        assert!(e.to_string().contains("1 targets for 3 rows"), "{e}");
    }
}
