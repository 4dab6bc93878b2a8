//! Runs cells on a [`SessionWorker`], the way the REPL does: submit, relay live events, and on an
//! interrupt call [`SessionWorker::cancel`], which stops a generate or train at its next step.
//!
//! The session catches a panicking command itself; this is the second belt at the kernel's
//! boundary. If the session thread is gone anyway (or the relaying code here panics), the cell
//! fails with an error saying so and a fresh session replaces the old one, so the kernel keeps
//! serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tritlab_session::{Execution, LiveEvent, SessionWorker, Snapshot, WorkerEvent};

use crate::KernelOptions;

/// How often a running cell looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait for the snapshot that follows a finished command.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Executor {
    options: KernelOptions,
    worker: SessionWorker,
    /// The session as of the last command (for completion).
    snapshot: Box<Snapshot>,
    /// Set by the control channel's `interrupt_request`.
    interrupt: Arc<AtomicBool>,
    /// Notes from the session's start (a model or plugin that did not load), not yet shown.
    startup_notes: Option<Vec<String>>,
}

impl Executor {
    /// Starts a session worker. It loads the plugins and the default model on its own thread;
    /// cells submitted meanwhile wait for it.
    pub(crate) fn start(options: KernelOptions, interrupt: Arc<AtomicBool>) -> Executor {
        let worker = SessionWorker::spawn(options.session.clone(), (options.rust)());
        Executor {
            options,
            worker,
            snapshot: Box::default(),
            interrupt,
            startup_notes: None,
        }
    }

    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Startup notes once, after the session is up (`None` before, or when already taken).
    pub(crate) fn take_startup_notes(&mut self) -> Option<Vec<String>> {
        self.startup_notes.take()
    }

    /// Takes in what the worker sent while no cell ran (its start-up snapshot, once the default
    /// model is loaded), so completion knows the model's tensors before the first cell.
    pub(crate) fn refresh(&mut self) {
        while let Some(event) = self.worker.try_recv() {
            match event {
                WorkerEvent::Ready(snapshot) => {
                    self.startup_notes = Some(startup_notes(&snapshot));
                    self.snapshot = snapshot;
                }
                WorkerEvent::Snapshot(snapshot) => self.snapshot = snapshot,
                _ => {}
            }
        }
    }

    /// Runs `source`, passing live events to `on_live`; never panics.
    pub(crate) fn run(&mut self, source: &str, on_live: &mut dyn FnMut(LiveEvent)) -> Execution {
        match catch_unwind(AssertUnwindSafe(|| self.run_inner(source, on_live))) {
            Ok(exec) => exec,
            Err(payload) => {
                let what = panic_message(payload.as_ref());
                self.replace_session();
                Execution::stopped_worker(format!(
                    "internal error while running the cell: {what}. This is a bug in tritlab; \
                     a fresh session was started (load the model again)"
                ))
            }
        }
    }

    fn run_inner(&mut self, source: &str, on_live: &mut dyn FnMut(LiveEvent)) -> Execution {
        self.interrupt.store(false, Ordering::SeqCst);
        let id = self.worker.submit(source);
        let mut finished: Option<(Execution, Instant)> = None;
        let mut interrupted = false;
        loop {
            if finished.is_none() && self.interrupt.swap(false, Ordering::SeqCst) {
                interrupted = true;
            }
            // Repeated until the job ends: the worker clears its flag when a job starts, and an
            // interrupt may come before this job has.
            if interrupted && finished.is_none() {
                self.worker.cancel();
            }
            match self.worker.recv_timeout(POLL) {
                Some(WorkerEvent::Ready(snapshot)) => {
                    self.startup_notes = Some(startup_notes(&snapshot));
                    self.snapshot = snapshot;
                }
                Some(WorkerEvent::Live(j, event)) if j == id => on_live(event),
                Some(WorkerEvent::Finished(j, exec)) if j == id => {
                    finished = Some((exec, Instant::now()));
                }
                Some(WorkerEvent::Snapshot(snapshot)) if finished.is_some() => {
                    self.snapshot = snapshot;
                    break;
                }
                Some(_) => {}
                None => match &finished {
                    Some((_, at)) if at.elapsed() > SNAPSHOT_WAIT => break,
                    Some(_) => {}
                    None if !self.worker.is_running() => {
                        self.replace_session();
                        return Execution::stopped_worker(
                            "the session stopped while running the cell; a fresh session was \
                             started (load the model again)",
                        );
                    }
                    None => {}
                },
            }
        }
        finished.map(|(exec, _)| exec).unwrap_or_default()
    }

    /// Drops the session (its thread is gone or in an unknown state) for a new one.
    fn replace_session(&mut self) {
        self.worker = SessionWorker::spawn(self.options.session.clone(), (self.options.rust)());
        *self.snapshot = Snapshot::default();
    }
}

fn startup_notes(snapshot: &Snapshot) -> Vec<String> {
    let mut notes = snapshot.notes.clone();
    if let Some(problem) = &snapshot.plugin_problem {
        notes.push(problem.clone());
    }
    notes
}

/// The message a panic was raised with, when it is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
