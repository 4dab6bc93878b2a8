use std::path::{Path, PathBuf};

/// Everything that can go wrong while training, resuming or replaying a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("data: {0}")]
    Data(String),
    #[error("invalid training options: {0}")]
    Options(String),
    #[error("computing {what}: {message}")]
    Compute { what: String, message: String },
    #[error(transparent)]
    Engine(#[from] tritlab_engine::EngineError),
    #[error(transparent)]
    Log(#[from] tritlab_morphism::LogError),
    #[error("morphism log record of step {step}: {message}")]
    Record { step: u64, message: String },
    /// A recomputed step does not reproduce the logged world.
    #[error(
        "step {step} does not replay: the log says world {logged}, recomputing gives {recomputed}{hint}"
    )]
    Divergence {
        step: u64,
        logged: String,
        recomputed: String,
        hint: String,
    },
    /// Another process (or another writer in this one) holds the run directory's lock.
    #[error(
        "{dir}: another tritlab process{holder} is writing this run directory (it holds its .lock); wait for it to finish or stop it, then try again"
    )]
    Locked { dir: PathBuf, holder: String },
    /// The compute device cannot be opened, or is not the one a run needs.
    #[error("device: {0}")]
    Device(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        TrainError::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        TrainError::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn compute(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        TrainError::Compute {
            what: what.into(),
            message: error.to_string(),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over the target, so a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}
