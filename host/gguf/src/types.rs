//! ggml tensor types tritlab reads or writes, with their block geometry.

use std::fmt;

/// A ggml tensor type. The ids are ggml's (`enum ggml_type`), plus bitnet.cpp's `I2_S` (36 in its
/// fork; upstream ggml leaves 36 unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    BF16,
    TQ1_0,
    TQ2_0,
    I2S,
}

/// Elements per super-block of the k-quants and the TQ types.
pub const QK_K: usize = 256;
/// Elements per block of bitnet.cpp's I2_S.
pub const QK_I2_S: usize = 128;
/// Bytes after an I2_S tensor's packed trits: the f32 scale, padded to 32 bytes.
pub const I2S_TAIL: usize = 32;

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            34 => Self::TQ1_0,
            35 => Self::TQ2_0,
            36 => Self::I2S,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::BF16 => 30,
            Self::TQ1_0 => 34,
            Self::TQ2_0 => 35,
            Self::I2S => 36,
        }
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q8_1 => "Q8_1",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
            Self::BF16 => "BF16",
            Self::TQ1_0 => "TQ1_0",
            Self::TQ2_0 => "TQ2_0",
            Self::I2S => "I2_S",
        }
    }

    /// (elements per block, bytes per block). I2_S is packed over the whole tensor, 4 trits a
    /// byte, so its block here is one byte of four elements; [`GgmlType::data_size`] adds its tail.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::Q2K => (QK_K, 84),
            Self::Q3K => (QK_K, 110),
            Self::Q4K => (QK_K, 144),
            Self::Q5K => (QK_K, 176),
            Self::Q6K => (QK_K, 210),
            Self::Q8K => (QK_K, 292),
            Self::TQ1_0 => (QK_K, 54),
            Self::TQ2_0 => (QK_K, 66),
            Self::I2S => (4, 1),
        }
    }

    /// Whether the type stores trits (one scale per block or per tensor).
    pub fn is_ternary(self) -> bool {
        matches!(self, Self::TQ1_0 | Self::TQ2_0 | Self::I2S)
    }

    /// Bytes of a tensor of `elements` values whose rows are `row_len` long, or why the shape
    /// does not fit the type's blocks.
    pub fn data_size(self, row_len: usize, elements: usize) -> Result<usize, String> {
        let (block, bytes) = self.block();
        if self == Self::I2S {
            if !elements.is_multiple_of(QK_I2_S) {
                return Err(format!(
                    "I2_S packs blocks of {QK_I2_S} weights; {elements} weights are not a multiple"
                ));
            }
            return Ok(elements / 4 + I2S_TAIL);
        }
        if !row_len.is_multiple_of(block) {
            return Err(format!(
                "{} blocks hold {block} values; a row of {row_len} is not a multiple",
                self.name()
            ));
        }
        (elements / block)
            .checked_mul(bytes)
            .ok_or_else(|| "tensor size overflows".to_string())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
