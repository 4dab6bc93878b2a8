use thiserror::Error;

/// Everything the kernel crate can reject. Inputs come from files and users, so every
/// shape or value problem is an error rather than a panic.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("value {value} at index {index} is not a trit (expected -1, 0 or +1)")]
    NotATrit { index: usize, value: i8 },
    #[error("{what}: expected {expected} elements, got {actual}")]
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{what}: shape {rows}x{cols} is invalid ({reason})")]
    Shape {
        what: &'static str,
        rows: usize,
        cols: usize,
        reason: &'static str,
    },
    #[error("byte {value:#04x} at offset {offset} is not valid {format} data")]
    BadByte {
        format: &'static str,
        offset: usize,
        value: u8,
    },
    #[error("group size {group_size} is not supported: {reason}")]
    GroupSize {
        group_size: usize,
        reason: &'static str,
    },
    #[error("non-finite value {value} at index {index} in {what}")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },
    #[error("scale {value} in {what} is not a finite, positive number")]
    BadScale { what: &'static str, value: f32 },
    #[error("unknown kernel backend {0:?} (expected scalar, avx2, avx512, amx, neon or auto)")]
    UnknownBackend(String),
    #[error("unknown packing {0:?} (expected i2 or t1)")]
    UnknownPacking(String),
    #[error("the {packing} packing holds one scale per tensor; this matrix has per-group scales (use i2)")]
    PackingScale { packing: crate::matrix::Packing },
    #[error("unknown head precision {0:?} (expected bf16, int8, q6 or q4)")]
    UnknownHeadPrecision(String),
    #[error("kernel backend {0} is not supported on this CPU")]
    Unsupported(&'static str),
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
