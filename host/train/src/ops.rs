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
}
