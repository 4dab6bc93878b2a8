//! AVX2: codes (0, 1, 2 = trit + 1) are unsigned bytes, activations signed bytes, so
//! `vpmaddubsw` multiplies them directly; Σ trit·q = Σ code·q − Σ q.
//!
//! A block's four `vpmaddubsw` give i16 lanes of at most 4 · 2 · (2·128) = 2048 in magnitude, so
//! [`I16_BLOCKS`] blocks are summed in i16 before one `vpmaddwd` widens them: widening every
//! block cost as many instructions as a whole block's unpacking.

use super::TokenView;
use crate::matrix::BLOCK_BYTES;
use std::arch::x86_64::*;

/// Blocks whose i16 sums are added before widening: 8 · 2048 = 16384 < 2¹⁵.
const I16_BLOCKS: usize = 8;

#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The four code vectors of one 32-byte block: vector `i` holds columns `32·i .. 32·i + 32`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn codes(ptr: *const u8) -> [__m256i; 4] {
    let mask = _mm256_set1_epi8(3);
    let w = _mm256_loadu_si256(ptr as *const __m256i);
    [
        _mm256_and_si256(w, mask),
        _mm256_and_si256(_mm256_srli_epi16::<2>(w), mask),
        _mm256_and_si256(_mm256_srli_epi16::<4>(w), mask),
        _mm256_and_si256(_mm256_srli_epi16::<6>(w), mask),
    ]
}

/// Σ code·q of one block as sixteen i16 lanes (each at most 2048 in magnitude); `x` points at
/// the block's 128 activations in natural order, read straight into the multiplies.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block16(c: &[__m256i; 4], x: *const i8) -> __m256i {
    let p = x as *const __m256i;
    let p01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[0], _mm256_loadu_si256(p)),
        _mm256_maddubs_epi16(c[1], _mm256_loadu_si256(p.add(1))),
    );
    let p23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[2], _mm256_loadu_si256(p.add(2))),
        _mm256_maddubs_epi16(c[3], _mm256_loadu_si256(p.add(3))),
    );
    _mm256_add_epi16(p01, p23)
}

/// i16 lanes widened to i32 and added to `acc`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn widen_add(acc: __m256i, s16: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(s16, _mm256_set1_epi16(1)))
}

/// One token against `R` rows: returns Σ code·q per row. Each row is a stream from memory, so
/// it is prefetched `prefetch` bytes ahead (the distance [`crate::tune`] measured),
/// and the token's activations, read once per block, serve all `R` rows.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn gemv_tile<const R: usize>(
    w: [*const u8; R],
    x: *const i8,
    blocks: usize,
    prefetch: usize,
) -> [i32; R] {
    let mut acc = [_mm256_setzero_si256(); R];
    let mut b0 = 0;
    while b0 < blocks {
        let b1 = (b0 + I16_BLOCKS).min(blocks);
        let mut s16 = [_mm256_setzero_si256(); R];
        for blk in b0..b1 {
            let xb = x.add(blk * 128);
            for r in 0..R {
                let ptr = w[r].add(blk * BLOCK_BYTES);
                // `wrapping_add`: the hint may point past the matrix, which a prefetch
                // tolerates and a pointer `add` would not.
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(prefetch) as *const i8);
                s16[r] = _mm256_add_epi16(s16[r], block16(&codes(ptr), xb));
            }
        }
        for r in 0..R {
            acc[r] = widen_add(acc[r], s16[r]);
        }
        b0 = b1;
    }
    acc.map(|a| hsum(a))
}

/// One row against `T` tokens: the row's codes are unpacked once per block and meet every token.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile<const T: usize>(w: *const u8, x: [*const i8; T], blocks: usize) -> [i32; T] {
    let mut acc = [_mm256_setzero_si256(); T];
    let mut b0 = 0;
    while b0 < blocks {
        let b1 = (b0 + I16_BLOCKS).min(blocks);
        let mut s16 = [_mm256_setzero_si256(); T];
        for blk in b0..b1 {
            let c = codes(w.add(blk * BLOCK_BYTES));
            for t in 0..T {
                s16[t] = _mm256_add_epi16(s16[t], block16(&c, x[t].add(blk * 128)));
            }
        }
        for t in 0..T {
            acc[t] = widen_add(acc[t], s16[t]);
        }
        b0 = b1;
    }
    acc.map(|a| hsum(a))
}

/// # Safety
/// The CPU must support AVX2; shapes as documented on [`super::dots`].
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dots(
    rows: &[u8],
    stride: usize,
    tokens: &[TokenView],
    out: &mut [i32],
    stream: crate::tune::Setting,
) {
    let nrows = rows.len() / stride;
    let ntok = tokens.len();
    let blocks = stride / BLOCK_BYTES;
    let row = |r: usize| rows.as_ptr().add(r * stride);
    if ntok == 1 {
        let prefetch = stream.prefetch;
        let (x, sum) = (tokens[0].natural.as_ptr(), tokens[0].sum);
        let mut r = 0;
        // One row at a time reads the rows as one sequential stream ([`crate::tune`]).
        let four = stream.rows == 4;
        while four && r + 4 <= nrows {
            let d = gemv_tile::<4>(std::array::from_fn(|i| row(r + i)), x, blocks, prefetch);
            for (o, v) in out[r..r + 4].iter_mut().zip(d) {
                *o = v - sum;
            }
            r += 4;
        }
        while r < nrows {
            out[r] = gemv_tile::<1>([row(r)], x, blocks, prefetch)[0] - sum;
            r += 1;
        }
        return;
    }
    // Cache blocking, as in the AVX-512 kernel: a band of rows (at most 32 KiB of codes) meets
    // one group of four tokens at a time, so both stay in L1 while every row of the band passes
    // them; going row by row over all tokens re-read every token's activations from L2 per row.
    let band = ((32 << 10) / stride).clamp(1, 64);
    let mut r0 = 0;
    while r0 < nrows {
        let r1 = (r0 + band).min(nrows);
        let mut t = 0;
        while t < ntok {
            let n = if ntok - t >= 4 { 4 } else { 1 };
            for r in r0..r1 {
                let o = &mut out[r * ntok + t..r * ntok + t + n];
                if n == 4 {
                    let x = std::array::from_fn(|j| tokens[t + j].natural.as_ptr());
                    o.copy_from_slice(&tile::<4>(row(r), x, blocks));
                } else {
                    o[0] = tile::<1>(row(r), [tokens[t].natural.as_ptr()], blocks)[0];
                }
                for (j, v) in o.iter_mut().enumerate() {
                    *v -= tokens[t + j].sum;
                }
            }
            t += n;
        }
        r0 = r1;
    }
}

/// # Safety
/// The CPU must support AVX2; shapes as documented on [`super::block_dots`].
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn block_dots(rows: &[u8], stride: usize, token: &TokenView, out: &mut [i32]) {
    let blocks = stride / BLOCK_BYTES;
    for (r, row) in rows.chunks_exact(stride).enumerate() {
        for b in 0..blocks {
            let c = codes(row.as_ptr().add(b * BLOCK_BYTES));
            let s16 = block16(&c, token.natural.as_ptr().add(b * 128));
            out[r * blocks + b] =
                hsum(widen_add(_mm256_setzero_si256(), s16)) - token.block_sums[b];
        }
    }
}
