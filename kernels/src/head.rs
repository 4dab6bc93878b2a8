//! The output head: `logits = E · h` for the tied embedding `E` (`[vocab, hidden]`).
//!
//! In BitNet b1.58 2B-4T the head is a bf16 128256×2560 matrix: 657 MB, more bytes per token
//! than all thirty ternary layers together (≈ 410 MB of I2 codes). Decoding is bandwidth-bound,
//! so the head's storage format sets a large part of the time per token. [`HeadMatrix`] keeps
//! the head in one of four formats ([`HeadPrecision`]) and multiplies it by an f32 hidden state:
//!
//! | format  | bytes/weight | weight error (per element)                                         |
//! |---------|--------------|--------------------------------------------------------------------|
//! | `bf16`  | 2            | none for bf16 weights (f32 input: round to nearest even, ≤ 2⁻⁸·|w|) |
//! | `int8`  | 1 (+4/row)   | ≤ s/2, s = max|row|/127                                            |
//! | `q6`    | 26/32        | ≤ d/2, d = max|block of 32|/31 rounded up to bf16 (≤ 1.008·that)   |
//! | `q4`    | 18/32        | ≤ d/2, d = max|block of 32|/7 rounded up to bf16                   |
//!
//! Every weight is decoded to an f32 value *exactly* (a bf16 scale times a small integer fits in
//! f32's mantissa; int8 rows apply their f32 scale once, after the sum), then multiplied by the
//! hidden state with fused multiply-adds in one fixed order: sixteen partial sums, column `c`
//! into sum `c mod 16` in increasing `c`, folded in halves (16 → 8 → 4 → 2 → 1). Every backend
//! follows that order, so scalar, AVX2 and AVX-512 give bit-identical logits, and the property
//! tests hold them to it. (No NEON path yet: AArch64 runs the scalar reference.)
//!
//! # How the engine will use it
//! At load the engine builds `HeadMatrix::from_f32(vocab, hidden, &embedding, precision)` from
//! the tied embedding once, the precision coming from a `--head-precision` flag parsed with
//! [`HeadPrecision::from_str`](std::str::FromStr) (default `bf16`, which is lossless for the
//! 2B-4T checkpoint). The embedding *lookup* keeps reading the original rows (it touches one row
//! per token); each decode step then calls [`HeadMatrix::gemv`] on the final normed hidden
//! state, inside the engine's rayon pool, writing the logits in place. Smaller formats trade a
//! bounded weight error (table above) for proportionally fewer bytes per token.

use crate::backend::Backend;
use crate::error::{KernelError, Result};
use crate::mem::WeightBytes;
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;

/// Columns per quantization block (Q4, Q6) and the padding unit of every format's rows.
pub const HEAD_BLOCK: usize = 32;

/// How the head's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadPrecision {
    /// bfloat16: the checkpoint's own format, lossless for it.
    Bf16,
    /// int8 with one f32 scale per row (absmax / 127).
    Int8,
    /// 6-bit signed integers (−31..=31) with a bf16 scale per 32 weights.
    Q6,
    /// 4-bit signed integers (−7..=7) with a bf16 scale per 32 weights.
    Q4,
}

impl HeadPrecision {
    pub const ALL: [HeadPrecision; 4] = [
        HeadPrecision::Bf16,
        HeadPrecision::Int8,
        HeadPrecision::Q6,
        HeadPrecision::Q4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HeadPrecision::Bf16 => "bf16",
            HeadPrecision::Int8 => "int8",
            HeadPrecision::Q6 => "q6",
            HeadPrecision::Q4 => "q4",
        }
    }

    /// Stored bytes per block of [`HEAD_BLOCK`] weights (int8's per-row scale not included).
    fn block_bytes(self) -> usize {
        match self {
            HeadPrecision::Bf16 => 64,
            HeadPrecision::Int8 => 32,
            HeadPrecision::Q6 => 26,
            HeadPrecision::Q4 => 18,
        }
    }

    /// Largest stored integer magnitude of the block formats.
    fn qmax(self) -> f32 {
        match self {
            HeadPrecision::Q6 => 31.0,
            HeadPrecision::Q4 => 7.0,
            _ => 127.0,
        }
    }
}

impl fmt::Display for HeadPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadPrecision {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bf16" => Ok(HeadPrecision::Bf16),
            "int8" | "i8" | "q8" => Ok(HeadPrecision::Int8),
            "q6" => Ok(HeadPrecision::Q6),
            "q4" => Ok(HeadPrecision::Q4),
            _ => Err(KernelError::UnknownHeadPrecision(s.to_string())),
        }
    }
}

/// f32 → bf16, rounding to nearest even (NaN stays NaN).
pub fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// f32 → bf16, rounding up in magnitude for positive values: a scale that never shrinks, so
/// `|w| / scale` stays within the integer range.
fn f32_to_bf16_up(v: f32) -> u16 {
    let b = f32_to_bf16(v);
    if bf16_to_f32(b) < v {
        b + 1
    } else {
        b
    }
}

/// bf16 → f32, exact.
#[inline]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// A `[rows, cols]` output-head matrix in one of the [`HeadPrecision`] formats.
///
/// Rows are padded with zeros to whole blocks of [`HEAD_BLOCK`] columns. Per row, blocks of
/// 32 columns are stored one after another:
/// * bf16: 32 little-endian bf16 values;
/// * int8: 32 signed bytes (the row's f32 scale lives in a separate array);
/// * q4: a bf16 scale `d`, then 16 bytes whose low nibble is column `b` and high nibble column
///   `b + 16`, each `q + 8`;
/// * q6: a bf16 scale, then the low four bits of `q + 32` as in q4, then 8 bytes whose bit pair
///   `i` of byte `b` is the high two bits of column `b + 8i`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMatrix {
    rows: usize,
    cols: usize,
    precision: HeadPrecision,
    blocks: usize,
    data: WeightBytes,
    row_scales: Vec<f32>,
}

impl HeadMatrix {
    /// Converts row-major f32 weights. Errors on a bad shape or a non-finite weight.
    pub fn from_f32(
        rows: usize,
        cols: usize,
        data: &[f32],
        precision: HeadPrecision,
    ) -> Result<Self> {
        crate::pack::check_matrix("head matrix", data.len(), rows, cols)?;
        Self::from_rows(rows, cols, precision, |r, out| {
            out.copy_from_slice(&data[r * cols..(r + 1) * cols])
        })
    }

    /// Converts a matrix given row by row: `row(r, out)` writes row `r` (`cols` values) into
    /// `out`. Rows are converted in parallel on the current rayon pool, and only one row per
    /// thread is ever held in f32, so a 2B-parameter model's bf16 head (657 MB) converts without
    /// a 1.3 GB f32 copy. Errors on a non-finite weight.
    pub fn from_rows(
        rows: usize,
        cols: usize,
        precision: HeadPrecision,
        row: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Result<Self> {
        let blocks = cols.div_ceil(HEAD_BLOCK);
        let stride = blocks * precision.block_bytes();
        let mut out = WeightBytes::zeroed(rows * stride);
        let mut row_scales = vec![1.0f32; rows];
        if stride > 0 {
            out.par_chunks_mut(stride)
                .zip(row_scales.par_iter_mut())
                .enumerate()
                .try_for_each_init(
                    || vec![0.0f32; blocks * HEAD_BLOCK],
                    |padded, (r, (dst, scale))| {
                        row(r, &mut padded[..cols]);
                        if let Some(c) = padded[..cols].iter().position(|v| !v.is_finite()) {
                            return Err(KernelError::NonFinite {
                                what: "head weights",
                                index: r * cols + c,
                                value: padded[c],
                            });
                        }
                        *scale = encode_row(precision, padded, dst);
                        Ok(())
                    },
                )?;
        }
        if precision != HeadPrecision::Int8 {
            row_scales = Vec::new();
        }
        Ok(Self {
            rows,
            cols,
            precision,
            blocks,
            data: out,
            row_scales,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn precision(&self) -> HeadPrecision {
        self.precision
    }
    /// Bytes streamed per product: the stored blocks plus int8's row scales.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.row_scales.len()
    }

    fn stride(&self) -> usize {
        self.blocks * self.precision.block_bytes()
    }

    /// The weights as the kernels see them (decoded exactly), row-major `[rows, cols]`: what
    /// [`gemv`](Self::gemv) multiplies by, for error measurements.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        let mut row = vec![0.0f32; self.blocks * HEAD_BLOCK];
        for r in 0..self.rows {
            decode_row(
                self.precision,
                &self.data[r * self.stride()..][..self.stride()],
                &mut row,
            );
            let s = self.row_scales.get(r).copied().unwrap_or(1.0);
            out.extend(row[..self.cols].iter().map(|v| v * s));
        }
        out
    }

    /// `out = W · x` with the active backend, the rows split into `threads` parts (0: as many
    /// as the current rayon pool has threads) that run on the current rayon pool.
    pub fn gemv(&self, x: &[f32], out: &mut [f32], threads: usize) -> Result<()> {
        self.gemv_with(Backend::active(), x, out, threads)
    }

    /// [`gemv`](Self::gemv) on a chosen backend (tests compare backends this way).
    pub fn gemv_with(
        &self,
        backend: Backend,
        x: &[f32],
        out: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        backend.ensure_supported()?;
        if x.len() != self.cols {
            return Err(KernelError::Length {
                what: "head input",
                expected: self.cols,
                actual: x.len(),
            });
        }
        if out.len() != self.rows {
            return Err(KernelError::Length {
                what: "head output",
                expected: self.rows,
                actual: out.len(),
            });
        }
        let mut xp = vec![0.0f32; self.blocks * HEAD_BLOCK];
        xp[..self.cols].copy_from_slice(x);
        let threads = if threads == 0 {
            rayon::current_num_threads()
        } else {
            threads
        };
        let stride = self.stride();
        let run = |r0: usize, ys: &mut [f32]| {
            let bytes = &self.data[r0 * stride..(r0 + ys.len()) * stride];
            rows_dot(backend, self.precision, bytes, stride, &xp, ys);
            if self.precision == HeadPrecision::Int8 {
                for (y, s) in ys.iter_mut().zip(&self.row_scales[r0..]) {
                    *y *= s;
                }
            }
        };
        if threads <= 1 || self.rows < 64 {
            run(0, out);
        } else {
            // A few tasks per thread so that a thread slowed by a neighbour hands work over.
            let chunk = self.rows.div_ceil(threads * 4).next_multiple_of(4);
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, ys)| run(i * chunk, ys));
        }
        Ok(())
    }
}

impl HeadMatrix {
    /// `out[t] = W · x[t]` for `tokens` rows of `x` (`out` is `[tokens, rows]`): the prompt's
    /// logits. Each band of rows is read from memory once and multiplied by every token while it
    /// is in cache, with the same per-row product as [`gemv`](Self::gemv), so row `t` of the
    /// result is bit-identical to a one-token product of `x[t]`.
    pub fn gemm(&self, x: &[f32], tokens: usize, out: &mut [f32]) -> Result<()> {
        self.gemm_with(Backend::active(), x, tokens, out)
    }

    /// [`gemm`](Self::gemm) on a chosen backend.
    pub fn gemm_with(
        &self,
        backend: Backend,
        x: &[f32],
        tokens: usize,
        out: &mut [f32],
    ) -> Result<()> {
        backend.ensure_supported()?;
        if x.len() != tokens * self.cols {
            return Err(KernelError::Length {
                what: "head input",
                expected: tokens * self.cols,
                actual: x.len(),
            });
        }
        if out.len() != tokens * self.rows {
            return Err(KernelError::Length {
                what: "head output",
                expected: tokens * self.rows,
                actual: out.len(),
            });
        }
        if tokens == 0 || self.rows == 0 {
            return Ok(());
        }
        let padded = self.blocks * HEAD_BLOCK;
        let mut xp = vec![0.0f32; tokens * padded];
        for (dst, src) in xp.chunks_exact_mut(padded).zip(x.chunks_exact(self.cols)) {
            dst[..self.cols].copy_from_slice(src);
        }
        let stride = self.stride();
        // A band of rows small enough to stay in the core's L2 cache (≤ 128 KiB) while every
        // token passes over it.
        let band = (128 * 1024 / stride.max(1)).clamp(4, 256);
        let bands: Vec<(usize, Vec<f32>)> = (0..self.rows)
            .step_by(band)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|r0| {
                let n = band.min(self.rows - r0);
                let bytes = &self.data[r0 * stride..(r0 + n) * stride];
                let mut ys = vec![0.0f32; tokens * n];
                for (xt, yt) in xp.chunks_exact(padded).zip(ys.chunks_exact_mut(n)) {
                    rows_dot(backend, self.precision, bytes, stride, xt, yt);
                    if self.precision == HeadPrecision::Int8 {
                        for (y, s) in yt.iter_mut().zip(&self.row_scales[r0..]) {
                            *y *= s;
                        }
                    }
                }
                (r0, ys)
            })
            .collect();
        for (r0, ys) in bands {
            let n = ys.len() / tokens;
            for (t, yt) in ys.chunks_exact(n).enumerate() {
                out[t * self.rows + r0..][..n].copy_from_slice(yt);
            }
        }
        Ok(())
    }
}

/// Encodes one zero-padded row into `dst`; returns the row's scale (int8; 1 otherwise).
fn encode_row(precision: HeadPrecision, padded: &[f32], dst: &mut [u8]) -> f32 {
    if precision == HeadPrecision::Int8 {
        let absmax = padded.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
        for (d, &v) in dst.iter_mut().zip(padded) {
            *d = (v / scale).round().clamp(-127.0, 127.0) as i8 as u8;
        }
        return scale;
    }
    for (src, blk) in padded
        .chunks_exact(HEAD_BLOCK)
        .zip(dst.chunks_exact_mut(precision.block_bytes()))
    {
        encode_block(precision, src, blk);
    }
    1.0
}

fn encode_block(precision: HeadPrecision, src: &[f32], blk: &mut [u8]) {
    if precision == HeadPrecision::Bf16 {
        for (v, d) in src.iter().zip(blk.chunks_exact_mut(2)) {
            d.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
        }
        return;
    }
    let qmax = precision.qmax();
    let absmax = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = if absmax > 0.0 {
        f32_to_bf16_up(absmax / qmax)
    } else {
        0
    };
    let df = bf16_to_f32(d);
    let q = |c: usize| -> i32 {
        if df > 0.0 {
            (src[c] / df).round().clamp(-qmax, qmax) as i32
        } else {
            0
        }
    };
    blk[..2].copy_from_slice(&d.to_le_bytes());
    let bias = if precision == HeadPrecision::Q4 {
        8
    } else {
        32
    };
    let code = |c: usize| (q(c) + bias) as u8;
    for b in 0..16 {
        blk[2 + b] = (code(b) & 15) | ((code(b + 16) & 15) << 4);
    }
    if precision == HeadPrecision::Q6 {
        for b in 0..8 {
            let mut h = 0u8;
            for i in 0..4 {
                h |= (code(b + 8 * i) >> 4) << (2 * i);
            }
            blk[18 + b] = h;
        }
    }
}

/// The exact f32 value of every weight of one stored row (before int8's row scale).
fn decode_row(precision: HeadPrecision, row: &[u8], out: &mut [f32]) {
    for (blk, o) in row
        .chunks_exact(precision.block_bytes())
        .zip(out.chunks_exact_mut(HEAD_BLOCK))
    {
        match precision {
            HeadPrecision::Bf16 => {
                for (v, b) in o.iter_mut().zip(blk.chunks_exact(2)) {
                    *v = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            HeadPrecision::Int8 => {
                for (v, &b) in o.iter_mut().zip(blk) {
                    *v = b as i8 as f32;
                }
            }
            HeadPrecision::Q4 | HeadPrecision::Q6 => {
                let d = bf16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                for (c, v) in o.iter_mut().enumerate() {
                    let nib = (blk[2 + c % 16] >> (4 * (c / 16))) & 15;
                    let q = if precision == HeadPrecision::Q4 {
                        nib as i32 - 8
                    } else {
                        let high = (blk[18 + c % 8] >> (2 * (c / 8))) & 3;
                        (nib | (high << 4)) as i32 - 32
                    };
                    // Exact: a bf16 (8 significant bits) times |q| ≤ 32 (6 bits) fits in 24.
                    *v = d * q as f32;
                }
            }
        }
    }
}

/// Σ w·x per row in the canonical order (module docs); `x` padded to whole blocks.
fn rows_dot(
    backend: Backend,
    precision: HeadPrecision,
    bytes: &[u8],
    stride: usize,
    x: &[f32],
    out: &mut [f32],
) {
    assert_eq!(
        bytes.len(),
        out.len() * stride,
        "head rows and outputs disagree"
    );
    assert_eq!(
        x.len() / HEAD_BLOCK * precision.block_bytes(),
        stride,
        "head input is not one padded row long"
    );
    // The backends' feature sets do not promise FMA (every AVX-512 CPU has it, but AVX2 alone
    // does not imply it), so it is checked here; without it the reference runs.
    #[cfg(target_arch = "x86_64")]
    let fma = is_x86_feature_detected!("fma");
    match backend.vector() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the backend was checked to be supported by this CPU (gemv_with), FMA just
        // above, and the shapes were asserted above.
        Backend::Avx512Vnni if fma => unsafe {
            head_x86::rows_avx512(precision, bytes, stride, x, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Backend::Avx2 if fma => unsafe { head_x86::rows_avx2(precision, bytes, stride, x, out) },
        _ => rows_scalar(precision, bytes, stride, x, out),
    }
}

/// The reference: decode a row exactly, 16 fused multiply-add chains, fold in halves.
fn rows_scalar(precision: HeadPrecision, bytes: &[u8], stride: usize, x: &[f32], out: &mut [f32]) {
    let mut w = vec![0.0f32; x.len()];
    for (row, o) in bytes.chunks_exact(stride).zip(out.iter_mut()) {
        decode_row(precision, row, &mut w);
        let mut s = [0.0f32; 16];
        for (wc, xc) in w.chunks_exact(16).zip(x.chunks_exact(16)) {
            for j in 0..16 {
                s[j] = wc[j].mul_add(xc[j], s[j]);
            }
        }
        *o = fold16(s);
    }
}

/// The canonical fold of sixteen partial sums: 16 → 8 → 4 → 2 → 1, adding the upper half.
#[inline]
pub(crate) fn fold16(s: [f32; 16]) -> f32 {
    let mut v = s;
    let mut n = 16;
    while n > 1 {
        n /= 2;
        for j in 0..n {
            v[j] += v[j + n];
        }
    }
    v[0]
}

#[cfg(target_arch = "x86_64")]
mod head_x86 {
    //! The decoders produce, per 32-column block, two vectors of 16 exact f32 weights (columns
    //! 0..16 and 16..32); AVX2 holds each as two 8-lane halves. Rows are interleaved so that one
    //! load of the input serves several rows and independent FMA chains hide the latency: four
    //! with AVX-512's 32 registers, two with AVX2's 16 (four rows would need all 16 for the
    //! accumulators, the input and the weights, and spill).

    use super::HeadPrecision;
    use std::arch::x86_64::*;

    /// The two 16-weight halves of block `b` of a row starting at `row`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn decode512(p: HeadPrecision, row: *const u8, b: usize) -> [__m512; 2] {
        match p {
            HeadPrecision::Bf16 => {
                let ptr = row.add(b * 64);
                let lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(ptr as *const __m256i));
                let hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(ptr.add(32) as *const __m256i));
                [
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(lo)),
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(hi)),
                ]
            }
            HeadPrecision::Int8 => {
                let ptr = row.add(b * 32);
                let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(ptr as *const __m128i));
                let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(ptr.add(16) as *const __m128i));
                [_mm512_cvtepi32_ps(lo), _mm512_cvtepi32_ps(hi)]
            }
            HeadPrecision::Q4 => {
                // The sixteen possible weights d·(code − 8) in one register, and `vpermps`
                // (which reads only an index's low four bits) as the decoder: no masking, no
                // integer-to-float conversion. Each entry is the same exact product as below.
                let ptr = row.add(b * 18);
                let d = _mm512_castsi512_ps(_mm512_set1_epi32(
                    ((ptr as *const u16).read_unaligned() as i32) << 16,
                ));
                let values = _mm512_setr_ps(
                    -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0,
                    6.0, 7.0,
                );
                let table = _mm512_mul_ps(d, values);
                let nib = _mm512_cvtepu8_epi32(_mm_loadu_si128(ptr.add(2) as *const __m128i));
                [
                    _mm512_permutexvar_ps(nib, table),
                    _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(nib), table),
                ]
            }
            HeadPrecision::Q6 => {
                let ptr = row.add(b * p.block_bytes());
                let d = _mm512_castsi512_ps(_mm512_set1_epi32(
                    ((ptr as *const u16).read_unaligned() as i32) << 16,
                ));
                let nib = _mm512_cvtepu8_epi32(_mm_loadu_si128(ptr.add(2) as *const __m128i));
                let fifteen = _mm512_set1_epi32(15);
                let mut lo = _mm512_and_si512(nib, fifteen);
                let mut hi = _mm512_srli_epi32::<4>(nib);
                let bias = if p == HeadPrecision::Q4 {
                    _mm512_set1_epi32(8)
                } else {
                    let h = (ptr.add(18) as *const i64).read_unaligned();
                    let hv = _mm512_cvtepu8_epi32(_mm_set1_epi64x(h));
                    let three = _mm512_set1_epi32(3);
                    // Lanes 0..8 take bit pair 0 (lo) or 2 (hi), lanes 8..16 pair 1 or 3.
                    let sh_lo = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
                    let sh_hi = _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4);
                    let h_lo = _mm512_and_si512(_mm512_srlv_epi32(hv, sh_lo), three);
                    let h_hi = _mm512_and_si512(_mm512_srlv_epi32(hv, sh_hi), three);
                    lo = _mm512_or_si512(lo, _mm512_slli_epi32::<4>(h_lo));
                    hi = _mm512_or_si512(hi, _mm512_slli_epi32::<4>(h_hi));
                    _mm512_set1_epi32(32)
                };
                [
                    _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, bias))),
                    _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, bias))),
                ]
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    fn fold512(v: __m512) -> f32 {
        let v8 = _mm256_add_ps(
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        );
        fold256(v8)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fold256(v8: __m256) -> f32 {
        let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
        let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
        let v1 = _mm_add_ss(v2, _mm_shuffle_ps::<0b01>(v2, v2));
        _mm_cvtss_f32(v1)
    }

    /// # Safety
    /// AVX-512 F/BW/VL and FMA; `bytes` holds `out.len()` rows of `stride` bytes and `x` one
    /// padded row (checked by the caller).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    pub(super) unsafe fn rows_avx512(
        p: HeadPrecision,
        bytes: &[u8],
        stride: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        // One copy of the loop per format, so the decoder's `match` folds away.
        match p {
            HeadPrecision::Bf16 => rows512::<0>(bytes, stride, x, out),
            HeadPrecision::Int8 => rows512::<1>(bytes, stride, x, out),
            HeadPrecision::Q6 => rows512::<2>(bytes, stride, x, out),
            HeadPrecision::Q4 => rows512::<3>(bytes, stride, x, out),
        }
    }

    const fn precision<const P: u8>() -> HeadPrecision {
        match P {
            0 => HeadPrecision::Bf16,
            1 => HeadPrecision::Int8,
            2 => HeadPrecision::Q6,
            _ => HeadPrecision::Q4,
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn rows512<const P: u8>(bytes: &[u8], stride: usize, x: &[f32], out: &mut [f32]) {
        let prefetch = crate::backend::prefetch_distance();
        let mut r = 0;
        while r + 4 <= out.len() {
            let res = tile512::<P, 4>(bytes.as_ptr().add(r * stride), stride, x, prefetch);
            out[r..r + 4].copy_from_slice(&res);
            r += 4;
        }
        while r < out.len() {
            out[r] = tile512::<P, 1>(bytes.as_ptr().add(r * stride), stride, x, prefetch)[0];
            r += 1;
        }
    }

    /// `R` consecutive rows from `rows`: their canonical sums.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn tile512<const P: u8, const R: usize>(
        rows: *const u8,
        stride: usize,
        x: &[f32],
        prefetch: usize,
    ) -> [f32; R] {
        let p = const { precision::<P>() };
        let blocks = x.len() / 32;
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let x0 = _mm512_loadu_ps(x.as_ptr().add(32 * b));
            let x1 = _mm512_loadu_ps(x.as_ptr().add(32 * b + 16));
            for (i, a) in acc.iter_mut().enumerate() {
                let row = rows.add(i * stride);
                let at = row.add(b * p.block_bytes());
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(prefetch) as *const i8);
                let [w0, w1] = decode512(p, row, b);
                *a = _mm512_fmadd_ps(w1, x1, _mm512_fmadd_ps(w0, x0, *a));
            }
        }
        acc.map(|a| fold512(a))
    }

    /// Eight bf16 weights from `ptr` as f32 (exact: bf16 is f32's upper half).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn bf16x8(ptr: *const u8) -> __m256 {
        let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(ptr as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
    }

    /// Eight int8 weights from `ptr` as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn i8x8(ptr: *const u8) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(ptr as *const __m128i)))
    }

    /// The two halves of each 16-weight vector of [`decode512`], on 256-bit vectors. Written
    /// out without closures: a closure (as `array::from_fn` or `map` take) does not carry this
    /// function's target features, and the intrinsics in it would become calls.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn decode256(p: HeadPrecision, row: *const u8, b: usize) -> [__m256; 4] {
        match p {
            HeadPrecision::Bf16 => {
                let ptr = row.add(b * 64);
                [
                    bf16x8(ptr),
                    bf16x8(ptr.add(16)),
                    bf16x8(ptr.add(32)),
                    bf16x8(ptr.add(48)),
                ]
            }
            HeadPrecision::Int8 => {
                let ptr = row.add(b * 32);
                [
                    i8x8(ptr),
                    i8x8(ptr.add(8)),
                    i8x8(ptr.add(16)),
                    i8x8(ptr.add(24)),
                ]
            }
            HeadPrecision::Q4 | HeadPrecision::Q6 => {
                let ptr = row.add(b * p.block_bytes());
                let d = _mm256_castsi256_ps(_mm256_set1_epi32(
                    ((ptr as *const u16).read_unaligned() as i32) << 16,
                ));
                let fifteen = _mm256_set1_epi32(15);
                let n0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(ptr.add(2) as *const __m128i));
                let n1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(ptr.add(10) as *const __m128i));
                // Columns 0..8, 8..16 (low nibbles), 16..24, 24..32 (high nibbles).
                let mut c = [
                    _mm256_and_si256(n0, fifteen),
                    _mm256_and_si256(n1, fifteen),
                    _mm256_srli_epi32::<4>(n0),
                    _mm256_srli_epi32::<4>(n1),
                ];
                let bias = if p == HeadPrecision::Q4 {
                    _mm256_set1_epi32(8)
                } else {
                    let hv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(ptr.add(18) as *const __m128i));
                    let three = _mm256_set1_epi32(3);
                    for (i, ci) in c.iter_mut().enumerate() {
                        let h = _mm256_and_si256(
                            _mm256_srlv_epi32(hv, _mm256_set1_epi32(2 * i as i32)),
                            three,
                        );
                        *ci = _mm256_or_si256(*ci, _mm256_slli_epi32::<4>(h));
                    }
                    _mm256_set1_epi32(32)
                };
                let [c0, c1, c2, c3] = c;
                [
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(c0, bias))),
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(c1, bias))),
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(c2, bias))),
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(c3, bias))),
                ]
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA; shapes as for [`rows_avx512`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2(
        p: HeadPrecision,
        bytes: &[u8],
        stride: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        match p {
            HeadPrecision::Bf16 => rows256::<0>(bytes, stride, x, out),
            HeadPrecision::Int8 => rows256::<1>(bytes, stride, x, out),
            HeadPrecision::Q6 => rows256::<2>(bytes, stride, x, out),
            HeadPrecision::Q4 => rows256::<3>(bytes, stride, x, out),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows256<const P: u8>(bytes: &[u8], stride: usize, x: &[f32], out: &mut [f32]) {
        let prefetch = crate::backend::prefetch_distance();
        let mut r = 0;
        while r + 2 <= out.len() {
            let res = tile256::<P, 2>(bytes.as_ptr().add(r * stride), stride, x, prefetch);
            out[r..r + 2].copy_from_slice(&res);
            r += 2;
        }
        while r < out.len() {
            out[r] = tile256::<P, 1>(bytes.as_ptr().add(r * stride), stride, x, prefetch)[0];
            r += 1;
        }
    }

    /// `R` consecutive rows from `rows`: their canonical sums. Each row keeps the sixteen
    /// canonical partial sums as two 8-lane halves (`lo`: columns 0..8 of each 16, `hi`: 8..16),
    /// so the result is the scalar reference's to the bit.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile256<const P: u8, const R: usize>(
        rows: *const u8,
        stride: usize,
        x: &[f32],
        prefetch: usize,
    ) -> [f32; R] {
        let p = const { precision::<P>() };
        let blocks = x.len() / 32;
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let xp = x.as_ptr().add(32 * b);
            let xs = [
                _mm256_loadu_ps(xp),
                _mm256_loadu_ps(xp.add(8)),
                _mm256_loadu_ps(xp.add(16)),
                _mm256_loadu_ps(xp.add(24)),
            ];
            for i in 0..R {
                let row = rows.add(i * stride);
                let at = row.add(b * p.block_bytes());
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(prefetch) as *const i8);
                let w = decode256(p, row, b);
                lo[i] = _mm256_fmadd_ps(w[0], xs[0], lo[i]);
                hi[i] = _mm256_fmadd_ps(w[1], xs[1], hi[i]);
                lo[i] = _mm256_fmadd_ps(w[2], xs[2], lo[i]);
                hi[i] = _mm256_fmadd_ps(w[3], xs[3], hi[i]);
            }
        }
        let mut sums = [0.0f32; R];
        for i in 0..R {
            sums[i] = fold256(_mm256_add_ps(lo[i], hi[i]));
        }
        sums
    }
}
