//! How a loaded model keeps its output projection: exactly as stored, or in one of the kernels'
//! head formats ([`HeadPrecision`]).
//!
//! The output projection (the tied embedding in BitNet b1.58 2B-4T) is a `[vocab, hidden]` float
//! matrix: 657 MB of bf16 there, more bytes per generated token than all ternary layers
//! together. Decoding is bandwidth-bound, so storing it in fewer bytes buys speed at a bounded
//! cost in accuracy, which `eval ppl --compare` measures. [`OutputHead::Exact`] keeps the
//! checkpoint's own matrix, read in place from the mapping: what parity work against transformers
//! needs, and the library's default. Front ends choose their own default (see the `load`
//! command's `--head-precision`).

use std::fmt;
use std::str::FromStr;
pub use tritlab_kernels::HeadPrecision;

/// The output projection's run-time format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputHead {
    /// The checkpoint's own matrix (f32, f16 or bf16), multiplied in its stored dtype.
    #[default]
    Exact,
    /// Converted at load into a kernels head format; the stored matrix is then only read for
    /// the embedding lookup (one row per token).
    Quantized(HeadPrecision),
}

impl OutputHead {
    /// Every choice's name, in the order front ends list them.
    pub const NAMES: &'static [&'static str] = &["exact", "bf16", "int8", "q6", "q4"];
}

impl fmt::Display for OutputHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputHead::Exact => f.write_str("exact"),
            OutputHead::Quantized(p) => write!(f, "{p}"),
        }
    }
}

/// A name that is none of [`OutputHead::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown head precision `{0}`: expected one of exact, bf16, int8, q6, q4")]
pub struct UnknownOutputHead(pub String);

impl FromStr for OutputHead {
    type Err = UnknownOutputHead;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exact" => Ok(OutputHead::Exact),
            other => other
                .parse::<HeadPrecision>()
                .map(OutputHead::Quantized)
                .map_err(|_| UnknownOutputHead(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in OutputHead::NAMES {
            let head: OutputHead = name.parse().unwrap();
            assert_eq!(head.to_string(), *name);
        }
        assert!("q3".parse::<OutputHead>().is_err());
        assert_eq!(OutputHead::default(), OutputHead::Exact);
    }
}
