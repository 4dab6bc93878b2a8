//! The T1 packing of [`TernaryMatrix`](crate::TernaryMatrix): base 3, five trits per byte, 1.6
//! bits per trit.
//!
//! T1 streams 20% fewer bytes than I2, which is what decoding is bound by, but its digits do not
//! line up with vector lanes, so it costs more arithmetic per weight; whether it wins depends on
//! the host's ratio of arithmetic to memory bandwidth. The bytes are decoded in registers, and
//! the codes meet activations regrouped by digit ([`QuantizedActivations::t1_planes`]):
//! * on AVX-512 with VBMI, two 256-entry byte look-ups (byte permutes) turn 64 bytes into the
//!   codes of 320 weights — four digits as one I2 byte, plus the fifth;
//! * on AVX2 (and AVX-512 without VBMI), each digit comes from the byte times 3ⁱ (the
//!   fixed-point encoding of [`crate::pack`]): two byte adds for the product, two comparisons and
//!   two subtractions for the digit.
//!
//! Elsewhere a per-token look-up table runs: for every run of five activations the 243 possible
//! partial sums Σ tᵢ·qᵢ are computed once, and each weight byte becomes one table load and one
//! add.
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
use crate::pack::{t1_byte, t1_encode, t1_len, T1_DECODE};
use crate::quant::QuantizedActivations;
use crate::trit::validate_trits;
use rayon::prelude::*;

/// Row stride multiple: one cache line, one 512-bit load.
pub(crate) const ROW_ALIGN: usize = 64;

/// Columns one [`ROW_ALIGN`]-byte chunk of a row holds.
pub(crate) const CHUNK_COLS: usize = 5 * ROW_ALIGN;

/// A byte of five zero trits (digit 1 each: v = 81 + 27 + 9 + 3 + 1 = 121; byte 0).
pub(crate) const ZERO_BYTE: u8 = t1_encode(121);

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
    // A short last run is padded with zero trits.
    for (five, byte) in row.chunks(5).zip(dst.iter_mut()) {
        *byte = t1_byte(five);
    }
}

/// Writes one packed row's `out.len()` trits into `out`.
pub(crate) fn row_trits(row: &[u8], out: &mut [i8]) {
    for (five, &b) in out.chunks_mut(5).zip(row) {
        // A matrix holds only valid bytes (it packed them itself).
        let digits = T1_DECODE[b as usize].unwrap_or_default();
        five.copy_from_slice(&digits[..five.len()]);
    }
}

/// (−1 count, +1 count) per byte value; padding and short runs hold zero trits.
pub(crate) fn neg_pos(bytes: &[u8]) -> (u64, u64) {
    static NEG_POS: [(u8, u8); 256] = {
        let mut table = [(0u8, 0u8); 256];
        let mut b = 0;
        while b < 256 {
            if let Some(trits) = T1_DECODE[b] {
                let mut i = 0;
                while i < 5 {
                    match trits[i] {
                        -1 => table[b].0 += 1,
                        1 => table[b].1 += 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b += 1;
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

/// How T1 bytes become codes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Decoder {
    /// Byte permutes (AVX-512 VBMI).
    Vbmi,
    /// Fixed-point digits with byte adds and averages (AVX2).
    Avx2,
    /// No decoding in registers: the per-token table of partial sums.
    Table,
}

/// The decoder `backend` uses on this CPU: the AVX-512 backend permutes where VBMI exists and
/// otherwise shares the AVX2 decoder (every AVX-512 CPU has AVX2); `scalar` keeps the table.
fn decoder(backend: Backend) -> Decoder {
    #[cfg(target_arch = "x86_64")]
    {
        match backend.vector() {
            Backend::Avx512Vnni if vbmi::available() => Decoder::Vbmi,
            Backend::Avx512Vnni | Backend::Avx2 if avx2::available() => Decoder::Avx2,
            _ => Decoder::Table,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = backend;
        Decoder::Table
    }
}

/// Whether `backend` decodes T1 in registers on this CPU (else the look-up table runs).
pub(crate) fn decodes_in_registers(backend: Backend) -> bool {
    decoder(backend) != Decoder::Table
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv_rows(
    m: Rows,
    backend: Backend,
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
            match decoder(backend) {
                Decoder::Vbmi => vbmi::gemv(bytes, m.stride, planes, prefetch, &mut acc[..n]),
                Decoder::Avx2 => avx2::gemv(bytes, m.stride, planes, prefetch, &mut acc[..n]),
                Decoder::Table => unreachable!("T1 products with a table do not run gemv_rows"),
            }
            for (o, &a) in ys.iter_mut().zip(&acc[..n]) {
                *o = (a - sum) as f32 * factor;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, backend, planes, sum, factor, prefetch, r0, y);
        unreachable!("T1 is decoded in registers only on x86-64");
    }
}

/// `y = ws · scale_x · (W · q)` for every token of `x` (`y` is `[tokens, rows]`), on the
/// current rayon pool. Shapes are checked by the caller.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn matmul(
    m: Rows,
    backend: Backend,
    ws: f32,
    x: &QuantizedActivations,
    y: &mut [f32],
    rows_per_task: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if backend.tiles_for(x.tokens()) {
        matmul_amx(m, ws, x, y, rows_per_task.next_multiple_of(32));
        return;
    }
    if decodes_in_registers(backend) {
        #[cfg(target_arch = "x86_64")]
        {
            let planes = x.t1_planes();
            let prefetch = crate::backend::prefetch_distance();
            if x.tokens() == 1 {
                let (p, sum, f) = (planes.token(0), x.sum(0), ws * x.scale(0));
                y.par_chunks_mut(rows_per_task)
                    .enumerate()
                    .for_each(|(ci, yc)| {
                        gemv_rows(m, backend, p, sum, f, prefetch, ci * rows_per_task, yc)
                    });
                return;
            }
            matmul_tiles(m, decoder(backend), ws, x, planes, y, rows_per_task);
            return;
        }
    }
    matmul_table(m, ws, x, y);
}

/// Several tokens, decoded in registers: each task decodes a range of rows once per group of
/// tokens, then scatters into `y` token-major.
#[cfg(target_arch = "x86_64")]
fn matmul_tiles(
    m: Rows,
    decoder: Decoder,
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
            match decoder {
                Decoder::Vbmi => vbmi::dots(bytes, m.stride, planes, &mut acc),
                _ => avx2::dots(bytes, m.stride, planes, &mut acc),
            }
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

/// Byte → its five codes (trit + 1, column order) and three spare bytes; bytes that are no T1
/// byte (a checked matrix holds none) decode to zero trits.
#[cfg(target_arch = "x86_64")]
static T1_CODES: [[u8; 8]; 256] = {
    let mut table = [[1u8; 8]; 256];
    let mut v = 0;
    while v < 243 {
        let mut rest = v;
        let mut i = 5;
        while i > 0 {
            i -= 1;
            table[t1_encode(v as u8) as usize][i] = (rest % 3) as u8;
            rest /= 3;
        }
        v += 1;
    }
    table
};

/// One T1 row as `out.len()` codes (trit + 1) in natural column order; columns past the row's
/// bytes are zero trits.
#[cfg(target_arch = "x86_64")]
fn unpack_codes(row: &[u8], out: &mut [u8]) {
    let whole = (out.len() / 5).min(row.len());
    for (&b, o) in row[..whole].iter().zip(out.chunks_exact_mut(5)) {
        o.copy_from_slice(&T1_CODES[b as usize][..5]);
    }
    let rest = &mut out[whole * 5..];
    rest.fill(1);
    if let Some(&b) = row.get(whole) {
        let n = rest.len().min(5);
        rest[..n].copy_from_slice(&T1_CODES[b as usize][..n]);
    }
}

/// Several tokens on AMX tiles ([`crate::backend::amx`]): each band of rows is decoded to one
/// code per byte, then multiplied like I2's. `rows_per_task` is a multiple of the 32-row band.
#[cfg(target_arch = "x86_64")]
fn matmul_amx(m: Rows, ws: f32, x: &QuantizedActivations, y: &mut [f32], rows_per_task: usize) {
    use crate::backend::{amx, TokenView};
    let ntok = x.tokens();
    let views: Vec<TokenView> = (0..ntok).map(|t| TokenView::of(x, t)).collect();
    let tokens = amx::Tokens::pack(&views, x.stride());
    let starts: Vec<usize> = (0..m.rows).step_by(rows_per_task).collect();
    let results: Vec<(usize, Vec<i32>)> = starts
        .into_par_iter()
        .map(|r0| {
            let rows = rows_per_task.min(m.rows - r0);
            let mut acc = vec![0i32; rows * ntok];
            let unpack = |r: usize, codes: &mut [u8]| {
                let start = (r0 + r) * m.stride;
                unpack_codes(&m.bytes[start..start + m.stride], codes);
            };
            crate::backend::amx_dots_with(rows, &unpack, &tokens, &mut acc);
            (r0, acc)
        })
        .collect();
    for (r0, acc) in results {
        let rows = acc.len() / ntok;
        for t in 0..ntok {
            let f = ws * x.scale(t);
            let yt = &mut y[t * m.rows + r0..t * m.rows + r0 + rows];
            for (r, o) in yt.iter_mut().enumerate() {
                *o = acc[r * ntok + t] as f32 * f;
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
                    .zip(table.chunks_exact(256))
                    .map(|(&b, sums)| sums[b as usize] as i32)
                    .sum();
                *o = dot as f32 * factor;
            }
        });
    }
}

/// For each run `g` of five activations, `table[g·256 + byte]` = Σᵢ tᵢ·q[5g+i] over the trits
/// `tᵢ` of T1 byte `byte` (zero for the bytes that are none). Built digit by digit over
/// `v = Σ dᵢ·3^(4−i)`, 3 + 9 + 27 + 81 + 243 adds a run, then placed at each `v`'s byte.
/// |sum| ≤ 5·128 fits an i16, which halves the table's cache footprint.
fn partial_sums(x: &[i8], groups: usize, table: &mut Vec<i16>) {
    table.clear();
    table.resize(groups * 256, 0);
    let mut by_v = [0i16; 243];
    for (g, out) in table.chunks_exact_mut(256).enumerate() {
        let q = |i: usize| x.get(5 * g + i).copied().unwrap_or(0) as i16;
        let sums = &mut by_v;
        sums[0] = 0;
        let mut len = 1;
        // The last trit is the least significant digit of `v`: add the digits from it up.
        for i in (0..5).rev() {
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
        for (v, &sum) in sums.iter().enumerate() {
            out[t1_encode(v as u8) as usize] = sum;
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

/// The kernels read through raw pointers: hold every shape to the contract first.
#[cfg(target_arch = "x86_64")]
fn check_shapes(rows: &[u8], stride: usize, planes_len: usize, out_rows: usize) {
    assert!(stride > 0, "T1 stride must not be empty");
    assert_eq!(
        rows.len(),
        out_rows * stride,
        "T1 rows and outputs disagree"
    );
    assert!(
        planes_len >= stride.div_ceil(ROW_ALIGN) * CHUNK_COLS,
        "T1 planes too short"
    );
}

/// T1 decoding with byte permutes, two look-ups per byte.
///
/// A T1 byte holds five base-3 digits `d0..d4` (codes, trit + 1). One 256-entry table maps the
/// byte to its first four codes as 2-bit fields — `d0 | d1<<2 | d2<<4 | d3<<6`, exactly an I2
/// byte — and a second one to `d4`. A 256-entry look-up is two `vpermt2b` (128 entries each)
/// and a blend on the top bit. Σ code·q − Σ q is Σ trit·q, as in the I2 kernels.
#[cfg(target_arch = "x86_64")]
mod vbmi {
    use crate::pack::T1_DECODE;
    use crate::quant::T1Planes;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        static VBMI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VBMI.get_or_init(|| {
            crate::backend::Backend::Avx512Vnni.is_supported()
                && is_x86_feature_detected!("avx512vbmi")
        })
    }

    /// `LOW4[b]` = codes 0..4 of byte `b` as 2-bit fields, `HIGH[b]` = code 4; bytes that are
    /// no T1 byte mean trit 0 everywhere.
    static TABLES: ([u8; 256], [u8; 256]) = {
        let mut low = [0x55u8; 256];
        let mut high = [1u8; 256];
        let mut b = 0;
        while b < 256 {
            if let Some(trits) = T1_DECODE[b] {
                let mut fields = 0u8;
                let mut i = 0;
                while i < 4 {
                    fields |= ((trits[i] + 1) as u8) << (2 * i);
                    i += 1;
                }
                low[b] = fields;
                high[b] = (trits[4] + 1) as u8;
            }
            b += 1;
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
        super::check_shapes(rows, stride, planes_len, out_rows);
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
                // Masked past a row's end: byte 0 is five zero trits, which meet the planes'
                // zero padding there and add nothing.
                let w = _mm512_maskz_loadu_epi8(mask, ptr as *const i8);
                // Bytes 128..=255 come from the upper tables; the top bit picks them.
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

/// T1 decoding with AVX2 byte arithmetic, 32 bytes (160 weights) at a time.
///
/// A T1 byte is the fraction `v / 243` in fixed point, offset by 128 ([`crate::pack`]): with
/// `sᵢ = byte · 3ⁱ mod 256` (`sᵢ₊₁ = sᵢ + sᵢ + sᵢ` in wrapping byte adds) read as a signed byte,
/// code `i` is `[sᵢ > −43] + [sᵢ > 42]`, two `vpcmpgtb` whose all-ones masks are subtracted
/// from zero. The 32 bytes are the first or second half of a 64-byte chunk, so the codes meet the
/// same activation planes as the AVX-512 kernels. Σ code·q − Σ q is Σ trit·q, as in the I2
/// kernels.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::backend::avx2::{hsum, widen_add};
    use crate::quant::T1Planes;
    use std::arch::x86_64::*;

    /// Half-chunks whose i16 sums are added before widening: each adds at most 5 · 2 · 2 · 128 =
    /// 2560 to a lane, and 8 · 2560 < 2¹⁵.
    const I16_HALVES: usize = 8;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    fn check(rows: &[u8], stride: usize, planes_len: usize, out_rows: usize) {
        super::check_shapes(rows, stride, planes_len, out_rows);
        assert!(available(), "AVX2 is not supported by this CPU");
    }

    /// Bytes `off .. off + 32` of a `stride`-byte row; bytes past the row's end read as 0 (five
    /// zero trits), which meet the planes' zero padding there.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(row: *const u8, stride: usize, off: usize) -> __m256i {
        if off + 32 <= stride {
            _mm256_loadu_si256(row.add(off) as *const __m256i)
        } else {
            let mut tail = [0u8; 32];
            std::ptr::copy_nonoverlapping(row.add(off), tail.as_mut_ptr(), stride - off);
            _mm256_loadu_si256(tail.as_ptr() as *const __m256i)
        }
    }

    /// The five code vectors (0, 1, 2) of 32 T1 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn codes(bytes: __m256i) -> [__m256i; 5] {
        let (zero, low, high) = (
            _mm256_setzero_si256(),
            _mm256_set1_epi8(-43),
            _mm256_set1_epi8(42),
        );
        // (No closures here: they would not inherit this function's target features.)
        let mut out = [zero; 5];
        let mut s = bytes;
        for (i, code) in out.iter_mut().enumerate() {
            if i > 0 {
                s = _mm256_add_epi8(s, _mm256_add_epi8(s, s));
            }
            let above_low = _mm256_cmpgt_epi8(s, low);
            let above_high = _mm256_cmpgt_epi8(s, high);
            *code = _mm256_sub_epi8(_mm256_sub_epi8(zero, above_low), above_high);
        }
        out
    }

    /// Σ code·q of one half-chunk as i16 lanes; `x` is the half-chunk's place in the first
    /// plane, the others follow 64 bytes apart.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot16(c: &[__m256i; 5], x: *const i8) -> __m256i {
        let mut s = _mm256_setzero_si256();
        for (i, code) in c.iter().enumerate() {
            let xv = _mm256_loadu_si256(x.add(64 * i) as *const __m256i);
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(*code, xv));
        }
        s
    }

    /// Where half-chunk `k` of a row meets its activations: chunk `k / 2`, half `k % 2`.
    #[inline]
    fn plane_offset(k: usize) -> usize {
        (k / 2) * super::CHUNK_COLS + 32 * (k % 2)
    }

    /// Σ code·q of each row against one token's planes, two rows at a time so each activation
    /// load serves both.
    pub(super) fn gemv(
        rows: &[u8],
        stride: usize,
        planes: &[i8],
        prefetch: usize,
        out: &mut [i32],
    ) {
        check(rows, stride, planes.len(), out.len());
        // SAFETY: `check` asserted AVX2, that `rows` holds `out.len()` rows of `stride` bytes
        // and that `planes` covers a row in whole 64-byte chunks; `load` reads a row's partial
        // last half-chunk through a copy, so every access stays inside those (prefetches may
        // point past them, which a prefetch tolerates).
        unsafe {
            let mut r = 0;
            while r + 2 <= out.len() {
                let d = gemv_tile::<2>(rows.as_ptr().add(r * stride), stride, planes, prefetch);
                out[r..r + 2].copy_from_slice(&d);
                r += 2;
            }
            if r < out.len() {
                out[r] = gemv_tile::<1>(rows.as_ptr().add(r * stride), stride, planes, prefetch)[0];
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gemv_tile<const R: usize>(
        rows: *const u8,
        stride: usize,
        planes: &[i8],
        prefetch: usize,
    ) -> [i32; R] {
        let halves = stride.div_ceil(32);
        let mut acc = [_mm256_setzero_si256(); R];
        let mut k0 = 0;
        while k0 < halves {
            let k1 = (k0 + I16_HALVES).min(halves);
            let mut s16 = [_mm256_setzero_si256(); R];
            for k in k0..k1 {
                let x = planes.as_ptr().add(plane_offset(k));
                for (r, s) in s16.iter_mut().enumerate() {
                    let row = rows.add(r * stride);
                    if k % 2 == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(
                            row.wrapping_add(32 * k + prefetch) as *const i8
                        );
                    }
                    *s = _mm256_add_epi16(*s, dot16(&codes(load(row, stride, 32 * k)), x));
                }
            }
            for (a, s) in acc.iter_mut().zip(s16) {
                *a = widen_add(*a, s);
            }
            k0 = k1;
        }
        acc.map(|a| hsum(a))
    }

    /// Σ code·q of each row against every token: `out[r · tokens + t]`. As in the AVX-512
    /// kernel, a band of rows small enough for L1 meets one group of four tokens at a time, and
    /// each half-chunk is decoded once per group.
    pub(super) fn dots(rows: &[u8], stride: usize, planes: &T1Planes, out: &mut [i32]) {
        let ntok = planes.tokens();
        assert!(
            ntok > 0 && out.len().is_multiple_of(ntok),
            "T1 outputs per token"
        );
        let nrows = out.len() / ntok;
        check(rows, stride, planes.token(0).len(), nrows);
        let band = ((32 << 10) / stride).clamp(1, 64);
        // SAFETY: as in `gemv`: `check` asserted AVX2 and the shapes, and every token's planes
        // are as long as the first's.
        unsafe {
            let mut r0 = 0;
            while r0 < nrows {
                let r1 = (r0 + band).min(nrows);
                let mut t = 0;
                while t < ntok {
                    let n = if ntok - t >= 4 { 4 } else { 1 };
                    for r in r0..r1 {
                        let row = rows.as_ptr().add(r * stride);
                        let o = &mut out[r * ntok + t..r * ntok + t + n];
                        if n == 4 {
                            o.copy_from_slice(&tile::<4>(row, stride, planes, t));
                        } else {
                            o.copy_from_slice(&tile::<1>(row, stride, planes, t));
                        }
                    }
                    t += n;
                }
                r0 = r1;
            }
        }
    }

    /// One row against tokens `t0 .. t0 + T`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tile<const T: usize>(
        row: *const u8,
        stride: usize,
        planes: &T1Planes,
        t0: usize,
    ) -> [i32; T] {
        let p: [*const i8; T] = std::array::from_fn(|k| planes.token(t0 + k).as_ptr());
        let halves = stride.div_ceil(32);
        let mut acc = [_mm256_setzero_si256(); T];
        let mut k0 = 0;
        while k0 < halves {
            let k1 = (k0 + I16_HALVES).min(halves);
            let mut s16 = [_mm256_setzero_si256(); T];
            for k in k0..k1 {
                let c = codes(load(row, stride, 32 * k));
                for (s, x) in s16.iter_mut().zip(p) {
                    *s = _mm256_add_epi16(*s, dot16(&c, x.add(plane_offset(k))));
                }
            }
            for (a, s) in acc.iter_mut().zip(s16) {
                *a = widen_add(*a, s);
            }
            k0 = k1;
        }
        acc.map(|a| hsum(a))
    }
}
