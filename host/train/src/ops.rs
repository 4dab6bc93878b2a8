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
//!
//! The ternary product path ([`crate::Kernels::Ternary`]) replaces the f32 products around them:
//!
//! - [`BitLinear`]: a whole BitLinear layer, `int8(x) · ternary(W)ᵀ`, whose forward pass is the
//!   engine's own integer product ([`TernaryMatrix::matmul`]: exact i32 sums, then the scales)
//!   and whose backward pass multiplies the output gradient by the trits (the input gradient)
//!   and by the int8 codes (the weight gradient) on AMX tiles, with every product exact
//!   ([`tritlab_kernels::amx::EXACT_SPLIT`]).
//! - [`HeadProduct`]: the output head `h · embedᵀ` and its two gradients on AMX tiles, at an
//!   error near f32 rounding ([`tritlab_kernels::amx::F32_SPLIT`]).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};
use tritlab_kernels::amx::{
    self, BufferPool, Operand, Values, BF16X3_SPLIT, EXACT_SPLIT, F32_SPLIT,
};
use tritlab_kernels::quant::quantize_token;
use tritlab_kernels::{
    quantize_absmean, QuantizedActivations, ScaleGranularity, TernaryMatrix, WeightScale,
};

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

/// Runs `f` on a CPU tensor's contiguous f32 values in place, without copying them out.
fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => f(contiguous_f32(cpu, layout, op)?),
        _ => candle_core::bail!("{op}: runs on the CPU only"),
    }
}

/// A kernels error inside a graph operation, as candle's error with the operation named.
fn kernel_error(op: &str, e: tritlab_kernels::KernelError) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: {e}"))
}

/// What a [`BitLinear`] forward pass quantised, kept for its backward pass.
struct Quantised {
    /// `[out, in]` trits of the weights and their scale.
    trits: Vec<i8>,
    scale: WeightScale,
    /// `[tokens, in]` int8 codes of the activations and each token's scale.
    codes: Vec<i8>,
    x_scales: Vec<f32>,
    /// The activations as the kernels read them.
    activations: QuantizedActivations,
}

fn quantise(
    x: &[f32],
    w: &[f32],
    (tokens, cols): (usize, usize),
    rows: usize,
    granularity: ScaleGranularity,
) -> std::result::Result<Quantised, tritlab_kernels::KernelError> {
    let activations = QuantizedActivations::quantize(x, tokens, cols)?;
    let weights = quantize_absmean(w, rows, cols, granularity)?;
    let mut codes = vec![0i8; tokens * cols];
    for (t, row) in codes.chunks_exact_mut(cols.max(1)).enumerate() {
        row.copy_from_slice(&activations.token(t)[..cols]);
    }
    Ok(Quantised {
        x_scales: activations.scales().to_vec(),
        codes,
        trits: weights.trits,
        scale: weights.scale,
        activations,
    })
}

/// A BitLinear layer `y = int8(x) · ternary(W)ᵀ` as one operation (`x` is `[tokens, in]`, `W`
/// `[out, in]`), straight-through in both quantisers like [`Int8Activations`] and
/// [`TernaryWeights`] composed with a product, but computed with the ternary kernels:
///
/// - forward: the engine's integer product, [`TernaryMatrix::matmul`] on the absmean trits and
///   the per-token int8 codes, the same quantisers: exact i32 sums times `scale_w · scale_x`,
///   bit for bit what the exported model computes;
/// - input gradient `G · ternary(W)`: `scale_w · (G · trits)`, every `g · trit` exact on AMX
///   tiles (per-group scales: `G · (trit · scale)` at an error near f32 rounding);
/// - weight gradient `Gᵀ · int8(x)`: `Σ_t (g[t] · scale_x[t]) · code[t]`, every product exact.
///
/// The gradients are what the f32 path computes, summed in another order.
pub struct BitLinear {
    pub granularity: ScaleGranularity,
    saved: Mutex<Option<Quantised>>,
}

impl BitLinear {
    pub fn new(granularity: ScaleGranularity) -> Self {
        BitLinear {
            granularity,
            saved: Mutex::new(None),
        }
    }
}

impl CustomOp2 for BitLinear {
    fn name(&self) -> &'static str {
        "bit-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let (tokens, cols) = matrix_dims(l1, self.name())?;
        let (rows, w_cols) = matrix_dims(l2, self.name())?;
        if w_cols != cols {
            candle_core::bail!(
                "{}: {tokens}×{cols} activations for {rows}×{w_cols} weights",
                self.name()
            );
        }
        let q = quantise(x, w, (tokens, cols), rows, self.granularity)
            .map_err(|e| kernel_error(self.name(), e))?;
        let matrix = TernaryMatrix::from_trits(&q.trits, rows, cols, q.scale.clone())
            .map_err(|e| kernel_error(self.name(), e))?;
        let mut y = vec![0.0f32; tokens * rows];
        matrix
            .matmul(&q.activations, &mut y)
            .map_err(|e| kernel_error(self.name(), e))?;
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(q);
        Ok((CpuStorage::F32(y), Shape::from((tokens, rows))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (tokens, cols) = x.dims2()?;
        let (rows, _) = w.dims2()?;
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner()).take();
        let q = match saved {
            Some(q) => q,
            // Not kept (the forward pass ran elsewhere): quantise again, the same bits.
            None => {
                let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let ws = w.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                quantise(&xs, &ws, (tokens, cols), rows, self.granularity)
                    .map_err(|e| kernel_error(self.name(), e))?
            }
        };
        let grad = grad.contiguous()?;
        with_f32(&grad, self.name(), |g| {
            self.gradients(g, &q, (tokens, cols, rows), x, w)
        })
    }
}

impl BitLinear {
    /// `(dX, dW)` from the output gradient `g` (`[tokens, rows]`).
    fn gradients(
        &self,
        g: &[f32],
        q: &Quantised,
        (tokens, cols, rows): (usize, usize, usize),
        x: &Tensor,
        w: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let err = |e| kernel_error(self.name(), e);
        // dX = G · ternary(W): [tokens, out] · [out, in].
        let mut dx = vec![0.0f32; tokens * cols];
        let g_op = Operand::new(Values::F32(g), tokens, rows);
        match &q.scale {
            WeightScale::PerTensor(s) => {
                let trits = Operand::transposed(Values::I8(&q.trits), cols, rows);
                amx::matmul_nt(&g_op, &trits, &EXACT_SPLIT, &mut dx).map_err(err)?;
                dx.par_iter_mut().for_each(|v| *v *= s);
            }
            WeightScale::PerGroup { .. } => {
                let dequantised = tritlab_kernels::TernaryWeights {
                    rows,
                    cols,
                    trits: q.trits.clone(),
                    scale: q.scale.clone(),
                }
                .dequantize();
                let weights = Operand::transposed(Values::F32(&dequantised), cols, rows);
                amx::matmul_nt(&g_op, &weights, &F32_SPLIT, &mut dx).map_err(err)?;
            }
        }

        // dW = Gᵀ · int8(x) = Σ_t (g[t] · scale_x[t]) · code[t]: [out, tokens] · [tokens, in].
        let mut gs = g.to_vec();
        gs.par_chunks_mut(rows.max(1))
            .zip(q.x_scales.par_iter())
            .for_each(|(row, &s)| row.iter_mut().for_each(|v| *v *= s));
        let mut dw = vec![0.0f32; rows * cols];
        amx::matmul_nt(
            &Operand::transposed(Values::F32(&gs), rows, tokens),
            &Operand::transposed(Values::I8(&q.codes), cols, tokens),
            &EXACT_SPLIT,
            &mut dw,
        )
        .map_err(err)?;
        Ok((
            Some(Tensor::from_vec(dx, (tokens, cols), x.device())?),
            Some(Tensor::from_vec(dw, (rows, cols), w.device())?),
        ))
    }
}

/// The products of the output head on the ternary path: `bf16x3` on AMX tiles
/// ([`tritlab_kernels::amx::BF16X3_SPLIT`]), an error of about 2⁻¹⁸ of each product, for half
/// the work of the near-f32 six-part split. With the six-part split instead, the tiny preset's
/// gradients differed from the f32 path's by the same amounts to three digits: what differs
/// comes from int8 rounding ties that summation order tips, not from the head.
pub const HEAD_SPLIT: &[(amx::Part, amx::Part)] = &BF16X3_SPLIT;

/// `logits = h · embedᵀ` (`h` `[tokens, d]`, `embed` `[vocab, d]`).
fn head_logits(
    h: &[f32],
    e: &[f32],
    tokens: usize,
    d: usize,
    vocab: usize,
    out: &mut [f32],
) -> std::result::Result<(), tritlab_kernels::KernelError> {
    amx::matmul_nt(
        &Operand::new(Values::F32(h), tokens, d),
        &Operand::new(Values::F32(e), vocab, d),
        HEAD_SPLIT,
        out,
    )
}

/// The head's gradients from the logits' gradient `g` (`[tokens, vocab]`): `(G · embed,
/// Gᵀ · h)`.
fn head_gradients(
    g: &[f32],
    h: &[f32],
    e: &[f32],
    (tokens, d, vocab): (usize, usize, usize),
) -> std::result::Result<(Vec<f32>, Vec<f32>), tritlab_kernels::KernelError> {
    let mut dh = vec![0.0f32; tokens * d];
    amx::matmul_nt(
        &Operand::new(Values::F32(g), tokens, vocab),
        &Operand::transposed(Values::F32(e), d, vocab),
        HEAD_SPLIT,
        &mut dh,
    )?;
    // Gᵀ · h as (hᵀ · G)ᵀ: the large gradient is then the right operand, which is packed
    // reading its rows in order, where packing it as the left one would read it by columns.
    let mut de_t = vec![0.0f32; d * vocab];
    amx::matmul_nt(
        &Operand::transposed(Values::F32(h), d, tokens),
        &Operand::transposed(Values::F32(g), vocab, tokens),
        HEAD_SPLIT,
        &mut de_t,
    )?;
    Ok((dh, transpose(&de_t, d, vocab)))
}

/// The transpose of a row-major `[rows, cols]` matrix, by tiles that stay in cache.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 64;
    let mut out = vec![0.0f32; rows * cols];
    out.par_chunks_mut(T * rows)
        .enumerate()
        .for_each(|(cb, block)| {
            // Output rows cb·64 … (input columns), all input rows.
            let c0 = cb * T;
            let nc = block.len() / rows.max(1);
            for r0 in (0..rows).step_by(T) {
                for r in r0..(r0 + T).min(rows) {
                    let src = &m[r * cols + c0..r * cols + c0 + nc];
                    for (c, &v) in src.iter().enumerate() {
                        block[c * rows + r] = v;
                    }
                }
            }
        });
    out
}

/// The output head `logits = h · embedᵀ` (`h` `[tokens, d]`, `embed` `[vocab, d]`) and its
/// gradients `G · embed` and `Gᵀ · h` on AMX tiles ([`HEAD_SPLIT`]). Training uses
/// [`HeadLoss`]; this is the head alone, for logits without a loss (validation, tests).
pub struct HeadProduct;

impl CustomOp2 for HeadProduct {
    fn name(&self) -> &'static str {
        "head-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = contiguous_f32(s1, l1, self.name())?;
        let e = contiguous_f32(s2, l2, self.name())?;
        let (tokens, d) = matrix_dims(l1, self.name())?;
        let (vocab, e_d) = matrix_dims(l2, self.name())?;
        if e_d != d {
            candle_core::bail!(
                "{}: {tokens}×{d} states for a {vocab}×{e_d} embedding",
                self.name()
            );
        }
        let mut logits = vec![0.0f32; tokens * vocab];
        head_logits(h, e, tokens, d, vocab, &mut logits)
            .map_err(|e| kernel_error(self.name(), e))?;
        Ok((CpuStorage::F32(logits), Shape::from((tokens, vocab))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        e: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (tokens, d) = h.dims2()?;
        let (vocab, _) = e.dims2()?;
        let (h, e, grad) = (h.contiguous()?, e.contiguous()?, grad.contiguous()?);
        let (dh, de) = with_f32(&h, self.name(), |hs| {
            with_f32(&e, self.name(), |es| {
                with_f32(&grad, self.name(), |g| {
                    head_gradients(g, hs, es, (tokens, d, vocab))
                        .map_err(|x| kernel_error(self.name(), x))
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(dh, (tokens, d), h.device())?),
            Some(Tensor::from_vec(de, (vocab, d), e.device())?),
        ))
    }
}

/// Logits buffers of [`HeadLoss`], reused from step to step.
static LOGITS: BufferPool<f32> = BufferPool::new(2);

/// The output head and the mean next-token cross-entropy as one operation: `h` `[tokens, d]` and
/// `embed` `[vocab, d]` give the scalar loss of [`CrossEntropy`] on `h · embedᵀ` ([`HEAD_SPLIT`]).
///
/// Fused, the `[tokens, vocab]` logits and their gradient never become graph tensors: candle
/// would allocate, zero and add a logits-sized gradient (412 MB each on the small preset) and the
/// loss would copy the logits out twice. Here the logits stay in a reused buffer between the
/// passes and the backward pass turns them into their gradient in place.
pub struct HeadLoss {
    pub targets: Arc<Vec<u32>>,
    logits: Mutex<Option<Vec<f32>>>,
}

impl HeadLoss {
    pub fn new(targets: Arc<Vec<u32>>) -> Self {
        HeadLoss {
            targets,
            logits: Mutex::new(None),
        }
    }

    fn ce(&self) -> CrossEntropy {
        CrossEntropy {
            targets: self.targets.clone(),
        }
    }
}

impl Drop for HeadLoss {
    /// A graph dropped without its backward pass (validation) returns the logits buffer too.
    fn drop(&mut self) {
        if let Some(l) = self
            .logits
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            LOGITS.give([l]);
        }
    }
}

impl CustomOp2 for HeadLoss {
    fn name(&self) -> &'static str {
        "head-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = contiguous_f32(s1, l1, self.name())?;
        let e = contiguous_f32(s2, l2, self.name())?;
        let (tokens, d) = matrix_dims(l1, self.name())?;
        let (vocab, e_d) = matrix_dims(l2, self.name())?;
        if e_d != d {
            candle_core::bail!(
                "{}: {tokens}×{d} states for a {vocab}×{e_d} embedding",
                self.name()
            );
        }
        let ce = self.ce();
        ce.check(tokens, vocab)?;
        let mut logits = LOGITS.take(tokens * vocab);
        head_logits(h, e, tokens, d, vocab, &mut logits)
            .map_err(|x| kernel_error(self.name(), x))?;
        let loss = ce.mean_loss(&logits, vocab);
        if let Some(old) = self
            .logits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(logits)
        {
            LOGITS.give([old]);
        }
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        h: &Tensor,
        e: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (tokens, d) = h.dims2()?;
        let (vocab, _) = e.dims2()?;
        let (h, e) = (h.contiguous()?, e.contiguous()?);
        let saved = self.logits.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut logits = match saved {
            Some(l) => l,
            // Not kept (the forward pass ran elsewhere): the same logits again.
            None => {
                let mut l = LOGITS.take(tokens * vocab);
                with_f32(&h, self.name(), |hs| {
                    with_f32(&e, self.name(), |es| {
                        head_logits(hs, es, tokens, d, vocab, &mut l)
                            .map_err(|x| kernel_error(self.name(), x))
                    })
                })?;
                l
            }
        };
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        self.ce().gradient_in_place(&mut logits, vocab, g);
        let result = with_f32(&h, self.name(), |hs| {
            with_f32(&e, self.name(), |es| {
                head_gradients(&logits, hs, es, (tokens, d, vocab))
                    .map_err(|x| kernel_error(self.name(), x))
            })
        });
        LOGITS.give([logits]);
        let (dh, de) = result?;
        Ok((
            Some(Tensor::from_vec(dh, (tokens, d), h.device())?),
            Some(Tensor::from_vec(de, (vocab, d), e.device())?),
        ))
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

impl CrossEntropy {
    /// The mean loss, summed in order so that it does not depend on the thread count.
    pub fn mean_loss(&self, logits: &[f32], vocab: usize) -> f32 {
        let rows = self.targets.len();
        let total: f64 = self.row_losses(logits, vocab).iter().sum();
        (total / rows as f64) as f32
    }

    /// Turns `[rows, vocab]` logits into the gradient of the mean loss scaled by `grad`:
    /// `(softmax − one-hot) · grad / rows`, row by row.
    pub fn gradient_in_place(&self, logits: &mut [f32], vocab: usize, grad: f32) {
        let g = grad / self.targets.len() as f32;
        logits
            .par_chunks_mut(vocab)
            .zip(self.targets.par_iter())
            .for_each(|(row, &t)| {
                let (max, lse) = log_sum_exp(row);
                let lse = lse as f32;
                for v in row.iter_mut() {
                    *v = (*v - max - lse).exp() * g;
                }
                row[t as usize] -= g;
            });
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
        Ok((
            CpuStorage::F32(vec![self.mean_loss(logits, vocab)]),
            Shape::from(()),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (rows, vocab) = arg.dims2()?;
        self.check(rows, vocab)?;
        let mut grad = arg.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        self.gradient_in_place(&mut grad, vocab, g);
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

    /// The f32 path's BitLinear: the two straight-through quantisers and candle's product.
    fn f32_bit_linear(x: &Tensor, w: &Tensor, granularity: ScaleGranularity) -> Tensor {
        let xq = x.apply_op1(Int8Activations).unwrap();
        let wq = w.apply_op1(TernaryWeights { granularity }).unwrap();
        xq.matmul(&wq.t().unwrap()).unwrap()
    }

    /// Largest |a − b| over the largest |a|.
    fn relative_error(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    #[test]
    fn bit_linear_forward_is_the_engines_exact_integer_product() {
        let dev = Device::Cpu;
        // Ragged shapes: columns not a multiple of the kernels' 128, rows not of AMX's 16.
        for (tokens, cols, rows, granularity) in [
            (5, 200, 37, ScaleGranularity::PerTensor),
            (33, 256, 48, ScaleGranularity::PerGroup { group_size: 128 }),
        ] {
            let xs = values(tokens * cols, 3);
            let ws = values(rows * cols, 5);
            let x = Tensor::from_vec(xs.clone(), (tokens, cols), &dev).unwrap();
            let w = Tensor::from_vec(ws.clone(), (rows, cols), &dev).unwrap();
            let y = to_vec(&x.apply_op2(&w, BitLinear::new(granularity)).unwrap());
            // The integer part exactly: Σ trit·code in i64, then the kernels' epilogue.
            let q = quantise(&xs, &ws, (tokens, cols), rows, granularity).unwrap();
            for t in 0..tokens {
                for r in 0..rows {
                    let want = match &q.scale {
                        WeightScale::PerTensor(s) => {
                            let acc: i64 = (0..cols)
                                .map(|c| {
                                    i64::from(q.trits[r * cols + c])
                                        * i64::from(q.codes[t * cols + c])
                                })
                                .sum();
                            acc as i32 as f32 * (q.x_scales[t] * s)
                        }
                        WeightScale::PerGroup { scales, .. } => {
                            let mut sum = 0.0f32;
                            for g in 0..cols / 128 {
                                let acc: i64 = (g * 128..(g + 1) * 128)
                                    .map(|c| {
                                        i64::from(q.trits[r * cols + c])
                                            * i64::from(q.codes[t * cols + c])
                                    })
                                    .sum();
                                sum += scales[r * (cols / 128) + g] * acc as i32 as f32;
                            }
                            sum * q.x_scales[t]
                        }
                    };
                    assert_eq!(y[t * rows + r], want, "{granularity:?} [{t}, {r}]");
                }
            }
            // And the f32 path's value up to its summation order.
            let reference = to_vec(&f32_bit_linear(&x, &w, granularity));
            let e = relative_error(&reference, &y);
            assert!(e < 1e-5, "{granularity:?}: forward differs by {e}");
        }
    }

    #[test]
    fn bit_linear_gradients_are_the_f32_paths() {
        if !amx::available() {
            return;
        }
        let dev = Device::Cpu;
        for (tokens, cols, rows, granularity) in [
            (19, 200, 37, ScaleGranularity::PerTensor),
            (40, 256, 70, ScaleGranularity::PerGroup { group_size: 128 }),
        ] {
            let x = Var::from_vec(values(tokens * cols, 7), (tokens, cols), &dev).unwrap();
            let w = Var::from_vec(values(rows * cols, 9), (rows, cols), &dev).unwrap();
            // A loss whose output gradient differs per element: Σ y · m.
            let m = Tensor::from_vec(values(tokens * rows, 11), (tokens, rows), &dev).unwrap();
            let ours = (x
                .as_tensor()
                .apply_op2(w.as_tensor(), BitLinear::new(granularity))
                .unwrap()
                * &m)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let theirs = (f32_bit_linear(x.as_tensor(), w.as_tensor(), granularity) * &m)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (what, var) in [("input", &x), ("weight", &w)] {
                let a = to_vec(theirs.get(var.as_tensor()).unwrap());
                let b = to_vec(ours.get(var.as_tensor()).unwrap());
                // Every product is exact on the ternary path (per-group scales: near f32
                // rounding); what differs is the order of up to 70 f32 additions.
                let e = relative_error(&a, &b);
                assert!(e < 1e-5, "{granularity:?} {what} gradient differs by {e}");
            }
        }
    }

    #[test]
    fn head_product_and_its_gradients_are_the_f32_products() {
        if !amx::available() {
            return;
        }
        let dev = Device::Cpu;
        let (tokens, d, vocab) = (21, 96, 301);
        let h = Var::from_vec(values(tokens * d, 13), (tokens, d), &dev).unwrap();
        let e = Var::from_vec(values(vocab * d, 17), (vocab, d), &dev).unwrap();
        let m = Tensor::from_vec(values(tokens * vocab, 19), (tokens, vocab), &dev).unwrap();
        let ours = h.as_tensor().apply_op2(e.as_tensor(), HeadProduct).unwrap();
        let theirs = h.as_tensor().matmul(&e.as_tensor().t().unwrap()).unwrap();
        // bf16x3 leaves out about 2⁻¹⁸ of each product (bf16 alone would be off by ~2⁻⁹ ≈ 2e-3).
        let err = relative_error(&to_vec(&theirs), &to_vec(&ours));
        assert!(err < 2e-5, "logits differ by {err}");
        let ga = (theirs * &m)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (ours * &m).unwrap().sum_all().unwrap().backward().unwrap();
        for (what, var) in [("states", &h), ("embedding", &e)] {
            let a = to_vec(ga.get(var.as_tensor()).unwrap());
            let b = to_vec(gb.get(var.as_tensor()).unwrap());
            let err = relative_error(&a, &b);
            assert!(err < 2e-5, "{what} gradient differs by {err}");
        }
        // Fused with the loss, the head gives CrossEntropy's loss and the same gradients.
        let targets = Arc::new((0..tokens as u32).map(|t| (t * 7) % vocab as u32).collect());
        let fused = h
            .as_tensor()
            .apply_op2(e.as_tensor(), HeadLoss::new(Arc::clone(&targets)))
            .unwrap();
        let composed = h
            .as_tensor()
            .matmul(&e.as_tensor().t().unwrap())
            .unwrap()
            .apply_op1(CrossEntropy { targets })
            .unwrap();
        let (a, b) = (
            composed.to_scalar::<f32>().unwrap(),
            fused.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-5 * a.abs(), "loss {a} vs {b}");
        let ga = composed.backward().unwrap();
        let gb = fused.backward().unwrap();
        for (what, var) in [("states", &h), ("embedding", &e)] {
            let a = to_vec(ga.get(var.as_tensor()).unwrap());
            let b = to_vec(gb.get(var.as_tensor()).unwrap());
            let err = relative_error(&a, &b);
            assert!(err < 2e-5, "fused {what} gradient differs by {err}");
        }
    }

    #[test]
    fn bit_linear_refuses_mismatched_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(values(4 * 8, 1), (4, 8), &dev).unwrap();
        let w = Tensor::from_vec(values(3 * 7, 2), (3, 7), &dev).unwrap();
        let e = x
            .apply_op2(&w, BitLinear::new(ScaleGranularity::PerTensor))
            .unwrap_err();
        assert!(
            e.to_string().contains("4×8 activations for 3×7 weights"),
            "{e}"
        );
    }
}
