//! What one optimiser step records: the step's scalars, where its batch came from, the RNG state
//! to resume from, and per layer the morphism of its ternary weights.

use crate::flips::{FlipError, TritFlips};
use tritlab_kernels::trit::TritCounts;

/// A 32-byte blake3 digest identifying content (a world, a batch) without storing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The blake3 digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// How one named ternary layer changed in a step: its scale and its exact trit flips.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMorphism {
    /// The tensor's name in the checkpoint, e.g. `model.layers.0.mlp.up_proj.weight`.
    pub name: String,
    pub scale_before: f32,
    pub scale_after: f32,
    pub flips: TritFlips,
}

impl LayerMorphism {
    /// Compares a layer's trits and scale before and after a step.
    pub fn between(
        name: impl Into<String>,
        before: &[i8],
        scale_before: f32,
        after: &[i8],
        scale_after: f32,
    ) -> Result<Self, FlipError> {
        Ok(LayerMorphism {
            name: name.into(),
            scale_before,
            scale_after,
            flips: TritFlips::between(before, after)?,
        })
    }

    pub fn counts_before(&self) -> TritCounts {
        self.flips.counts_before()
    }

    pub fn counts_after(&self) -> TritCounts {
        self.flips.counts_after()
    }

    /// Σ trits mod 3 before the step, in {0, 1, 2}.
    pub fn gf3_before(&self) -> u8 {
        self.flips.gf3_before()
    }

    /// Σ trits mod 3 after the step, in {0, 1, 2}.
    pub fn gf3_after(&self) -> u8 {
        self.flips.gf3_after()
    }
}

/// One optimiser step as a morphism from the world before it to the world after it.
///
/// Scalars are stored as f64 so that f32 and f64 training loops both round-trip exactly.
/// `Default` is the empty step 0 with zero hashes: a base for building records field by field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepRecord {
    pub step: u64,
    pub learning_rate: f64,
    pub loss: f64,
    pub grad_norm: f64,
    /// Content hash of the batch the step trained on.
    pub batch_hash: ContentHash,
    /// Where the batch starts in the data stream (the unit, e.g. tokens or examples, is the
    /// trainer's), so a resumed run can seek to it.
    pub batch_position: u64,
    /// The random number generator's state after the step, opaque to the log.
    pub rng_state: Vec<u8>,
    pub world_before: ContentHash,
    pub world_after: ContentHash,
    /// One entry per ternary layer, in the order the trainer chose.
    pub layers: Vec<LayerMorphism>,
}

impl StepRecord {
    /// Σ of every logged layer's trits mod 3 after the step, in {0, 1, 2}: the world's residue.
    pub fn gf3_after(&self) -> u8 {
        tritlab_kernels::gf3_add(self.layers.iter().map(LayerMorphism::gf3_after))
    }

    /// Finds a layer's morphism by name.
    pub fn layer(&self, name: &str) -> Option<&LayerMorphism> {
        self.layers.iter().find(|layer| layer.name == name)
    }

    /// The number of trits the step changed across all layers.
    pub fn flipped_trits(&self) -> u64 {
        self.layers
            .iter()
            .map(|layer| layer.flips.flips().len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_blake3_and_prints_hex() {
        let hash = ContentHash::of_bytes(b"abc");
        assert_eq!(
            hash.to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }
}
