//! Why a command failed, as a type: front ends choose how to show an error (a caret under a
//! parse error, a Jupyter `ename`) and the command line picks its exit code from the kind.

use std::path::PathBuf;
use std::sync::Arc;

use crate::lang::ParseError;
use crate::session::InternalError;

/// A failed command. The variants are the kinds of failure; each keeps the error it came from
/// as its source, so a front end can walk the chain or match on the kind.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The text is not a command. `rendered` is the message with the source line and a caret
    /// under the offending token, which is what line-oriented faces show.
    #[error("{rendered}")]
    Parse {
        rendered: String,
        #[source]
        error: ParseError,
    },
    /// A well-formed command that cannot be carried out as asked: a step that is not in the
    /// log, a `--stop` text of several tokens, a thread count the run was not computed with.
    #[error("{0}")]
    Usage(String),
    /// The command needs a model and none is loaded.
    #[error("no model is loaded: `load default` or `load PATH`")]
    NoModel,
    /// The engine failed: a checkpoint that does not load, a tokenizer, a forward pass.
    #[error(transparent)]
    Engine(#[from] tritlab_engine::EngineError),
    /// The checkpoint was read, but its weights are not ternary.
    #[error("not ternary: {0}")]
    NotTernary(String),
    /// Training, replay or the run directory failed.
    #[error(transparent)]
    Training(#[from] tritlab_train::TrainError),
    /// A plugin failed, did not load, or the plugin host is not available.
    #[error(transparent)]
    Plugin(Box<dyn std::error::Error + Send + Sync>),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Rust cell failed to compile or run, or Rust cells are not available here.
    #[error("{0}")]
    Rust(String),
    /// The command was stopped by its cancel flag (Ctrl-C, the workbench's stop button, a
    /// Jupyter interrupt).
    #[error("cancelled")]
    Cancelled,
    /// The session's thread is gone (it failed to start or ended), so nothing ran; the message
    /// says what the face does about it.
    #[error("{0}")]
    Stopped(String),
    /// The command panicked: a bug, not bad input.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        error: InternalError,
    },
}

/// The kind of a [`SessionError`], without its data: for exit codes, Jupyter `ename`s and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Parse,
    Usage,
    NoModel,
    Engine,
    NotTernary,
    Training,
    Plugin,
    Io,
    Rust,
    Cancelled,
    Stopped,
    Internal,
}

impl ErrorKind {
    /// A short name, e.g. for Jupyter's `ename` (`ParseError`, `EngineError`…).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Parse => "ParseError",
            ErrorKind::Usage => "UsageError",
            ErrorKind::NoModel => "NoModelError",
            ErrorKind::Engine => "EngineError",
            ErrorKind::NotTernary => "NotTernaryError",
            ErrorKind::Training => "TrainingError",
            ErrorKind::Plugin => "PluginError",
            ErrorKind::Io => "IoError",
            ErrorKind::Rust => "RustError",
            ErrorKind::Cancelled => "Cancelled",
            ErrorKind::Stopped => "SessionStopped",
            ErrorKind::Internal => "InternalError",
        }
    }
}

impl SessionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Parse { .. } => ErrorKind::Parse,
            SessionError::Usage(_) => ErrorKind::Usage,
            SessionError::NoModel => ErrorKind::NoModel,
            SessionError::Engine(_) => ErrorKind::Engine,
            SessionError::NotTernary(_) => ErrorKind::NotTernary,
            SessionError::Training(_) => ErrorKind::Training,
            SessionError::Plugin(_) => ErrorKind::Plugin,
            SessionError::Io { .. } => ErrorKind::Io,
            SessionError::Rust(_) => ErrorKind::Rust,
            SessionError::Cancelled => ErrorKind::Cancelled,
            SessionError::Stopped(_) => ErrorKind::Stopped,
            SessionError::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// A parse error of `source`, rendered with the offending line and a caret.
    pub fn parse(error: ParseError, source: &str) -> SessionError {
        SessionError::Parse {
            rendered: error.render(source),
            error,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SessionError {
        SessionError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn plugin(error: impl std::error::Error + Send + Sync + 'static) -> SessionError {
        SessionError::Plugin(Box::new(error))
    }
}

// Messages the session composes itself are usage errors: `Err(format!(…))?` and
// `.ok_or("…")?` read naturally in the commands' code.
impl From<String> for SessionError {
    fn from(message: String) -> Self {
        SessionError::Usage(message)
    }
}

impl From<&str> for SessionError {
    fn from(message: &str) -> Self {
        SessionError::Usage(message.to_owned())
    }
}

macro_rules! plugin_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for SessionError {
            fn from(error: $t) -> Self {
                SessionError::plugin(error)
            }
        }
    )*};
}
plugin_errors!(
    tritlab_plugin_host::PluginError,
    tritlab_plugin_host::LoadError,
    tritlab_plugin_host::HostError
);

/// The error that stopped an [`crate::Execution`]: which line of the cell failed and why. The
/// error is shared, so executions (and the worker's events that carry them) stay cloneable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{error}", line_prefix(*.line))]
pub struct ExecutionError {
    /// The 1-based line of the cell whose command failed; the message names it when it is not
    /// the first.
    pub line: usize,
    #[source]
    pub error: Arc<SessionError>,
}

fn line_prefix(line: usize) -> String {
    if line > 1 {
        format!("line {line}: ")
    } else {
        String::new()
    }
}

impl ExecutionError {
    pub fn new(line: usize, error: SessionError) -> Self {
        ExecutionError {
            line,
            error: Arc::new(error),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
}

/// Two errors are equal when they are of one kind and say the same (the sources are not
/// comparable in general).
impl PartialEq for ExecutionError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.to_string() == other.to_string()
    }
}
