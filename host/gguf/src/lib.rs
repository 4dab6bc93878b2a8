//! GGUF both ways: a memory-mapped GGUF v2/v3 reader that checks every offset and size, and a
//! v3 writer.
//!
//! Tensor types: F32, F16 and BF16; Q8_0, Q4_K and Q6_K (dequantised to f32; Q8_0 and Q6_K also
//! written, for embeddings); and the ternary ones — llama.cpp's TQ1_0 and TQ2_0 (256 weights a
//! block, one f16 scale) and bitnet.cpp's I2_S (type 36: 128 weights per 32 bytes, one f32 scale
//! per tensor) — read as trits plus their scales ([`quants::ternary`]), never requantised.

pub mod error;
pub mod quants;
pub mod reader;
pub mod types;
pub mod value;
pub mod writer;

pub use error::{GgufError, Result};
pub use quants::{dequantize, encode_ternary, quantize, ternary, TernaryTensor, TritScales};
pub use reader::{GgufFile, TensorInfo};
pub use types::{GgmlType, QK_I2_S, QK_K};
pub use value::Value;
pub use writer::GgufWriter;
