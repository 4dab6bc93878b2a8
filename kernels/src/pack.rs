//! Lossless trit packings.
//!
//! * **I2** — 2 bits per trit, 4 trits per byte. Trit `j` of the sequence lives in byte `j / 4`,
//!   bits `2 * (j % 4)` and `2 * (j % 4) + 1`, stored as the code `trit + 1` (0, 1 or 2; code 3 is
//!   invalid). Padding codes in a final partial byte are 1 (trit 0).
//! * **T1** — base 3, 5 trits per byte (1.6 bits per trit, the densest practical byte packing).
//!   Byte `j / 5` holds `Σ_{i<5} (t_{5k+i} + 1) · 3^i`, so values are 0..=242; 243..=255 are invalid.
//!   Padding digits in a final partial byte are 1 (trit 0).
//! * **Hugging Face BitNet** — the layout of `transformers.integrations.bitnet.pack_weights`, used by
//!   published offline checkpoints (e.g. microsoft/bitnet-b1.58-2B-4T): a `[out, in]` trit matrix is
//!   stored as a uint8 `[ceil(out / 4), in]` tensor; trit `(r, c)` sits in packed row
//!   `r % ceil(out / 4)`, column `c`, bits `2 * (r / ceil(out / 4))`, as the code `trit + 1`.
//!   In words: the output dimension is cut into four contiguous slabs, and slab `i` goes to bit pair `i`.

use crate::error::{KernelError, Result};
use crate::trit::validate_trits;

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

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

pub fn pack_t1(trits: &[i8]) -> Result<Vec<u8>> {
    validate_trits(trits)?;
    let mut out = Vec::with_capacity(t1_len(trits.len()));
    for chunk in trits.chunks(5) {
        let mut byte = 0u8;
        for (i, &p) in POW3.iter().enumerate() {
            // A short last chunk is padded with zero trits (digit 1).
            let digit = chunk.get(i).map_or(1, |&t| (t + 1) as u8);
            byte += digit * p;
        }
        out.push(byte);
    }
    Ok(out)
}

/// Decoding table: byte value → its five trits.
pub(crate) static T1_DECODE: [[i8; 5]; 243] = {
    let mut table = [[0i8; 5]; 243];
    let mut v = 0;
    while v < 243 {
        let mut rest = v;
        let mut i = 0;
        while i < 5 {
            table[v][i] = (rest % 3) as i8 - 1;
            rest /= 3;
            i += 1;
        }
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
        let digits = T1_DECODE.get(b as usize).ok_or(KernelError::BadByte {
            format: "T1",
            offset,
            value: b,
        })?;
        out.extend_from_slice(digits);
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
    for r in 0..out_features {
        let (pr, shift) = (r % slab, 2 * (r / slab));
        let src = &packed[pr * in_features..(pr + 1) * in_features];
        let dst = &mut trits[r * in_features..(r + 1) * in_features];
        for (c, (d, &b)) in dst.iter_mut().zip(src).enumerate() {
            let code = (b >> shift) & 3;
            if code == 3 {
                return Err(KernelError::BadByte {
                    format: "HF BitNet packed weight",
                    offset: pr * in_features + c,
                    value: b,
                });
            }
            *d = code as i8 - 1;
        }
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
    fn t1_rejects_invalid_bytes_and_padding() {
        assert!(unpack_t1(&[243], 5).is_err());
        // 5 trits fit one byte; asking for 3 with non-zero padding digits is corrupt.
        let b = pack_t1(&[1, 1, 1, 1, 1]).unwrap();
        assert!(unpack_t1(&b, 3).is_err());
        assert_eq!(unpack_t1(&b, 5).unwrap(), vec![1; 5]);
    }
}
