//! The T1 packing of [`TernaryMatrix`](crate::TernaryMatrix): base 3, five trits per byte, 1.6
//! bits per trit.
//!
//! T1 streams 20% fewer bytes than I2, which is what decoding is bound by, but its digits do not
//! line up with vector lanes. On AVX-512 with VBMI the bytes are decoded in registers: two
//! 256-entry byte look-ups (byte permutes) turn 64 bytes into the codes of 320 weights — four
//! digits as one I2 byte, plus the fifth — which meet activations regrouped by digit
//! ([`QuantizedActivations::t1_planes`]). Every other backend uses a per-token look-up table:
//! for every run of five activations the 243 possible partial sums Σ tᵢ·qᵢ are computed once,
//! and each weight byte becomes one table load and one add.
//!
//! # Layout
//! Row `r` is the T1 encoding of its trits ([`crate::pack::pack_t1`]: byte `j` holds columns
//! `5j..5j+5`, digit `i` = trit + 1 of column `5j+i`). Rows are padded with [`ZERO_BYTE`] to a
//! [`ROW_ALIGN`]-byte stride when that costs at most 1/32 of a row (every row of a real model's
//! shape then starts on a cache line), and left unpadded otherwise (narrow rows, where padding
//! would undo T1's saving); the kernels mask the last, partial chunk of an unpadded row.
//! Padding decodes to zero trits and meets zero activations.

use crate::backend::Backend;
use crate::error::{KernelError, Result};
use crate::mem::WeightBytes;
use crate::pack::{t1_len, T1_DECODE};
use crate::quant::QuantizedActivations;
use crate::trit::validate_trits;
use rayon::prelude::*;

/// Row stride multiple: one cache line, one 512-bit load.
pub(crate) const ROW_ALIGN: usize = 64;

/// Columns one [`ROW_ALIGN`]-byte chunk of a row holds.
pub(crate) const CHUNK_COLS: usize = 5 * ROW_ALIGN;

/// A byte of five zero trits (digit 1 each: 1 + 3 + 9 + 27 + 81).
pub(crate) const ZERO_BYTE: u8 = 121;

/// Bytes per row for `cols` columns: see the module's layout.
pub(crate) fn stride(cols: usize) -> usize {
    let bytes = t1_len(cols);
    let aligned = bytes.next_multiple_of(ROW_ALIGN);
    if (aligned - bytes) * 32 <= bytes {
        aligned
    } else {
        bytes
    }
}

/// Which bytes of chunk `c` of a `stride`-byte row exist (all 64 but in a partial last chunk).
#[cfg(target_arch = "x86_64")]
fn chunk_mask(stride: usize, c: usize) -> u64 {
    let len = (stride - ROW_ALIGN * c).min(ROW_ALIGN);
    if len == ROW_ALIGN {
        u64::MAX
    } else {
        (1u64 << len) - 1
    }
}

/// Packs a row-major trit matrix (already shape-checked) into rows of [`stride`] bytes.
pub(crate) fn pack_rows(trits: &[i8], rows: usize, cols: usize) -> Result<WeightBytes> {
    validate_trits(trits)?;
    let stride = stride(cols);
    let mut bytes = WeightBytes::filled(rows * stride, ZERO_BYTE);
    for (row, dst) in trits.chunks_exact(cols).zip(bytes.chunks_exact_mut(stride)) {
        pack_row(row, dst);
    }
    Ok(bytes)
}

/// Packs one row of valid trits into `dst` (at least `t1_len(row.len())` bytes).
pub(crate) fn pack_row(row: &[i8], dst: &mut [u8]) {
    for (five, byte) in row.chunks(5).zip(dst.iter_mut()) {
        // A short last run keeps the zero digits (1) of the padding.
        *byte = five
            .iter()
            .zip([1u8, 3, 9, 27, 81])
            .fold(ZERO_BYTE, |b, (&t, p)| b - p + (t + 1) as u8 * p);
    }
}

/// Writes one packed row's `out.len()` trits into `out`.
pub(crate) fn row_trits(row: &[u8], out: &mut [i8]) {
    for (five, &b) in out.chunks_mut(5).zip(row) {
        let digits = &T1_DECODE[b as usize];
        five.copy_from_slice(&digits[..five.len()]);
    }
}

/// (−1 count, +1 count) per byte value; padding and short runs hold zero trits.
pub(crate) fn neg_pos(bytes: &[u8]) -> (u64, u64) {
    static NEG_POS: [(u8, u8); 256] = {
        let mut table = [(0u8, 0u8); 256];
        let mut v = 0;
        while v < 243 {
            let (mut neg, mut pos, mut rest, mut i) = (0, 0, v, 0);
            while i < 5 {
                match rest % 3 {
                    0 => neg += 1,
                    2 => pos += 1,
                    _ => {}
                }
                rest /= 3;
                i += 1;
            }
            table[v] = (neg, pos);
            v += 1;
        }
        table
    };
    let (mut neg, mut pos) = (0u64, 0u64);
    for &b in bytes {
        let (n, p) = NEG_POS[b as usize];
        neg += n as u64;
        pos += p as u64;
    }
    (neg, pos)
}

/// Activations regrouped to meet T1 digits, one token's worth: for each chunk `c` of
/// [`CHUNK_COLS`] columns and digit `i`, the 64 values `x[320c + 5b + i]` for `b` in 0..64, zero
/// past the row's end.
pub(crate) fn digit_planes(x: &[i8], cols: usize, planes: &mut [i8]) {
    planes.fill(0);
    for (col, &v) in x[..cols].iter().enumerate() {
        let (c, within) = (col / CHUNK_COLS, col % CHUNK_COLS);
        let (b, i) = (within / 5, within % 5);
        planes[c * CHUNK_COLS + i * ROW_ALIGN + b] = v;
    }
}

/// Whether `backend` decodes T1 in registers on this CPU (else the look-up table runs).
pub(crate) fn decodes_in_registers(backend: Backend) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        backend == Backend::Avx512Vnni && vbmi::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = backend;
        false
    }
}

/// The matrix a product reads: rows of [`stride`] bytes.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub bytes: &'a [u8],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

/// `y[i] = factor · Σ trit[r0 + i]·q` for one token, for the rows `r0 .. r0 + y.len()`.
/// Only for a backend that [`decodes_in_registers`].
pub(crate) fn gemv_rows(
    m: Rows,
    planes: &[i8],
    sum: i32,
    factor: f32,
    prefetch: usize,
    r0: usize,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut acc = [0i32; 64];
        for (si, ys) in y.chunks_mut(64).enumerate() {
            let start = r0 + si * 64;
            let n = ys.len();
            let bytes = &m.bytes[start * m.stride..(start + n) * m.stride];
            vbmi::gemv(bytes, m.stride, planes, prefetch, &mut acc[..n]);
            for (o, &a) in ys.iter_mut().zip(&acc[..n]) {
                *o = (a - sum) as f32 * factor;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, planes, sum, factor, prefetch, r0, y);
        unreachable!("T1 is decoded in registers only on x86-64 AVX-512 VBMI");
    }
}

/// `y = ws · scale_x · (W · q)` for every token of `x` (`y` is `[tokens, rows]`), on the
/// current rayon pool. Shapes are checked by the caller.
pub(crate) fn matmul(
    m: Rows,
    backend: Backend,
    ws: f32,
    x: &QuantizedActivations,
    y: &mut [f32],
    rows_per_task: usize,
) {
    if decodes_in_registers(backend) {
        #[cfg(target_arch = "x86_64")]
        {
            let planes = x.t1_planes();
            let prefetch = crate::backend::prefetch_distance();
            if x.tokens() == 1 {
                let (p, sum, f) = (planes.token(0), x.sum(0), ws * x.scale(0));
                y.par_chunks_mut(rows_per_task)
                    .enumerate()
                    .for_each(|(ci, yc)| gemv_rows(m, p, sum, f, prefetch, ci * rows_per_task, yc));
                return;
            }
            matmul_tiles(m, ws, x, planes, y, rows_per_task);
            return;
        }
    }
    matmul_table(m, ws, x, y);
}

/// Several tokens on AVX-512 VBMI: each task decodes a range of rows once per group of tokens,
/// then scatters into `y` token-major.
#[cfg(target_arch = "x86_64")]
fn matmul_tiles(
    m: Rows,
    ws: f32,
    x: &QuantizedActivations,
    planes: &crate::quant::T1Planes,
    y: &mut [f32],
    rows_per_task: usize,
) {
    let ntok = x.tokens();
    let starts: Vec<usize> = (0..m.rows).step_by(rows_per_task).collect();
    let results: Vec<(usize, Vec<i32>)> = starts
        .into_par_iter()
        .map(|r0| {
            let rows = rows_per_task.min(m.rows - r0);
            let mut acc = vec![0i32; rows * ntok];
            let bytes = &m.bytes[r0 * m.stride..(r0 + rows) * m.stride];
            vbmi::dots(bytes, m.stride, planes, &mut acc);
            (r0, acc)
        })
        .collect();
    for (r0, acc) in results {
        let rows = acc.len() / ntok;
        for t in 0..ntok {
            let (sum, f) = (x.sum(t), ws * x.scale(t));
            let yt = &mut y[t * m.rows + r0..t * m.rows + r0 + rows];
            for (r, o) in yt.iter_mut().enumerate() {
                *o = (acc[r * ntok + t] - sum) as f32 * f;
            }
        }
    }
}

/// The portable product: a table of partial sums per token.
fn matmul_table(m: Rows, ws: f32, x: &QuantizedActivations, y: &mut [f32]) {
    let groups = t1_len(m.cols);
    let mut table = Vec::new();
    for t in 0..x.tokens() {
        partial_sums(x.token(t), groups, &mut table);
        let factor = ws * x.scale(t);
        let yt = &mut y[t * m.rows..(t + 1) * m.rows];
        let table = &table;
        yt.par_chunks_mut(256).enumerate().for_each(|(ci, yc)| {
            for (i, o) in yc.iter_mut().enumerate() {
                let r = ci * 256 + i;
                let row = &m.bytes[r * m.stride..r * m.stride + groups];
                let dot: i32 = row
                    .iter()
                    .zip(table.chunks_exact(243))
                    .map(|(&b, sums)| sums[b as usize] as i32)
                    .sum();
                *o = dot as f32 * factor;
            }
        });
    }
}

/// For each run `g` of five activations, `table[g·243 + v]` = Σᵢ tᵢ(v)·q[5g+i], where `tᵢ(v)` is
/// digit `i` of `v` in base 3, minus one. Built digit by digit: 3 + 9 + 27 + 81 + 243 adds a run.
/// |sum| ≤ 5·128 fits an i16, which halves the table's cache footprint.
fn partial_sums(x: &[i8], groups: usize, table: &mut Vec<i16>) {
    table.clear();
    table.resize(groups * 243, 0);
    for (g, sums) in table.chunks_exact_mut(243).enumerate() {
        let q = |i: usize| x.get(5 * g + i).copied().unwrap_or(0) as i16;
        sums[0] = 0;
        let mut len = 1;
        for i in 0..5 {
            let qi = q(i);
            // Entries v + len·d for digit d in {0, 1, 2}, i.e. trit d − 1; go high to low so the
            // d = 0 entries overwrite the sources last.
            for d in (0..3).rev() {
                let add = (d as i16 - 1) * qi;
                for v in 0..len {
                    sums[v + len * d] = sums[v] + add;
                }
            }
            len *= 3;
        }
    }
}

/// Checks a T1 matrix's shape against the kernels' limits.
pub(crate) fn check_cols(rows: usize, cols: usize) -> Result<()> {
    if cols > crate::matrix::MAX_COLS {
        return Err(KernelError::Shape {
            what: "T1 matrix",
            rows,
            cols,
            reason: "more than 2^20 columns would overflow the kernels' i32 lanes",
        });
    }
    Ok(())
}

/// T1 decoding with byte permutes, two look-ups per byte.
///
/// A byte `v` < 243 holds five base-3 digits `d0..d4` (`v = Σ dᵢ·3ⁱ`). One 256-entry table maps
/// `v` to its first four digits as 2-bit fields — `d0 | d1<<2 | d2<<4 | d3<<6`, exactly an I2
/// byte — and a second one to `d4`. A 256-entry look-up is two `vpermt2b` (128 entries each)
/// and a blend on the top bit. Σ code·q − Σ q is Σ trit·q, as in the I2 kernels.
#[cfg(target_arch = "x86_64")]
mod vbmi {
    use crate::quant::T1Planes;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        static VBMI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VBMI.get_or_init(|| {
            crate::backend::Backend::Avx512Vnni.is_supported()
                && is_x86_feature_detected!("avx512vbmi")
        })
    }

    /// `LOW4[v]` = digits 0..4 of `v` as 2-bit fields, `HIGH[v]` = digit 4; past 242 (never a
    /// valid T1 byte) both mean trit 0 everywhere.
    static TABLES: ([u8; 256], [u8; 256]) = {
        let mut low = [0x55u8; 256];
        let mut high = [1u8; 256];
        let mut v = 0;
        while v < 243 {
            let mut rest = v;
            let mut fields = 0u8;
            let mut i = 0;
            while i < 4 {
                fields |= ((rest % 3) as u8) << (2 * i);
                rest /= 3;
                i += 1;
            }
            low[v] = fields;
            high[v] = rest as u8;
            v += 1;
        }
        (low, high)
    };

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn table(t: &[u8; 256]) -> [__m512i; 4] {
        std::array::from_fn(|k| _mm512_loadu_si512(t.as_ptr().add(64 * k) as *const __m512i))
    }

    /// 64 look-ups in a 256-entry table held in four registers.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    fn lookup(t: &[__m512i; 4], v: __m512i, upper: __mmask64) -> __m512i {
        let lo = _mm512_permutex2var_epi8(t[0], v, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], v, t[3]);
        _mm512_mask_blend_epi8(upper, lo, hi)
    }

    fn check(rows: &[u8], stride: usize, planes_len: usize, out_rows: usize) {
        // The kernels read through raw pointers: hold every shape to the contract first.
        assert!(stride > 0, "T1 stride must not be empty");
        assert_eq!(
            rows.len(),
            out_rows * stride,
            "T1 rows and outputs disagree"
        );
        assert!(
            planes_len >= stride.div_ceil(super::ROW_ALIGN) * super::CHUNK_COLS,
            "T1 planes too short"
        );
        assert!(available(), "AVX-512 VBMI is not supported by this CPU");
    }

    /// Σ code·q of each row against one token's planes, two rows at a time so each activation
    /// load serves both.
    ///
    /// Decoding must out-run memory: each bit pair of the I2 byte is isolated by a mask in
    /// place (`& 0x0c` is `d1·4`), and accumulator `i` collects `4ⁱ·Σ dᵢ·q`, divided out
    /// exactly at the end as in the I2 kernel. A 64-byte chunk (320 weights) costs four permutes,
    /// two blends, four ANDs and five `vpdpbusd`.
    pub(super) fn gemv(
        rows: &[u8],
        stride: usize,
        planes: &[i8],
        prefetch: usize,
        out: &mut [i32],
    ) {
        check(rows, stride, planes.len(), out.len());
        // SAFETY: `check` asserted AVX-512 F/BW/VL/VNNI and VBMI, that `rows` holds
        // `out.len()` rows of `stride` bytes, and that `planes` covers a row in whole chunks;
        // loads of a row's partial last chunk are masked to its bytes, so every access stays
        // inside those (prefetches may point past them, which a prefetch tolerates).
        unsafe {
            let low = table(&TABLES.0);
            let high = table(&TABLES.1);
            let mut r = 0;
            while r + 2 <= out.len() {
                let d = gemv_tile::<2>(
                    rows.as_ptr().add(r * stride),
                    stride,
                    planes.as_ptr(),
                    &low,
                    &high,
                    prefetch,
                );
                out[r] = d[0];
                out[r + 1] = d[1];
                r += 2;
            }
            if r < out.len() {
                let d = gemv_tile::<1>(
                    rows.as_ptr().add(r * stride),
                    stride,
                    planes.as_ptr(),
                    &low,
                    &high,
                    prefetch,
                );
                out[r] = d[0];
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn gemv_tile<const R: usize>(
        rows: *const u8,
        stride: usize,
        planes: *const i8,
        low: &[__m512i; 4],
        high: &[__m512i; 4],
        prefetch: usize,
    ) -> [i32; R] {
        let masks = [
            _mm512_set1_epi8(0x03),
            _mm512_set1_epi8(0x0c),
            _mm512_set1_epi8(0x30),
            _mm512_set1_epi8(0xc0u8 as i8),
        ];
        let mut acc = [[_mm512_setzero_si512(); 5]; R];
        for c in 0..stride.div_ceil(64) {
            let mask = super::chunk_mask(stride, c);
            let p = planes.add(c * 320);
            let xv: [__m512i; 5] =
                std::array::from_fn(|i| _mm512_loadu_si512(p.add(64 * i) as *const __m512i));
            for (r, a) in acc.iter_mut().enumerate() {
                let ptr = rows.add(r * stride + 64 * c);
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(prefetch) as *const i8);
                // Masked past a row's end: byte 0 decodes to digits 0, which meet the planes'
                // zero padding there and add nothing.
                let w = _mm512_maskz_loadu_epi8(mask, ptr as *const i8);
                // Bytes 128..=242 come from the upper tables; the top bit picks them.
                let upper = _mm512_movepi8_mask(w);
                let four = lookup(low, w, upper);
                for i in 0..4 {
                    a[i] = _mm512_dpbusd_epi32(a[i], _mm512_and_si512(four, masks[i]), xv[i]);
                }
                a[4] = _mm512_dpbusd_epi32(a[4], lookup(high, w, upper), xv[4]);
            }
        }
        acc.map(|a| {
            let s = _mm512_add_epi32(
                _mm512_add_epi32(a[0], _mm512_srai_epi32::<2>(a[1])),
                _mm512_add_epi32(_mm512_srai_epi32::<4>(a[2]), _mm512_srai_epi32::<6>(a[3])),
            );
            _mm512_reduce_add_epi32(_mm512_add_epi32(s, a[4]))
        })
    }

    /// Σ code·q of each row against every token: `out[r · tokens + t]`.
    ///
    /// Several tokens share one decode: each 64-byte chunk of a row is turned into five code
    /// vectors (one per digit) once, then meets eight (or four) tokens' planes. A band of rows small
    /// enough for L1 passes each group of tokens, so the weights come from memory once.
    pub(super) fn dots(rows: &[u8], stride: usize, planes: &T1Planes, out: &mut [i32]) {
        let ntok = planes.tokens();
        assert!(
            ntok > 0 && out.len().is_multiple_of(ntok),
            "T1 outputs per token"
        );
        let nrows = out.len() / ntok;
        check(rows, stride, planes.token(0).len(), nrows);
        let band = ((32 << 10) / stride).clamp(1, 64);
        // SAFETY: as in `gemv`: `check` asserted the CPU features and shapes, and every token's
        // planes are as long as the first's.
        unsafe {
            let low = table(&TABLES.0);
            let high = table(&TABLES.1);
            let mut r0 = 0;
            while r0 < nrows {
                let r1 = (r0 + band).min(nrows);
                let mut t = 0;
                while t < ntok {
                    let n = match ntok - t {
                        8.. => 8,
                        4..=7 => 4,
                        _ => 1,
                    };
                    for r in r0..r1 {
                        let row = rows.as_ptr().add(r * stride);
                        let o = &mut out[r * ntok + t..r * ntok + t + n];
                        match n {
                            8 => o.copy_from_slice(&tile::<8>(row, stride, planes, t, &low, &high)),
                            4 => o.copy_from_slice(&tile::<4>(row, stride, planes, t, &low, &high)),
                            _ => o.copy_from_slice(&tile::<1>(row, stride, planes, t, &low, &high)),
                        }
                    }
                    t += n;
                }
                r0 = r1;
            }
        }
    }

    /// One row against tokens `t0 .. t0 + T`: fully decoded digits (a shift and a mask each),
    /// one accumulator per token.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn tile<const T: usize>(
        row: *const u8,
        stride: usize,
        planes: &T1Planes,
        t0: usize,
        low: &[__m512i; 4],
        high: &[__m512i; 4],
    ) -> [i32; T] {
        let three = _mm512_set1_epi8(3);
        let p: [*const i8; T] = std::array::from_fn(|k| planes.token(t0 + k).as_ptr());
        let mut acc = [_mm512_setzero_si512(); T];
        for c in 0..stride.div_ceil(64) {
            let mask = super::chunk_mask(stride, c);
            let w = _mm512_maskz_loadu_epi8(mask, row.add(64 * c) as *const i8);
            let upper = _mm512_movepi8_mask(w);
            let four = lookup(low, w, upper);
            let codes = [
                _mm512_and_si512(four, three),
                _mm512_and_si512(_mm512_srli_epi16::<2>(four), three),
                _mm512_and_si512(_mm512_srli_epi16::<4>(four), three),
                _mm512_and_si512(_mm512_srli_epi16::<6>(four), three),
                lookup(high, w, upper),
            ];
            for (k, a) in acc.iter_mut().enumerate() {
                let x = p[k].add(c * 320);
                for (i, code) in codes.iter().enumerate() {
                    let xv = _mm512_loadu_si512(x.add(64 * i) as *const __m512i);
                    *a = _mm512_dpbusd_epi32(*a, *code, xv);
                }
            }
        }
        acc.map(|a| _mm512_reduce_add_epi32(a))
    }
}
