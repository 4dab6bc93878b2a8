//! tritlab-session: what a tritlab session understands, independent of how it is shown.
//!
//! - [`lang`] is the command language: parsing lines into typed [`Command`]s, `help`, completion,
//!   hints and highlighting for the terminal REPL and the desktop workbench alike.
//! - [`Session`] runs commands against the engine, the trainer and the plugins, producing typed
//!   outputs ([`tritlab_workbook::Output`]); [`SessionWorker`] runs a session on its own thread
//!   with progress and cancellation; [`Snapshot`] is the engine state as plain data for
//!   inspectors and timelines.

mod bench;
pub mod convert;
mod error;
mod eval;
pub mod lang;
mod names;
mod session;
pub mod snapshot;
mod training;
mod worker;

pub use error::{ErrorKind, ExecutionError, SessionError};
pub use lang::{complete, highlight, hint, is_complete, parse, parse_script, Command, ParseError};
pub use names::SnapshotNames;
pub use session::{
    Context, Execution, InternalError, LiveEvent, LoadedModel, OpenRun, RustEvaluator, Session,
    SessionConfig,
};
pub use snapshot::{Snapshot, SnapshotCache};
pub use training::step_outputs;
pub use worker::{JobId, SessionWorker, Waker, WorkerEvent};
