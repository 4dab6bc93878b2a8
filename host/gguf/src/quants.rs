//! Block codecs: float and k-quant tensors to f32 (and back for F32/F16/BF16/Q8_0/Q6_K), and the
//! ternary types to trits with their scales — trits are read as trits, never requantised.
//!
//! Layouts follow ggml (`ggml-common.h`, `ggml-quants.c`) and bitnet.cpp's I2_S.

use crate::types::{GgmlType, QK_I2_S, QK_K};
use half::{bf16, f16};

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises `bytes` (a whole tensor of `elements` values, already size-checked) to f32.
/// Returns `None` for types tritlab does not decode to floats.
pub fn dequantize(ty: GgmlType, bytes: &[u8], elements: usize) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(elements);
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
        ),
        GgmlType::Q8_0 => {
            for b in bytes.chunks_exact(34) {
                let d = f16_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
            }
        }
        GgmlType::Q4K => {
            for b in bytes.chunks_exact(144) {
                let d = f16_at(b, 0);
                let dmin = f16_at(b, 2);
                let scales = &b[4..16];
                let qs = &b[16..144];
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
                    let q = &qs[32 * j..32 * j + 32];
                    out.extend(q.iter().map(|&v| d1 * (v & 0xF) as f32 - mm1));
                    out.extend(q.iter().map(|&v| d2 * (v >> 4) as f32 - mm2));
                }
            }
        }
        GgmlType::Q6K => {
            for b in bytes.chunks_exact(210) {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                let mut y = [0f32; QK_K];
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
                    let y = &mut y[128 * half..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
                out.extend_from_slice(&y);
            }
        }
        GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2S => {
            let t = ternary(ty, bytes, elements).ok()?;
            for (i, &tr) in t.trits.iter().enumerate() {
                let s = match &t.scales {
                    TritScales::PerTensor(s) => *s,
                    TritScales::PerBlock { block, scales } => scales[i / block],
                };
                out.push(tr as f32 * s);
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Q4_K's 6-bit scale and min of sub-block `j` (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Encodes f32 values as `ty` (F32, F16, BF16, Q8_0 or Q6_K). The caller checks that rows are
/// whole blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    Some(match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(values.len() / 32 * 34);
            for x in values.chunks_exact(32) {
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
            }
            out
        }
        GgmlType::Q6K => values
            .chunks_exact(QK_K)
            .flat_map(quantize_q6k_block)
            .collect(),
        _ => return None,
    })
}

/// One Q6_K super-block: a scale per 16 values (8-bit, relative to the block's f16 `d`) and
/// 6-bit values in [-32, 31]. Scales are chosen by absmax (not ggml's search for the best
/// scale), which gives a valid, slightly less accurate encoding.
fn quantize_q6k_block(x: &[f32]) -> Vec<u8> {
    let mut sub = [0f32; 16];
    for (s, c) in sub.iter_mut().zip(x.chunks_exact(16)) {
        let amax = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        *s = amax / 31.0;
    }
    let max_sub = sub.iter().fold(0f32, |m, v| m.max(*v));
    let d = max_sub / 127.0;
    let d16 = f16::from_f32(d);
    let d = d16.to_f32();
    let mut sc = [0i8; 16];
    let mut q = [0u8; QK_K];
    for (g, c) in x.chunks_exact(16).enumerate() {
        sc[g] = if d > 0.0 {
            (sub[g] / d).round().clamp(-128.0, 127.0) as i8
        } else {
            0
        };
        let step = d * sc[g] as f32;
        let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
        for (i, &v) in c.iter().enumerate() {
            q[16 * g + i] = ((v * inv).round().clamp(-32.0, 31.0) as i32 + 32) as u8;
        }
    }
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for half in 0..2 {
        let q = &q[128 * half..];
        for l in 0..32 {
            let (q1, q2, q3, q4) = (q[l], q[l + 32], q[l + 64], q[l + 96]);
            ql[64 * half + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
            ql[64 * half + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
            qh[32 * half + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
    let mut out = Vec::with_capacity(210);
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d16.to_bits().to_le_bytes());
    out
}

/// The scales of a ternary tensor: value = trit · scale.
#[derive(Debug, Clone, PartialEq)]
pub enum TritScales {
    /// One scale for the whole tensor (I2_S).
    PerTensor(f32),
    /// One scale per `block` consecutive elements of the flattened tensor (TQ1_0/TQ2_0: 256,
    /// each the f16 `d` of its block widened exactly to f32).
    PerBlock { block: usize, scales: Vec<f32> },
}

/// A ternary tensor read from its blocks: row-major trits and their scales.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryTensor {
    pub trits: Vec<i8>,
    pub scales: TritScales,
}

/// Why ternary data could not be read: the byte (relative to the tensor's data) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct TritError {
    pub byte: usize,
    pub message: String,
}

/// Reads TQ1_0, TQ2_0 or I2_S data (`elements` values, size-checked) into trits and scales.
pub fn ternary(ty: GgmlType, bytes: &[u8], elements: usize) -> Result<TernaryTensor, TritError> {
    let mut trits = Vec::with_capacity(elements);
    let code = |c: u8, byte: usize| -> Result<i8, TritError> {
        if c > 2 {
            Err(TritError {
                byte,
                message: format!("2-bit code 3 is not a trit (byte {c:#04x})"),
            })
        } else {
            Ok(c as i8 - 1)
        }
    };
    match ty {
        GgmlType::TQ2_0 => {
            let mut scales = Vec::with_capacity(elements / QK_K);
            for (bi, b) in bytes.chunks_exact(66).enumerate() {
                let base = bi * 66;
                // Two runs of 128: byte m, bit pair n (low bits first) is element 32·n + m.
                for j in 0..2 {
                    for n in 0..4 {
                        for m in 0..32 {
                            let byte = b[32 * j + m];
                            trits.push(code((byte >> (2 * n)) & 3, base + 32 * j + m)?);
                        }
                    }
                }
                scales.push(f16_at(b, 64));
            }
            Ok(TernaryTensor {
                trits,
                scales: TritScales::PerBlock {
                    block: QK_K,
                    scales,
                },
            })
        }
        GgmlType::TQ1_0 => {
            let mut scales = Vec::with_capacity(elements / QK_K);
            // Base-3 digits, most significant first, stored as ceil(v · 256 / 243): digit n of
            // byte q is ((q · 3ⁿ mod 256) · 3) >> 8.
            const POW3: [u8; 5] = [1, 3, 9, 27, 81];
            let digit = |q: u8, n: usize| ((q.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as u8;
            for (bi, b) in bytes.chunks_exact(54).enumerate() {
                let base = bi * 54;
                let (qs, qh) = (&b[0..48], &b[48..52]);
                for n in 0..5 {
                    for (m, &q) in qs[..32].iter().enumerate() {
                        trits.push(code(digit(q, n), base + m)?);
                    }
                }
                for n in 0..5 {
                    for m in 0..16 {
                        trits.push(code(digit(qs[32 + m], n), base + 32 + m)?);
                    }
                }
                for n in 0..4 {
                    for (j, &q) in qh.iter().enumerate() {
                        trits.push(code(digit(q, n), base + 48 + j)?);
                    }
                }
                scales.push(f16_at(b, 52));
            }
            Ok(TernaryTensor {
                trits,
                scales: TritScales::PerBlock {
                    block: QK_K,
                    scales,
                },
            })
        }
        GgmlType::I2S => {
            let packed = elements / 4;
            // Blocks of 128 in 32 bytes: byte b, bit pair g from the top (shift 6 − 2g) is
            // element 32·g + b of the block. Codes 0, 1, 2 are −1, 0, +1.
            for (bi, blk) in bytes[..packed].chunks_exact(QK_I2_S / 4).enumerate() {
                for g in 0..4 {
                    for (b, &byte) in blk.iter().enumerate() {
                        trits.push(code((byte >> (6 - 2 * g)) & 3, bi * 32 + b)?);
                    }
                }
            }
            let s = &bytes[packed..packed + 4];
            let scale = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            Ok(TernaryTensor {
                trits,
                scales: TritScales::PerTensor(scale),
            })
        }
        other => Err(TritError {
            byte: 0,
            message: format!("{other} is not a ternary type"),
        }),
    }
}

/// Packs trits (row length a multiple of the type's block) as TQ1_0 or TQ2_0 with one f16 scale
/// per 256 values, or as I2_S with one f32 scale (`scales` must then hold one value).
pub fn encode_ternary(ty: GgmlType, trits: &[i8], scales: &[f32]) -> Option<Vec<u8>> {
    let c = |t: i8| (t + 1) as u8;
    match ty {
        GgmlType::TQ2_0 => {
            let mut out = Vec::with_capacity(trits.len() / QK_K * 66);
            for (x, &d) in trits.chunks_exact(QK_K).zip(scales) {
                for j in 0..2 {
                    for m in 0..32 {
                        let mut q = 0u8;
                        for n in 0..4 {
                            q |= c(x[128 * j + 32 * n + m]) << (2 * n);
                        }
                        out.push(q);
                    }
                }
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            }
            Some(out)
        }
        GgmlType::TQ1_0 => {
            let pack = |digits: &mut dyn Iterator<Item = u8>| -> u8 {
                let q = digits.fold(0u16, |q, d| q * 3 + d as u16);
                (q * 256).div_ceil(243) as u8
            };
            let mut out = Vec::with_capacity(trits.len() / QK_K * 54);
            for (x, &d) in trits.chunks_exact(QK_K).zip(scales) {
                for m in 0..32 {
                    out.push(pack(&mut (0..5).map(|n| c(x[m + 32 * n]))));
                }
                for m in 0..16 {
                    out.push(pack(&mut (0..5).map(|n| c(x[160 + m + 16 * n]))));
                }
                for j in 0..4 {
                    // Four digits and a zero digit: the first value is the most significant.
                    out.push(pack(
                        &mut (0..4)
                            .map(|n| c(x[240 + j + 4 * n]))
                            .chain(std::iter::once(0)),
                    ));
                }
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            }
            Some(out)
        }
        GgmlType::I2S => {
            let scale = *scales.first()?;
            let mut out = Vec::with_capacity(trits.len() / 4 + 32);
            for x in trits.chunks_exact(QK_I2_S) {
                for b in 0..32 {
                    let mut q = 0u8;
                    for g in 0..4 {
                        q |= c(x[32 * g + b]) << (6 - 2 * g);
                    }
                    out.push(q);
                }
            }
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend_from_slice(&[0u8; 28]);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trits(n: usize, seed: u64) -> Vec<i8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 3) as i8 - 1
            })
            .collect()
    }

    #[test]
    fn ternary_round_trips() {
        let t = trits(4 * QK_K, 7);
        for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
            let scales = [0.5, 0.25, 1.0, 0.125];
            let b = encode_ternary(ty, &t, &scales).unwrap();
            assert_eq!(b.len(), ty.data_size(QK_K, t.len()).unwrap());
            let back = ternary(ty, &b, t.len()).unwrap();
            assert_eq!(back.trits, t, "{ty}");
            assert_eq!(
                back.scales,
                TritScales::PerBlock {
                    block: QK_K,
                    scales: scales.to_vec()
                }
            );
        }
        let b = encode_ternary(GgmlType::I2S, &t, &[0.3]).unwrap();
        let back = ternary(GgmlType::I2S, &b, t.len()).unwrap();
        assert_eq!(back.trits, t);
        assert_eq!(back.scales, TritScales::PerTensor(0.3));
    }

    /// ggml's TQ2_0 layout: byte m of a 32-byte run holds elements m, m+32, m+64, m+96 from the
    /// low bits up; bitnet.cpp's I2_S holds them from the high bits down.
    #[test]
    fn bit_orders_match_ggml() {
        let mut t = vec![0i8; QK_K];
        t[32] = 1; // byte 0, bit pair 1
        let tq2 = encode_ternary(GgmlType::TQ2_0, &t, &[1.0; 1]).unwrap();
        assert_eq!(tq2[0], 0b0101_1001);
        let i2 = encode_ternary(GgmlType::I2S, &t[..128], &[1.0]).unwrap();
        assert_eq!(i2[0], 0b0110_0101);
    }

    #[test]
    fn invalid_code_names_the_byte() {
        let mut b = encode_ternary(GgmlType::TQ2_0, &[0i8; QK_K], &[1.0]).unwrap();
        b[5] = 0xFF;
        let e = ternary(GgmlType::TQ2_0, &b, QK_K).unwrap_err();
        assert_eq!(e.byte, 5);
    }

    #[test]
    fn q8_0_and_q6k_round_trip_closely() {
        let v: Vec<f32> = (0..2 * QK_K).map(|i| ((i as f32) * 0.37).sin()).collect();
        for (ty, tol) in [(GgmlType::Q8_0, 0.01), (GgmlType::Q6K, 0.04)] {
            let b = quantize(ty, &v).unwrap();
            assert_eq!(b.len(), ty.data_size(QK_K, v.len()).unwrap());
            let back = dequantize(ty, &b, v.len()).unwrap();
            let err = v
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < tol, "{ty}: max error {err}");
        }
    }
}
