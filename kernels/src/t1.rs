//! Products straight from the T1 packing (base 3, five trits per byte, 1.6 bits per trit).
//!
//! T1 is the densest practical byte form, for storage and for memory-starved machines: it
//! streams 20% fewer bytes than I2, but its digits do not line up with vector lanes. The product
//! therefore uses a per-token look-up table instead of decoding: for every run of five
//! activations, the 243 possible partial sums Σ tᵢ·qᵢ are computed once, and each weight byte
//! becomes one table load and one add, whatever its five trits are. Each row starts on a byte
//! boundary.

use crate::error::{KernelError, Result};
use crate::pack::{check_matrix, pack_t1, t1_len, unpack_t1};
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
        let groups = self.stride;
        let mut table = Vec::new();
        for t in 0..x.tokens() {
            partial_sums(x.token(t), groups, &mut table);
            let factor = self.scale * x.scale(t);
            let yt = &mut y[t * self.rows..(t + 1) * self.rows];
            let table = &table;
            yt.par_chunks_mut(256).enumerate().for_each(|(ci, yc)| {
                for (i, o) in yc.iter_mut().enumerate() {
                    let r = ci * 256 + i;
                    let row = &self.bytes[r * self.stride..(r + 1) * self.stride];
                    let dot: i32 = row
                        .iter()
                        .zip(table.chunks_exact(243))
                        .map(|(&b, sums)| sums[b as usize] as i32)
                        .sum();
                    *o = dot as f32 * factor;
                }
            });
        }
        Ok(())
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
