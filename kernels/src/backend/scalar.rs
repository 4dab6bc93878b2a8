//! The portable reference: computes Σ trit·q straight from the definition of the layout.

use super::TokenView;
use crate::matrix::{BLOCK_BYTES, BLOCK_COLS};

/// Σ trit·q over one block: byte `b`, bit pair `i` holds the code of column `32·i + b`.
#[inline]
fn block_dot(codes: &[u8], x: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (b, &byte) in codes.iter().enumerate() {
        for i in 0..4 {
            let trit = ((byte >> (2 * i)) & 3) as i32 - 1;
            acc += trit * x[32 * i + b] as i32;
        }
    }
    acc
}

fn row_dot(row: &[u8], x: &[i8]) -> i32 {
    row.chunks_exact(BLOCK_BYTES)
        .zip(x.chunks_exact(BLOCK_COLS))
        .map(|(codes, xb)| block_dot(codes, xb))
        .sum()
}

pub(crate) fn dots(rows: &[u8], stride: usize, tokens: &[TokenView], out: &mut [i32]) {
    for (r, row) in rows.chunks_exact(stride).enumerate() {
        for (t, token) in tokens.iter().enumerate() {
            out[r * tokens.len() + t] = row_dot(row, token.natural);
        }
    }
}

pub(crate) fn block_dots(rows: &[u8], stride: usize, token: &TokenView, out: &mut [i32]) {
    let blocks = stride / BLOCK_BYTES;
    for (r, row) in rows.chunks_exact(stride).enumerate() {
        for (b, (codes, xb)) in row
            .chunks_exact(BLOCK_BYTES)
            .zip(token.natural.chunks_exact(BLOCK_COLS))
            .enumerate()
        {
            out[r * blocks + b] = block_dot(codes, xb);
        }
    }
}
