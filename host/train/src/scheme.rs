//! How a run keeps, hashes and ternarises its world: on the host (the original scheme, which
//! every CPU run uses) or on the GPU.
//!
//! A run whose world lives on the GPU cannot afford to download its f32 weights and AdamW moments
//! every step to hash them with blake3 and ternarise them with the kernels' quantiser: that copy
//! was most of the step. Two things had to change so that the log stays exact and replayable
//! while only small results leave the device:
//!
//! - **The world hash** ([`lanes`]): each tensor (values, first and second moments) is digested
//!   into two 64-bit lanes, `Σᵢ mix(i·2³² + bits(xᵢ) ⊕ Kₗ) mod 2⁶⁴`, where `mix` is SplitMix64's
//!   finaliser (a bijection of 64-bit words). Integer addition mod 2⁶⁴ is associative and
//!   commutative, so the GPU's block sums and atomics give exactly the CPU's value whatever order
//!   they add in; and since `mix` is a bijection for each index, changing any one element changes
//!   both lanes. The 16 bytes per tensor come down, and blake3 combines them on the host with the
//!   step, the names and the shapes. The CPU computes the same digest from a downloaded world, so a
//!   checkpoint is checked against its hash on any machine.
//! - **The absmean** ([`quantize_exact`]): the kernels' quantiser sums |w| in f64 in index order,
//!   an order a GPU cannot follow cheaply, and a sum in another order can move the scale by an ulp
//!   and, at a tie, a trit: the logged flips would then disagree with what the CPU recomputes
//!   from a checkpoint. This scheme sums `⌊min(|w|, 2²³) · 2⁴⁰⌋` as a 128-bit integer, exactly
//!   and so in any order; the GPU returns the sums, the host turns them into scales with the one
//!   function both sides share ([`mean_of_sum`]), and the trits are the kernels' formula
//!   (`round_half_even(clamp(w · inv, ±2))`, clamped to ±1) with those scales. The forward pass
//!   computes with exactly the trits the log records.
//!
//! The scheme is part of `run.json` (`world`); runs without the field are host runs.

use crate::error::{Result, TrainError};
use crate::model::World;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tritlab_kernels::quant::{round_half_even, QUANT_EPS};
use tritlab_kernels::{ScaleGranularity, TernaryWeights, WeightScale};
use tritlab_morphism::ContentHash;

/// Where a run's world lives, which decides how it is hashed and ternarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldScheme {
    /// On the host: blake3 over every f32 ([`World::hash`]), the kernels' quantiser.
    #[default]
    Host,
    /// On the GPU: the lanes digest ([`lanes`]) and the exact-sum absmean ([`quantize_exact`]).
    Device,
}

impl WorldScheme {
    pub fn is_host(&self) -> bool {
        *self == WorldScheme::Host
    }

    /// The name checkpoints record beside their hashes.
    pub fn name(self) -> &'static str {
        match self {
            WorldScheme::Host => "host",
            WorldScheme::Device => "device",
        }
    }

    pub fn from_name(name: &str) -> Option<WorldScheme> {
        match name {
            "host" => Some(WorldScheme::Host),
            "device" => Some(WorldScheme::Device),
            _ => None,
        }
    }

    /// The world's hash under this scheme.
    pub fn hash(self, world: &World) -> Result<ContentHash> {
        match self {
            WorldScheme::Host => Ok(world.hash()),
            WorldScheme::Device => {
                let digests = world
                    .params
                    .iter()
                    .map(|p| {
                        Ok([
                            lanes(&p.value).map_err(|e| too_long(&p.spec.name, e))?,
                            lanes(&p.m).map_err(|e| too_long(&p.spec.name, e))?,
                            lanes(&p.v).map_err(|e| too_long(&p.spec.name, e))?,
                        ])
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(combine(world, &digests))
            }
        }
    }
}

fn too_long(name: &str, n: usize) -> TrainError {
    TrainError::Invalid(format!(
        "`{name}` has {n} elements; the device world hash indexes at most 2³² per tensor"
    ))
}

/// The two lane keys: any fixed, distinct words.
pub const LANE_KEYS: [u64; 2] = [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];

/// SplitMix64's finaliser, a bijection of 64-bit words.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The two lanes of one tensor: `Σᵢ mix((i << 32 | bits(xᵢ)) ⊕ Kₗ)` mod 2⁶⁴. Fails (with the
/// length) past 2³² elements, where the index would no longer fit its half of the word.
pub fn lanes(values: &[f32]) -> std::result::Result<[u64; 2], usize> {
    if values.len() as u64 > 1 << 32 {
        return Err(values.len());
    }
    const CHUNK: usize = 1 << 16;
    Ok(values
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let mut acc = [0u64; 2];
            for (j, v) in chunk.iter().enumerate() {
                let x = (((c * CHUNK + j) as u64) << 32) | u64::from(v.to_bits());
                acc[0] = acc[0].wrapping_add(mix(x ^ LANE_KEYS[0]));
                acc[1] = acc[1].wrapping_add(mix(x ^ LANE_KEYS[1]));
            }
            acc
        })
        .reduce(
            || [0u64; 2],
            |a, b| [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])],
        ))
}

/// The world hash from each parameter's lanes (value, m, v): blake3 over the step, every name
/// and shape, and the lanes, in parameter order.
pub fn combine(world_like: &World, digests: &[[[u64; 2]; 3]]) -> ContentHash {
    combine_parts(
        world_like.step,
        world_like
            .params
            .iter()
            .map(|p| (p.spec.name.as_str(), p.spec.shape.as_slice())),
        digests,
    )
}

/// [`combine`] from the step and the parameters' names and shapes alone (the GPU's side, which
/// has no host copy of the values).
pub fn combine_parts<'a>(
    step: u64,
    params: impl Iterator<Item = (&'a str, &'a [usize])>,
    digests: &[[[u64; 2]; 3]],
) -> ContentHash {
    let mut h = blake3::Hasher::new();
    h.update(b"tritlab-world-lanes-v1");
    h.update(&step.to_le_bytes());
    for ((name, shape), d) in params.zip(digests) {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(shape.len() as u64).to_le_bytes());
        for &s in shape {
            h.update(&(s as u64).to_le_bytes());
        }
        for lane in d.iter().flatten() {
            h.update(&lane.to_le_bytes());
        }
    }
    ContentHash(*h.finalize().as_bytes())
}

/// `2⁴⁰`: the fixed-point unit of the exact absmean.
pub const FIXED_ONE: f32 = 1_099_511_627_776.0;
/// `2²³`: magnitudes are capped here so that one term fits 63 bits.
pub const FIXED_CAP: f32 = 8_388_608.0;

/// `⌊min(|v|, 2²³) · 2⁴⁰⌋`: exact (a power-of-two product, then truncation), as the GPU computes
/// it. A NaN becomes the cap (as CUDA's `fminf` does); non-finite weights are refused elsewhere.
#[inline]
pub fn fixed_abs(v: f32) -> u64 {
    (v.abs().min(FIXED_CAP) * FIXED_ONE) as u64
}

/// The mean |w| of `n` values from their exact fixed-point sum: the one rounding path both the
/// CPU and the GPU's sums go through.
pub fn mean_of_sum(sum: u128, n: usize) -> f32 {
    ((sum as f64) / f64::from(FIXED_ONE) / n as f64) as f32
}

/// `1 / max(mean, ε)` and its reciprocal, the kernels' inverse scale and scale.
pub fn inv_and_scale(mean: f32) -> (f32, f32) {
    let inv = 1.0 / mean.max(QUANT_EPS);
    (inv, 1.0 / inv)
}

/// The kernels' trit formula for one weight.
#[inline]
pub fn trit(w: f32, inv: f32) -> i8 {
    round_half_even((w * inv).clamp(-2.0, 2.0)).clamp(-1.0, 1.0) as i8
}

/// The groups of a `[rows, cols]` matrix: `(first index, length)` in row-major order; one group
/// for a per-tensor scale.
pub fn groups(rows: usize, cols: usize, granularity: ScaleGranularity) -> Vec<(usize, usize)> {
    match granularity {
        ScaleGranularity::PerTensor => vec![(0, rows * cols)],
        ScaleGranularity::PerGroup { group_size } => {
            let g = group_size.max(1);
            (0..rows)
                .flat_map(|r| {
                    (0..cols)
                        .step_by(g)
                        .map(move |s| (r * cols + s, (cols - s).min(g)))
                })
                .collect()
        }
    }
}

/// Absmean ternarisation with the exact fixed-point mean (see the module's documentation).
pub fn quantize_exact(
    values: &[f32],
    rows: usize,
    cols: usize,
    granularity: ScaleGranularity,
) -> Result<TernaryWeights> {
    if values.len() != rows * cols {
        return Err(TrainError::Invalid(format!(
            "{} weights for a {rows} × {cols} matrix",
            values.len()
        )));
    }
    if let ScaleGranularity::PerGroup { group_size: 0 } = granularity {
        return Err(TrainError::Invalid("a group size of 0".into()));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Invalid(format!(
            "weight {i} is {}, which cannot be ternarised",
            values[i]
        )));
    }
    let mut trits = vec![0i8; values.len()];
    let mut scales = Vec::new();
    for (start, len) in groups(rows, cols, granularity) {
        let part = &values[start..start + len];
        let sum: u128 = part
            .par_chunks(1 << 16)
            .map(|c| c.iter().map(|&v| u128::from(fixed_abs(v))).sum::<u128>())
            .sum();
        let (inv, scale) = inv_and_scale(mean_of_sum(sum, len));
        for (t, &w) in trits[start..start + len].iter_mut().zip(part) {
            *t = trit(w, inv);
        }
        scales.push(scale);
    }
    let scale = match granularity {
        ScaleGranularity::PerTensor => WeightScale::PerTensor(scales[0]),
        ScaleGranularity::PerGroup { group_size } => WeightScale::PerGroup { group_size, scales },
    };
    Ok(TernaryWeights {
        rows,
        cols,
        trits,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(97));
                ((h >> 8) % 3001) as f32 / 1000.0 - 1.5
            })
            .collect()
    }

    #[test]
    fn the_exact_quantiser_agrees_with_the_kernels_away_from_ties() {
        for (rows, cols, g) in [
            (7, 33, ScaleGranularity::PerTensor),
            (5, 64, ScaleGranularity::PerGroup { group_size: 16 }),
            (3, 50, ScaleGranularity::PerGroup { group_size: 16 }),
        ] {
            let w = values(rows * cols, 3);
            let ours = quantize_exact(&w, rows, cols, g).unwrap();
            let kernels = tritlab_kernels::quantize_absmean(&w, rows, cols, g).unwrap();
            // These values are multiples of 1e-3: both sums are exact enough to give one scale.
            assert_eq!(ours, kernels);
        }
    }

    #[test]
    fn the_exact_sum_does_not_depend_on_the_order() {
        let w = values(10_000, 5);
        let mut r = w.clone();
        r.reverse();
        let a = quantize_exact(&w, 100, 100, ScaleGranularity::PerTensor).unwrap();
        let b = quantize_exact(&r, 100, 100, ScaleGranularity::PerTensor).unwrap();
        assert_eq!(a.scale, b.scale);
        assert!(quantize_exact(&[f32::NAN], 1, 1, ScaleGranularity::PerTensor).is_err());
    }

    #[test]
    fn device_checkpoints_carry_their_scheme_and_are_checked() {
        let config = crate::config::Preset::Tiny.config(64, 16);
        let specs = crate::model::param_specs(&config);
        let world = World::init(&specs, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step-00000000.safetensors");
        crate::checkpoint::save_as(&path, &world, None, WorldScheme::Device).unwrap();
        let loaded = crate::checkpoint::load(&path, &specs, false).unwrap();
        assert_eq!(loaded.scheme, WorldScheme::Device);
        assert_eq!(loaded.world, world);
        assert_ne!(WorldScheme::Device.hash(&world).unwrap(), world.hash());
        // One flipped bit in the tensors is caught by the lanes.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(crate::checkpoint::load(&path, &specs, false).is_err());
        // Host checkpoints are written and read as they always were.
        let host = dir.path().join("step-00000001.safetensors");
        let mut w1 = world.clone();
        w1.step = 1;
        crate::checkpoint::save(&host, &w1, None).unwrap();
        assert_eq!(
            crate::checkpoint::load(&host, &specs, false)
                .unwrap()
                .scheme,
            WorldScheme::Host
        );
    }

    #[test]
    fn lanes_see_every_element_and_its_place() {
        let w = values(200_000, 1);
        let base = lanes(&w).unwrap();
        let mut one = w.clone();
        one[123_456] = f32::from_bits(one[123_456].to_bits() ^ 1);
        assert_ne!(lanes(&one).unwrap(), base);
        let mut swapped = w.clone();
        swapped.swap(3, 70_000);
        assert_ne!(lanes(&swapped).unwrap(), base);
        // The chunked parallel sum equals the plain one.
        let mut plain = [0u64; 2];
        for (i, v) in w.iter().enumerate() {
            let x = ((i as u64) << 32) | u64::from(v.to_bits());
            plain[0] = plain[0].wrapping_add(mix(x ^ LANE_KEYS[0]));
            plain[1] = plain[1].wrapping_add(mix(x ^ LANE_KEYS[1]));
        }
        assert_eq!(plain, base);
    }
}
