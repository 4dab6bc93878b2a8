//! Ternary matrices in the kernels' layout, and the matrix–vector / matrix–matrix products.
//!
//! # Kernel layout (I2, blocked)
//! Each row is cut into blocks of [`BLOCK_COLS`] = 128 columns, stored as [`BLOCK_BYTES`] = 32
//! bytes; the last block is padded with trit 0. Inside a block, byte `b` (0..32) holds in bit
//! pair `i` (0..4) the code `trit + 1` of column `32·i + b`. Shifting a 32-byte vector right by
//! `2·i` and masking with 3 therefore yields the codes of 32 *consecutive* columns, which meet 32
//! consecutive activations: no shuffles in the inner loop, on 128-, 256- or 512-bit vectors alike.
//! Rows are contiguous, `stride = 32 · ceil(cols / 128)` bytes each.
//!
//! # Arithmetic
//! `y[t][r] = Σ_c trit[r][c] · q[t][c]` is accumulated exactly in i32, then scaled once:
//! `y = acc · (scale_w · scale_x)` per tensor, or `scale_x · Σ_g scale_w[r][g] · acc_g` per group.

use crate::backend::{self, Backend, TokenView};
use crate::error::{KernelError, Result};
use crate::mem::WeightBytes;
use crate::pack::{check_matrix, hf_pack, hf_unpack};
use crate::quant::{QuantizedActivations, ScaleGranularity, TernaryWeights, WeightScale};
use crate::trit::{validate_trits, TritCounts};
use rayon::prelude::*;

pub const BLOCK_COLS: usize = 128;
pub const BLOCK_BYTES: usize = 32;

/// The widest row the kernels accumulate exactly in i32 lanes (see `backend::avx512`).
pub const MAX_COLS: usize = 1 << 20;

const TASKS_PER_THREAD: usize = 4;

/// Reorders one padded activation row into pair order: for each pair of blocks `(2p, 2p+1)`
/// and bit pair `i`, the 32 values of block `2p` columns `32·i..` followed by the 32 values of
/// block `2p+1` columns `32·i..`. An odd final block keeps natural order.
pub(crate) fn to_pair_order(src: &[i8], dst: &mut [i8]) {
    let blocks = src.len() / BLOCK_COLS;
    for p in 0..blocks / 2 {
        let base = p * 2 * BLOCK_COLS;
        for i in 0..4 {
            let d = base + 64 * i;
            dst[d..d + 32].copy_from_slice(&src[base + 32 * i..base + 32 * i + 32]);
            dst[d + 32..d + 64]
                .copy_from_slice(&src[base + BLOCK_COLS + 32 * i..base + BLOCK_COLS + 32 * i + 32]);
        }
    }
    if blocks % 2 == 1 {
        let tail = (blocks - 1) * BLOCK_COLS;
        dst[tail..].copy_from_slice(&src[tail..]);
    }
}

/// How a [`TernaryMatrix`] keeps its trits in memory.
///
/// Both are exact; they trade bytes streamed per product against decoding work. I2 is the
/// default: its codes meet activations with a shift and a mask on any SIMD width. T1 reads 20%
/// fewer bytes, which is what batch-1 decoding is bound by, and decodes at that rate where the
/// CPU has byte permutes (AVX-512 VBMI); elsewhere it runs through a look-up table, slower than
/// I2. T1 holds per-tensor scales only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Packing {
    /// 2 bits per trit, in the blocked layout described above.
    #[default]
    I2,
    /// Base 3, five trits per byte (1.6 bits per trit), rows padded to 64 bytes (see the `t1` module).
    T1,
}

impl Packing {
    pub const ALL: [Packing; 2] = [Packing::I2, Packing::T1];

    pub fn name(self) -> &'static str {
        match self {
            Packing::I2 => "i2",
            Packing::T1 => "t1",
        }
    }

    /// Whether this CPU decodes the packing in registers with `backend` (T1 needs AVX2 or
    /// AVX-512; elsewhere, T1 products take a slower look-up-table path).
    pub fn is_native(self, backend: Backend) -> bool {
        match self {
            Packing::I2 => true,
            Packing::T1 => crate::t1::decodes_in_registers(backend),
        }
    }
}

impl std::fmt::Display for Packing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Packing {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        Packing::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| KernelError::UnknownPacking(s.to_string()))
    }
}

/// A ternary weight matrix `[rows, cols]` packed for the kernels, with its scales.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryMatrix {
    rows: usize,
    cols: usize,
    packing: Packing,
    /// Bytes per row of `codes`.
    stride: usize,
    codes: WeightBytes,
    scale: WeightScale,
}

impl TernaryMatrix {
    /// Packs a row-major trit matrix. Per-group scales need a group size that is a multiple of
    /// [`BLOCK_COLS`], so that groups are whole kernel blocks.
    pub fn from_trits(trits: &[i8], rows: usize, cols: usize, scale: WeightScale) -> Result<Self> {
        check_matrix("ternary matrix", trits.len(), rows, cols)?;
        if cols > MAX_COLS {
            return Err(KernelError::Shape {
                what: "ternary matrix",
                rows,
                cols,
                reason: "more than 2^20 columns would overflow the kernels' i32 lanes",
            });
        }
        validate_trits(trits)?;
        scale.validate(rows, cols)?;
        if let WeightScale::PerGroup { group_size, .. } = scale {
            if group_size % BLOCK_COLS != 0 {
                return Err(KernelError::GroupSize {
                    group_size,
                    reason: "the kernels need a multiple of 128 (their block width)",
                });
            }
        }
        let blocks = cols.div_ceil(BLOCK_COLS);
        let stride = blocks * BLOCK_BYTES;
        // 0x55 = four codes of 1 = four zero trits: the padding.
        let mut codes = WeightBytes::filled(rows * stride, 0x55);
        // Rows in parallel, each byte written once from its four columns (the loop over a
        // whole block vectorises): loading a 2B model packs two billion trits.
        codes
            .par_chunks_mut(stride)
            .zip(trits.par_chunks(cols))
            .for_each(|(dst, src)| {
                let whole = cols / BLOCK_COLS;
                for (d, s) in dst
                    .chunks_exact_mut(BLOCK_BYTES)
                    .zip(src.chunks_exact(BLOCK_COLS))
                    .take(whole)
                {
                    for (b, byte) in d.iter_mut().enumerate() {
                        let code = |i: usize| (s[32 * i + b] + 1) as u8;
                        *byte = code(0) | code(1) << 2 | code(2) << 4 | code(3) << 6;
                    }
                }
                // The last, partial block: column by column over the zero padding.
                let tail = &mut dst[whole * BLOCK_BYTES..];
                for (within, &t) in src[whole * BLOCK_COLS..].iter().enumerate() {
                    let (i, b) = (within / 32, within % 32);
                    let shift = 2 * i;
                    tail[b] = (tail[b] & !(3 << shift)) | (((t + 1) as u8) << shift);
                }
            });
        Ok(Self {
            rows,
            cols,
            packing: Packing::I2,
            stride,
            codes,
            scale,
        })
    }

    /// Packs a row-major trit matrix in the chosen packing. T1 needs a per-tensor scale.
    pub fn from_trits_packed(
        trits: &[i8],
        rows: usize,
        cols: usize,
        scale: WeightScale,
        packing: Packing,
    ) -> Result<Self> {
        match packing {
            Packing::I2 => Self::from_trits(trits, rows, cols, scale),
            Packing::T1 => {
                check_matrix("ternary matrix", trits.len(), rows, cols)?;
                crate::t1::check_cols(rows, cols)?;
                scale.validate(rows, cols)?;
                if !matches!(scale, WeightScale::PerTensor(_)) {
                    return Err(KernelError::PackingScale { packing });
                }
                Ok(Self {
                    rows,
                    cols,
                    packing,
                    stride: crate::t1::stride(cols),
                    codes: crate::t1::pack_rows(trits, rows, cols)?,
                    scale,
                })
            }
        }
    }

    /// The same matrix in another packing (a copy when it already is in that one). Row by row,
    /// so converting a loaded model's layer holds one extra row of trits, not the matrix's.
    pub fn repack(&self, packing: Packing) -> Result<Self> {
        if packing == self.packing {
            return Ok(self.clone());
        }
        if packing == Packing::I2 {
            return Self::from_trits(&self.to_trits(), self.rows, self.cols, self.scale.clone());
        }
        if !matches!(self.scale, WeightScale::PerTensor(_)) {
            return Err(KernelError::PackingScale { packing });
        }
        let stride = crate::t1::stride(self.cols);
        let mut codes = WeightBytes::filled(self.rows * stride, crate::t1::ZERO_BYTE);
        let mut row = vec![0i8; self.cols];
        for (r, dst) in codes.chunks_exact_mut(stride).enumerate() {
            self.row_trits(r, &mut row)?;
            crate::t1::pack_row(&row, dst);
        }
        Ok(Self {
            rows: self.rows,
            cols: self.cols,
            packing,
            stride,
            codes,
            scale: self.scale.clone(),
        })
    }

    pub fn packing(&self) -> Packing {
        self.packing
    }

    pub fn from_weights(weights: &TernaryWeights) -> Result<Self> {
        Self::from_trits(
            &weights.trits,
            weights.rows,
            weights.cols,
            weights.scale.clone(),
        )
    }

    /// Quantizes f32 weights by absmean and packs them.
    pub fn quantize(
        weights: &[f32],
        rows: usize,
        cols: usize,
        granularity: ScaleGranularity,
    ) -> Result<Self> {
        Self::from_weights(&crate::quant::quantize_absmean(
            weights,
            rows,
            cols,
            granularity,
        )?)
    }

    /// Converts a Hugging Face BitNet packed uint8 tensor (`[ceil(rows/4), cols]`) once, at load.
    pub fn from_hf_packed(
        packed: &[u8],
        rows: usize,
        cols: usize,
        scale: WeightScale,
    ) -> Result<Self> {
        let trits = hf_unpack(packed, rows, cols)?;
        Self::from_trits(&trits, rows, cols, scale)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn scale(&self) -> &WeightScale {
        &self.scale
    }
    /// Bytes the kernels stream per product (the packed codes, padding included).
    pub fn packed_bytes(&self) -> usize {
        self.codes.len()
    }

    /// Row `r`'s trits, written into `out` (length `cols`).
    pub fn row_trits(&self, r: usize, out: &mut [i8]) -> Result<()> {
        if r >= self.rows {
            return Err(KernelError::Shape {
                what: "row index",
                rows: r,
                cols: self.cols,
                reason: "row out of range",
            });
        }
        if out.len() != self.cols {
            return Err(KernelError::Length {
                what: "row buffer",
                expected: self.cols,
                actual: out.len(),
            });
        }
        let row = &self.codes[r * self.stride..(r + 1) * self.stride];
        if self.packing == Packing::T1 {
            crate::t1::row_trits(row, out);
            return Ok(());
        }
        // Byte b of a block holds columns b, 32 + b, 64 + b and 96 + b.
        for (blk, cols) in out.chunks_mut(BLOCK_COLS).enumerate() {
            let bytes = &row[blk * BLOCK_BYTES..(blk + 1) * BLOCK_BYTES];
            for (c, t) in cols.iter_mut().enumerate() {
                *t = ((bytes[c % 32] >> (2 * (c / 32))) & 3) as i8 - 1;
            }
        }
        Ok(())
    }

    /// The whole matrix as row-major trits.
    pub fn to_trits(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row_trits(r, row)
                .expect("row index and length come from self");
        }
        out
    }

    pub fn to_weights(&self) -> TernaryWeights {
        TernaryWeights {
            rows: self.rows,
            cols: self.cols,
            trits: self.to_trits(),
            scale: self.scale.clone(),
        }
    }

    /// The Hugging Face BitNet packed form of the trits.
    pub fn to_hf_packed(&self) -> Vec<u8> {
        hf_pack(&self.to_trits(), self.rows, self.cols).expect("a valid matrix packs")
    }

    /// Counts of -1, 0 and +1, straight from the packed codes (a table look-up per byte), so
    /// counting a billion-weight model takes well under a second.
    pub fn trit_counts(&self) -> TritCounts {
        // Per byte value: how many of its four codes are 0 (trit -1) and 2 (trit +1).
        static NEG_POS: [(u8, u8); 256] = {
            let mut table = [(0u8, 0u8); 256];
            let mut v = 0;
            while v < 256 {
                let (mut neg, mut pos, mut i) = (0, 0, 0);
                while i < 4 {
                    match (v >> (2 * i)) & 3 {
                        0 => neg += 1,
                        2 => pos += 1,
                        _ => {}
                    }
                    i += 1;
                }
                table[v] = (neg, pos);
                v += 1;
            }
            table
        };
        let (mut neg, mut pos) = (0u64, 0u64);
        if self.packing == Packing::T1 {
            (neg, pos) = crate::t1::neg_pos(&self.codes);
        } else {
            for &b in self.codes.iter() {
                let (n, p) = NEG_POS[b as usize];
                neg += n as u64;
                pos += p as u64;
            }
        }
        // Padding is trit 0, so only the zero count needs the true element count.
        let total = (self.rows * self.cols) as u64;
        TritCounts {
            neg,
            zero: total - neg - pos,
            pos,
        }
    }

    /// `y = W · x` for every token of `x`, with the active backend, on the current rayon pool.
    /// `y` is `[tokens, rows]`, row-major.
    pub fn matmul(&self, x: &QuantizedActivations, y: &mut [f32]) -> Result<()> {
        self.matmul_with(Backend::active(), x, y)
    }

    /// [`matmul`](Self::matmul) on a chosen backend (tests compare backends this way).
    pub fn matmul_with(
        &self,
        backend: Backend,
        x: &QuantizedActivations,
        y: &mut [f32],
    ) -> Result<()> {
        self.matmul_inner(backend, None, x, y)
    }

    /// [`matmul_with`](Self::matmul_with), an I2 matrix's rows read for a single token as
    /// `stream` says instead of as [`crate::tune`] chooses: benchmarks and tests compare the
    /// settings this way. Every setting gives the same result (T1 matrices ignore it).
    pub fn matmul_streaming(
        &self,
        backend: Backend,
        stream: crate::tune::Setting,
        x: &QuantizedActivations,
        y: &mut [f32],
    ) -> Result<()> {
        self.matmul_inner(backend, Some(stream), x, y)
    }

    fn matmul_inner(
        &self,
        backend: Backend,
        stream: Option<crate::tune::Setting>,
        x: &QuantizedActivations,
        y: &mut [f32],
    ) -> Result<()> {
        backend.ensure_supported()?;
        if x.cols() != self.cols {
            return Err(KernelError::Shape {
                what: "activations for this matrix",
                rows: x.tokens(),
                cols: x.cols(),
                reason: "column count differs from the matrix's",
            });
        }
        if y.len() != x.tokens() * self.rows {
            return Err(KernelError::Length {
                what: "output buffer",
                expected: x.tokens() * self.rows,
                actual: y.len(),
            });
        }
        if self.packing == Packing::T1 {
            let WeightScale::PerTensor(ws) = self.scale else {
                unreachable!("T1 matrices are built with per-tensor scales only");
            };
            let chunk = self.rows_per_task(x.tokens());
            crate::t1::matmul(self.t1_rows(), backend, ws, x, y, chunk);
            return Ok(());
        }
        let tokens: Vec<TokenView> = (0..x.tokens()).map(|t| TokenView::of(x, t)).collect();
        match &self.scale {
            WeightScale::PerTensor(ws) => {
                let tuned = match stream {
                    Some(stream) => TunedCall {
                        stream,
                        ticket: None,
                    },
                    None => tuned_call(backend, x.tokens(), &[self]),
                };
                self.matmul_per_tensor(backend, &tokens, x.scales(), *ws, y, tuned.stream);
                tuned.finish();
            }
            WeightScale::PerGroup { group_size, scales } => {
                self.matmul_per_group(backend, &tokens, x.scales(), *group_size, scales, y)
            }
        }
        Ok(())
    }

    fn t1_rows(&self) -> crate::t1::Rows<'_> {
        crate::t1::Rows {
            bytes: &self.codes,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
        }
    }

    /// Rows per parallel task: enough tasks to balance two to a few dozen threads, few enough
    /// that scheduling stays negligible next to streaming the rows.
    fn rows_per_task(&self, tokens: usize) -> usize {
        let threads = rayon::current_num_threads().max(1);
        let target_tasks = if threads == 1 {
            1
        } else {
            threads * TASKS_PER_THREAD
        };
        // A task should stream at least this many weight bytes per token, or waking a thread
        // costs more than it saves (a tiny model decodes faster on one thread otherwise).
        const MIN_TASK_BYTES: usize = 64 << 10;
        let min_rows = (MIN_TASK_BYTES / (self.stride * tokens.max(1))).max(4);
        self.rows
            .div_ceil(target_tasks)
            .max(min_rows)
            .next_multiple_of(4)
    }

    fn matmul_per_tensor(
        &self,
        backend: Backend,
        tokens: &[TokenView],
        xs: &[f32],
        ws: f32,
        y: &mut [f32],
        stream: crate::tune::Setting,
    ) {
        let ntok = tokens.len();
        let factors: Vec<f32> = xs.iter().map(|s| s * ws).collect();
        // Several tokens on AMX: laid out for the tiles once, here, not once per task; tasks
        // take whole bands of 32 rows, the tiles' unit.
        #[cfg(target_arch = "x86_64")]
        let tiles = backend
            .tiles_for(ntok)
            .then(|| backend::amx::Tokens::pack(tokens, self.stride * 4));
        #[cfg(target_arch = "x86_64")]
        let chunk = match tiles {
            Some(_) => self.rows_per_task(ntok).next_multiple_of(32),
            None => self.rows_per_task(ntok),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let chunk = self.rows_per_task(ntok);
        let run = |r0: usize, acc: &mut [i32]| {
            let rows = acc.len() / ntok;
            let bytes = &self.codes[r0 * self.stride..(r0 + rows) * self.stride];
            #[cfg(target_arch = "x86_64")]
            if let Some(tiles) = &tiles {
                backend::amx_dots(bytes, self.stride, tiles, acc);
                return;
            }
            backend::dots(backend, bytes, self.stride, tokens, acc, stream);
        };
        if ntok == 1 {
            // One token: outputs are contiguous per row range, so tasks write straight into `y`.
            let token = &tokens[0];
            let f = factors[0];
            if chunk >= self.rows {
                self.gemv_rows(backend, stream, token, f, 0, y);
            } else {
                y.par_chunks_mut(chunk)
                    .enumerate()
                    .for_each(|(ci, yc)| self.gemv_rows(backend, stream, token, f, ci * chunk, yc));
            }
            return;
        }
        // Several tokens: each task computes a row range for all tokens, then scatters.
        let starts: Vec<usize> = (0..self.rows).step_by(chunk).collect();
        let results: Vec<(usize, Vec<i32>)> = starts
            .into_par_iter()
            .map(|r0| {
                let rows = chunk.min(self.rows - r0);
                let mut acc = vec![0i32; rows * ntok];
                run(r0, &mut acc);
                (r0, acc)
            })
            .collect();
        // Token-major writes: `y` is `[tokens, rows]`, so walking rows innermost writes it
        // sequentially (the task's `acc` is small and cached; `y` may not be).
        for (r0, acc) in results {
            let rows = acc.len() / ntok;
            for (t, &f) in factors.iter().enumerate() {
                let yt = &mut y[t * self.rows + r0..t * self.rows + r0 + rows];
                for (r, o) in yt.iter_mut().enumerate() {
                    *o = acc[r * ntok + t] as f32 * f;
                }
            }
        }
    }

    fn matmul_per_group(
        &self,
        backend: Backend,
        tokens: &[TokenView],
        xs: &[f32],
        group_size: usize,
        scales: &[f32],
        y: &mut [f32],
    ) {
        let blocks = self.stride / BLOCK_BYTES;
        let blocks_per_group = group_size / BLOCK_COLS;
        let groups = self.cols.div_ceil(group_size);
        let chunk = self.rows_per_task(1);
        for (t, token) in tokens.iter().enumerate() {
            let yt = &mut y[t * self.rows..(t + 1) * self.rows];
            let task = |(ci, yc): (usize, &mut [f32])| {
                let r0 = ci * chunk;
                let mut acc = vec![0i32; yc.len() * blocks];
                let bytes = &self.codes[r0 * self.stride..(r0 + yc.len()) * self.stride];
                backend::block_dots(backend, bytes, self.stride, token, &mut acc);
                for (r, o) in yc.iter_mut().enumerate() {
                    let row_scales = &scales[(r0 + r) * groups..(r0 + r + 1) * groups];
                    let row_acc = &acc[r * blocks..(r + 1) * blocks];
                    let mut sum = 0.0f32;
                    for (g, &s) in row_scales.iter().enumerate() {
                        let lo = g * blocks_per_group;
                        let hi = ((g + 1) * blocks_per_group).min(blocks);
                        let dot: i32 = row_acc[lo..hi].iter().sum();
                        sum += s * dot as f32;
                    }
                    *o = sum * xs[t];
                }
            };
            yt.par_chunks_mut(chunk).enumerate().for_each(task);
        }
    }

    /// `y[i] = factor · Σ trit[r0 + i]·q` for the rows `r0 .. r0 + y.len()`, one token.
    fn gemv_rows(
        &self,
        backend: Backend,
        stream: crate::tune::Setting,
        token: &TokenView,
        factor: f32,
        r0: usize,
        y: &mut [f32],
    ) {
        let mut acc = [0i32; 64];
        for (si, ys) in y.chunks_mut(64).enumerate() {
            let start = r0 + si * 64;
            let n = ys.len();
            let bytes = &self.codes[start * self.stride..(start + n) * self.stride];
            backend::dots(
                backend,
                bytes,
                self.stride,
                std::slice::from_ref(token),
                &mut acc[..n],
                stream,
            );
            for (o, &a) in ys.iter_mut().zip(&acc[..n]) {
                *o = a as f32 * factor;
            }
        }
    }

    /// Several products of the same activations at once, e.g. q, k and v, or gate and up:
    /// `outputs[i] = matrices[i] · x`. For one token with per-tensor scales, all the matrices'
    /// rows go to the threads in one parallel pass, so a thread that finishes early moves on to
    /// the next matrix instead of waiting; otherwise this is [`matmul`](Self::matmul) in turn.
    pub fn matmul_many(
        matrices: &[&TernaryMatrix],
        x: &QuantizedActivations,
        outputs: &mut [&mut [f32]],
    ) -> Result<()> {
        let backend = Backend::active();
        if matrices.len() != outputs.len() {
            return Err(KernelError::Length {
                what: "outputs for matmul_many",
                expected: matrices.len(),
                actual: outputs.len(),
            });
        }
        let per_tensor: Option<Vec<f32>> = matrices
            .iter()
            .map(|m| match m.scale {
                WeightScale::PerTensor(ws) => Some(ws),
                WeightScale::PerGroup { .. } => None,
            })
            .collect();
        // T1 joins the shared pass only where it decodes in registers.
        let t1_native = matrices.iter().all(|m| m.packing.is_native(backend));
        let scales = match per_tensor {
            Some(scales) if x.tokens() == 1 && t1_native => scales,
            _ => {
                for (m, y) in matrices.iter().zip(outputs.iter_mut()) {
                    m.matmul(x, y)?;
                }
                return Ok(());
            }
        };
        for (m, y) in matrices.iter().zip(outputs.iter()) {
            if x.cols() != m.cols || y.len() != m.rows {
                return Err(KernelError::Shape {
                    what: "matmul_many operand",
                    rows: y.len(),
                    cols: x.cols(),
                    reason: "activations or output do not fit the matrix",
                });
            }
        }
        let token = TokenView::of(x, 0);
        let t1_planes: &[i8] = if matrices.iter().any(|m| m.packing == Packing::T1) {
            x.t1_planes().token(0)
        } else {
            &[]
        };
        let tuned = tuned_call(backend, 1, matrices);
        let (stream, prefetch) = (tuned.stream, tuned.stream.prefetch);
        let mut tasks: Vec<(&TernaryMatrix, f32, usize, &mut [f32])> = Vec::new();
        for ((m, ws), y) in matrices.iter().zip(scales).zip(outputs.iter_mut()) {
            let chunk = m.rows_per_task(1);
            for (ci, yc) in y.chunks_mut(chunk).enumerate() {
                tasks.push((m, ws * x.scale(0), ci * chunk, yc));
            }
        }
        tasks
            .into_par_iter()
            .for_each(|(m, f, r0, yc)| match m.packing {
                Packing::I2 => m.gemv_rows(backend, stream, &token, f, r0, yc),
                Packing::T1 => crate::t1::gemv_rows(
                    m.t1_rows(),
                    backend,
                    t1_planes,
                    token.sum,
                    f,
                    prefetch,
                    r0,
                    yc,
                ),
            });
        tuned.finish();
        Ok(())
    }

    /// Quantizes `x` (`[tokens, cols]` f32) per token and multiplies: the BitLinear forward pass.
    pub fn forward_f32(&self, x: &[f32], tokens: usize) -> Result<Vec<f32>> {
        let q = QuantizedActivations::quantize(x, tokens, self.cols)?;
        let mut y = vec![0.0; tokens * self.rows];
        self.matmul(&q, &mut y)?;
        Ok(y)
    }
}

/// A single-token product timed for [`crate::tune`]: the I2 products whose speed the tuner's
/// settings change, on the SIMD backends that read them. Anything else runs untimed.
struct TunedCall {
    stream: crate::tune::Setting,
    ticket: Option<(crate::tune::Ticket, std::time::Instant)>,
}

fn tuned_call(backend: Backend, tokens: usize, matrices: &[&TernaryMatrix]) -> TunedCall {
    let tuned = tokens == 1
        && matches!(backend.vector(), Backend::Avx2 | Backend::Avx512Vnni)
        && matrices.iter().all(|m| m.packing == Packing::I2);
    if !tuned {
        return TunedCall {
            stream: crate::tune::current(),
            ticket: None,
        };
    }
    let (stream, ticket) = crate::tune::begin(matrices.iter().map(|m| m.codes.len()).sum());
    TunedCall {
        stream,
        ticket: ticket.map(|t| (t, std::time::Instant::now())),
    }
}

impl TunedCall {
    fn finish(self) {
        if let Some((ticket, start)) = self.ticket {
            crate::tune::finish(ticket, start.elapsed());
        }
    }
}
