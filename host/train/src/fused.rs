//! Fused operations of the training graph: each element-wise chain as one pass forward and one
//! backward, on the GPU (CUDA kernels) and on the CPU.
//!
//! Written as candle tensor operations, each of these is a chain of small element-wise passes
//! (and their backward passes a longer one), every link reading and writing the whole tensor and
//! every node of the graph adding its gradient into a fresh zeroed one: the int8 activation
//! quantiser is a dozen operations, an RMS norm seven, the causal softmax of the attention scores
//! six over `[batch, heads, seq, seq]`, and the loss six over the `[tokens, 50,257]` logits. Here
//! each is one operation forward and one backward, with the same formulas:
//!
//! - [`int8_rows`]: per-token absmax int8 fake quantisation, straight through (the gradient is
//!   the identity, as for `w − detach(w) + detach(q)`);
//! - [`rms_norm`]: `x · (Σx²/d + ε)^-½ · w`, whose backward pass writes the input's gradient and
//!   each row's share of the weight's, which candle's column sum adds up;
//! - [`rope`]: the rotary embedding `x · cos + rotate_half(x) · sin`, whose backward pass is
//!   element-wise too;
//! - [`causal_softmax`]: the attention's softmax with the causal mask applied by position;
//! - [`gated`]: the feed-forward's gated unit `act(gate) · up` (SwiGLU's `silu`, or `relu²`),
//!   whose backward pass writes both inputs' gradients in one pass;
//! - [`cross_entropy_rows`]: each token's next-token loss from its row of logits; the gradient
//!   `(softmax − one-hot) · g` is written in one pass, and validation on a GPU computes its
//!   losses there, downloading one float per token instead of the logits.
//!
//! Which graphs use them: a world kept on a GPU ([`crate::model::QuantOps::Prequantized`] on a
//! CUDA device) uses all six; a run recorded with [`crate::Graph::Fused`] (every new run) uses
//! the RMS norm, the rotary embedding, the softmax and the gated unit, and on the CPU keeps the
//! kernels' own quantisers and loss ([`crate::ops`]), which were single operations already.
//!
//! Determinism: every sum is over one row, in an order fixed by the row's length alone: on a GPU a
//! block reduction in a fixed tree (one block per row, the same block size every time, no
//! atomics); on the CPU eight interleaved partial sums added in a fixed tree, rows spread over
//! threads, so the result does not depend on the thread count either. The sums are in another
//! order than candle's, so a run recorded with the unfused graph does not replay bit for bit with
//! this one (and the other way round), which is why a run records its graph; both are the same
//! formulas, so losses agree to rounding. The CPU and the GPU sum in different orders too.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::Arc;
use tritlab_engine::Activation;

/// Per-token int8 fake quantisation of a `[.., cols]` tensor, straight-through.
pub fn int8_rows(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Int8Rows)
}

/// RMS norm of the rows of `x` with weight `w` (`[cols]`).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

/// The rotary embedding of `[.., seq, head_dim]` query or key rows with `[seq, head_dim]` tables:
/// `x · cos + rotate_half(x) · sin`, `rotate_half(x) = (−x₂, x₁)` for the halves `x₁, x₂`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)
}

/// The softmax of attention scores `[.., rows, seq]` whose row `r` (counted over all leading
/// dimensions) is query position `r mod seq`: keys after it get probability 0.
pub fn causal_softmax(scores: &Tensor) -> Result<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax)
}

/// The feed-forward's gated unit `act(gate) · up`, element by element, for tensors of one shape.
pub fn gated(gate: &Tensor, up: &Tensor, activation: Activation) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        candle_core::bail!(
            "gated unit: gate {:?} and up {:?} differ in shape",
            gate.dims(),
            up.dims()
        );
    }
    gate.contiguous()?
        .apply_op2(&up.contiguous()?, Gated { activation })
}

/// Each row's cross-entropy against its target, `[rows]`; the targets are checked on the host.
pub fn cross_entropy_rows(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
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
    logits.contiguous()?.apply_op1(RowCrossEntropy {
        targets: Arc::new(targets.to_vec()),
    })
}

struct Int8Rows;
struct RmsNorm {
    eps: f32,
}
/// The backward pass of [`RmsNorm`] on `(x, w, dy)`: `[2, rows, cols]`, the input's gradient
/// and then `dy · x · inv`, whose column sums are the weight's gradient.
struct RmsNormBackward {
    eps: f32,
}
struct Rope;
/// The backward pass of [`Rope`] on `(dy, cos, sin)`.
struct RopeBackward;
struct CausalSoftmax;
/// The backward pass of [`CausalSoftmax`] on `(p, dp)`: `p · (dp − Σ p·dp)`.
struct CausalSoftmaxBackward;
/// `act(gate) · up`: `silu(g) = g / (1 + e^-g)`, or `relu(g)²`.
struct Gated {
    activation: Activation,
}
/// The backward pass of [`Gated`] on `(gate, up, dy)`: `[2, ..]`, the gate's gradient, then up's.
struct GatedBackward {
    activation: Activation,
}
struct RowCrossEntropy {
    targets: Arc<Vec<u32>>,
}
/// The backward pass of [`RowCrossEntropy`] on `(logits, g)`: `(softmax − one-hot) · g_row`.
struct RowCrossEntropyBackward {
    targets: Arc<Vec<u32>>,
}

impl CustomOp1 for Int8Rows {
    fn name(&self) -> &'static str {
        "fused-int8-activations"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        host::int8_rows(s, l)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::int8_rows(s, l)
    }
    /// Straight through: the gradient of `x − detach(x) + detach(q)`.
    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.clone()))
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::rms_norm(xs, xl, ws, wl, self.eps)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::rms_norm(xs, xl, ws, wl, self.eps)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = x.apply_op3(w, &grad.contiguous()?, RmsNormBackward { eps: self.eps })?;
        let dx = both.get(0)?;
        let cols = w.elem_count();
        let dw = both
            .get(1)?
            .reshape(((), cols))?
            .sum(0)?
            .reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "fused-rms-norm-backward"
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::rms_norm_backward(xs, xl, ws, wl, gs, gl, self.eps)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::rms_norm_backward(xs, xl, ws, wl, gs, gl, self.eps)
    }
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        cs: &CpuStorage,
        cl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::rope(xs, xl, cs, cl, ss, sl, false)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        cs: &candle_core::CudaStorage,
        cl: &Layout,
        ss: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::rope(xs, xl, cs, cl, ss, sl, false)
    }
    /// `dx_k = dy_k · cos_k + dy_{k+h} · sin_{k+h}` in the first half,
    /// `dy_k · cos_k − dy_{k−h} · sin_{k−h}` in the second (`h` half the head); the tables are
    /// constants.
    fn bwd(
        &self,
        _: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = grad.contiguous()?.apply_op3(cos, sin, RopeBackward)?;
        Ok((Some(dx), None, None))
    }
}

impl CustomOp3 for RopeBackward {
    fn name(&self) -> &'static str {
        "fused-rope-backward"
    }
    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        cs: &CpuStorage,
        cl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::rope(gs, gl, cs, cl, ss, sl, true)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
        cs: &candle_core::CudaStorage,
        cl: &Layout,
        ss: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::rope(gs, gl, cs, cl, ss, sl, true)
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "fused-causal-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        host::causal_softmax(s, l)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::causal_softmax(s, l)
    }
    fn bwd(&self, _: &Tensor, p: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            p.contiguous()?
                .apply_op2(&grad.contiguous()?, CausalSoftmaxBackward)?,
        ))
    }
}

impl CustomOp2 for CausalSoftmaxBackward {
    fn name(&self) -> &'static str {
        "fused-causal-softmax-backward"
    }
    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::causal_softmax_backward(ps, pl, gs, gl)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        ps: &candle_core::CudaStorage,
        pl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::causal_softmax_backward(ps, pl, gs, gl)
    }
}

impl CustomOp2 for Gated {
    fn name(&self) -> &'static str {
        "fused-gated-unit"
    }
    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::gated(gs, gl, us, ul, self.activation)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
        us: &candle_core::CudaStorage,
        ul: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::gated(gs, gl, us, ul, None, self.activation)
    }
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3(
            up,
            &grad.contiguous()?,
            GatedBackward {
                activation: self.activation,
            },
        )?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

impl CustomOp3 for GatedBackward {
    fn name(&self) -> &'static str {
        "fused-gated-unit-backward"
    }
    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::gated_backward(gs, gl, us, ul, ds, dl, self.activation)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
        us: &candle_core::CudaStorage,
        ul: &Layout,
        ds: &candle_core::CudaStorage,
        dl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::gated(gs, gl, us, ul, Some((ds, dl)), self.activation)
    }
}

impl CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        host::cross_entropy(s, l, &self.targets)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::cross_entropy(s, l, &self.targets)
    }
    fn bwd(&self, logits: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(logits.apply_op2(
            &grad.contiguous()?,
            RowCrossEntropyBackward {
                targets: self.targets.clone(),
            },
        )?))
    }
}

impl CustomOp2 for RowCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-backward"
    }
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        host::cross_entropy_backward(xs, xl, gs, gl, &self.targets)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        imp::cross_entropy_backward(xs, xl, gs, gl, &self.targets)
    }
}

/// The CPU side: rows spread over rayon's threads, each row's sums in an order fixed by its length
/// alone (eight interleaved partial sums, then a fixed tree), so any thread count gives the same
/// bits, and the compiler can keep the eight sums in one vector register.
mod host {
    use super::*;
    use rayon::prelude::*;

    const LANES: usize = 8;

    fn err(what: &str, e: impl std::fmt::Display) -> candle_core::Error {
        candle_core::Error::Msg(format!("{what}: {e}"))
    }

    /// A contiguous f32 tensor's elements.
    fn values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
        let data = s.as_slice::<f32>()?;
        let (start, end) = l
            .contiguous_offsets()
            .ok_or_else(|| err(what, "the input is not contiguous"))?;
        Ok(&data[start..end])
    }

    /// The last dimension and the number of rows before it.
    fn rows_cols(l: &Layout, what: &str) -> Result<(usize, usize)> {
        let cols = *l
            .dims()
            .last()
            .ok_or_else(|| err(what, "a scalar has no rows"))?;
        if cols == 0 {
            return Err(err(what, "rows of length 0"));
        }
        Ok((l.shape().elem_count() / cols, cols))
    }

    fn tree(a: [f32; LANES]) -> f32 {
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }

    /// `Σ f(aᵢ, bᵢ)` in the fixed order.
    fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ta, tb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..LANES {
                acc[l] += f(x[l], y[l]);
            }
        }
        for (l, (&x, &y)) in ta.iter().zip(tb).enumerate() {
            acc[l] += f(x, y);
        }
        tree(acc)
    }

    fn max_of(row: &[f32]) -> f32 {
        row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    }

    /// `(max, ln Σ exp(x − max))` of a row.
    fn max_lse(row: &[f32]) -> (f32, f32) {
        let m = max_of(row);
        (m, sum2(row, row, |x, _| (x - m).exp()).ln())
    }

    fn out(data: Vec<f32>, shape: Shape) -> Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(data), shape))
    }

    pub fn int8_rows(s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "int8 activations";
        let (_, cols) = rows_cols(l, WHAT)?;
        let x = values(s, l, WHAT)?;
        let mut y = vec![0.0f32; x.len()];
        let eps = tritlab_kernels::quant::QUANT_EPS;
        y.par_chunks_mut(cols)
            .zip(x.par_chunks(cols))
            .for_each(|(o, r)| {
                let m = r.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let inv = 127.0 / m.max(eps);
                let back = 1.0 / inv;
                for (o, &v) in o.iter_mut().zip(r) {
                    *o = (v * inv).round_ties_even().clamp(-128.0, 127.0) * back;
                }
            });
        out(y, l.shape().clone())
    }

    fn rms_inv(r: &[f32], rc: f32, eps: f32) -> f32 {
        1.0 / (sum2(r, r, |a, b| a * b) * rc + eps).sqrt()
    }

    pub fn rms_norm(
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        eps: f32,
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "rms norm";
        let (_, cols) = rows_cols(xl, WHAT)?;
        let (x, w) = (values(xs, xl, WHAT)?, values(ws, wl, WHAT)?);
        if w.len() != cols {
            return Err(err(WHAT, format!("{} weights for rows of {cols}", w.len())));
        }
        let rc = 1.0f32 / cols as f32;
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(cols)
            .zip(x.par_chunks(cols))
            .for_each(|(o, r)| {
                let inv = rms_inv(r, rc, eps);
                for ((o, &v), &w) in o.iter_mut().zip(r).zip(w) {
                    *o = (v * inv) * w;
                }
            });
        out(y, xl.shape().clone())
    }

    /// `[2, ..]`: the input's gradient, then each row's share of the weight's.
    pub fn rms_norm_backward(
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        eps: f32,
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "rms norm backward";
        let (_, cols) = rows_cols(xl, WHAT)?;
        let (x, w, g) = (
            values(xs, xl, WHAT)?,
            values(ws, wl, WHAT)?,
            values(gs, gl, WHAT)?,
        );
        if w.len() != cols || g.len() != x.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let rc = 1.0f32 / cols as f32;
        let n = x.len();
        let mut o = vec![0.0f32; 2 * n];
        let (dx, dw) = o.split_at_mut(n);
        dx.par_chunks_mut(cols)
            .zip(dw.par_chunks_mut(cols))
            .zip(x.par_chunks(cols).zip(g.par_chunks(cols)))
            .for_each(|((dx, dw), (r, g))| {
                let inv = rms_inv(r, rc, eps);
                let gw: Vec<f32> = g.iter().zip(w).map(|(&g, &w)| g * w).collect();
                let dot = sum2(&gw, r, |a, b| a * b);
                let k = ((inv * inv) * inv) * (dot * rc);
                for j in 0..cols {
                    dx[j] = inv * (w[j] * g[j]) - r[j] * k;
                    dw[j] = g[j] * (r[j] * inv);
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(xl.dims());
        out(o, Shape::from(dims))
    }

    /// The rotary embedding (or, `back`, its transpose) of `[.., seq, hd]` rows.
    pub fn rope(
        xs: &CpuStorage,
        xl: &Layout,
        cs: &CpuStorage,
        cl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        back: bool,
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "rotary embedding";
        let (rows, hd) = rows_cols(xl, WHAT)?;
        let (seq, table_hd) = cl.shape().dims2()?;
        let (x, cos, sin) = (
            values(xs, xl, WHAT)?,
            values(cs, cl, WHAT)?,
            values(ss, sl, WHAT)?,
        );
        let seq_of_x = xl.dims().get(xl.dims().len().wrapping_sub(2)).copied();
        if hd % 2 != 0
            || table_hd != hd
            || sin.len() != cos.len()
            || seq_of_x != Some(seq)
            || rows % seq != 0
        {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let h = hd / 2;
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(hd)
            .zip(x.par_chunks(hd))
            .enumerate()
            .for_each(|(row, (o, r))| {
                let t = (row % seq) * hd;
                let (c, s) = (&cos[t..t + hd], &sin[t..t + hd]);
                for j in 0..hd {
                    o[j] = if back {
                        let v = if j < h {
                            r[j + h] * s[j + h]
                        } else {
                            -(r[j - h] * s[j - h])
                        };
                        r[j] * c[j] + v
                    } else {
                        let rot = if j < h { -r[j + h] } else { r[j - h] };
                        r[j] * c[j] + rot * s[j]
                    };
                }
            });
        out(y, xl.shape().clone())
    }

    pub fn causal_softmax(s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "causal softmax";
        let (_, seq) = rows_cols(l, WHAT)?;
        let x = values(s, l, WHAT)?;
        let mut p = vec![0.0f32; x.len()];
        p.par_chunks_mut(seq)
            .zip(x.par_chunks(seq))
            .enumerate()
            .for_each(|(row, (o, r))| {
                let visible = &r[..=row % seq];
                let m = max_of(visible);
                let sum = sum2(visible, visible, |v, _| (v - m).exp());
                for (o, &v) in o.iter_mut().zip(visible) {
                    *o = (v - m).exp() / sum;
                }
            });
        out(p, l.shape().clone())
    }

    /// `p · (dp − Σ p·dp)` over the visible keys, 0 after them.
    pub fn causal_softmax_backward(
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "causal softmax backward";
        let (_, seq) = rows_cols(pl, WHAT)?;
        let (p, g) = (values(ps, pl, WHAT)?, values(gs, gl, WHAT)?);
        if p.len() != g.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let mut dx = vec![0.0f32; p.len()];
        dx.par_chunks_mut(seq)
            .zip(p.par_chunks(seq).zip(g.par_chunks(seq)))
            .enumerate()
            .for_each(|(row, (o, (p, g)))| {
                let t = row % seq + 1;
                let (p, g) = (&p[..t], &g[..t]);
                let dot = sum2(p, g, |a, b| a * b);
                for ((o, &p), &g) in o.iter_mut().zip(p).zip(g) {
                    *o = p * (g - dot);
                }
            });
        out(dx, pl.shape().clone())
    }

    /// `(act(g), act'(g))`, written as candle computes them (`silu`: `g / (1 + e^-g)`, its
    /// derivative `s · (1 + g · (1 − s))` with `s = 1 / (1 + e^-g)`; `relu²`: `r · r`, `2r`).
    fn activation(g: f32, activation: Activation) -> (f32, f32) {
        match activation {
            Activation::Silu => {
                let e = (-g).exp();
                let s = 1.0 / (1.0 + e);
                (g / (1.0 + e), s * (1.0 + g * (1.0 - s)))
            }
            Activation::Relu2 => {
                let r = g.max(0.0);
                (r * r, 2.0 * r)
            }
        }
    }

    pub fn gated(
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        act: Activation,
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "gated unit";
        let (g, u) = (values(gs, gl, WHAT)?, values(us, ul, WHAT)?);
        if g.len() != u.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let mut y = vec![0.0f32; g.len()];
        y.par_chunks_mut(4096)
            .zip(g.par_chunks(4096).zip(u.par_chunks(4096)))
            .for_each(|(y, (g, u))| {
                for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                    *y = activation(g, act).0 * u;
                }
            });
        out(y, gl.shape().clone())
    }

    /// `[2, ..]`: `dy · up · act'(gate)`, then `dy · act(gate)`.
    pub fn gated_backward(
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
        act: Activation,
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "gated unit backward";
        let (g, u, d) = (
            values(gs, gl, WHAT)?,
            values(us, ul, WHAT)?,
            values(ds, dl, WHAT)?,
        );
        if g.len() != u.len() || g.len() != d.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let n = g.len();
        let mut o = vec![0.0f32; 2 * n];
        let (dg, du) = o.split_at_mut(n);
        dg.par_chunks_mut(4096)
            .zip(du.par_chunks_mut(4096))
            .zip(
                g.par_chunks(4096)
                    .zip(u.par_chunks(4096).zip(d.par_chunks(4096))),
            )
            .for_each(|((dg, du), (g, (u, d)))| {
                for i in 0..g.len() {
                    let (a, da) = activation(g[i], act);
                    dg[i] = (d[i] * u[i]) * da;
                    du[i] = d[i] * a;
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(gl.dims());
        out(o, Shape::from(dims))
    }

    fn check_targets(targets: &[u32], rows: usize, vocab: usize) -> Result<()> {
        if targets.len() != rows || targets.iter().any(|&t| t as usize >= vocab) {
            return Err(err(
                "cross-entropy",
                format!(
                    "{} targets for {rows} rows of {vocab} logits",
                    targets.len()
                ),
            ));
        }
        Ok(())
    }

    pub fn cross_entropy(
        s: &CpuStorage,
        l: &Layout,
        targets: &[u32],
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "cross-entropy";
        let (rows, vocab) = rows_cols(l, WHAT)?;
        check_targets(targets, rows, vocab)?;
        let x = values(s, l, WHAT)?;
        let loss: Vec<f32> = x
            .par_chunks(vocab)
            .zip(targets.par_iter())
            .map(|(r, &t)| {
                let (m, lse) = max_lse(r);
                lse - (r[t as usize] - m)
            })
            .collect();
        out(loss, Shape::from(rows))
    }

    /// `(softmax − one-hot) · g`, one row per target.
    pub fn cross_entropy_backward(
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        targets: &[u32],
    ) -> Result<(CpuStorage, Shape)> {
        const WHAT: &str = "cross-entropy backward";
        let (rows, vocab) = rows_cols(xl, WHAT)?;
        check_targets(targets, rows, vocab)?;
        let (x, g) = (values(xs, xl, WHAT)?, values(gs, gl, WHAT)?);
        if g.len() != rows {
            return Err(err(WHAT, format!("{} gradients for {rows} rows", g.len())));
        }
        let mut dx = vec![0.0f32; x.len()];
        dx.par_chunks_mut(vocab)
            .zip(x.par_chunks(vocab))
            .zip(targets.par_iter().zip(g.par_iter()))
            .for_each(|((o, r), (&t, &gr))| {
                let (m, lse) = max_lse(r);
                for (o, &v) in o.iter_mut().zip(r) {
                    *o = ((v - m) - lse).exp() * gr;
                }
                o[t as usize] -= gr;
            });
        out(dx, xl.shape().clone())
    }
}

// Kernel launches are `unsafe` in cudarc: the argument list must match the kernel's signature
// and the buffers must be as long as the kernel reads and writes, which each launch states.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod imp {
    use super::*;
    use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
    use candle_core::cuda::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
    use candle_core::{CudaDevice, CudaStorage};
    use std::sync::OnceLock;

    /// One block per row; every reduction is this tree over the block's threads, so its order
    /// is fixed by the block size, which is fixed per kernel.
    const SOURCE: &str = r#"
typedef unsigned long long u64;

__device__ __forceinline__ float block_sum(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = sh[threadIdx.x] + sh[threadIdx.x + s];
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float block_max(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

// Per row: inv = 127 / max(absmax, eps); q = clamp(rint(x * inv), -128, 127) * (1 / inv).
extern "C" __global__ void int8_rows(const float* x, float* y, u64 cols, float eps) {
    __shared__ float sh[1024];
    const float* r = x + blockIdx.x * cols;
    float* o = y + blockIdx.x * cols;
    float m = 0.0f;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, fabsf(r[j]));
    m = block_max(m, sh);
    float inv = 127.0f / fmaxf(m, eps);
    float back = 1.0f / inv;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) {
        float q = fminf(fmaxf(rintf(r[j] * inv), -128.0f), 127.0f);
        o[j] = q * back;
    }
}

__device__ __forceinline__ float rms_inv(const float* r, u64 cols, float rc, float eps, float* sh) {
    float ss = 0.0f;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) ss += r[j] * r[j];
    ss = block_sum(ss, sh);
    return 1.0f / sqrtf(ss * rc + eps);
}

// y = (x * inv) * w.
extern "C" __global__ void rms_norm(const float* x, const float* w, float* y, u64 cols, float rc, float eps) {
    __shared__ float sh[1024];
    const float* r = x + blockIdx.x * cols;
    float* o = y + blockIdx.x * cols;
    float inv = rms_inv(r, cols, rc, eps, sh);
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) o[j] = (r[j] * inv) * w[j];
}

// out[0..n) = dx = inv * (w * dy) - x * (inv^3 * dot / d), dot = sum(dy * w * x);
// out[n..2n) = dy * (x * inv), the row's share of dw.
extern "C" __global__ void rms_norm_bwd(const float* x, const float* w, const float* dy, float* out,
                                        u64 n, u64 cols, float rc, float eps) {
    __shared__ float sh[1024];
    u64 base = blockIdx.x * cols;
    const float* r = x + base;
    const float* g = dy + base;
    float inv = rms_inv(r, cols, rc, eps, sh);
    float dot = 0.0f;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) dot += (g[j] * w[j]) * r[j];
    dot = block_sum(dot, sh);
    float k = ((inv * inv) * inv) * (dot * rc);
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) {
        out[base + j] = inv * (w[j] * g[j]) - r[j] * k;
        out[n + base + j] = g[j] * (r[j] * inv);
    }
}

// Element i of [.., seq, hd] rows is at position (i / hd) mod seq, column j = i mod hd, h = hd / 2.
// Forward: y = x * cos + rot * sin, rot = -x[j + h] (j < h), x[j - h] (j >= h).
// Backward (back != 0, x is dy): dx = dy * cos + (j < h ? dy[j + h] * sin[j + h] : -(dy[j - h] * sin[j - h])).
extern "C" __global__ void rope(const float* x, const float* cos, const float* sin, float* y,
                                u64 n, u64 seq, u64 hd, int back) {
    u64 h = hd / 2;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        u64 j = i % hd;
        u64 t = ((i / hd) % seq) * hd;
        float v;
        if (back) {
            v = j < h ? x[i + h] * sin[t + j + h] : -(x[i - h] * sin[t + j - h]);
            y[i] = x[i] * cos[t + j] + v;
        } else {
            float rot = j < h ? -x[i + h] : x[i - h];
            y[i] = x[i] * cos[t + j] + rot * sin[t + j];
        }
    }
}

// The gated unit, act 0 = silu (g / (1 + e^-g); derivative s * (1 + g * (1 - s)), s = 1 / (1 + e^-g)),
// 1 = relu^2 (r * r; 2r). Forward: y = act(g) * u. Backward: out[i] = (dy * u) * act'(g), out[n + i] = dy * act(g).
__device__ __forceinline__ void gate_act(float g, int act, float* a, float* da) {
    if (act == 0) {
        float e = expf(-g);
        float s = 1.0f / (1.0f + e);
        *a = g / (1.0f + e);
        *da = s * (1.0f + g * (1.0f - s));
    } else {
        float r = fmaxf(g, 0.0f);
        *a = r * r;
        *da = 2.0f * r;
    }
}

extern "C" __global__ void gated(const float* g, const float* u, float* y, u64 n, int act) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float a, da;
        gate_act(g[i], act, &a, &da);
        y[i] = a * u[i];
    }
}

extern "C" __global__ void gated_bwd(const float* g, const float* u, const float* dy, float* out, u64 n, int act) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float a, da;
        gate_act(g[i], act, &a, &da);
        out[i] = (dy[i] * u[i]) * da;
        out[n + i] = dy[i] * a;
    }
}

// Row r is query position t = r mod seq: p = exp(x - max) / sum over keys 0..t, 0 after.
extern "C" __global__ void causal_softmax(const float* x, float* p, u64 seq) {
    __shared__ float sh[1024];
    u64 row = blockIdx.x;
    u64 t = row % seq;
    const float* r = x + row * seq;
    float* o = p + row * seq;
    float m = __int_as_float(0xff800000);
    for (u64 j = threadIdx.x; j <= t; j += blockDim.x) m = fmaxf(m, r[j]);
    m = block_max(m, sh);
    float s = 0.0f;
    for (u64 j = threadIdx.x; j <= t; j += blockDim.x) s += expf(r[j] - m);
    s = block_sum(s, sh);
    for (u64 j = threadIdx.x; j < seq; j += blockDim.x) o[j] = j <= t ? expf(r[j] - m) / s : 0.0f;
}

// dx = p * (dp - sum(p * dp)).
extern "C" __global__ void causal_softmax_bwd(const float* p, const float* dp, float* dx, u64 seq) {
    __shared__ float sh[1024];
    u64 base = blockIdx.x * seq;
    u64 t = blockIdx.x % seq;
    float dot = 0.0f;
    for (u64 j = threadIdx.x; j <= t; j += blockDim.x) dot += p[base + j] * dp[base + j];
    dot = block_sum(dot, sh);
    for (u64 j = threadIdx.x; j < seq; j += blockDim.x)
        dx[base + j] = j <= t ? p[base + j] * (dp[base + j] - dot) : 0.0f;
}

__device__ __forceinline__ void row_max_lse(const float* r, u64 vocab, float* sh, float* m_out, float* lse_out) {
    float m = __int_as_float(0xff800000);
    for (u64 j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, r[j]);
    m = block_max(m, sh);
    float s = 0.0f;
    for (u64 j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(r[j] - m);
    s = block_sum(s, sh);
    *m_out = m;
    *lse_out = logf(s);
}

// loss = log(sum(exp(x - max))) - (x[target] - max).
extern "C" __global__ void cross_entropy(const float* x, const unsigned int* targets, float* loss, u64 vocab) {
    __shared__ float sh[1024];
    const float* r = x + blockIdx.x * vocab;
    float m, lse;
    row_max_lse(r, vocab, sh, &m, &lse);
    if (threadIdx.x == 0) loss[blockIdx.x] = lse - (r[targets[blockIdx.x]] - m);
}

// dx = exp((x - max) - lse) * g, minus g at the target.
extern "C" __global__ void cross_entropy_bwd(const float* x, const unsigned int* targets, const float* g,
                                             float* dx, u64 vocab) {
    __shared__ float sh[1024];
    const float* r = x + blockIdx.x * vocab;
    float* o = dx + blockIdx.x * vocab;
    float m, lse;
    row_max_lse(r, vocab, sh, &m, &lse);
    float gr = g[blockIdx.x];
    u64 t = targets[blockIdx.x];
    for (u64 j = threadIdx.x; j < vocab; j += blockDim.x) {
        float v = expf((r[j] - m) - lse) * gr;
        o[j] = j == t ? v - gr : v;
    }
}
"#;

    const MODULE: &str = "tritlab_fused";

    fn err(what: &str, e: impl std::fmt::Display) -> candle_core::Error {
        candle_core::Error::Msg(format!("{what}: {e}"))
    }

    /// Compiled once by NVRTC, as the device world's kernels are: no contracted multiply-adds,
    /// IEEE division and square root, so each formula rounds as written.
    fn ptx() -> Result<&'static str> {
        static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
        PTX.get_or_init(|| {
            compile_ptx_with_opts(
                SOURCE,
                CompileOptions {
                    fmad: Some(false),
                    prec_div: Some(true),
                    prec_sqrt: Some(true),
                    ftz: Some(false),
                    ..CompileOptions::default()
                },
            )
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
        })
        .as_deref()
        .map_err(|e| err("compiling the fused kernels", e))
    }

    /// A contiguous f32 tensor's elements.
    fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
        let (start, end) = l
            .contiguous_offsets()
            .ok_or_else(|| err(what, "the input is not contiguous"))?;
        Ok(s.as_cuda_slice::<f32>()?.slice(start..end))
    }

    /// The last dimension and the number of rows before it.
    fn rows_cols(l: &Layout, what: &str) -> Result<(usize, usize)> {
        let cols = *l
            .dims()
            .last()
            .ok_or_else(|| err(what, "a scalar has no rows"))?;
        if cols == 0 {
            return Err(err(what, "rows of length 0"));
        }
        let rows = l.shape().elem_count() / cols;
        if rows > i32::MAX as usize {
            return Err(err(what, format!("{rows} rows, more than one grid holds")));
        }
        Ok((rows, cols))
    }

    /// One block of `threads` per row.
    fn per_row(rows: usize, threads: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Uninitialised output for `n` floats, every one of which the kernel writes.
    fn output(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: each caller's kernel writes all `n` elements before anything reads them.
        unsafe { dev.alloc::<f32>(n.max(1)) }
    }

    fn targets_on(dev: &CudaDevice, targets: &[u32]) -> Result<CudaSlice<u32>> {
        dev.cuda_stream()
            .clone_htod(targets)
            .map_err(|e| err("uploading the targets", e))
    }

    fn check_targets(targets: &[u32], rows: usize, vocab: usize) -> Result<()> {
        if targets.len() != rows || targets.iter().any(|&t| t as usize >= vocab) {
            return Err(err(
                "cross-entropy",
                format!(
                    "{} targets for {rows} rows of {vocab} logits",
                    targets.len()
                ),
            ));
        }
        Ok(())
    }

    pub fn int8_rows(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "int8 activations";
        let (rows, cols) = rows_cols(l, WHAT)?;
        let x = view(s, l, WHAT)?;
        let dev = &s.device;
        let y = output(dev, rows * cols)?;
        let f = dev.get_or_load_custom_func("int8_rows", MODULE, ptx()?)?;
        let (cols64, eps) = (cols as u64, tritlab_kernels::quant::QUANT_EPS);
        let mut b = f.builder();
        b.arg(&x).arg(&y).arg(&cols64).arg(&eps);
        // SAFETY: x and y hold rows × cols floats; one block per row.
        unsafe { b.launch(per_row(rows, 256)) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev.clone()),
            l.shape().clone(),
        ))
    }

    pub fn rms_norm(
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        eps: f32,
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "RMS norm";
        let (rows, cols) = rows_cols(xl, WHAT)?;
        let x = view(xs, xl, WHAT)?;
        let w = view(ws, wl, WHAT)?;
        if w.len() != cols {
            return Err(err(WHAT, format!("{} weights for rows of {cols}", w.len())));
        }
        let dev = &xs.device;
        let y = output(dev, rows * cols)?;
        let f = dev.get_or_load_custom_func("rms_norm", MODULE, ptx()?)?;
        let (cols64, rc) = (cols as u64, 1.0f32 / cols as f32);
        let mut b = f.builder();
        b.arg(&x).arg(&w).arg(&y).arg(&cols64).arg(&rc).arg(&eps);
        // SAFETY: x and y hold rows × cols floats, w cols; one block per row.
        unsafe { b.launch(per_row(rows, 256)) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev.clone()),
            xl.shape().clone(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm_backward(
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
        eps: f32,
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "RMS norm's gradient";
        let (rows, cols) = rows_cols(xl, WHAT)?;
        let x = view(xs, xl, WHAT)?;
        let w = view(ws, wl, WHAT)?;
        let g = view(gs, gl, WHAT)?;
        if w.len() != cols || g.len() != x.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let n = rows * cols;
        let dev = &xs.device;
        let out = output(dev, 2 * n)?;
        let f = dev.get_or_load_custom_func("rms_norm_bwd", MODULE, ptx()?)?;
        let (n64, cols64, rc) = (n as u64, cols as u64, 1.0f32 / cols as f32);
        let mut b = f.builder();
        b.arg(&x).arg(&w).arg(&g).arg(&out);
        b.arg(&n64).arg(&cols64).arg(&rc).arg(&eps);
        // SAFETY: x and g hold n floats, w cols, out 2n; one block per row.
        unsafe { b.launch(per_row(rows, 256)) }.map_err(|e| err(WHAT, e))?;
        let mut dims = vec![2];
        dims.extend_from_slice(xl.dims());
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from(dims),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        xs: &CudaStorage,
        xl: &Layout,
        cs: &CudaStorage,
        cl: &Layout,
        ss: &CudaStorage,
        sl: &Layout,
        back: bool,
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "the rotary embedding";
        let (rows, hd) = rows_cols(xl, WHAT)?;
        let (seq, table_hd) = cl.shape().dims2()?;
        let x = view(xs, xl, WHAT)?;
        let cos = view(cs, cl, WHAT)?;
        let sin = view(ss, sl, WHAT)?;
        let seq_of_x = xl.dims().get(xl.dims().len().wrapping_sub(2)).copied();
        if hd % 2 != 0
            || table_hd != hd
            || sin.len() != cos.len()
            || seq_of_x != Some(seq)
            || rows % seq != 0
        {
            return Err(err(WHAT, "the tables do not match the rows"));
        }
        let n = rows * hd;
        let dev = &xs.device;
        let y = output(dev, n)?;
        let f = dev.get_or_load_custom_func("rope", MODULE, ptx()?)?;
        let (n64, seq64, hd64, flag) = (n as u64, seq as u64, hd as u64, i32::from(back));
        let mut b = f.builder();
        b.arg(&x).arg(&cos).arg(&sin).arg(&y);
        b.arg(&n64).arg(&seq64).arg(&hd64).arg(&flag);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 65_535) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: x and y hold n floats, cos and sin seq × hd; grid-stride over n.
        unsafe { b.launch(cfg) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev.clone()),
            xl.shape().clone(),
        ))
    }

    /// The gated unit, or with `dy` its backward pass (`[2, ..]`: the gate's gradient, then up's).
    pub fn gated(
        gs: &CudaStorage,
        gl: &Layout,
        us: &CudaStorage,
        ul: &Layout,
        dy: Option<(&CudaStorage, &Layout)>,
        activation: Activation,
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "the gated unit";
        let (g, u) = (view(gs, gl, WHAT)?, view(us, ul, WHAT)?);
        if g.len() != u.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let n = g.len();
        let dev = &gs.device;
        let act = match activation {
            Activation::Silu => 0i32,
            Activation::Relu2 => 1i32,
        };
        let n64 = n as u64;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 65_535) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        match dy {
            None => {
                let y = output(dev, n)?;
                let f = dev.get_or_load_custom_func("gated", MODULE, ptx()?)?;
                let mut b = f.builder();
                b.arg(&g).arg(&u).arg(&y).arg(&n64).arg(&act);
                // SAFETY: g, u and y hold n floats; grid-stride over n.
                unsafe { b.launch(cfg) }.map_err(|e| err(WHAT, e))?;
                Ok((
                    CudaStorage::wrap_cuda_slice(y, dev.clone()),
                    gl.shape().clone(),
                ))
            }
            Some((ds, dl)) => {
                let d = view(ds, dl, WHAT)?;
                if d.len() != n {
                    return Err(err(WHAT, "the shapes do not match"));
                }
                let out = output(dev, 2 * n)?;
                let f = dev.get_or_load_custom_func("gated_bwd", MODULE, ptx()?)?;
                let mut b = f.builder();
                b.arg(&g).arg(&u).arg(&d).arg(&out).arg(&n64).arg(&act);
                // SAFETY: g, u and d hold n floats, out 2n; grid-stride over n.
                unsafe { b.launch(cfg) }.map_err(|e| err(WHAT, e))?;
                let mut dims = vec![2];
                dims.extend_from_slice(gl.dims());
                Ok((
                    CudaStorage::wrap_cuda_slice(out, dev.clone()),
                    Shape::from(dims),
                ))
            }
        }
    }

    pub fn causal_softmax(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "the attention softmax";
        let (rows, seq) = rows_cols(l, WHAT)?;
        let x = view(s, l, WHAT)?;
        let dev = &s.device;
        let p = output(dev, rows * seq)?;
        let f = dev.get_or_load_custom_func("causal_softmax", MODULE, ptx()?)?;
        let seq64 = seq as u64;
        let mut b = f.builder();
        b.arg(&x).arg(&p).arg(&seq64);
        // SAFETY: x and p hold rows × seq floats; one block per row.
        unsafe { b.launch(per_row(rows, 128)) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(p, dev.clone()),
            l.shape().clone(),
        ))
    }

    pub fn causal_softmax_backward(
        ps: &CudaStorage,
        pl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "the attention softmax's gradient";
        let (rows, seq) = rows_cols(pl, WHAT)?;
        let p = view(ps, pl, WHAT)?;
        let g = view(gs, gl, WHAT)?;
        if g.len() != p.len() {
            return Err(err(WHAT, "the shapes do not match"));
        }
        let dev = &ps.device;
        let dx = output(dev, rows * seq)?;
        let f = dev.get_or_load_custom_func("causal_softmax_bwd", MODULE, ptx()?)?;
        let seq64 = seq as u64;
        let mut b = f.builder();
        b.arg(&p).arg(&g).arg(&dx).arg(&seq64);
        // SAFETY: p, g and dx hold rows × seq floats; one block per row.
        unsafe { b.launch(per_row(rows, 128)) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(dx, dev.clone()),
            pl.shape().clone(),
        ))
    }

    pub fn cross_entropy(
        s: &CudaStorage,
        l: &Layout,
        targets: &[u32],
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "cross-entropy";
        let (rows, vocab) = rows_cols(l, WHAT)?;
        check_targets(targets, rows, vocab)?;
        let x = view(s, l, WHAT)?;
        let dev = &s.device;
        let t = targets_on(dev, targets)?;
        let loss = output(dev, rows)?;
        let f = dev.get_or_load_custom_func("cross_entropy", MODULE, ptx()?)?;
        let vocab64 = vocab as u64;
        let mut b = f.builder();
        b.arg(&x).arg(&t).arg(&loss).arg(&vocab64);
        // SAFETY: x holds rows × vocab floats, t and loss rows values (targets < vocab, checked).
        unsafe { b.launch(per_row(rows, 512)) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(loss, dev.clone()),
            Shape::from(rows),
        ))
    }

    pub fn cross_entropy_backward(
        xs: &CudaStorage,
        xl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
        targets: &[u32],
    ) -> Result<(CudaStorage, Shape)> {
        const WHAT: &str = "cross-entropy's gradient";
        let (rows, vocab) = rows_cols(xl, WHAT)?;
        check_targets(targets, rows, vocab)?;
        let x = view(xs, xl, WHAT)?;
        let g = view(gs, gl, WHAT)?;
        if g.len() != rows {
            return Err(err(WHAT, format!("{} gradients for {rows} rows", g.len())));
        }
        let dev = &xs.device;
        let t = targets_on(dev, targets)?;
        let dx = output(dev, rows * vocab)?;
        let f = dev.get_or_load_custom_func("cross_entropy_bwd", MODULE, ptx()?)?;
        let vocab64 = vocab as u64;
        let mut b = f.builder();
        b.arg(&x).arg(&t).arg(&g).arg(&dx).arg(&vocab64);
        // SAFETY: x and dx hold rows × vocab floats, t and g rows values (targets < vocab).
        unsafe { b.launch(per_row(rows, 512)) }.map_err(|e| err(WHAT, e))?;
        Ok((
            CudaStorage::wrap_cuda_slice(dx, dev.clone()),
            xl.shape().clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var, D};

    /// Values in [-2, 2) from a fixed sequence.
    fn tensor(seed: u64, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// `a` and `b` agree within `tol` of `b`'s largest magnitude.
    fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let (a, b) = (flat(a), flat(b));
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        let worst = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= tol * scale, "{what}: {worst} of {scale}");
    }

    /// `f`'s value at `inputs` and the gradients of `Σ f · r` with respect to the inputs listed in
    /// `wrt`, for a fixed random `r`.
    fn value_and_grads(
        inputs: &[Tensor],
        wrt: &[usize],
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) -> (Tensor, Vec<Tensor>) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts).unwrap();
        let r = tensor(99, y.dims());
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g = wrt
            .iter()
            .map(|&i| grads.get(vars[i].as_tensor()).unwrap().clone())
            .collect();
        (y, g)
    }

    /// Each fused op against the candle operations it replaces: values, and the gradients
    /// backprop computes through them. Rows of lengths that are not multiples of the eight
    /// partial sums test the tails.
    #[test]
    fn the_fused_ops_compute_candles_formulas_on_the_cpu() {
        // RMS norm.
        let (x, w) = (tensor(1, &[5, 37]), tensor(2, &[37]));
        let fused = value_and_grads(&[x.clone(), w.clone()], &[0, 1], |t| {
            rms_norm(&t[0], &t[1], 1e-5)
        });
        let ops = value_and_grads(&[x, w], &[0, 1], |t| {
            let inv = (t[0].sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?
                .sqrt()?
                .recip()?;
            t[0].broadcast_mul(&inv)?.broadcast_mul(&t[1])
        });
        assert_close("rms norm", &fused.0, &ops.0, 1e-6);
        assert_close("rms norm dx", &fused.1[0], &ops.1[0], 1e-5);
        assert_close("rms norm dw", &fused.1[1], &ops.1[1], 1e-5);

        // Rotary embedding of [batch, heads, seq, head_dim], with the model's table layout (each
        // half's angles repeated).
        let (seq, hd) = (6, 10);
        let angles: Vec<f32> = (0..seq * hd)
            .map(|i| ((i / hd) as f32) * 0.3 * (1.0 + (i % (hd / 2)) as f32))
            .collect();
        let a = Tensor::from_vec(angles, (seq, hd), &Device::Cpu).unwrap();
        let (cos, sin) = (a.cos().unwrap(), a.sin().unwrap());
        let x = tensor(3, &[2, 3, seq, hd]);
        let fused = value_and_grads(std::slice::from_ref(&x), &[0], |t| rope(&t[0], &cos, &sin));
        let ops = value_and_grads(&[x], &[0], |t| {
            let x1 = t[0].narrow(D::Minus1, 0, hd / 2)?;
            let x2 = t[0].narrow(D::Minus1, hd / 2, hd / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            t[0].broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        });
        assert_close("rope", &fused.0, &ops.0, 1e-6);
        assert_close("rope dx", &fused.1[0], &ops.1[0], 1e-6);

        // Causal softmax of [batch, heads, seq, seq] scores.
        let seq = 9;
        let scores = tensor(4, &[2, 3, seq, seq]);
        let mut m = vec![0.0f32; seq * seq];
        for t in 0..seq {
            for k in t + 1..seq {
                m[t * seq + k] = f32::NEG_INFINITY;
            }
        }
        let mask = Tensor::from_vec(m, (seq, seq), &Device::Cpu).unwrap();
        let fused = value_and_grads(std::slice::from_ref(&scores), &[0], |t| {
            causal_softmax(&t[0])
        });
        let ops = value_and_grads(&[scores], &[0], |t| {
            let s = t[0].broadcast_add(&mask)?;
            let max = s.max_keepdim(D::Minus1)?.detach();
            let e = s.broadcast_sub(&max)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
        });
        assert_close("softmax", &fused.0, &ops.0, 1e-6);
        assert_close("softmax dx", &fused.1[0], &ops.1[0], 1e-5);

        // The gated unit, both activations.
        let (gate, up) = (tensor(10, &[3, 4, 21]), tensor(11, &[3, 4, 21]));
        for act in [Activation::Silu, Activation::Relu2] {
            let fused = value_and_grads(&[gate.clone(), up.clone()], &[0, 1], |t| {
                gated(&t[0], &t[1], act)
            });
            let ops = value_and_grads(&[gate.clone(), up.clone()], &[0, 1], |t| {
                let a = match act {
                    Activation::Silu => t[0].silu()?,
                    Activation::Relu2 => t[0].relu()?.sqr()?,
                };
                a * &t[1]
            });
            assert_close("gated unit", &fused.0, &ops.0, 1e-6);
            assert_close("gated unit d gate", &fused.1[0], &ops.1[0], 1e-6);
            assert_close("gated unit d up", &fused.1[1], &ops.1[1], 1e-6);
        }

        // Cross-entropy of each row against its target.
        let logits = tensor(5, &[4, 41]);
        let targets = [0u32, 40, 7, 7];
        let fused = value_and_grads(std::slice::from_ref(&logits), &[0], |t| {
            cross_entropy_rows(&t[0], &targets)
        });
        let ids = Tensor::new(&targets, &Device::Cpu).unwrap();
        let ops = value_and_grads(&[logits], &[0], |t| {
            let max = t[0].max_keepdim(D::Minus1)?.detach();
            let shifted = t[0].broadcast_sub(&max)?;
            let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
            let picked = shifted.gather(&ids.unsqueeze(1)?, 1)?;
            (lse - picked)?.squeeze(1)
        });
        assert_close("cross-entropy", &fused.0, &ops.0, 1e-6);
        assert_close("cross-entropy dx", &fused.1[0], &ops.1[0], 1e-6);
    }

    /// The fused quantiser is the kernels' per-token quantiser, bit for bit, and passes the
    /// gradient straight through.
    #[test]
    fn int8_rows_is_the_kernels_quantiser() {
        let mut x = flat(&tensor(6, &[3, 19]));
        x[19..38].iter_mut().for_each(|v| *v = 0.0); // an all-zero row meets the epsilon
        let t = Tensor::from_vec(x.clone(), (3, 19), &Device::Cpu).unwrap();
        let (q, g) = value_and_grads(&[t], &[0], |t| int8_rows(&t[0]));
        let q = flat(&q);
        for (row, qs) in x.chunks(19).zip(q.chunks(19)) {
            let mut codes = [0i8; 19];
            let scale = tritlab_kernels::quant::quantize_token(row, &mut codes);
            for (&c, &v) in codes.iter().zip(qs) {
                assert_eq!((f32::from(c) * scale).to_bits(), v.to_bits());
            }
        }
        assert_eq!(flat(&g[0]), flat(&tensor(99, &[3, 19])));
    }

    /// Rows go to threads whole, each row's sums in a fixed order: one thread or four give the
    /// same bits, forward and backward.
    #[test]
    fn the_cpu_ops_give_the_same_bits_on_any_number_of_threads() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (x, w) = (tensor(7, &[64, 200]), tensor(8, &[200]));
                let (y, g) = value_and_grads(&[x, w], &[0, 1], |t| {
                    causal_softmax(
                        &rms_norm(&t[0], &t[1], 1e-5)?
                            .reshape((2, 32, 200))?
                            .narrow(2, 0, 32)?,
                    )
                });
                [flat(&y), flat(&g[0]), flat(&g[1])]
                    .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
            })
        };
        assert_eq!(run(1), run(4));
    }

    /// Bad shapes and targets are errors that say what is wrong, never panics.
    #[test]
    fn bad_inputs_are_clear_errors() {
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let e = rms_norm(
            &x,
            &Tensor::ones(3, DType::F32, &Device::Cpu).unwrap(),
            1e-5,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3 weights for rows of 4"), "{e}");
        let table = Tensor::ones((3, 4), DType::F32, &Device::Cpu).unwrap();
        let e = rope(&x, &table, &table).unwrap_err().to_string();
        assert!(e.contains("the shapes do not match"), "{e}");
        let e = cross_entropy_rows(&x, &[0, 4]).unwrap_err().to_string();
        assert!(e.contains("outside the vocabulary"), "{e}");
        let e = gated(&x, &table, Activation::Silu).unwrap_err().to_string();
        assert!(e.contains("differ in shape"), "{e}");
        let e = cross_entropy_rows(&x, &[0]).unwrap_err().to_string();
        assert!(e.contains("1 targets for 2 rows"), "{e}");
        let ints = Tensor::zeros((2, 4), DType::U32, &Device::Cpu).unwrap();
        assert!(causal_softmax(&ints).is_err());
    }
}
