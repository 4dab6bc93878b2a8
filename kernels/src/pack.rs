//! Lossless trit packings.
//!
//! * **I2** — 2 bits per trit, 4 trits per byte. Trit `j` of the sequence lives in byte `j / 4`,
//!   bits `2 * (j % 4)` and `2 * (j % 4) + 1`, stored as the code `trit + 1` (0, 1 or 2; code 3 is
//!   invalid). Padding codes in a final partial byte are 1 (trit 0).
//! * **T1** — base 3, 5 trits per byte (1.6 bits per trit, the densest practical byte packing).
//!   The five digits `dᵢ = t_{5k+i} + 1` of byte `k` form `v = Σ_{i<5} dᵢ · 3^(4−i)` (0..=242,
//!   the first trit most significant), stored as the fraction `v / 243` in fixed point,
//!   `f = ⌈v · 256 / 243⌉` (as GGML's TQ1_0 stores it), offset by 128: `byte = f ⊕ 0x80`. Then
//!   digit `i` is the top base-3 digit of `fᵢ = f · 3ⁱ mod 256`, `⌊3fᵢ / 256⌋`, with no division:
//!   and because 3 · 128 ≡ 128 (mod 256), `byte · 3ⁱ mod 256` is `fᵢ ⊕ 0x80`, so read as a signed
//!   byte `s` it gives the digit by two comparisons, `[s > −43] + [s > 42]` — what SIMD code does.
//!   Five zero trits are byte 0. The 13 byte values no `v` maps to are invalid. Padding digits in
//!   a final partial byte are 1 (trit 0).
//! * **Hugging Face BitNet** — the layout of `transformers.integrations.bitnet.pack_weights`, used by
//!   published offline checkpoints (e.g. microsoft/bitnet-b1.58-2B-4T): a `[out, in]` trit matrix is
//!   stored as a uint8 `[ceil(out / 4), in]` tensor; trit `(r, c)` sits in packed row
//!   `r % ceil(out / 4)`, column `c`, bits `2 * (r / ceil(out / 4))`, as the code `trit + 1`.
//!   In words: the output dimension is cut into four contiguous slabs, and slab `i` goes to bit pair `i`.

use crate::error::{KernelError, Result};
use crate::trit::validate_trits;
use rayon::prelude::*;

/// Bytes needed to hold `len` trits in I2.
pub const fn i2_len(len: usize) -> usize {
    len.div_ceil(4)
}

/// Bytes needed to hold `len` trits in T1.
pub const fn t1_len(len: usize) -> usize {
    len.div_ceil(5)
}

pub fn pack_i2(trits: &[i8]) -> Result<Vec<u8>> {
    validate_trits(trits)?;
    let mut out = vec![0x55u8; i2_len(trits.len())];
    for (j, &t) in trits.iter().enumerate() {
        let shift = 2 * (j % 4);
        let byte = &mut out[j / 4];
        *byte = (*byte & !(3 << shift)) | (((t + 1) as u8) << shift);
    }
    Ok(out)
}

pub fn unpack_i2(bytes: &[u8], len: usize) -> Result<Vec<i8>> {
    if bytes.len() != i2_len(len) {
        return Err(KernelError::Length {
            what: "I2 packed bytes",
            expected: i2_len(len),
            actual: bytes.len(),
        });
    }
    let mut out = Vec::with_capacity(len);
    for j in 0..len {
        let code = (bytes[j / 4] >> (2 * (j % 4))) & 3;
        if code == 3 {
            return Err(KernelError::BadByte {
                format: "I2",
                offset: j / 4,
                value: bytes[j / 4],
            });
        }
        out.push(code as i8 - 1);
    }
    Ok(out)
}

/// The T1 byte of five digits `v = Σ dᵢ · 3^(4−i)` (`v` < 243): see the module's notes.
pub(crate) const fn t1_encode(v: u8) -> u8 {
    ((v as u16 * 256).div_ceil(243)) as u8 ^ 0x80
}

/// The T1 byte of up to five trits (already validated); missing trits are zero.
pub(crate) fn t1_byte(five: &[i8]) -> u8 {
    let v = (0..5).fold(0u8, |v, i| {
        v * 3 + five.get(i).map_or(1, |&t| (t + 1) as u8)
    });
    t1_encode(v)
}

pub fn pack_t1(trits: &[i8]) -> Result<Vec<u8>> {
    validate_trits(trits)?;
    Ok(trits.chunks(5).map(t1_byte).collect())
}

/// Decoding table: byte → its five trits, `None` for the 13 bytes that are no T1 byte.
pub(crate) static T1_DECODE: [Option<[i8; 5]>; 256] = {
    let mut table = [None; 256];
    let mut v = 0;
    while v < 243 {
        let mut trits = [0i8; 5];
        let mut rest = v;
        let mut i = 5;
        while i > 0 {
            i -= 1;
            trits[i] = (rest % 3) as i8 - 1;
            rest /= 3;
        }
        table[t1_encode(v as u8) as usize] = Some(trits);
        v += 1;
    }
    table
};

pub fn unpack_t1(bytes: &[u8], len: usize) -> Result<Vec<i8>> {
    if bytes.len() != t1_len(len) {
        return Err(KernelError::Length {
            what: "T1 packed bytes",
            expected: t1_len(len),
            actual: bytes.len(),
        });
    }
    let mut out = Vec::with_capacity(bytes.len() * 5);
    for (offset, &b) in bytes.iter().enumerate() {
        let digits = T1_DECODE[b as usize].ok_or(KernelError::BadByte {
            format: "T1",
            offset,
            value: b,
        })?;
        out.extend_from_slice(&digits);
    }
    // The padding digits must decode to trit 0; anything else means a foreign or corrupt buffer.
    if out[len..].iter().any(|&t| t != 0) {
        let offset = bytes.len() - 1;
        return Err(KernelError::BadByte {
            format: "T1 (non-zero padding)",
            offset,
            value: bytes[offset],
        });
    }
    out.truncate(len);
    Ok(out)
}

/// Number of packed rows the Hugging Face layout uses for `out_features` output rows.
pub const fn hf_packed_rows(out_features: usize) -> usize {
    out_features.div_ceil(4)
}

/// Packs a row-major `[out_features, in_features]` trit matrix into the Hugging Face BitNet layout.
pub fn hf_pack(trits: &[i8], out_features: usize, in_features: usize) -> Result<Vec<u8>> {
    check_matrix("HF pack input", trits.len(), out_features, in_features)?;
    validate_trits(trits)?;
    let slab = hf_packed_rows(out_features);
    // Rows past `out_features` in the last slab are padding: code 0 as transformers leaves them.
    let mut packed = vec![0u8; slab * in_features];
    for r in 0..out_features {
        let (pr, shift) = (r % slab, 2 * (r / slab));
        let src = &trits[r * in_features..(r + 1) * in_features];
        let dst = &mut packed[pr * in_features..(pr + 1) * in_features];
        for (d, &t) in dst.iter_mut().zip(src) {
            *d |= ((t + 1) as u8) << shift;
        }
    }
    Ok(packed)
}

/// Unpacks a Hugging Face BitNet uint8 tensor of shape `[ceil(out/4), in]` into a row-major
/// `[out_features, in_features]` trit matrix.
pub fn hf_unpack(packed: &[u8], out_features: usize, in_features: usize) -> Result<Vec<i8>> {
    if out_features == 0 || in_features == 0 {
        return Err(KernelError::Shape {
            what: "HF packed weight",
            rows: out_features,
            cols: in_features,
            reason: "empty",
        });
    }
    let slab = hf_packed_rows(out_features);
    let expected = slab.checked_mul(in_features).ok_or(KernelError::Shape {
        what: "HF packed weight",
        rows: out_features,
        cols: in_features,
        reason: "too large",
    })?;
    if packed.len() != expected {
        return Err(KernelError::Length {
            what: "HF packed weight bytes",
            expected,
            actual: packed.len(),
        });
    }
    let mut trits = vec![0i8; out_features * in_features];
    let source = |r: usize| {
        let (pr, shift) = (r % slab, 2 * (r / slab));
        (pr, shift, &packed[pr * in_features..(pr + 1) * in_features])
    };
    // Rows in parallel without a branch per weight (a 2B model has two billion): each row
    // notes whether it saw the invalid code 3, and the first such row is searched again for
    // the error's offset.
    let first_bad = trits
        .par_chunks_mut(in_features)
        .enumerate()
        .filter_map(|(r, dst)| {
            let (_, shift, src) = source(r);
            let mut bad = 0u8;
            for (d, &b) in dst.iter_mut().zip(src) {
                let code = (b >> shift) & 3;
                bad |= u8::from(code == 3);
                *d = code as i8 - 1;
            }
            (bad != 0).then_some(r)
        })
        .min();
    if let Some(r) = first_bad {
        let (pr, shift, src) = source(r);
        let c = src
            .iter()
            .position(|&b| (b >> shift) & 3 == 3)
            .expect("the row saw code 3");
        return Err(KernelError::BadByte {
            format: "HF BitNet packed weight",
            offset: pr * in_features + c,
            value: src[c],
        });
    }
    Ok(trits)
}

pub(crate) fn check_matrix(what: &'static str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(KernelError::Shape {
            what,
            rows,
            cols,
            reason: "empty",
        });
    }
    let expected = rows.checked_mul(cols).ok_or(KernelError::Shape {
        what,
        rows,
        cols,
        reason: "too large",
    })?;
    if len != expected {
        return Err(KernelError::Length {
            what,
            expected,
            actual: len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_layout_matches_transformers_docstring() {
        // transformers' unpack_weights example: packed [[0b10100001, 0b00011000],
        // [0b10010000, 0b00001010]] unpacks to the 8x2 matrix below.
        let packed = [0b1010_0001u8, 0b0001_1000, 0b1001_0000, 0b0000_1010];
        let trits = hf_unpack(&packed, 8, 2).unwrap();
        let expected: [i8; 16] = [0, -1, -1, 1, -1, 1, -1, 1, 1, 0, 0, -1, 1, -1, 1, -1];
        assert_eq!(trits, expected);
        assert_eq!(hf_pack(&trits, 8, 2).unwrap(), packed);
    }

    #[test]
    fn hf_unpack_names_the_first_invalid_code_in_row_order() {
        // 8 rows of 3 columns in two packed rows; code 3 in the top bit pair of packed byte 1
        // (row 6, column 1) and in the low pair of packed byte 5 (row 1, column 2): row 1 comes
        // first in row order, though its byte comes later.
        let mut packed = [0x55u8; 6];
        packed[1] = 0xd5;
        packed[5] = 0x57;
        let err = hf_unpack(&packed, 8, 3).unwrap_err();
        assert_eq!(
            err,
            KernelError::BadByte {
                format: "HF BitNet packed weight",
                offset: 5,
                value: 0x57
            }
        );
        packed[5] = 0x55;
        let err = hf_unpack(&packed, 8, 3).unwrap_err();
        assert!(
            matches!(
                err,
                KernelError::BadByte {
                    offset: 1,
                    value: 0xd5,
                    ..
                }
            ),
            "{err:?}"
        );
        packed[1] = 0x55;
        assert_eq!(hf_unpack(&packed, 8, 3).unwrap(), vec![0; 24]);
    }

    #[test]
    fn t1_rejects_invalid_bytes_and_padding() {
        // ⌈v·256/243⌉ skips one value in about every 20: 1, so byte 1 ⊕ 0x80, is none of them.
        assert!(unpack_t1(&[129], 5).is_err());
        assert_eq!(T1_DECODE.iter().filter(|d| d.is_none()).count(), 13);
        // 5 trits fit one byte; asking for 3 with non-zero padding digits is corrupt.
        let b = pack_t1(&[1, 1, 1, 1, 1]).unwrap();
        assert!(unpack_t1(&b, 3).is_err());
        assert_eq!(unpack_t1(&b, 5).unwrap(), vec![1; 5]);
    }

    /// Digit `i` of a T1 byte is the top base-3 digit of `(byte ⊕ 0x80) · 3ⁱ mod 256`, and two
    /// signed comparisons of `byte · 3ⁱ mod 256` give it, for every byte: what the SIMD kernels
    /// compute.
    #[test]
    fn t1_digits_come_from_fixed_point_products() {
        for (b, trits) in T1_DECODE.iter().enumerate() {
            let Some(trits) = trits else { continue };
            let (mut f, mut s) = (b as u8 ^ 0x80, b as u8);
            for &t in trits {
                assert_eq!(((3 * f as u16) >> 8) as i8 - 1, t, "byte {b}");
                let signed = s as i8;
                assert_eq!(
                    (signed > -43) as i8 + (signed > 42) as i8 - 1,
                    t,
                    "byte {b}"
                );
                f = f.wrapping_mul(3);
                s = s.wrapping_mul(3);
            }
        }
        assert_eq!(pack_t1(&[0; 5]).unwrap(), [0]);
        assert_eq!(pack_t1(&[-1; 5]).unwrap(), [128]);
        assert_eq!(pack_t1(&[1; 5]).unwrap(), [127]);
    }
}
