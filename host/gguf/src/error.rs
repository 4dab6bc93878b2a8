//! Errors of the GGUF reader and writer. GGUF files come from other runtimes and the internet, so
//! every problem names the file and, where there is one, the tensor and the byte offset.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GgufError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The header, a metadata entry or a tensor record cannot be parsed.
    #[error("{path}: at byte {offset}: {message}")]
    Format {
        path: PathBuf,
        offset: u64,
        message: String,
    },

    #[error("{path}: tensor `{tensor}` (data at byte {offset}): unknown ggml type {type_id}")]
    UnknownType {
        path: PathBuf,
        tensor: String,
        offset: u64,
        type_id: u32,
    },

    /// A tensor's data is out of the file, misaligned, or overlaps another tensor.
    #[error("{path}: tensor `{tensor}` (data at byte {offset}): {message}")]
    TensorData {
        path: PathBuf,
        tensor: String,
        offset: u64,
        message: String,
    },

    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: metadata key `{key}`: {message}")]
    Metadata {
        path: PathBuf,
        key: String,
        message: String,
    },

    /// A tensor type that cannot be read the way it was asked for (e.g. Q4_K as trits).
    #[error("{path}: tensor `{tensor}` (data at byte {offset}): {message}")]
    Unsupported {
        path: PathBuf,
        tensor: String,
        offset: u64,
        message: String,
    },

    /// The writer was given inconsistent tensors or values.
    #[error("writing GGUF: {0}")]
    Write(String),
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
