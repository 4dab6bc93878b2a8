//! Products straight from the T1 packing (base 3, five trits per byte, 1.6 bits per trit).
//!
//! T1 is the densest practical byte form, for storage and for memory-starved machines: it
//! streams 20% fewer bytes than I2, but its digits do not line up with vector lanes. The product
//! therefore uses a per-token look-up table instead of decoding: for every run of five
//! activations, the 243 possible partial sums Σ tᵢ·qᵢ are computed once, and each weight byte
//! becomes one table load and one add, whatever its five trits are. Each row starts on a byte
//! boundary. On AVX-512 with VBMI the bytes are decoded in registers instead: two 256-entry byte
//! look-ups turn 64 bytes into the codes of 320 weights (four digits as an I2 byte, plus the
//! fifth), which meet activations regrouped by digit.

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
        if cols > crate::matrix::MAX_COLS {
            return Err(KernelError::Shape {
                what: "T1 matrix",
                rows,
                cols,
                reason: "more than 2^20 columns would overflow the kernels' i32 lanes",
            });
        }
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
        // Rows per task: a few tasks per thread, in whole pairs of rows.
        let chunk = self
            .rows
            .div_ceil(rayon::current_num_threads() * 4)
            .max(16)
            .next_multiple_of(2);
        let prefetch = crate::backend::prefetch_distance();
        for t in 0..x.tokens() {
            digit_planes(&x.token(t)[..self.cols], &mut planes);
            let sum = x.sum(t);
            let factor = self.scale * x.scale(t);
            let yt = &mut y[t * self.rows..(t + 1) * self.rows];
            let planes = &planes;
            let run = |r0: usize, yc: &mut [f32]| {
                let rows = &self.bytes[r0 * self.stride..(r0 + yc.len()) * self.stride];
                let mut dots = vec![0i32; yc.len()];
                // SAFETY: matmul_with checked AVX-512 (F/BW/VL/VNNI, via the backend) and VBMI;
                // `rows` holds `yc.len()` rows of `stride` bytes and `planes` covers a row (both
                // asserted again inside).
                unsafe { vbmi::rows(rows, self.stride, planes, prefetch, &mut dots) };
                for (o, d) in yc.iter_mut().zip(dots) {
                    *o = (d - sum) as f32 * factor;
                }
            };
            if chunk >= self.rows {
                run(0, yt);
            } else {
                yt.par_chunks_mut(chunk)
                    .enumerate()
                    .for_each(|(ci, yc)| run(ci * chunk, yc));
            }
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

/// T1 decoding with byte permutes, two look-ups per byte.
///
/// A byte `v` < 243 holds five base-3 digits `d0..d4` (`v = Σ dᵢ·3ⁱ`). One 256-entry table maps
/// `v` to its first four digits as 2-bit fields — `d0 | d1<<2 | d2<<4 | d3<<6`, exactly an I2
/// byte — and a second one to `d4`. The I2 byte is then split by masking in place (`& 0x0c` is
/// `d1·4`), with accumulator `i` collecting `4ⁱ·Σ dᵢ·q`, divided out exactly at the end as in the
/// I2 kernel. A 256-entry look-up is two `vpermt2b` (128 entries each) and a blend on the top
/// bit, so a 64-byte chunk (320 weights) costs four permutes, two blends, four ANDs and five
/// `vpdpbusd` — where decoding each digit on its own took ten permutes and five blends.
/// Σ code·q − Σ q is Σ trit·q, as in the I2 kernels.
#[cfg(target_arch = "x86_64")]
mod vbmi {
    use std::arch::x86_64::*;

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

    /// Σ code·q for each of `out.len()` rows of `stride` bytes, two rows at a time so each
    /// activation load serves both.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW, VL, VNNI and VBMI; `rows.len() == out.len() * stride`
    /// and `planes` holds 320 values per 64-byte chunk of a row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    pub(super) unsafe fn rows(
        rows: &[u8],
        stride: usize,
        planes: &[i8],
        prefetch: usize,
        out: &mut [i32],
    ) {
        assert_eq!(
            rows.len(),
            out.len() * stride,
            "T1 rows and outputs disagree"
        );
        assert!(
            planes.len() >= stride.div_ceil(64) * 320,
            "T1 planes too short"
        );
        let low = table(&TABLES.0);
        let high = table(&TABLES.1);
        let mut r = 0;
        while r + 2 <= out.len() {
            let d = tile::<2>(
                rows.as_ptr().add(r * stride),
                stride,
                planes,
                &low,
                &high,
                prefetch,
            );
            out[r] = d[0];
            out[r + 1] = d[1];
            r += 2;
        }
        if r < out.len() {
            let d = tile::<1>(
                rows.as_ptr().add(r * stride),
                stride,
                planes,
                &low,
                &high,
                prefetch,
            );
            out[r] = d[0];
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn tile<const R: usize>(
        rows: *const u8,
        stride: usize,
        planes: &[i8],
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
        let chunks = stride.div_ceil(64);
        for c in 0..chunks {
            let len = (stride - 64 * c).min(64);
            let mask: u64 = if len == 64 {
                u64::MAX
            } else {
                (1u64 << len) - 1
            };
            let p = planes.as_ptr().add(c * 320);
            let xv: [__m512i; 5] =
                std::array::from_fn(|i| _mm512_loadu_si512(p.add(64 * i) as *const __m512i));
            for (r, a) in acc.iter_mut().enumerate() {
                let ptr = rows.add(r * stride + 64 * c);
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(prefetch) as *const i8);
                // Masked past the row's end: byte 0 decodes to digits 0, whose activations are
                // zero there (the planes are zero-padded), so they add nothing.
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
