//! tritlab-kernel: the tritlab command language as a Jupyter kernel.
//!
//! JupyterLab, VS Code, `jupyter console` and `nbclient` talk to kernels with the Jupyter
//! messaging protocol (v5.3) over ZeroMQ. This crate is the glue between that protocol, as the
//! `jupyter-protocol` and `jupyter-zmq-client` crates implement it (message types, sockets,
//! HMAC-SHA256 signing), and a tritlab [`tritlab_session::SessionWorker`]:
//!
//! - [`run`] serves one kernel for a connection file: cells are command scripts (or Rust
//!   cells opening with `:rust`), outputs are the same MIME bundles the `.ipynb` exporter writes
//!   ([`tritlab_workbook::notebook_output`]), and an `interrupt_request` cancels the running
//!   command the way Ctrl-C does in the REPL.
//! - [`spec`] installs and removes the kernelspec (`kernel.json` and its logos) that makes
//!   Jupyter start `tritlab kernel --connection-file FILE`.

mod bundle;
mod executor;
mod server;
pub mod spec;

use std::path::PathBuf;
use std::sync::Arc;

use tritlab_session::{RustEvaluator, SessionConfig};

pub use bundle::iopub_content;
pub use server::{run, serve};

/// Makes a Rust evaluator for each session the kernel starts (the first, and one after a
/// session had to be replaced); `None` when this build has no Rust cells.
pub type RustFactory = Arc<dyn Fn() -> Option<Box<dyn RustEvaluator>> + Send + Sync>;

/// What a kernel runs with.
#[derive(Clone)]
pub struct KernelOptions {
    /// The session's model and plugins, as the other faces configure them.
    pub session: SessionConfig,
    /// Rust cells, when the binary has them.
    pub rust: RustFactory,
}

impl KernelOptions {
    /// A kernel without Rust cells.
    pub fn new(session: SessionConfig) -> KernelOptions {
        KernelOptions {
            session,
            rust: Arc::new(|| None),
        }
    }
}

/// Why a kernel could not start, or a kernelspec could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot read the connection file {path}: {source}")]
    ConnectionFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the connection file {path} is not a Jupyter connection file: {source}")]
    BadConnectionFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the connection file asks for signature scheme `{0}`; this kernel signs with hmac-sha256"
    )]
    UnsupportedSignature(String),
    #[error("cannot start the kernel's event loop: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot open the kernel's {channel} socket: {message}")]
    Socket {
        channel: &'static str,
        message: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find where Jupyter keeps {0}")]
    NoDataDir(String),
    #[error("cannot draw the kernel logo: {0}")]
    Logo(#[from] tritlab_workbook::ImageError),
}
