//! Products straight from the T1 packing (base 3, five trits per byte, 1.6 bits per trit).
//!
//! T1 is the densest practical byte form, for storage and for memory-starved machines: it
//! streams 20% fewer bytes than I2 but needs a table look-up per byte to decode, so its product
//! is a portable table-driven loop rather than a SIMD kernel. Each row starts on a byte boundary.

use crate::error::{KernelError, Result};
use crate::pack::{check_matrix, pack_t1, t1_len, unpack_t1, T1_DECODE};
use crate::quant::QuantizedActivations;
use rayon::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub struct T1Matrix {
    rows: usize,
    cols: usize,
    stride: usize,
    bytes: Vec<u8>,
    scale: f32,
}

impl T1Matrix {
    /// Packs a row-major trit matrix with a per-tensor scale.
    pub fn from_trits(trits: &[i8], rows: usize, cols: usize, scale: f32) -> Result<Self> {
        check_matrix("T1 matrix", trits.len(), rows, cols)?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(KernelError::BadScale {
                what: "T1 matrix scale",
                value: scale,
            });
        }
        let stride = t1_len(cols);
        let mut bytes = Vec::with_capacity(rows * stride);
        for row in trits.chunks_exact(cols) {
            bytes.extend(pack_t1(row)?);
        }
        Ok(Self {
            rows,
            cols,
            stride,
            bytes,
            scale,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn packed_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn to_trits(&self) -> Result<Vec<i8>> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for row in self.bytes.chunks_exact(self.stride) {
            out.extend(unpack_t1(row, self.cols)?);
        }
        Ok(out)
    }

    /// `y = W · x` for every token (`y` is `[tokens, rows]`), on the current rayon pool.
    pub fn matmul(&self, x: &QuantizedActivations, y: &mut [f32]) -> Result<()> {
        if x.cols() != self.cols {
            return Err(KernelError::Shape {
                what: "activations for this T1 matrix",
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
        for t in 0..x.tokens() {
            let xt = x.token(t);
            let factor = self.scale * x.scale(t);
            let yt = &mut y[t * self.rows..(t + 1) * self.rows];
            yt.par_chunks_mut(256).enumerate().for_each(|(ci, yc)| {
                for (i, o) in yc.iter_mut().enumerate() {
                    let r = ci * 256 + i;
                    let row = &self.bytes[r * self.stride..(r + 1) * self.stride];
                    *o = row_dot(row, xt) as f32 * factor;
                }
            });
        }
        Ok(())
    }
}

/// Σ trit·q of one row; `x` is zero-padded past `cols`, so padding digits (trit 0) are harmless.
fn row_dot(row: &[u8], x: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (k, &b) in row.iter().enumerate() {
        let digits = &T1_DECODE[b as usize];
        let xs = &x[5 * k..];
        for i in 0..5 {
            acc += digits[i] as i32 * xs.get(i).copied().unwrap_or(0) as i32;
        }
    }
    acc
}
