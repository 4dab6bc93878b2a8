//! AVX2: codes (0, 1, 2 = trit + 1) are unsigned bytes, activations signed bytes, so
//! `vpmaddubsw` multiplies them directly; Σ trit·q = Σ code·q − Σ q.
//!
//! Four pair products of at most 2·128 each sum to at most 2048, so the i16 lanes never
//! saturate before they are widened with `vpmaddwd`.

use super::TokenView;
use crate::matrix::BLOCK_BYTES;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
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

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn xs(ptr: *const i8) -> [__m256i; 4] {
    let p = ptr as *const __m256i;
    [
        _mm256_loadu_si256(p),
        _mm256_loadu_si256(p.add(1)),
        _mm256_loadu_si256(p.add(2)),
        _mm256_loadu_si256(p.add(3)),
    ]
}

/// Σ code·q of one block, as eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn block(c: &[__m256i; 4], x: &[__m256i; 4]) -> __m256i {
    let p01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[0], x[0]),
        _mm256_maddubs_epi16(c[1], x[1]),
    );
    let p23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[2], x[2]),
        _mm256_maddubs_epi16(c[3], x[3]),
    );
    _mm256_madd_epi16(_mm256_add_epi16(p01, p23), _mm256_set1_epi16(1))
}

/// A tile of `R` rows × `T` tokens over `blocks` blocks; returns Σ code·q.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile<const R: usize, const T: usize>(
    w: [*const u8; R],
    x: [*const i8; T],
    blocks: usize,
) -> [[i32; T]; R] {
    let mut acc = [[_mm256_setzero_si256(); T]; R];
    for blk in 0..blocks {
        if T == 1 {
            // One token: its activations stay in registers while the rows stream past.
            let xv = xs(x[0].add(blk * 128));
            for r in 0..R {
                let c = codes(w[r].add(blk * BLOCK_BYTES));
                acc[r][0] = _mm256_add_epi32(acc[r][0], block(&c, &xv));
            }
        } else {
            // Several tokens: unpack each row's codes once and reuse them for every token.
            for r in 0..R {
                let c = codes(w[r].add(blk * BLOCK_BYTES));
                for t in 0..T {
                    let xv = xs(x[t].add(blk * 128));
                    acc[r][t] = _mm256_add_epi32(acc[r][t], block(&c, &xv));
                }
            }
        }
    }
    let mut out = [[0i32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = hsum(acc[r][t]);
        }
    }
    out
}

macro_rules! run_tile {
    ($R:literal, $T:literal, $rows:expr, $stride:expr, $r:expr, $tokens:expr, $t:expr, $out:expr) => {{
        let w: [*const u8; $R] = std::array::from_fn(|i| $rows.as_ptr().add(($r + i) * $stride));
        let x: [*const i8; $T] = std::array::from_fn(|j| $tokens[$t + j].natural.as_ptr());
        let res = tile::<$R, $T>(w, x, $stride / BLOCK_BYTES);
        for i in 0..$R {
            for j in 0..$T {
                $out[($r + i) * $tokens.len() + $t + j] = res[i][j] - $tokens[$t + j].sum;
            }
        }
    }};
}

/// # Safety
/// The CPU must support AVX2; shapes as documented on [`super::dots`].
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dots(rows: &[u8], stride: usize, tokens: &[TokenView], out: &mut [i32]) {
    let nrows = rows.len() / stride;
    let ntok = tokens.len();
    if ntok == 1 {
        let mut r = 0;
        while r + 4 <= nrows {
            run_tile!(4, 1, rows, stride, r, tokens, 0, out);
            r += 4;
        }
        while r < nrows {
            run_tile!(1, 1, rows, stride, r, tokens, 0, out);
            r += 1;
        }
        return;
    }
    for r in 0..nrows {
        let mut t = 0;
        while t + 4 <= ntok {
            run_tile!(1, 4, rows, stride, r, tokens, t, out);
            t += 4;
        }
        while t < ntok {
            run_tile!(1, 1, rows, stride, r, tokens, t, out);
            t += 1;
        }
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
            let x = xs(token.natural.as_ptr().add(b * 128));
            out[r * blocks + b] = hsum(block(&c, &x)) - token.block_sums[b];
        }
    }
}
