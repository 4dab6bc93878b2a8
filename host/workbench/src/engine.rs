//! The workbench's side of the session worker: what has been asked of the engine, what is
//! running, what it has streamed so far, and the last snapshot of its state.
//!
//! Requests wait in a queue here and go to the worker one at a time, so that "Cancel" can stop
//! the running job *and* everything queued behind it, a failing cell can stop the rest of a
//! "Run all", and a burst of timeline moves (dragging the scrubber) collapses into one `seek`.
//!
//! [`EngineLink::poll`] turns worker events into [`Update`]s that the app applies to the
//! document; the link itself never touches the document.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tritlab_session::lang::{CompletionSource, PluginRole};
use tritlab_session::snapshot::Snapshot;
use tritlab_session::{Execution, JobId, LiveEvent, SessionWorker, Waker, WorkerEvent};
use tritlab_workbook::{Output, TraceToken};

use crate::document::BlockKey;

/// What runs commands: the session worker, or a stand-in in tests.
pub trait Backend {
    /// Queues a command line or a whole cell; jobs run in submission order.
    fn submit(&mut self, source: &str) -> JobId;
    /// Cancels the running job at its next step.
    fn cancel(&mut self);
    /// The next event, if one is waiting.
    fn poll(&mut self) -> Option<WorkerEvent>;
    /// Whether events can still come. A command that panics does not end the session (it
    /// finishes with an internal error); this is `false` only if the worker is gone for good.
    fn is_alive(&self) -> bool {
        true
    }
    /// Asks the backend to call `waker` after each event it sends; `false` if it cannot, and
    /// the face must keep polling while it waits.
    fn set_waker(&mut self, _waker: Waker) -> bool {
        false
    }
}

impl Backend for SessionWorker {
    fn submit(&mut self, source: &str) -> JobId {
        SessionWorker::submit(self, source)
    }

    fn cancel(&mut self) {
        SessionWorker::cancel(self);
    }

    fn poll(&mut self) -> Option<WorkerEvent> {
        self.try_recv()
    }

    fn is_alive(&self) -> bool {
        self.is_running()
    }

    fn set_waker(&mut self, waker: Waker) -> bool {
        SessionWorker::set_waker(self, waker);
        true
    }
}

/// Who asked for a job, and so where its results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A workbook cell: its outputs are replaced by the job's.
    Cell(BlockKey),
    /// A move on the timeline (`seek`, `step`, `back`); only errors are shown.
    Timeline,
    /// A plugin switched on or off or configured; only errors are shown.
    Plugin,
}

/// A request waiting for its turn.
#[derive(Debug, Clone)]
struct Request {
    source: String,
    target: Target,
    /// Requests of one "Run all": a failure drops the rest of the group.
    group: Option<u64>,
}

/// What the running job last said about its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub label: String,
    pub done: u64,
    pub total: Option<u64>,
}

impl Progress {
    /// Done as a fraction of the total, when there is a total.
    pub fn fraction(&self) -> Option<f32> {
        self.total
            .filter(|&total| total > 0)
            .map(|total| (self.done as f64 / total as f64).clamp(0.0, 1.0) as f32)
    }
}

/// What a running cell has streamed so far: generated tokens and lines of text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveOutput {
    pub tokens: Vec<TraceToken>,
    pub lines: Vec<String>,
}

/// The job the worker is running (or about to start).
#[derive(Debug, Clone)]
pub struct Running {
    pub id: JobId,
    pub target: Target,
    /// The command text, for the status bar.
    pub source: String,
    group: Option<u64>,
    /// When the worker started it; `None` while it waits behind the session's start-up.
    pub started: Option<Instant>,
    pub progress: Option<Progress>,
    pub live: LiveOutput,
    pub cancelling: bool,
}

impl Running {
    pub fn elapsed(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// A change the app applies to the document or the window.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The session finished starting (default model and plugins loaded).
    Ready,
    /// A cell started running: its old outputs go.
    CellStarted(BlockKey),
    /// A cell finished with these outputs (errors included).
    CellFinished {
        key: BlockKey,
        outputs: Vec<Output>,
        failed: bool,
    },
    /// Queued cells that will not run after all (cancelled, or an earlier cell failed).
    CellsDropped(Vec<BlockKey>),
    /// A timeline or plugin command failed.
    ControlFailed { source: String, message: String },
    /// `clear` ran: the outputs pane empties.
    Clear,
    /// `quit` ran.
    Quit,
    /// A new snapshot of the engine state arrived.
    Snapshot,
}

/// The workbench's view of the session worker.
pub struct EngineLink {
    backend: Box<dyn Backend>,
    ready: bool,
    queue: VecDeque<Request>,
    running: Option<Running>,
    snapshot: Snapshot,
    snapshot_serial: u64,
    next_group: u64,
    /// The backend wakes the face after each event (see [`EngineLink::set_waker`]).
    wakes: bool,
}

impl EngineLink {
    pub fn new(backend: Box<dyn Backend>) -> Self {
        EngineLink {
            backend,
            ready: false,
            queue: VecDeque::new(),
            running: None,
            snapshot: Snapshot::default(),
            snapshot_serial: 0,
            next_group: 0,
            wakes: false,
        }
    }

    /// Whether the session has finished starting.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether anything is running or queued.
    pub fn is_busy(&self) -> bool {
        self.running.is_some() || !self.queue.is_empty()
    }

    /// Whether the workbench should keep polling: starting up, or busy.
    /// Whether the face must redraw on a timer to notice the worker's events: only while
    /// something is in flight, and never once the worker wakes the face itself.
    pub fn needs_polling(&self) -> bool {
        (!self.ready || self.is_busy()) && !self.wakes
    }

    /// Has the backend wake the face (through `waker`) after each event, if it can.
    pub fn set_waker(&mut self, waker: Waker) {
        self.wakes = self.backend.set_waker(waker);
    }

    pub fn running(&self) -> Option<&Running> {
        self.running.as_ref()
    }

    /// How many requests wait behind the running one.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the cell is waiting in the queue.
    pub fn is_queued(&self, key: BlockKey) -> bool {
        self.queue.iter().any(|r| r.target == Target::Cell(key))
    }

    /// The running job's live output, if `key` is the running cell.
    pub fn live_output(&self, key: BlockKey) -> Option<&Running> {
        self.running
            .as_ref()
            .filter(|running| running.target == Target::Cell(key))
    }

    /// The engine state as of the last finished job.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Changes whenever a new snapshot arrives.
    pub fn snapshot_serial(&self) -> u64 {
        self.snapshot_serial
    }

    /// Queues a cell's script.
    pub fn run_cell(&mut self, key: BlockKey, script: String) {
        self.enqueue(Request {
            source: script,
            target: Target::Cell(key),
            group: None,
        });
    }

    /// Queues several cells to run in order; the first failure drops the rest.
    pub fn run_cells(&mut self, cells: impl IntoIterator<Item = (BlockKey, String)>) {
        self.next_group += 1;
        let group = Some(self.next_group);
        for (key, script) in cells {
            self.enqueue(Request {
                source: script,
                target: Target::Cell(key),
                group,
            });
        }
    }

    /// Queues a timeline move. A move still waiting in the queue is replaced, so a fast drag on
    /// the scrubber ends in one `seek` to where it stopped rather than one per frame.
    ///
    /// The request is a [`Command`] value, rendered canonically, so the workbench never
    /// assembles command text (or its quoting) itself.
    pub fn move_timeline(&mut self, command: &tritlab_session::Command) {
        self.queue.retain(|r| r.target != Target::Timeline);
        self.enqueue(Request {
            source: command.to_string(),
            target: Target::Timeline,
            group: None,
        });
    }

    /// Queues a plugin command (`plugin enable NAME`, `plugin set NAME KEY VALUE`, …).
    pub fn plugin_command(&mut self, command: tritlab_session::lang::Plugin) {
        self.enqueue(Request {
            source: tritlab_session::Command::Plugin(command).to_string(),
            target: Target::Plugin,
            group: None,
        });
    }

    /// Whether a timeline move is running or queued.
    pub fn timeline_busy(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.target == Target::Timeline)
            || self.queue.iter().any(|r| r.target == Target::Timeline)
    }

    /// Cancels the running job and drops everything queued; returns the dropped cells' update.
    pub fn cancel_all(&mut self) -> Option<Update> {
        let dropped: Vec<BlockKey> = self
            .queue
            .drain(..)
            .filter_map(|r| match r.target {
                Target::Cell(key) => Some(key),
                _ => None,
            })
            .collect();
        if let Some(running) = &mut self.running {
            running.cancelling = true;
            self.backend.cancel();
        }
        (!dropped.is_empty()).then_some(Update::CellsDropped(dropped))
    }

    /// Drops a queued cell (e.g. because it was deleted); a running one is cancelled.
    pub fn forget_cell(&mut self, key: BlockKey) {
        self.queue.retain(|r| r.target != Target::Cell(key));
        if let Some(running) = &mut self.running {
            if running.target == Target::Cell(key) {
                running.cancelling = true;
                self.backend.cancel();
            }
        }
    }

    /// Reads every waiting worker event and submits the next request when the worker is free.
    pub fn poll(&mut self) -> Vec<Update> {
        let mut updates = Vec::new();
        while let Some(event) = self.backend.poll() {
            self.handle(event, &mut updates);
        }
        // A worker that is gone will never finish the running job: fail it (and, one by one,
        // the queue) rather than show it running for ever.
        if let Some(running) = self.running.take_if(|_| !self.backend.is_alive()) {
            let execution = Execution::stopped_worker(
                "the session stopped unexpectedly; restart the workbench",
            );
            self.finish(running, execution, &mut updates);
        }
        self.pump();
        updates
    }

    fn enqueue(&mut self, request: Request) {
        self.queue.push_back(request);
        self.pump();
    }

    /// Submits the next queued request if nothing is running.
    fn pump(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(request) = self.queue.pop_front() else {
            return;
        };
        let id = self.backend.submit(&request.source);
        self.running = Some(Running {
            id,
            target: request.target,
            source: request.source,
            group: request.group,
            started: None,
            progress: None,
            live: LiveOutput::default(),
            cancelling: false,
        });
    }

    fn handle(&mut self, event: WorkerEvent, updates: &mut Vec<Update>) {
        match event {
            WorkerEvent::Ready(snapshot) => {
                self.ready = true;
                self.set_snapshot(*snapshot);
                updates.push(Update::Ready);
                updates.push(Update::Snapshot);
            }
            WorkerEvent::Snapshot(snapshot) => {
                self.set_snapshot(*snapshot);
                updates.push(Update::Snapshot);
            }
            WorkerEvent::Started(id) => {
                if let Some(running) = self.running.as_mut().filter(|r| r.id == id) {
                    running.started = Some(Instant::now());
                    if let Target::Cell(key) = running.target {
                        updates.push(Update::CellStarted(key));
                    }
                }
            }
            WorkerEvent::Live(id, live) => {
                let Some(running) = self.running.as_mut().filter(|r| r.id == id) else {
                    return;
                };
                match live {
                    LiveEvent::Progress { label, done, total } => {
                        running.progress = Some(Progress { label, done, total });
                    }
                    LiveEvent::Token(token) => running.live.tokens.push(token),
                    LiveEvent::Line(line) => running.live.lines.push(line),
                }
            }
            WorkerEvent::Finished(id, execution) => {
                if self.running.as_ref().is_some_and(|r| r.id == id) {
                    let running = self.running.take().expect("checked above");
                    self.finish(running, execution, updates);
                }
            }
        }
    }

    fn finish(&mut self, running: Running, execution: Execution, updates: &mut Vec<Update>) {
        // A command that panicked arrives as an ordinary failure whose error names the command;
        // the session has already recovered, so the queue carries on like after any error.
        let Execution {
            mut outputs,
            error,
            quit,
            clear,
            internal_error: _,
            cancelled: _,
        } = execution;
        let error = error.map(|e| e.to_string());
        if clear {
            updates.push(Update::Clear);
        }
        let failed = error.is_some();
        if let Some(message) = &error {
            if !outputs.iter().any(|o| matches!(o, Output::Error(_))) {
                outputs.push(Output::Error(message.clone()));
            }
        }
        match running.target {
            Target::Cell(key) => {
                updates.push(Update::CellFinished {
                    key,
                    outputs,
                    failed,
                });
                if failed && running.group.is_some() {
                    let dropped: Vec<BlockKey> = self
                        .queue
                        .iter()
                        .filter(|r| r.group == running.group)
                        .filter_map(|r| match r.target {
                            Target::Cell(key) => Some(key),
                            _ => None,
                        })
                        .collect();
                    self.queue.retain(|r| r.group != running.group);
                    if !dropped.is_empty() {
                        updates.push(Update::CellsDropped(dropped));
                    }
                }
            }
            Target::Timeline | Target::Plugin => {
                if let Some(message) = error {
                    updates.push(Update::ControlFailed {
                        source: running.source,
                        message,
                    });
                }
            }
        }
        if quit {
            updates.push(Update::Quit);
        }
    }

    fn set_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = snapshot;
        self.snapshot_serial += 1;
    }
}

/// Completion of names only the session knows, from the last snapshot.
impl CompletionSource for EngineLink {
    fn tensor_names(&self) -> Vec<String> {
        let snapshot = &self.snapshot;
        let mut names: Vec<String> = snapshot
            .model
            .iter()
            .flat_map(|m| m.tensors.iter().map(|t| t.name.clone()))
            .collect();
        if let Some(run) = &snapshot.run {
            names.extend(run.tensors.iter().map(|t| t.name.clone()));
        }
        names.sort();
        names.dedup();
        names
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tensor_names()
            .into_iter()
            .map(|name| {
                name.strip_suffix(".weight")
                    .map(str::to_owned)
                    .unwrap_or(name)
            })
            .collect();
        names.dedup();
        names
    }

    fn plugin_names(&self, role: Option<PluginRole>) -> Vec<String> {
        let wanted = role.map(|role| match role {
            PluginRole::Tracer => "tracer",
            PluginRole::Checker => "checker",
            PluginRole::Visualiser => "visualiser",
        });
        self.snapshot
            .plugins
            .iter()
            .filter(|p| wanted.is_none_or(|kind| p.kind.eq_ignore_ascii_case(kind)))
            .map(|p| p.name.clone())
            .collect()
    }

    fn run_steps(&self) -> Vec<u64> {
        self.snapshot
            .run
            .iter()
            .flat_map(|run| run.steps.iter().map(|s| s.step))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted stand-in for the session worker.

    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what was submitted; tests push the events the worker would send.
    #[derive(Clone, Default)]
    pub struct FakeBackend {
        pub state: Arc<Mutex<FakeState>>,
    }

    #[derive(Default)]
    pub struct FakeState {
        pub submitted: Vec<(JobId, String)>,
        pub events: VecDeque<WorkerEvent>,
        pub cancels: usize,
        /// The worker is gone: no event will come.
        pub dead: bool,
    }

    impl FakeBackend {
        pub fn push(&self, event: WorkerEvent) {
            self.state.lock().unwrap().events.push_back(event);
        }

        pub fn submitted(&self) -> Vec<(JobId, String)> {
            self.state.lock().unwrap().submitted.clone()
        }

        /// Starts and finishes the last submitted job with `outputs`.
        pub fn complete_last(&self, outputs: Vec<Output>, error: Option<&str>) {
            let (id, _) = self.submitted().last().cloned().expect("a submitted job");
            self.push(WorkerEvent::Started(id));
            self.push(WorkerEvent::Finished(
                id,
                match error {
                    Some(message) => Execution {
                        outputs,
                        error: Some(tritlab_session::ExecutionError::new(
                            1,
                            tritlab_session::SessionError::Usage(message.to_owned()),
                        )),
                        ..Execution::default()
                    },
                    None => Execution {
                        outputs,
                        ..Execution::default()
                    },
                },
            ));
        }
    }

    impl Backend for FakeBackend {
        fn submit(&mut self, source: &str) -> JobId {
            let mut state = self.state.lock().unwrap();
            let id = state.submitted.len() as JobId + 1;
            state.submitted.push((id, source.to_owned()));
            id
        }

        fn cancel(&mut self) {
            self.state.lock().unwrap().cancels += 1;
        }

        fn poll(&mut self) -> Option<WorkerEvent> {
            self.state.lock().unwrap().events.pop_front()
        }

        fn is_alive(&self) -> bool {
            !self.state.lock().unwrap().dead
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::FakeBackend;
    use super::*;
    use crate::document::Document;
    use tritlab_workbook::CellKind;

    fn keys(n: usize) -> Vec<BlockKey> {
        let mut doc = Document::new();
        (0..n)
            .map(|_| doc.insert_cell(None, CellKind::Command, "info"))
            .collect()
    }

    #[test]
    fn one_job_at_a_time_and_live_output_reaches_the_running_cell() {
        let fake = FakeBackend::default();
        let mut link = EngineLink::new(Box::new(fake.clone()));
        let [a, b] = keys(2)[..] else { unreachable!() };
        link.run_cell(a, "generate \"x\"".into());
        link.run_cell(b, "info".into());
        assert_eq!(fake.submitted().len(), 1);
        assert!(link.is_queued(b));

        fake.push(WorkerEvent::Started(1));
        fake.push(WorkerEvent::Live(
            1,
            LiveEvent::Token(TraceToken::plain("hi")),
        ));
        fake.push(WorkerEvent::Live(
            1,
            LiveEvent::Progress {
                label: "generating".into(),
                done: 1,
                total: Some(4),
            },
        ));
        assert_eq!(link.poll(), vec![Update::CellStarted(a)]);
        let running = link.live_output(a).unwrap();
        assert_eq!(running.live.tokens.len(), 1);
        assert_eq!(running.progress.as_ref().unwrap().fraction(), Some(0.25));

        fake.complete_last(vec![Output::Text("done".into())], None);
        let updates = link.poll();
        assert!(updates.contains(&Update::CellFinished {
            key: a,
            outputs: vec![Output::Text("done".into())],
            failed: false
        }));
        assert_eq!(
            fake.submitted().len(),
            2,
            "the next job goes out once the first is done"
        );
    }

    #[test]
    fn a_worker_that_is_gone_fails_the_running_job_instead_of_hanging() {
        let fake = FakeBackend::default();
        let mut link = EngineLink::new(Box::new(fake.clone()));
        let cells = keys(2);
        link.run_cells(cells.iter().map(|&k| (k, "info".to_string())));
        assert!(link.poll().is_empty());
        fake.state.lock().unwrap().dead = true;
        let updates = link.poll();
        assert!(updates.iter().any(|update| matches!(
            update,
            Update::CellFinished { key, failed: true, outputs }
                if *key == cells[0]
                    && outputs == &[Output::Error(
                        "the session stopped unexpectedly; restart the workbench".into()
                    )]
        )));
        assert!(updates.contains(&Update::CellsDropped(vec![cells[1]])));
        assert!(!link.is_busy());
    }

    #[test]
    fn a_failure_stops_the_rest_of_a_run_all() {
        let fake = FakeBackend::default();
        let mut link = EngineLink::new(Box::new(fake.clone()));
        let cells = keys(3);
        link.run_cells(cells.iter().map(|&k| (k, "verify nowhere".to_string())));
        fake.complete_last(Vec::new(), Some("cannot open nowhere"));
        let updates = link.poll();
        assert!(updates.contains(&Update::CellFinished {
            key: cells[0],
            outputs: vec![Output::Error("cannot open nowhere".into())],
            failed: true
        }));
        assert!(updates.contains(&Update::CellsDropped(vec![cells[1], cells[2]])));
        assert!(!link.is_busy());
    }

    #[test]
    fn timeline_moves_coalesce_and_cancel_clears_the_queue() {
        let fake = FakeBackend::default();
        let mut link = EngineLink::new(Box::new(fake.clone()));
        let cells = keys(2);
        link.run_cell(cells[0], "train".into());
        for step in 1..10 {
            link.move_timeline(&tritlab_session::Command::Seek(
                tritlab_session::lang::Seek { step },
            ));
        }
        link.run_cell(cells[1], "info".into());
        assert_eq!(link.queued(), 2, "nine seeks became one");
        assert!(link.timeline_busy());

        assert_eq!(
            link.cancel_all(),
            Some(Update::CellsDropped(vec![cells[1]]))
        );
        assert_eq!(fake.state.lock().unwrap().cancels, 1);
        assert!(link.running().unwrap().cancelling);
        assert_eq!(link.queued(), 0);
    }
}
