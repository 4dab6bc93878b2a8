//! AMX int8 tiles (Intel Sapphire Rapids and later) for products of several tokens at once:
//! prefill, and the server's batches.
//!
//! One `tdpbusd` multiplies a tile of 16 rows × 64 unsigned codes (trit + 1) by a tile of 64
//! signed activations × 16 tokens and adds the 16 × 16 sums to i32 accumulators: 16,384
//! multiply-adds, where one `vpdpbusd` does 64. The sums are exact integers, Σ code·q, so the
//! result is the other backends' Σ trit·q bit for bit once Σ q is taken off, as there.
//!
//! The tiles read plain bytes, so both operands are laid out first:
//! - **Tokens** ([`Tokens`]): once per product, in the right operand's layout, `[depth / 4]`
//!   rows of 16 tokens × 4 consecutive activations per group of 16 tokens.
//! - **Rows**: a band of 32 rows at a time, unpacked from I2 into one byte per code in natural
//!   order (a shift and a mask per 32 codes), kept in L2 while every group of 32 tokens passes.
//!
//! A single token stays on AVX-512 VNNI: it reads every weight once, so memory bounds it, and
//! unpacking would only add work. The tiles pay from [`MIN_TOKENS`] tokens on.

use super::TokenView;
use crate::matrix::BLOCK_BYTES;
use rayon::prelude::*;
use std::arch::asm;
use std::arch::x86_64::*;

/// Fewest tokens a product runs on tiles for; fewer go to AVX-512 VNNI. Unpacking a band of
/// rows costs about what VNNI spends on two tokens of it, and a tile computes 16 tokens for
/// the price of one, so from four tokens on the tiles are well ahead.
pub(crate) const MIN_TOKENS: usize = 4;

/// Rows or tokens per tile.
const TILE: usize = 16;
/// Bytes of depth one tile row holds.
const TILE_DEPTH: usize = 64;
/// Rows one band unpacks (two tiles), and tokens one pass takes (two tiles).
const BAND: usize = 2 * TILE;

/// Tokens' int8 activations in the layout `tdpbusd` reads its right operand in: per group of
/// 16 tokens, `[depth / 4][16 tokens][4]` bytes. Groups are padded to an even count, and
/// tokens to whole groups, with zeros.
pub(crate) struct Tokens {
    bytes: Vec<i8>,
    depth: usize,
    /// Σ q of each token, taken off Σ code·q.
    sums: Vec<i32>,
}

impl Tokens {
    /// Lays out `tokens` (each at least `depth` values in natural order) for the tiles.
    pub(crate) fn pack(tokens: &[TokenView], depth: usize) -> Self {
        let groups = tokens.len().div_ceil(TILE).next_multiple_of(2);
        let group_bytes = depth * TILE;
        let mut bytes = vec![0i8; groups * group_bytes];
        bytes
            .par_chunks_mut(group_bytes)
            .zip(tokens.par_chunks(TILE))
            .for_each(|(dst, group)| {
                for (lane, token) in group.iter().enumerate() {
                    for (k4, quad) in token.natural[..depth].chunks_exact(4).enumerate() {
                        let at = k4 * TILE * 4 + lane * 4;
                        dst[at..at + 4].copy_from_slice(quad);
                    }
                }
            });
        Tokens {
            bytes,
            depth,
            sums: tokens.iter().map(|t| t.sum).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sums.len()
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth
    }
}

/// One I2 row (`stride` bytes) as one code (trit + 1) per byte, in natural column order: bit
/// pair `i` of byte `j` of a 32-byte block is column `32·i + j` of the block's 128.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack_i2(row: &[u8], out: &mut [u8]) {
    debug_assert!(out.len() >= row.len() * 4);
    let mask = _mm256_set1_epi8(3);
    for (b, block) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let w = _mm256_loadu_si256(block.as_ptr() as *const __m256i);
        let o = out.as_mut_ptr().add(b * BLOCK_BYTES * 4) as *mut __m256i;
        _mm256_storeu_si256(o, _mm256_and_si256(w, mask));
        _mm256_storeu_si256(o.add(1), _mm256_and_si256(_mm256_srli_epi16::<2>(w), mask));
        _mm256_storeu_si256(o.add(2), _mm256_and_si256(_mm256_srli_epi16::<4>(w), mask));
        _mm256_storeu_si256(o.add(3), _mm256_and_si256(_mm256_srli_epi16::<6>(w), mask));
    }
}

/// Σ trit·q of every row of `rows` (whole rows of `stride` bytes, I2) against every token of
/// `tokens`: `out[r * tokens.len() + t]`.
///
/// # Safety
/// AMX int8 must be available and permitted on this thread's process
/// ([`crate::amx::int8_available`]); `tokens` must be packed at depth `stride * 4`, `rows` hold
/// whole rows and `out` be `rows × tokens` long (the caller in `backend` checks all three).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dots(rows: &[u8], stride: usize, tokens: &Tokens, out: &mut [i32]) {
    let unpack = |r: usize, codes: &mut [u8]| {
        // SAFETY: AVX2 is enabled in this function, and `codes` is one row of `stride * 4`.
        unsafe { unpack_i2(&rows[r * stride..(r + 1) * stride], codes) }
    };
    dots_with(rows.len() / stride, &unpack, tokens, out)
}

/// Σ trit·q of `nrows` rows, which `unpack(r, codes)` writes as codes (trit + 1) in natural
/// column order, `tokens.depth()` of them, against every token: `out[r * tokens.len() + t]`.
///
/// # Safety
/// AMX int8 must be available and permitted; `out` must be `nrows × tokens` long.
pub(crate) unsafe fn dots_with(
    nrows: usize,
    unpack: &dyn Fn(usize, &mut [u8]),
    tokens: &Tokens,
    out: &mut [i32],
) {
    let depth = tokens.depth;
    let ntok = tokens.len();
    let groups = tokens.bytes.len() / (depth * TILE);
    assert_eq!(out.len(), nrows * ntok, "output length");
    // The band's codes: rows past the last keep whatever an earlier band left there (zeros at
    // first), and their sums are never read.
    let mut codes = vec![0u8; BAND * depth];
    let mut acc = [0i32; BAND * BAND];
    asm!("ldtilecfg [{}]", in(reg) crate::amx::CONFIG.0.as_ptr(), options(nostack, readonly));
    for r0 in (0..nrows).step_by(BAND) {
        let band = BAND.min(nrows - r0);
        for i in 0..band {
            unpack(r0 + i, &mut codes[i * depth..(i + 1) * depth]);
        }
        let a0 = codes.as_ptr();
        let a1 = a0.add(TILE * depth);
        for g in (0..groups).step_by(2) {
            let b0 = tokens.bytes.as_ptr().add(g * depth * TILE);
            let b1 = b0.add(depth * TILE);
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem),
            );
            for k in (0..depth).step_by(TILE_DEPTH) {
                // Tile row `i` of the left operand is row `i`'s 64 codes from `k`; tile row
                // `j` of the right one is activations `k + 4j .. k + 4j + 4` of 16 tokens.
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "tdpbusd tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(k), a1 = in(reg) a1.add(k),
                    b0 = in(reg) b0.add(k * TILE), b1 = in(reg) b1.add(k * TILE),
                    sa = in(reg) depth, sb = in(reg) TILE * 4,
                    options(nostack, readonly),
                );
            }
            // `acc` is `[32 rows][32 tokens]`: tile (i, j) at row 16·i, column 16·j.
            let c = acc.as_mut_ptr();
            asm!(
                "tilestored [{c00} + {s}*1], tmm0",
                "tilestored [{c01} + {s}*1], tmm1",
                "tilestored [{c10} + {s}*1], tmm2",
                "tilestored [{c11} + {s}*1], tmm3",
                c00 = in(reg) c, c01 = in(reg) c.add(TILE),
                c10 = in(reg) c.add(TILE * BAND), c11 = in(reg) c.add(TILE * BAND + TILE),
                s = in(reg) BAND * 4,
                options(nostack),
            );
            let t0 = g * TILE;
            let width = BAND.min(ntok.saturating_sub(t0));
            for i in 0..band {
                let dst = &mut out[(r0 + i) * ntok + t0..(r0 + i) * ntok + t0 + width];
                for ((o, &a), &s) in dst
                    .iter_mut()
                    .zip(&acc[i * BAND..i * BAND + width])
                    .zip(&tokens.sums[t0..t0 + width])
                {
                    *o = a - s;
                }
            }
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}
