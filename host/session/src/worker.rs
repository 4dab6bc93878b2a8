//! A session on its own thread, so the faces (REPL, workbench) stay responsive while a command
//! runs, and can cancel it.

use crate::session::{Context, Execution, LiveEvent, RustEvaluator, Session, SessionConfig};
use crate::snapshot::{Snapshot, SnapshotCache};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
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

/// Called by the worker after it sends an event, from the worker's thread: a GUI passes its
/// "repaint" here, so it sleeps until there is something to show instead of polling.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The worker's side of the event channel: sends, then wakes the face.
struct Events {
    tx: Sender<WorkerEvent>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Events {
    fn send(&self, event: WorkerEvent) {
        let _ = self.tx.send(event);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(wake) = waker {
            wake();
        }
    }
}

/// The session's state for inspectors, through the cache. Taking a snapshot only reads the
/// session, so a panic in it leaves nothing half-updated; it yields an empty snapshot (and an
/// empty cache) rather than ending the thread.
fn snapshot_of(session: &Session, cache: &mut SnapshotCache) -> Snapshot {
    std::panic::catch_unwind(AssertUnwindSafe(|| cache.snapshot(session))).unwrap_or_else(|_| {
        *cache = SnapshotCache::default();
        Snapshot::default()
    })
}

/// Draws one missing thumbnail; whether more remain. A panic drops the drawing.
fn draw_one(session: &Session, cache: &mut SnapshotCache) -> bool {
    std::panic::catch_unwind(AssertUnwindSafe(|| cache.draw_one_thumbnail(session))).unwrap_or_else(
        |_| {
            *cache = SnapshotCache::default();
            false
        },
    )
}

/// Owns a [`Session`] on a worker thread. Jobs run in submission order.
pub struct SessionWorker {
    requests: Sender<Request>,
    events: Receiver<WorkerEvent>,
    cancel: Arc<AtomicBool>,
    next_job: AtomicU64,
    thread: Option<JoinHandle<()>>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl SessionWorker {
    pub fn spawn(config: SessionConfig, rust: Option<Box<dyn RustEvaluator>>) -> SessionWorker {
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (ev_tx, ev_rx) = mpsc::channel::<WorkerEvent>();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
        let events = Events {
            tx: ev_tx,
            waker: waker.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tritlab-session".into())
            .spawn(move || {
                let mut session = Session::new(config);
                if let Some(r) = rust {
                    session.set_rust_evaluator(r);
                }
                let mut cache = SnapshotCache::default();
                events.send(WorkerEvent::Ready(Box::new(snapshot_of(
                    &session, &mut cache,
                ))));
                loop {
                    // Between requests, thumbnails are drawn one tensor at a time, so a command
                    // waits for at most one of them; when the last is drawn, a snapshot with all
                    // of them goes out.
                    let request = if cache.is_drawing() {
                        match req_rx.try_recv() {
                            Ok(request) => request,
                            Err(TryRecvError::Empty) => {
                                if !draw_one(&session, &mut cache) {
                                    let snapshot = snapshot_of(&session, &mut cache);
                                    events.send(WorkerEvent::Snapshot(Box::new(snapshot)));
                                }
                                continue;
                            }
                            Err(TryRecvError::Disconnected) => break,
                        }
                    } else {
                        match req_rx.recv() {
                            Ok(request) => request,
                            Err(_) => break,
                        }
                    };
                    match request {
                        Request::Stop => break,
                        Request::Snapshot => {
                            let snapshot = snapshot_of(&session, &mut cache);
                            events.send(WorkerEvent::Snapshot(Box::new(snapshot)));
                        }
                        Request::Run(id, source) => {
                            flag.store(false, Ordering::SeqCst);
                            events.send(WorkerEvent::Started(id));
                            let mut forward = |e: LiveEvent| {
                                events.send(WorkerEvent::Live(id, e));
                            };
                            let mut ctx = Context {
                                cancel: &flag,
                                events: &mut forward,
                            };
                            // `execute` turns a panicking command into an error; the thread
                            // lives on for the next job.
                            let exec = session.execute(&source, &mut ctx);
                            events.send(WorkerEvent::Finished(id, exec));
                            let snapshot = snapshot_of(&session, &mut cache);
                            events.send(WorkerEvent::Snapshot(Box::new(snapshot)));
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
            waker,
        }
    }

    /// Calls `waker` after every event from now on (see [`Waker`]).
    pub fn set_waker(&self, waker: Waker) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
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
