//! The engine's errors. Checkpoints come from users and the internet, so every problem with a
//! file is an error that names the file and, where there is one, the tensor — never a panic.

use std::path::{Path, PathBuf};
use thiserror::Error;
use tritlab_kernels::KernelError;

// The underlying errors are part of each message (so a one-line display says everything) and
// deliberately not exposed as `source()`, which would make error-chain printers say it twice.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The safetensors header or layout is unreadable (truncated, corrupt, not safetensors).
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },

    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    #[error("{path}: tensor `{tensor}` has dtype {actual}, expected {expected}")]
    TensorDtype {
        path: PathBuf,
        tensor: String,
        expected: String,
        actual: String,
    },

    /// A tensor's values are unusable (non-finite scale, invalid packed trit code, ...).
    #[error("{path}: tensor `{tensor}`: {message}")]
    TensorValue {
        path: PathBuf,
        tensor: String,
        message: String,
    },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    /// A hyper-parameter of config.json is out of range or inconsistent with another.
    #[error("{path}: {key} = {value}: {reason}")]
    ConfigValue {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },

    #[error("{path}: unknown model_type {model_type:?} (tritlab runs \"bitnet\")")]
    UnknownModelType { path: PathBuf, model_type: String },

    /// config.json says one thing and the tensors another.
    #[error("{path}: config.json contradicts tensor `{tensor}`: {message}")]
    ConfigMismatch {
        path: PathBuf,
        tensor: String,
        message: String,
    },

    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },

    /// A chat template that does not compile or render (including its own `raise_exception`).
    #[error("{origin}: chat template: {message}")]
    ChatTemplate { origin: String, message: String },

    #[error("{context}: {error}")]
    Kernel { context: String, error: KernelError },

    /// A request the model cannot serve (token id out of range, context full, bad option).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }

    pub(crate) fn config(path: &Path, message: impl Into<String>) -> Self {
        EngineError::Config {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn config_value(
        path: &Path,
        key: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        EngineError::ConfigValue {
            path: path.to_path_buf(),
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor_value(path: &Path, tensor: &str, message: impl Into<String>) -> Self {
        EngineError::TensorValue {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn kernel(context: impl Into<String>, source: KernelError) -> Self {
        EngineError::Kernel {
            context: context.into(),
            error: source,
        }
    }
}
