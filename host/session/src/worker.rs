//! A session on its own thread, so the faces (REPL, workbench) stay responsive while a command
//! runs, and can cancel it.

use crate::session::{Context, Execution, LiveEvent, RustEvaluator, Session, SessionConfig};
use crate::snapshot::Snapshot;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Identifies a submitted job in the events about it.
pub type JobId = u64;

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// The session is up (plugins and default model loaded); carries its first snapshot.
    Ready(Box<Snapshot>),
    Started(JobId),
    Live(JobId, LiveEvent),
    Finished(JobId, Execution),
    /// The engine state after a job, for inspectors.
    Snapshot(Box<Snapshot>),
}

enum Request {
    Run(JobId, String),
    Snapshot,
    Stop,
}

/// The session's state for inspectors. Taking a snapshot only reads the session, so a panic in
/// it leaves nothing half-updated; it yields an empty snapshot rather than ending the thread.
fn snapshot_of(session: &Session) -> Snapshot {
    std::panic::catch_unwind(AssertUnwindSafe(|| Snapshot::of(session))).unwrap_or_default()
}

/// Owns a [`Session`] on a worker thread. Jobs run in submission order.
pub struct SessionWorker {
    requests: Sender<Request>,
    events: Receiver<WorkerEvent>,
    cancel: Arc<AtomicBool>,
    next_job: AtomicU64,
    thread: Option<JoinHandle<()>>,
}

impl SessionWorker {
    pub fn spawn(config: SessionConfig, rust: Option<Box<dyn RustEvaluator>>) -> SessionWorker {
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (ev_tx, ev_rx) = mpsc::channel::<WorkerEvent>();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("tritlab-session".into())
            .spawn(move || {
                let mut session = Session::new(config);
                if let Some(r) = rust {
                    session.set_rust_evaluator(r);
                }
                let _ = ev_tx.send(WorkerEvent::Ready(Box::new(snapshot_of(&session))));
                while let Ok(request) = req_rx.recv() {
                    match request {
                        Request::Stop => break,
                        Request::Snapshot => {
                            let _ =
                                ev_tx.send(WorkerEvent::Snapshot(Box::new(snapshot_of(&session))));
                        }
                        Request::Run(id, source) => {
                            flag.store(false, Ordering::SeqCst);
                            let _ = ev_tx.send(WorkerEvent::Started(id));
                            let tx = ev_tx.clone();
                            let mut forward = |e: LiveEvent| {
                                let _ = tx.send(WorkerEvent::Live(id, e));
                            };
                            let mut ctx = Context {
                                cancel: &flag,
                                events: &mut forward,
                            };
                            // `execute` turns a panicking command into an error; the thread
                            // lives on for the next job.
                            let exec = session.execute(&source, &mut ctx);
                            let _ = ev_tx.send(WorkerEvent::Finished(id, exec));
                            let _ =
                                ev_tx.send(WorkerEvent::Snapshot(Box::new(snapshot_of(&session))));
                        }
                    }
                }
            })
            .expect("spawning the session thread");
        SessionWorker {
            requests: req_tx,
            events: ev_rx,
            cancel,
            next_job: AtomicU64::new(1),
            thread: Some(thread),
        }
    }

    /// Queues a command line or a whole cell.
    pub fn submit(&self, source: impl Into<String>) -> JobId {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let _ = self.requests.send(Request::Run(id, source.into()));
        id
    }

    /// Asks for a fresh snapshot.
    pub fn request_snapshot(&self) {
        let _ = self.requests.send(Request::Snapshot);
    }

    /// Cancels the running job at its next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether the session thread is still there. A panicking command does not end it (it
    /// finishes with an [`crate::InternalError`]); `false` means the thread is gone for another
    /// reason, e.g. the session failed to start: no more events will come, and a face waiting
    /// for one should stop waiting.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub fn try_recv(&self) -> Option<WorkerEvent> {
        self.events.try_recv().ok()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Option<WorkerEvent> {
        match self.events.recv_timeout(timeout) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Runs `source` and waits for it, passing live events to `on_live` (for line-oriented faces).
    pub fn run_blocking(&self, source: &str, mut on_live: impl FnMut(&LiveEvent)) -> Execution {
        let id = self.submit(source);
        loop {
            match self.events.recv() {
                Ok(WorkerEvent::Live(j, e)) if j == id => on_live(&e),
                Ok(WorkerEvent::Finished(j, exec)) if j == id => return exec,
                Ok(_) => {}
                Err(_) => return Execution::stopped_worker("the session thread stopped"),
            }
        }
    }
}

impl Drop for SessionWorker {
    fn drop(&mut self) {
        self.cancel();
        let _ = self.requests.send(Request::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
