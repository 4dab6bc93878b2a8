//! The few f32 operations a BitNet decoder needs besides the ternary products, written out by
//! hand: RMSNorm, rotary embeddings, causal grouped-query attention, softmax, ReLU².
//!
//! Reductions accumulate in f64 and transcendental functions come from `libm`, so results do not
//! depend on the thread count or the platform's maths library: sampling with a seed reproduces
//! across machines. Activation quantisation is a step function; the extra precision also keeps
//! tritlab's int8 activations on the same side of rounding boundaries as the reference.

use rayon::prelude::*;

/// `x · rsqrt(mean(x²) + eps) · weight` for each row of `x` (length `weight.len()`), in place.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f64) {
    let n = weight.len();
    for row in x.chunks_exact_mut(n) {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let variance = (ss / n as f64) as f32;
        let inv = (1.0 / (variance as f64 + eps).sqrt()) as f32;
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = w * (*v * inv);
        }
    }
}

/// `rms_norm` into a separate output buffer.
pub fn rms_norm_into(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32]) {
    out.copy_from_slice(x);
    rms_norm(out, weight, eps);
}

/// Rotary position embedding with transformers' `rotate_half` convention: dimension `i` is
/// paired with `i + head_dim/2` (halves, not interleaved pairs).
#[derive(Debug, Clone)]
pub struct Rope {
    head_dim: usize,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// `inv_freq[i] = 1 / theta^(2i / head_dim)`, rounded to f32 as transformers computes it.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0f32 / (libm::pow(theta, exponent as f64) as f32)
            })
            .collect();
        Self { head_dim, inv_freq }
    }

    /// cos and sin of every frequency at `position` (each `head_dim / 2` long).
    pub fn cos_sin(&self, position: usize) -> (Vec<f32>, Vec<f32>) {
        let p = position as f32;
        self.inv_freq
            .iter()
            .map(|&f| {
                let angle = (p * f) as f64;
                (libm::cos(angle) as f32, libm::sin(angle) as f32)
            })
            .unzip()
    }

    /// Rotates every head (`head_dim` values each) of one token's `x` in place.
    pub fn apply(&self, x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = self.head_dim / 2;
        for head in x.chunks_exact_mut(self.head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

/// Numerically safe softmax in place (max subtracted; sum accumulated in f64).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `relu(gate)² · up`, into `gate`.
pub fn relu2_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let r = g.max(0.0);
        *g = r * r * u;
    }
}

/// `silu(gate) · up` (SwiGLU), into `gate`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + libm::expf(-*g)) * u;
    }
}

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Causal grouped-query attention for `tokens` new queries at positions `start..start+tokens`.
///
/// `q` is `[tokens, heads·head_dim]`; `k`, `v` hold every cached position `[positions,
/// kv_heads·head_dim]` including the new ones; query head `h` reads KV head
/// `h / (heads / kv_heads)` (transformers' `repeat_kv`). Writes `out` `[tokens, heads·head_dim]`.
/// Heads × tokens run in parallel; each is computed in a fixed order, so the result does not
/// depend on the number of threads.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    start: usize,
    tokens: usize,
    s: AttentionShape,
    out: &mut [f32],
) {
    let hd = s.head_dim;
    let kv_dim = s.kv_heads * hd;
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    debug_assert_eq!(out.len(), tokens * s.heads * hd);
    let head = |(i, o): (usize, &mut [f32])| {
        let (t, h) = (i / s.heads, i % s.heads);
        let kvh = h / group;
        let qh = &q[t * s.heads * hd + h * hd..][..hd];
        let len = start + t + 1;
        let mut scores: Vec<f32> = (0..len)
            .map(|j| tritlab_kernels::dense::dot_f32(qh, &k[j * kv_dim + kvh * hd..][..hd]) * scale)
            .collect();
        softmax(&mut scores);
        o.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let vj = &v[j * kv_dim + kvh * hd..][..hd];
            for (a, &b) in o.iter_mut().zip(vj) {
                *a += p * b;
            }
        }
    };
    // Waking the other threads costs tens of microseconds: worth it for prefill and long
    // contexts, not for a decode step over a short cache (a few hundred thousand multiply-adds).
    const PARALLEL_WORK: usize = 1 << 20;
    let work = tokens * s.heads * hd * (start + tokens);
    if work < PARALLEL_WORK {
        out.chunks_mut(hd).enumerate().for_each(head);
    } else {
        out.par_chunks_mut(hd).enumerate().for_each(head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_halves() {
        let rope = Rope::new(4, 10_000.0);
        let (c, s) = rope.cos_sin(1);
        let mut x = [1.0, 0.0, 0.0, 0.0];
        rope.apply(&mut x, &c, &s);
        // dimension 0 pairs with dimension 2 (not 1)
        assert!(
            (x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6 && x[1] == 0.0
        );
    }

    #[test]
    fn attention_single_position_returns_value() {
        let s = AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
        };
        let q = [1.0, 2.0, 3.0, 4.0];
        let k = [0.5, 0.5];
        let v = [7.0, 9.0];
        let mut out = [0.0; 4];
        attention(&q, &k, &v, 0, 1, s, &mut out);
        assert_eq!(out, [7.0, 9.0, 7.0, 9.0]);
    }
}
