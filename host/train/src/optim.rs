//! AdamW with decoupled weight decay and global gradient-norm clipping, on plain slices.
//!
//! candle-nn's `AdamW` keeps its moments private, and the morphism log needs them: they are part
//! of the world that is hashed, checkpointed and replayed. Written out here the update is one
//! fused pass per parameter, element-wise and therefore independent of the thread count.

use crate::config::TrainOptions;
use crate::model::{ParamKind, World};
use rayon::prelude::*;
use tritlab_kernels::{quantize_absmean, ScaleGranularity};

/// The global L2 norm of all gradients. Each parameter's sum of squares is taken in order and
/// the sums combined in parameter order, so the result does not depend on the thread count.
pub fn grad_norm(grads: &[Vec<f32>]) -> f64 {
    let sums: Vec<f64> = grads
        .par_iter()
        .map(|g| g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .collect();
    sums.iter().sum::<f64>().sqrt()
}

/// The factor gradients are multiplied by so that their norm is at most `clip` (0: no clipping).
pub fn clip_factor(norm: f64, clip: f64) -> f64 {
    if clip > 0.0 && norm > clip {
        clip / (norm + 1e-6)
    } else {
        1.0
    }
}

/// One AdamW step at learning rate `lr`: increments `world.step` and updates every parameter.
pub fn adamw_step(world: &mut World, grads: &[Vec<f32>], lr: f64, scale: f64, o: &TrainOptions) {
    world.step += 1;
    let t = world.step as i32;
    let bc1 = 1.0 - o.beta1.powi(t);
    let bc2 = 1.0 - o.beta2.powi(t);
    let (b1, b2) = (o.beta1 as f32, o.beta2 as f32);
    let step_size = (lr / bc1) as f32;
    let inv_bc2_sqrt = (1.0 / bc2.sqrt()) as f32;
    let eps = o.adam_eps as f32;
    let scale = scale as f32;
    const CHUNK: usize = 1 << 14;
    world
        .params
        .par_iter_mut()
        .zip(grads.par_iter())
        .for_each(|(p, g)| {
            let decay = if p.spec.decays() {
                1.0 - (lr * o.weight_decay) as f32
            } else {
                1.0
            };
            p.value
                .par_chunks_mut(CHUNK)
                .zip(p.m.par_chunks_mut(CHUNK))
                .zip(p.v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((w, m), v), g)| {
                    for i in 0..w.len() {
                        let gi = g[i] * scale;
                        m[i] = b1 * m[i] + (1.0 - b1) * gi;
                        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                        let denom = v[i].sqrt() * inv_bc2_sqrt + eps;
                        w[i] = w[i] * decay - step_size * m[i] / denom;
                    }
                });
        });
}

/// The projection recipe: snaps every ternary parameter to `trit · scale`.
pub fn project(world: &mut World, granularity: ScaleGranularity) -> crate::Result<()> {
    world
        .params
        .par_iter_mut()
        .filter(|p| p.spec.kind == ParamKind::Ternary)
        .try_for_each(|p| {
            let (rows, cols) = p.spec.matrix();
            let q = quantize_absmean(&p.value, rows, cols, granularity).map_err(|e| {
                crate::TrainError::compute(format!("projecting `{}`", p.spec.name), e)
            })?;
            p.value = q.dequantize();
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Preset, TrainOptions};
    use crate::model::{Param, ParamSpec};

    fn world(values: Vec<f32>) -> World {
        let n = values.len();
        World {
            step: 0,
            params: vec![Param {
                spec: ParamSpec {
                    tensor: tritlab_engine::layout::ModelTensor::FinalNorm,
                    name: "w".into(),
                    shape: vec![n],
                    kind: ParamKind::Norm,
                },
                value: values,
                m: vec![0.0; n],
                v: vec![0.0; n],
            }],
        }
    }

    #[test]
    fn first_adam_step_moves_each_weight_by_the_learning_rate() {
        let mut w = world(vec![1.0, -2.0, 0.5]);
        let o = TrainOptions::new(Preset::Tiny);
        adamw_step(&mut w, &[vec![0.3, -4.0, 0.0]], 0.01, 1.0, &o);
        let v = &w.params[0].value;
        assert!((v[0] - 0.99).abs() < 1e-6);
        assert!((v[1] + 1.99).abs() < 1e-6);
        assert_eq!(v[2], 0.5);
        assert_eq!(w.step, 1);
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let g = vec![vec![3.0f32, 4.0]];
        assert!((grad_norm(&g) - 5.0).abs() < 1e-12);
        assert!((clip_factor(5.0, 1.0) * 5.0 - 1.0).abs() < 1e-6);
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert_eq!(clip_factor(5.0, 0.0), 1.0);
    }
}
