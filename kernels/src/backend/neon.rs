//! AArch64 Advanced SIMD. Codes minus one are the trits themselves as signed bytes, so the
//! kernel multiplies trits by activations directly (`smull`) and widens pairwise into i32.

use super::TokenView;
use crate::matrix::BLOCK_BYTES;
use std::arch::aarch64::*;

/// Σ trit·q over one 32-byte block: half `h` (16 bytes), bit pair `i` → columns `32·i + 16·h ..`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block(codes: *const u8, x: *const i8) -> int32x4_t {
    let mask = vdupq_n_u8(3);
    let one = vdupq_n_s8(1);
    let mut acc = vdupq_n_s32(0);
    for h in 0..2 {
        let w = vld1q_u8(codes.add(16 * h));
        let parts = [
            vandq_u8(w, mask),
            vandq_u8(vshrq_n_u8::<2>(w), mask),
            vandq_u8(vshrq_n_u8::<4>(w), mask),
            vshrq_n_u8::<6>(w),
        ];
        for (i, c) in parts.into_iter().enumerate() {
            let trits = vsubq_s8(vreinterpretq_s8_u8(c), one);
            let xv = vld1q_s8(x.add(32 * i + 16 * h));
            acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(trits), vget_low_s8(xv)));
            acc = vpadalq_s16(acc, vmull_high_s8(trits, xv));
        }
    }
    acc
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn row_dot(row: *const u8, x: *const i8, blocks: usize) -> i32 {
    let mut acc = vdupq_n_s32(0);
    for b in 0..blocks {
        acc = vaddq_s32(acc, block(row.add(b * BLOCK_BYTES), x.add(b * 128)));
    }
    vaddvq_s32(acc)
}

/// # Safety
/// The CPU must support NEON; shapes as documented on [`super::dots`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dots(rows: &[u8], stride: usize, tokens: &[TokenView], out: &mut [i32]) {
    let blocks = stride / BLOCK_BYTES;
    for (r, row) in rows.chunks_exact(stride).enumerate() {
        for (t, token) in tokens.iter().enumerate() {
            out[r * tokens.len() + t] = row_dot(row.as_ptr(), token.natural.as_ptr(), blocks);
        }
    }
}

/// # Safety
/// The CPU must support NEON; shapes as documented on [`super::block_dots`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn block_dots(rows: &[u8], stride: usize, token: &TokenView, out: &mut [i32]) {
    let blocks = stride / BLOCK_BYTES;
    for (r, row) in rows.chunks_exact(stride).enumerate() {
        for b in 0..blocks {
            let acc = block(
                row.as_ptr().add(b * BLOCK_BYTES),
                token.natural.as_ptr().add(b * 128),
            );
            out[r * blocks + b] = vaddvq_s32(acc);
        }
    }
}
