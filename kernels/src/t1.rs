//! Products straight from the T1 packing (base 3, five trits per byte, 1.6 bits per trit).
//!
//! T1 is the densest practical byte form, for storage and for memory-starved machines: it
//! streams 20% fewer bytes than I2, but its digits do not line up with vector lanes. The product
//! therefore uses a per-token look-up table instead of decoding: for every run of five
//! activations, the 243 possible partial sums Σ tᵢ·qᵢ are computed once, and each weight byte
//! becomes one table load and one add, whatever its five trits are. Each row starts on a byte
//! boundary. On AVX-512 with VBMI the bytes are decoded in registers instead: a byte permute per
//! digit turns 64 bytes into the codes of 320 weights, which meet activations regrouped by digit.

use crate::backend::Backend;
use crate::error::{KernelError, Result};
use crate::mem::WeightBytes;
use crate::pack::{check_matrix, pack_t1, t1_len, unpack_t1};
use crate::quant::QuantizedActivations;
use rayon::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub struct T1Matrix {
    rows: usize,
    cols: usize,
    stride: usize,
    bytes: WeightBytes,
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
        let mut bytes = WeightBytes::zeroed(rows * stride);
        for (row, dst) in trits
            .chunks_exact(cols)
            .zip(bytes.chunks_exact_mut(stride.max(1)))
        {
            dst.copy_from_slice(&pack_t1(row)?);
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

    /// `y = W · x` for every token (`y` is `[tokens, rows]`), on the current rayon pool, with
    /// the fastest T1 path this CPU has.
    pub fn matmul(&self, x: &QuantizedActivations, y: &mut [f32]) -> Result<()> {
        self.matmul_with(Backend::active(), x, y)
    }

    /// [`matmul`](Self::matmul) on a chosen backend. AVX-512 decodes T1 bytes with byte
    /// permutes (VBMI) where the CPU has them; every other backend uses the look-up table.
    pub fn matmul_with(
        &self,
        backend: Backend,
        x: &QuantizedActivations,
        y: &mut [f32],
    ) -> Result<()> {
        backend.ensure_supported()?;
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
        #[cfg(target_arch = "x86_64")]
        if backend == Backend::Avx512Vnni && is_x86_feature_detected!("avx512vbmi") {
            self.matmul_vbmi(x, y);
            return Ok(());
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

    #[cfg(target_arch = "x86_64")]
    fn matmul_vbmi(&self, x: &QuantizedActivations, y: &mut [f32]) {
        let chunks = self.stride.div_ceil(64);
        let mut planes = vec![0i8; chunks * 320];
        for t in 0..x.tokens() {
            digit_planes(&x.token(t)[..self.cols], &mut planes);
            let sum = x.sum(t);
            let factor = self.scale * x.scale(t);
            let yt = &mut y[t * self.rows..(t + 1) * self.rows];
            let planes = &planes;
            yt.par_chunks_mut(256).enumerate().for_each(|(ci, yc)| {
                for (i, o) in yc.iter_mut().enumerate() {
                    let r = ci * 256 + i;
                    let row = &self.bytes[r * self.stride..(r + 1) * self.stride];
                    // SAFETY: matmul_with checked AVX-512 (F/BW/VL/VNNI, via the backend) and VBMI.
                    let dot = unsafe { vbmi::row_code_dot(row, planes) } - sum;
                    *o = dot as f32 * factor;
                }
            });
        }
    }
}

/// Activations regrouped to meet T1 digits: for each 64-byte chunk `c` of a row (320 columns)
/// and digit `i`, 64 values `x[320c + 5b + i]` for `b` in 0..64, zero past the row's end.
#[cfg(target_arch = "x86_64")]
fn digit_planes(x: &[i8], planes: &mut [i8]) {
    planes.fill(0);
    for (col, &v) in x.iter().enumerate() {
        let (c, within) = (col / 320, col % 320);
        let (b, i) = (within / 5, within % 5);
        planes[c * 320 + i * 64 + b] = v;
    }
}

/// T1 decoding with byte permutes: for digit `i`, a 256-entry table maps each byte to its digit
/// `i` plus one in 0..=2 — the code that `vpdpbusd` multiplies as an unsigned byte; Σ code·q − Σ q
/// is then Σ trit·q, as in the I2 kernels.
#[cfg(target_arch = "x86_64")]
mod vbmi {
    use std::arch::x86_64::*;

    /// `DIGIT_CODES[i][v]` = digit `i` of `v` in base 3 (0..=2) for v < 243; 1 (trit 0) above,
    /// though valid T1 bytes never reach there.
    static DIGIT_CODES: [[u8; 256]; 5] = {
        let mut t = [[1u8; 256]; 5];
        let mut v = 0;
        while v < 243 {
            let mut rest = v;
            let mut i = 0;
            while i < 5 {
                t[i][v] = (rest % 3) as u8;
                rest /= 3;
                i += 1;
            }
            v += 1;
        }
        t
    };

    /// Σ code·q over one row; `planes` from `digit_planes`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW, VL, VNNI and VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    pub(super) unsafe fn row_code_dot(row: &[u8], planes: &[i8]) -> i32 {
        let table = |i: usize, half: usize| {
            _mm512_loadu_si512(DIGIT_CODES[i].as_ptr().add(128 * half) as *const __m512i)
        };
        let table_hi = |i: usize, half: usize| {
            _mm512_loadu_si512(DIGIT_CODES[i].as_ptr().add(128 * half + 64) as *const __m512i)
        };
        // Each digit's 256-byte table as two 128-byte halves of two registers.
        let lo: [(__m512i, __m512i); 5] = std::array::from_fn(|i| (table(i, 0), table_hi(i, 0)));
        let hi: [(__m512i, __m512i); 5] = std::array::from_fn(|i| (table(i, 1), table_hi(i, 1)));
        let mut acc = _mm512_setzero_si512();
        for (c, chunk) in row.chunks(64).enumerate() {
            let mask: u64 = if chunk.len() == 64 {
                u64::MAX
            } else {
                (1u64 << chunk.len()) - 1
            };
            let w = _mm512_maskz_loadu_epi8(mask, chunk.as_ptr() as *const i8);
            // Bytes 128..=242 come from the upper tables; the top bit picks them.
            let upper = _mm512_movepi8_mask(w);
            for i in 0..5 {
                let from_lo = _mm512_permutex2var_epi8(lo[i].0, w, lo[i].1);
                let from_hi = _mm512_permutex2var_epi8(hi[i].0, w, hi[i].1);
                let codes = _mm512_mask_blend_epi8(upper, from_lo, from_hi);
                let xv =
                    _mm512_loadu_si512(planes.as_ptr().add(c * 320 + i * 64) as *const __m512i);
                acc = _mm512_dpbusd_epi32(acc, codes, xv);
            }
        }
        _mm512_reduce_add_epi32(acc)
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
