//! The byte encoding of one [`StepRecord`] (a record's payload), version 1.
//!
//! Hand-written rather than derived so that every byte is documented (see the crate docs and
//! README's FORMAT section) and stays stable while the Rust types evolve.

use thiserror::Error;

use crate::flips::{FlipError, TransitionMatrix, TritFlip, TritFlips, TRITS};
use crate::record::{ContentHash, LayerMorphism, StepRecord};

/// Why a payload whose checksum matched still does not decode. `at` is the byte offset inside
/// the payload where decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("payload ends at byte {at} in the middle of {field}")]
    UnexpectedEnd { at: usize, field: &'static str },
    #[error("varint at payload byte {at} ({field}) is longer than 10 bytes or overflows a u64")]
    BadVarint { at: usize, field: &'static str },
    #[error(
        "{field} at payload byte {at} is {value}, more than the {remaining} bytes left can hold"
    )]
    LengthTooLarge {
        at: usize,
        field: &'static str,
        value: u64,
        remaining: usize,
    },
    #[error("layer name at payload byte {at} is not UTF-8")]
    NameNotUtf8 { at: usize },
    #[error("flip code {code} at payload byte {at} is not an (old, new) pair of distinct trits")]
    BadFlipCode { at: usize, code: u8 },
    #[error("unused half of the last flip-code byte at payload byte {at} is not zero")]
    NonZeroPadding { at: usize },
    #[error("flip position overflows a u64 at payload byte {at}")]
    PositionOverflow { at: usize },
    #[error("layer {layer} ({name:?}) is inconsistent: {source}")]
    InconsistentLayer {
        layer: usize,
        name: String,
        source: FlipError,
    },
    #[error("{extra} bytes follow the record's last layer")]
    TrailingBytes { extra: usize },
}

/// The fewest payload bytes a layer can take: a name length (1), two f32 scales (8) and nine
/// transition counts (1 each), with an empty name and no flips.
const MIN_LAYER_BYTES: usize = 1 + 4 + 4 + 9;

/// Appends `value` as an unsigned LEB128 varint: 7 bits per byte, low bits first, high bit set
/// on every byte but the last.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The nibble that encodes a flip: `3·(old+1) + (new+1)`, one of 1, 2, 3, 5, 6, 7.
fn flip_code(flip: &TritFlip) -> u8 {
    (3 * (flip.old + 1) + (flip.new + 1)) as u8
}

fn flip_from_code(code: u8) -> Option<(i8, i8)> {
    let (old, new) = ((code / 3) as i8 - 1, (code % 3) as i8 - 1);
    (code < 9 && old != new).then_some((old, new))
}

/// Encodes a step record as a version-1 payload.
pub fn encode_payload(record: &StepRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + 64 * record.layers.len());
    put_varint(&mut out, record.step);
    out.extend_from_slice(&record.learning_rate.to_le_bytes());
    out.extend_from_slice(&record.loss.to_le_bytes());
    out.extend_from_slice(&record.grad_norm.to_le_bytes());
    out.extend_from_slice(record.batch_hash.as_bytes());
    put_varint(&mut out, record.batch_position);
    put_varint(&mut out, record.rng_state.len() as u64);
    out.extend_from_slice(&record.rng_state);
    out.extend_from_slice(record.world_before.as_bytes());
    out.extend_from_slice(record.world_after.as_bytes());
    put_varint(&mut out, record.layers.len() as u64);
    for layer in &record.layers {
        put_varint(&mut out, layer.name.len() as u64);
        out.extend_from_slice(layer.name.as_bytes());
        out.extend_from_slice(&layer.scale_before.to_le_bytes());
        out.extend_from_slice(&layer.scale_after.to_le_bytes());
        let transitions = layer.flips.transitions();
        for old in TRITS {
            for new in TRITS {
                put_varint(&mut out, transitions.get(old, new));
            }
        }
        let flips = layer.flips.flips();
        let mut next_free = 0u64;
        for flip in flips {
            // Positions strictly increase (a TritFlips invariant), so the gap never underflows.
            put_varint(&mut out, flip.position - next_free);
            next_free = flip.position + 1;
        }
        for pair in flips.chunks(2) {
            let low = flip_code(&pair[0]);
            let high = pair.get(1).map_or(0, flip_code);
            out.push(low | (high << 4));
        }
    }
    out
}

/// A cursor over a payload that reports where it failed.
struct PayloadReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> PayloadReader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEnd { at: self.at, field });
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array(field)?))
    }

    fn f32(&mut self, field: &'static str) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array(field)?))
    }

    fn hash(&mut self, field: &'static str) -> Result<ContentHash, DecodeError> {
        Ok(ContentHash(self.array(field)?))
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or(DecodeError::UnexpectedEnd { at: self.at, field })?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(DecodeError::BadVarint { at: start, field });
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { at: start, field })
    }

    /// A varint that counts bytes still to come, so a corrupt length cannot make the decoder
    /// allocate more than the payload's size.
    fn length(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        self.count(field, 1)
    }

    /// A varint that counts things each encoded in at least `min_bytes` more payload bytes:
    /// rejected unless that many of them fit in what is left, so any allocation sized by the
    /// count is bounded by the payload itself.
    fn count(&mut self, field: &'static str, min_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.at;
        let value = self.varint(field)?;
        let remaining = self.remaining();
        if value > (remaining / min_bytes.max(1)) as u64 {
            return Err(DecodeError::LengthTooLarge {
                at,
                field,
                value,
                remaining,
            });
        }
        Ok(value as usize)
    }
}

/// Decodes a version-1 payload. Every length is checked against the bytes left, every layer's
/// flips against its transition matrix, and the payload must be consumed exactly.
pub fn decode_payload(bytes: &[u8]) -> Result<StepRecord, DecodeError> {
    let mut reader = PayloadReader { bytes, at: 0 };
    let step = reader.varint("step")?;
    let learning_rate = reader.f64("learning rate")?;
    let loss = reader.f64("loss")?;
    let grad_norm = reader.f64("gradient norm")?;
    let batch_hash = reader.hash("batch hash")?;
    let batch_position = reader.varint("batch position")?;
    let rng_len = reader.length("RNG state length")?;
    let rng_state = reader.take(rng_len, "RNG state")?.to_vec();
    let world_before = reader.hash("world-before hash")?;
    let world_after = reader.hash("world-after hash")?;
    // Each layer takes at least MIN_LAYER_BYTES, so the count is bounded by what the rest of
    // the payload can hold, and so is the allocation for it (a layer is ~7× its minimal
    // encoding in memory, so bounding the count by bytes alone would let a corrupt count
    // reserve over a hundred times the payload).
    let layer_count = reader.count("layer count", MIN_LAYER_BYTES)?;
    let mut layers = Vec::with_capacity(layer_count);
    for layer_index in 0..layer_count {
        layers.push(decode_layer(&mut reader, layer_index)?);
    }
    if reader.remaining() != 0 {
        return Err(DecodeError::TrailingBytes {
            extra: reader.remaining(),
        });
    }
    Ok(StepRecord {
        step,
        learning_rate,
        loss,
        grad_norm,
        batch_hash,
        batch_position,
        rng_state,
        world_before,
        world_after,
        layers,
    })
}

fn decode_layer(
    reader: &mut PayloadReader<'_>,
    layer_index: usize,
) -> Result<LayerMorphism, DecodeError> {
    let name_len = reader.length("layer name length")?;
    let name_at = reader.at;
    let name = std::str::from_utf8(reader.take(name_len, "layer name")?)
        .map_err(|_| DecodeError::NameNotUtf8 { at: name_at })?
        .to_owned();
    let scale_before = reader.f32("scale before")?;
    let scale_after = reader.f32("scale after")?;
    let mut transitions = TransitionMatrix::default();
    for row in transitions.counts.iter_mut() {
        for count in row.iter_mut() {
            *count = reader.varint("transition count")?;
        }
    }
    // Every flip takes at least one byte for its position gap and half a byte for its code, so
    // `n` flips need `n + ceil(n / 2)` bytes: a count that cannot fit is rejected before the
    // position and flip vectors are sized by it.
    let flip_count = transitions.changed();
    let remaining = reader.remaining();
    let needed = flip_count.saturating_add(flip_count.div_ceil(2));
    if needed > remaining as u64 {
        return Err(DecodeError::LengthTooLarge {
            at: reader.at,
            field: "flip count (off-diagonal transitions)",
            value: flip_count,
            remaining,
        });
    }
    let flip_count = flip_count as usize;
    let mut positions = Vec::with_capacity(flip_count);
    let mut next_free = 0u64;
    for _ in 0..flip_count {
        let at = reader.at;
        let position = next_free
            .checked_add(reader.varint("flip position gap")?)
            .ok_or(DecodeError::PositionOverflow { at })?;
        next_free = position
            .checked_add(1)
            .ok_or(DecodeError::PositionOverflow { at })?;
        positions.push(position);
    }
    let codes_at = reader.at;
    let codes = reader.take(flip_count.div_ceil(2), "flip codes")?;
    let mut flips = Vec::with_capacity(flip_count);
    for (i, &position) in positions.iter().enumerate() {
        let byte = codes[i / 2];
        let code = if i % 2 == 0 { byte & 0x0f } else { byte >> 4 };
        let at = codes_at + i / 2;
        let (old, new) = flip_from_code(code).ok_or(DecodeError::BadFlipCode { at, code })?;
        flips.push(TritFlip { position, old, new });
    }
    if flip_count % 2 == 1 && codes[flip_count / 2] >> 4 != 0 {
        return Err(DecodeError::NonZeroPadding {
            at: codes_at + flip_count / 2,
        });
    }
    let flips = TritFlips::from_parts(transitions, flips).map_err(|source| {
        DecodeError::InconsistentLayer {
            layer: layer_index,
            name: name.clone(),
            source,
        }
    })?;
    Ok(LayerMorphism {
        name,
        scale_before,
        scale_after,
        flips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let bytes = varint_bytes(value);
            let mut reader = PayloadReader {
                bytes: &bytes,
                at: 0,
            };
            assert_eq!(reader.varint("v").unwrap(), value);
            assert_eq!(reader.remaining(), 0);
        }
        assert_eq!(varint_bytes(300), [0xac, 0x02]);
        let overlong = [0xff; 11];
        let mut reader = PayloadReader {
            bytes: &overlong,
            at: 0,
        };
        assert!(matches!(
            reader.varint("v"),
            Err(DecodeError::BadVarint { at: 0, .. })
        ));
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        let mut reader = PayloadReader {
            bytes: &too_big,
            at: 0,
        };
        assert!(matches!(
            reader.varint("v"),
            Err(DecodeError::BadVarint { .. })
        ));
    }

    #[test]
    fn flip_codes_cover_the_six_flips() {
        let valid: Vec<u8> = (0..16).filter(|&c| flip_from_code(c).is_some()).collect();
        assert_eq!(valid, [1, 2, 3, 5, 6, 7]);
        for code in valid {
            let (old, new) = flip_from_code(code).unwrap();
            assert_eq!(
                flip_code(&TritFlip {
                    position: 0,
                    old,
                    new
                }),
                code
            );
        }
    }

    #[test]
    fn layer_bytes_are_as_documented() {
        let layer = LayerMorphism::between("w", &[0, 0, 1, -1], 0.5, &[1, 0, 1, 0], 0.25).unwrap();
        let record = StepRecord {
            layers: vec![layer],
            ..StepRecord::default()
        };
        let payload = encode_payload(&record);
        // step, 3×f64, hash, position, rng length, 2 hashes, layer count.
        let header_len = 1 + 24 + 32 + 1 + 1 + 64 + 1;
        let mut expected = vec![1, b'w'];
        expected.extend_from_slice(&0.5f32.to_le_bytes());
        expected.extend_from_slice(&0.25f32.to_le_bytes());
        // Transitions row-major, old = -1, 0, +1 by new = -1, 0, +1.
        expected.extend_from_slice(&[0, 1, 0, 0, 1, 1, 0, 0, 1]);
        // Flips at 0 (0→+1) and 3 (-1→0): gaps 0 and 3-1 = 2.
        expected.extend_from_slice(&[0, 2]);
        // Codes 3·1+2 = 5 (low nibble) and 3·0+1 = 1 (high nibble).
        expected.push(0x15);
        assert_eq!(&payload[header_len..], &expected[..]);
        assert_eq!(decode_payload(&payload).unwrap(), record);
    }

    /// A payload with no layers, its layer count (the last byte, 0) cut off.
    fn header_without_layer_count() -> Vec<u8> {
        let mut payload = encode_payload(&StepRecord::default());
        assert_eq!(payload.pop(), Some(0));
        payload
    }

    #[test]
    fn layer_count_is_bounded_by_what_the_payload_can_hold() {
        // 90 bytes left hold at most 90 / MIN_LAYER_BYTES = 5 layers; a count of 90 used to
        // pass (one byte each) and reserve 90 layers' memory before failing further on.
        let mut payload = header_without_layer_count();
        let count_at = payload.len();
        put_varint(&mut payload, 90);
        payload.extend_from_slice(&[0; 90]);
        assert_eq!(
            decode_payload(&payload),
            Err(DecodeError::LengthTooLarge {
                at: count_at,
                field: "layer count",
                value: 90,
                remaining: 90,
            })
        );
        // What the bound allows still decodes: 5 empty, flipless layers in exactly 90 bytes.
        let mut payload = header_without_layer_count();
        put_varint(&mut payload, 5);
        payload.extend_from_slice(&[0; 90]);
        let record = decode_payload(&payload).unwrap();
        assert_eq!(record.layers.len(), 5);
    }

    #[test]
    fn flip_count_is_bounded_by_positions_and_codes() {
        // One layer whose transitions claim 4 flips (0 → +1) followed by 4 bytes: enough for
        // the 4 position gaps but not for their 2 code bytes, so the count is refused before
        // anything is sized by it.
        let mut payload = header_without_layer_count();
        put_varint(&mut payload, 1);
        payload.push(0); // empty name
        payload.extend_from_slice(&1.0f32.to_le_bytes());
        payload.extend_from_slice(&1.0f32.to_le_bytes());
        let counts_at = payload.len();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 4, 0, 0, 0]);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode_payload(&payload),
            Err(DecodeError::LengthTooLarge {
                at: counts_at + 9,
                field: "flip count (off-diagonal transitions)",
                value: 4,
                remaining: 4,
            })
        );
    }
}
