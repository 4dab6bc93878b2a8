//! A command that panics fails on its own: the session, the worker thread and the next command
//! carry on. The panic is injected through the Rust evaluator, a real path by which code outside
//! the session runs inside a command.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tritlab_session::{
    Context, Execution, InternalError, LiveEvent, RustEvaluator, Session, SessionConfig,
    SessionWorker, WorkerEvent,
};
use tritlab_workbook::Output;

fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/default-model")
}

fn config(load_model: bool) -> SessionConfig {
    SessionConfig {
        default_model: Some(default_model()),
        plugin_dirs: Vec::new(),
        plugin_cache: None,
        load_default_model: load_model,
        ..SessionConfig::default()
    }
}

/// Panics on `panic!` snippets, echoes anything else.
struct Panicky;

impl RustEvaluator for Panicky {
    fn eval(&mut self, code: &str, _cancel: &AtomicBool) -> Result<String, String> {
        if code.contains("panic") {
            panic!("evaluator exploded on `{code}`");
        }
        Ok(format!("ok: {code}"))
    }
}

fn run(session: &mut Session, source: &str) -> Execution {
    let cancel = AtomicBool::new(false);
    let mut ignore = |_: LiveEvent| {};
    let mut ctx = Context {
        cancel: &cancel,
        events: &mut ignore,
    };
    session.execute(source, &mut ctx)
}

#[test]
fn a_panicking_command_is_an_internal_error_and_the_session_goes_on() {
    let mut session = Session::new(config(true));
    session.set_rust_evaluator(Box::new(Panicky));
    assert!(session.model().is_some(), "the default model loads");

    let exec = run(&mut session, ":rust panic");
    assert_eq!(
        exec.internal_error,
        Some(InternalError {
            command: ":rust".into(),
            message: "evaluator exploded on `panic`".into(),
        })
    );
    let error = exec.error_message().expect("the command failed");
    assert!(
        error.starts_with("internal error in `:rust`: evaluator exploded on `panic`"),
        "{error}"
    );
    assert!(error.contains("was unloaded"), "{error}");
    assert_eq!(exec.outputs.last(), Some(&Output::Error(error.clone())));
    // The model the command could have left half-changed is gone, and says so.
    assert!(session.model().is_none());

    // The next commands run normally, the evaluator included.
    let exec = run(&mut session, ":rust 1 + 1");
    assert_eq!(exec.error, None);
    assert_eq!(exec.outputs, vec![Output::Text("ok: 1 + 1".into())]);
    let exec = run(&mut session, "load default\ninfo");
    assert_eq!(exec.error, None, "{:?}", exec.outputs);
    assert!(session.model().is_some());
    let info = format!("{:?}", exec.outputs);
    assert!(
        info.contains("reset after an internal error in `:rust`"),
        "{info}"
    );
}

#[test]
fn a_panic_stops_the_rest_of_the_cell_like_any_error() {
    let mut session = Session::new(config(false));
    session.set_rust_evaluator(Box::new(Panicky));
    let exec = run(&mut session, ":rust first\n:rust panic\n:rust third");
    assert_eq!(exec.outputs.len(), 2, "{:?}", exec.outputs);
    assert_eq!(exec.outputs[0], Output::Text("ok: first".into()));
    let error = exec.error_message().expect("the second command failed");
    assert!(
        error.starts_with("line 2: internal error in `:rust`"),
        "{error}"
    );
    assert!(error.contains("nothing was lost"), "{error}");
}

#[test]
fn the_worker_thread_survives_a_panicking_command() {
    let worker = SessionWorker::spawn(config(false), Some(Box::new(Panicky)));
    let ready = worker.recv_timeout(Duration::from_secs(120));
    assert!(matches!(ready, Some(WorkerEvent::Ready(_))), "{ready:?}");

    let exec = worker.run_blocking(":rust panic", |_| {});
    let internal = exec.internal_error.expect("an internal error");
    assert_eq!(internal.command, ":rust");
    assert!(worker.is_running());

    let exec = worker.run_blocking(":rust 2 + 2", |_| {});
    assert_eq!(exec.error, None);
    assert_eq!(exec.outputs, vec![Output::Text("ok: 2 + 2".into())]);
    let exec = worker.run_blocking("help load", |_| {});
    assert_eq!(exec.error, None);
    assert!(worker.is_running());
}
