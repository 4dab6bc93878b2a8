//! The kernel proper: five ZeroMQ channels, each served by its own task.
//!
//! - shell: requests served one at a time (`execute` runs on a blocking thread while its live
//!   events are relayed), each between a `busy` and an `idle` status on IOPub;
//! - control: `kernel_info`, `interrupt` and `shutdown`, answered even while a cell runs;
//! - IOPub: one task owns the socket; everything published goes through its queue, and it greets
//!   each new subscriber with `iopub_welcome`;
//! - heartbeat: answers every ping;
//! - stdin: bound, as clients expect, but unused (cells never ask for input).
//!
//! A message whose signature does not match the connection file's key, or that is not a Jupyter
//! message, is dropped with a note on stderr; the kernel keeps serving.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jupyter_protocol::{
    ClearOutput, CommInfoReply, CompleteReply, CompleteRequest, ConnectionInfo, DisplayData,
    ExecuteInput, ExecuteReply, ExecuteRequest, ExecuteResult, ExecutionCount, HelpLink,
    HistoryEntry, HistoryReply, HistoryRequest, InspectReply, InspectRequest, InterruptReply,
    IoPubWelcome, IsCompleteReply, IsCompleteReplyStatus, JupyterMessage, JupyterMessageContent,
    KernelInfoReply, LanguageInfo, Payload, ReplyError, ReplyStatus, ShutdownReply, Status,
    StreamContent, Transient, UpdateDisplayData,
};
use jupyter_zmq_client::{
    create_kernel_control_connection, create_kernel_heartbeat_connection,
    create_kernel_iopub_xpub_connection, create_kernel_shell_connection,
    create_kernel_stdin_connection, KernelIoPubXPubConnection, KernelShellConnection, RuntimeError,
    SubscriptionEvent,
};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Notify};
use tritlab_session::{Execution, LiveEvent};
use tritlab_workbook::Output;

use crate::bundle::{iopub_content, media};
use crate::executor::{panic_message, Executor};
use crate::{KernelError, KernelOptions};
use tritlab_session::SnapshotNames as SessionNames;

/// The protocol version this kernel speaks.
const PROTOCOL_VERSION: &str = "5.3";
/// Live token text is redrawn at most this often.
const TOKEN_REFRESH: Duration = Duration::from_millis(100);
/// A progress line is published at most this often (and when a stage ends).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Consecutive socket errors after which a channel gives up.
const MAX_SOCKET_ERRORS: usize = 100;

/// Reads `connection_file` and serves a kernel on it until a `shutdown_request`.
pub fn run(connection_file: &Path, options: KernelOptions) -> Result<(), KernelError> {
    let text =
        std::fs::read_to_string(connection_file).map_err(|source| KernelError::ConnectionFile {
            path: connection_file.to_path_buf(),
            source,
        })?;
    let info: ConnectionInfo =
        serde_json::from_str(&text).map_err(|source| KernelError::BadConnectionFile {
            path: connection_file.to_path_buf(),
            source,
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(KernelError::Runtime)?;
    let result = runtime.block_on(serve(info, options));
    // A cell still running was cancelled; do not wait long for it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Serves a kernel on the sockets `info` names until a `shutdown_request`.
pub async fn serve(info: ConnectionInfo, options: KernelOptions) -> Result<(), KernelError> {
    // An empty key means unsigned messages (the protocol allows it); otherwise the only scheme
    // clients use, and the one the transport implements, is HMAC-SHA256.
    if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
        return Err(KernelError::UnsupportedSignature(
            info.signature_scheme.clone(),
        ));
    }
    let session_id = kernel_session_id();
    let socket = |channel: &'static str| {
        move |e: RuntimeError| KernelError::Socket {
            channel,
            message: e.to_string(),
        }
    };
    let mut heartbeat = create_kernel_heartbeat_connection(&info)
        .await
        .map_err(socket("heartbeat"))?;
    let shell = create_kernel_shell_connection(&info, &session_id)
        .await
        .map_err(socket("shell"))?;
    let control = create_kernel_control_connection(&info, &session_id)
        .await
        .map_err(socket("control"))?;
    let stdin = create_kernel_stdin_connection(&info, &session_id)
        .await
        .map_err(socket("stdin"))?;
    let iopub = create_kernel_iopub_xpub_connection(&info, &session_id)
        .await
        .map_err(socket("iopub"))?;

    let (publish, queue) = mpsc::unbounded_channel::<JupyterMessage>();
    let interrupt = Arc::new(AtomicBool::new(false));
    let shutdown = Arc::new(Notify::new());
    let executor = Arc::new(Mutex::new(Executor::start(options, interrupt.clone())));

    let iopub_task = tokio::spawn(serve_iopub(iopub, queue, session_id.clone()));
    let heartbeat_task = tokio::spawn(async move {
        let mut errors = 0;
        while errors < MAX_SOCKET_ERRORS {
            match heartbeat.single_heartbeat().await {
                Ok(()) => errors = 0,
                Err(_) => errors += 1,
            }
        }
    });
    let control_task = tokio::spawn(serve_control(
        control,
        publish.clone(),
        interrupt.clone(),
        shutdown.clone(),
    ));
    let shell_task = tokio::spawn(
        Shell {
            socket: shell,
            publish: publish.clone(),
            executor,
            names: SessionNames::default(),
            count: 0,
            history: Vec::new(),
            displays: 0,
            shutdown: shutdown.clone(),
        }
        .serve(),
    );
    let _ = publish.send(Status::starting().into());

    tokio::select! {
        // A shutdown ends the control task too: look at the request first.
        biased;
        _ = shutdown.notified() => {}
        _ = shell_task => eprintln!("tritlab kernel: the shell channel stopped"),
        _ = control_task => eprintln!("tritlab kernel: the control channel stopped"),
        _ = heartbeat_task => eprintln!("tritlab kernel: the heartbeat stopped"),
    }
    // Stop a running cell at its next step, and let the last replies leave.
    interrupt.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    iopub_task.abort();
    drop(stdin);
    Ok(())
}

/// A session id for the kernel's messages, unique enough to tell restarted kernels apart.
fn kernel_session_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("tritlab-{:x}-{:x}", std::process::id(), nanos)
}

/// Reads the next message of a channel (shell and control are both router sockets): `None` when the socket is gone for good. Messages that
/// fail to verify or parse are dropped with a note, and reading goes on.
async fn next_message(socket: &mut KernelShellConnection, channel: &str) -> Option<JupyterMessage> {
    let mut errors = 0;
    loop {
        match socket.read().await {
            Ok(message) => return Some(message),
            Err(RuntimeError::ZmqError(e)) => {
                errors += 1;
                if errors >= MAX_SOCKET_ERRORS {
                    eprintln!("tritlab kernel: {channel} channel: {e}");
                    return None;
                }
            }
            Err(RuntimeError::VerifyError(_)) => {
                eprintln!(
                    "tritlab kernel: dropped a {channel} message whose signature does not match \
                     the connection file's key"
                );
            }
            Err(e) => eprintln!("tritlab kernel: dropped a malformed {channel} message: {e}"),
        }
    }
}

/// Owns the IOPub socket: publishes what the other tasks queue, greets new subscribers.
async fn serve_iopub(
    mut iopub: KernelIoPubXPubConnection,
    mut queue: mpsc::UnboundedReceiver<JupyterMessage>,
    session_id: String,
) {
    loop {
        let message = tokio::select! {
            message = queue.recv() => match message {
                Some(message) => message,
                None => return,
            },
            event = iopub.recv_subscription() => match event {
                Ok(SubscriptionEvent::Subscribe(topic)) => IoPubWelcome::new(topic).into(),
                _ => continue,
            },
        };
        // IOPub's first frame is a topic, not a routing identity: the parent's identities
        // (copied by `as_child_of`) must not go out on it.
        let topic = format!("kernel.{session_id}.{}", message.header.msg_type);
        let message = message.with_zmq_identities(vec![topic.into_bytes().into()]);
        if let Err(e) = iopub.send(message).await {
            eprintln!("tritlab kernel: cannot publish on IOPub: {e}");
        }
    }
}

async fn serve_control(
    mut control: KernelShellConnection,
    publish: mpsc::UnboundedSender<JupyterMessage>,
    interrupt: Arc<AtomicBool>,
    shutdown: Arc<Notify>,
) {
    while let Some(request) = next_message(&mut control, "control").await {
        let _ = publish.send(Status::busy().as_child_of(&request));
        let reply: Option<JupyterMessage> = match &request.content {
            JupyterMessageContent::KernelInfoRequest(_) => {
                Some(kernel_info().as_child_of(&request))
            }
            JupyterMessageContent::InterruptRequest(_) => {
                interrupt.store(true, Ordering::SeqCst);
                Some(InterruptReply::new().as_child_of(&request))
            }
            JupyterMessageContent::ShutdownRequest(r) => {
                let reply = ShutdownReply {
                    restart: r.restart,
                    status: ReplyStatus::Ok,
                    error: None,
                };
                let _ = control.send(reply.as_child_of(&request)).await;
                let _ = publish.send(Status::idle().as_child_of(&request));
                shutdown.notify_one();
                return;
            }
            other => {
                eprintln!(
                    "tritlab kernel: no answer to `{}` on the control channel",
                    other.message_type()
                );
                None
            }
        };
        if let Some(reply) = reply {
            if let Err(e) = control.send(reply).await {
                eprintln!("tritlab kernel: cannot reply on the control channel: {e}");
            }
        }
        let _ = publish.send(Status::idle().as_child_of(&request));
    }
}

/// What `kernel_info_request` answers.
pub(crate) fn kernel_info() -> KernelInfoReply {
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: PROTOCOL_VERSION.into(),
        implementation: "tritlab".into(),
        implementation_version: env!("CARGO_PKG_VERSION").into(),
        language_info: LanguageInfo {
            name: "tritlab".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            mimetype: Some("text/x-tritlab".into()),
            file_extension: Some(".tritlab".into()),
            pygments_lexer: None,
            codemirror_mode: None,
            nbconvert_exporter: None,
        },
        banner: format!(
            "tritlab {}: the tritlab command language (`help` lists the commands; a cell \
             opening with `:rust` is Rust)",
            env!("CARGO_PKG_VERSION")
        ),
        help_links: vec![HelpLink {
            text: "tritlab commands".into(),
            url: format!(
                "{}/blob/main/docs/COMMANDS.md",
                env!("CARGO_PKG_REPOSITORY")
            ),
        }],
        debugger: false,
        error: None,
    }
}

struct Shell {
    socket: KernelShellConnection,
    publish: mpsc::UnboundedSender<JupyterMessage>,
    executor: Arc<Mutex<Executor>>,
    /// Names for completion, as of the last cell.
    names: SessionNames,
    /// The execution counter: cells run with `store_history`.
    count: usize,
    /// (execution count, cell source) of every cell run with `store_history`.
    history: Vec<(usize, String)>,
    /// Live displays opened so far, for unique display ids.
    displays: u64,
    shutdown: Arc<Notify>,
}

impl Shell {
    async fn serve(mut self) {
        while let Some(request) = next_message(&mut self.socket, "shell").await {
            self.publish(Status::busy().as_child_of(&request));
            let reply = match &request.content {
                JupyterMessageContent::KernelInfoRequest(_) => Some(kernel_info().into()),
                JupyterMessageContent::ExecuteRequest(r) => Some(self.execute(&request, r).await),
                JupyterMessageContent::CompleteRequest(r) => Some(self.complete(r)),
                JupyterMessageContent::InspectRequest(r) => Some(inspect(r)),
                JupyterMessageContent::IsCompleteRequest(r) => Some(is_complete(&r.code)),
                JupyterMessageContent::HistoryRequest(r) => Some(self.history(r)),
                JupyterMessageContent::CommInfoRequest(_) => Some(CommInfoReply::default().into()),
                JupyterMessageContent::ShutdownRequest(r) => {
                    let reply = ShutdownReply {
                        restart: r.restart,
                        status: ReplyStatus::Ok,
                        error: None,
                    };
                    let _ = self.socket.send(reply.as_child_of(&request)).await;
                    self.publish(Status::idle().as_child_of(&request));
                    self.shutdown.notify_one();
                    return;
                }
                other => {
                    eprintln!(
                        "tritlab kernel: no answer to `{}` on the shell channel",
                        other.message_type()
                    );
                    None
                }
            };
            if let Some(content) = reply {
                let reply = JupyterMessage::new(content, Some(&request));
                if let Err(e) = self.socket.send(reply).await {
                    eprintln!("tritlab kernel: cannot reply on the shell channel: {e}");
                }
            }
            self.publish(Status::idle().as_child_of(&request));
        }
    }

    fn publish(&self, message: JupyterMessage) {
        let _ = self.publish.send(message);
    }

    async fn execute(
        &mut self,
        parent: &JupyterMessage,
        request: &ExecuteRequest,
    ) -> JupyterMessageContent {
        let silent = request.silent;
        if request.store_history && !silent {
            self.count += 1;
            self.history.push((self.count, request.code.clone()));
        }
        let count = ExecutionCount::new(self.count);
        if !silent {
            self.publish(
                ExecuteInput {
                    code: request.code.clone(),
                    execution_count: count,
                }
                .as_child_of(parent),
            );
        }
        let source = cell_source(&request.code);
        if source.trim().is_empty() {
            return ExecuteReply {
                execution_count: count,
                ..ExecuteReply::default()
            }
            .into();
        }

        let (events, mut live_events) = mpsc::unbounded_channel::<LiveEvent>();
        let executor = self.executor.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut executor = executor.lock().unwrap_or_else(PoisonError::into_inner);
            let exec = executor.run(&source, &mut |event| {
                let _ = events.send(event);
            });
            let notes = executor.take_startup_notes();
            let names = SessionNames::from_snapshot(executor.snapshot());
            (exec, notes, names)
        });
        self.displays += 1;
        let mut live = Live::new(format!("tritlab-live-{}", self.displays));
        while let Some(event) = live_events.recv().await {
            if !silent {
                live.event(event, parent, &self.publish);
            }
        }
        live.flush(parent, &self.publish);
        let (exec, notes, names) = match job.await {
            Ok(done) => done,
            Err(e) => {
                let what = if e.is_panic() {
                    panic_message(e.into_panic().as_ref())
                } else {
                    e.to_string()
                };
                let exec = Execution::stopped_worker(format!(
                    "internal error while running the cell: {what}"
                ));
                (exec, None, self.names.clone())
            }
        };
        self.names = names;
        if let Some(notes) = notes.filter(|n| !n.is_empty() && !silent) {
            let text: String = notes.iter().map(|n| format!("note: {n}\n")).collect();
            self.publish(StreamContent::stderr(&text).as_child_of(parent));
        }
        if exec.clear && !silent {
            self.publish(ClearOutput { wait: false }.as_child_of(parent));
        }
        let mut reply = ExecuteReply {
            execution_count: count,
            ..ExecuteReply::default()
        };
        if exec.quit {
            // `quit` asks the front end to close, as `exit` does in IPython.
            reply.payload.push(Payload::AskExit { keepkernel: false });
        }
        let last = exec.outputs.len().saturating_sub(1);
        for (i, output) in exec.outputs.iter().enumerate() {
            let mut content = iopub_content(output);
            if let JupyterMessageContent::ErrorOutput(e) = &mut content {
                // The error that stopped the cell is the last output; its ename says its kind
                // (`ParseError`, `EngineError`, `Cancelled`…).
                if let Some(error) = exec.error.as_ref().filter(|_| i == last) {
                    e.ename = error.kind().name().to_owned();
                }
                reply.status = ReplyStatus::Error;
                reply.error = Some(Box::new(ReplyError {
                    ename: e.ename.clone(),
                    evalue: e.evalue.clone(),
                    traceback: e.traceback.clone(),
                }));
            }
            if silent {
                continue;
            }
            let content = match content {
                // The finished trace takes the place of the live text that streamed in.
                JupyterMessageContent::DisplayData(d) if matches!(output, Output::Trace(_)) => {
                    match live.take_display() {
                        Some(display_id) => UpdateDisplayData {
                            data: d.data,
                            metadata: d.metadata,
                            transient: Transient {
                                display_id: Some(display_id),
                            },
                        }
                        .into(),
                        None => self.result_or_display(d, i == last && exec.error.is_none(), count),
                    }
                }
                JupyterMessageContent::DisplayData(d) => {
                    self.result_or_display(d, i == last && exec.error.is_none(), count)
                }
                other => other,
            };
            self.publish(JupyterMessage::new(content, Some(parent)));
        }
        reply.into()
    }

    /// The cell's last output is its result; the others are displays.
    fn result_or_display(
        &self,
        display: DisplayData,
        is_result: bool,
        count: ExecutionCount,
    ) -> JupyterMessageContent {
        if is_result {
            ExecuteResult {
                execution_count: count,
                data: display.data,
                metadata: display.metadata,
                transient: None,
            }
            .into()
        } else {
            display.into()
        }
    }

    fn complete(&mut self, request: &CompleteRequest) -> JupyterMessageContent {
        // No cell runs while the shell serves this, so the lock is free.
        if let Ok(mut executor) = self.executor.try_lock() {
            executor.refresh();
            self.names = SessionNames::from_snapshot(executor.snapshot());
        }
        let code = &request.code;
        let cursor = byte_offset(code, request.cursor_pos);
        let completion = tritlab_session::complete(code, cursor, &self.names);
        let start = completion.start.min(cursor);
        let descriptions: Vec<Value> = completion
            .candidates
            .iter()
            .map(|c| {
                json!({
                    "start": char_index(code, start),
                    "end": request.cursor_pos,
                    "text": c.replacement,
                    "type": c.description,
                })
            })
            .collect();
        let mut metadata = Map::new();
        metadata.insert(
            "_jupyter_types_experimental".into(),
            Value::Array(descriptions),
        );
        CompleteReply {
            matches: completion
                .candidates
                .into_iter()
                .map(|c| c.replacement)
                .collect(),
            cursor_start: char_index(code, start),
            cursor_end: char_index(code, cursor),
            metadata,
            status: ReplyStatus::Ok,
            error: None,
        }
        .into()
    }

    fn history(&self, request: &HistoryRequest) -> JupyterMessageContent {
        let entry = |(n, code): &(usize, String)| HistoryEntry::Input(0, *n, code.clone());
        let history: Vec<HistoryEntry> = match request {
            HistoryRequest::Tail { n, .. } => {
                let n = usize::try_from(*n).unwrap_or(0);
                let skip = self.history.len().saturating_sub(n);
                self.history[skip..].iter().map(entry).collect()
            }
            HistoryRequest::Range { start, stop, .. } => self
                .history
                .iter()
                .filter(|(n, _)| {
                    let n = *n as i64;
                    n >= i64::from(*start) && (*stop <= 0 || n < i64::from(*stop))
                })
                .map(entry)
                .collect(),
            HistoryRequest::Search {
                pattern, unique, ..
            } => {
                let mut seen = std::collections::HashSet::new();
                self.history
                    .iter()
                    .filter(|(_, code)| glob_match(pattern, code))
                    .filter(|(_, code)| !*unique || seen.insert(code.clone()))
                    .map(entry)
                    .collect()
            }
        };
        HistoryReply {
            history,
            status: ReplyStatus::Ok,
            error: None,
        }
        .into()
    }
}

/// Live events of a running cell on IOPub: generated tokens in one display that is redrawn as
/// they come (and replaced by the coloured trace at the end), progress and log lines as streams.
struct Live {
    display_id: String,
    opened: bool,
    text: String,
    dirty: bool,
    drawn: Instant,
    progress: Option<(String, Instant)>,
}

impl Live {
    fn new(display_id: String) -> Live {
        Live {
            display_id,
            opened: false,
            text: String::new(),
            dirty: false,
            drawn: Instant::now(),
            progress: None,
        }
    }

    fn event(
        &mut self,
        event: LiveEvent,
        parent: &JupyterMessage,
        publish: &mpsc::UnboundedSender<JupyterMessage>,
    ) {
        match event {
            LiveEvent::Token(token) => {
                self.text.push_str(&token.text);
                self.dirty = true;
                if !self.opened || self.drawn.elapsed() >= TOKEN_REFRESH {
                    self.flush(parent, publish);
                }
            }
            LiveEvent::Line(line) => {
                let _ =
                    publish.send(StreamContent::stdout(&format!("{line}\n")).as_child_of(parent));
            }
            LiveEvent::Progress { label, done, total } => {
                let stage_ends = total.is_some_and(|t| done >= t);
                let due = match &self.progress {
                    Some((last, at)) => last != &label || at.elapsed() >= PROGRESS_EVERY,
                    None => true,
                };
                if due || stage_ends {
                    let line = match total {
                        Some(total) => format!("{label}: {done}/{total}\n"),
                        None => format!("{label}: {done}\n"),
                    };
                    let _ = publish.send(StreamContent::stderr(&line).as_child_of(parent));
                    self.progress = Some((label, Instant::now()));
                }
            }
        }
    }

    /// Draws the token text if it changed since it was last drawn.
    fn flush(&mut self, parent: &JupyterMessage, publish: &mpsc::UnboundedSender<JupyterMessage>) {
        if !self.dirty {
            return;
        }
        let data = media(&json!({ "text/plain": self.text }));
        let content: JupyterMessageContent = if self.opened {
            UpdateDisplayData::new(data, &self.display_id).into()
        } else {
            DisplayData {
                data,
                metadata: Map::new(),
                transient: Some(Transient {
                    display_id: Some(self.display_id.clone()),
                }),
            }
            .into()
        };
        let _ = publish.send(JupyterMessage::new(content, Some(parent)));
        self.opened = true;
        self.dirty = false;
        self.drawn = Instant::now();
    }

    /// The live display's id, once, if one was opened.
    fn take_display(&mut self) -> Option<String> {
        std::mem::take(&mut self.opened).then(|| self.display_id.clone())
    }
}

/// The command script a cell runs: a cell opening with a `:rust` line is Rust to its end, so its
/// `:end` may be left out.
pub(crate) fn cell_source(code: &str) -> String {
    let first = code.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.trim() == ":rust" && !tritlab_session::is_complete(code) {
        format!("{}\n:end", code.trim_end_matches('\n'))
    } else {
        code.to_string()
    }
}

/// `help COMMAND` for the command under the cursor (or the one its line starts with).
fn inspect(request: &InspectRequest) -> JupyterMessageContent {
    let code = &request.code;
    let cursor = byte_offset(code, request.cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let line_end = code[cursor..].find('\n').map_or(code.len(), |i| cursor + i);
    let line = &code[line_start..line_end];
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    let at = cursor - line_start;
    let word_start = line[..at].rfind(|c| !is_word(c)).map_or(0, |i| i + 1);
    let word_end = line[at..]
        .find(|c| !is_word(c))
        .map_or(line.len(), |i| at + i);
    let under_cursor = &line[word_start..word_end];
    let first = line.split_whitespace().next().unwrap_or("");
    let help = tritlab_session::lang::help_command(under_cursor)
        .or_else(|| tritlab_session::lang::help_command(first));
    match help {
        Some(text) => InspectReply {
            found: true,
            data: media(&json!({ "text/plain": text })),
            metadata: Map::new(),
            status: ReplyStatus::Ok,
            error: None,
        },
        None => InspectReply {
            found: false,
            data: media(&json!({})),
            metadata: Map::new(),
            status: ReplyStatus::Ok,
            error: None,
        },
    }
    .into()
}

/// Whether a front end should run `code` on Enter, or read another line first (an open string,
/// a trailing `\`, a `:rust` block without `:end`), as the REPL decides.
fn is_complete(code: &str) -> JupyterMessageContent {
    let status = if code.trim().is_empty() || tritlab_session::is_complete(code) {
        IsCompleteReplyStatus::Complete
    } else {
        IsCompleteReplyStatus::Incomplete
    };
    IsCompleteReply::new(status, String::new()).into()
}

/// The byte offset of the `chars`-th character (Jupyter counts cursor positions in code points).
fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(b, _)| b)
}

/// The character index of byte offset `byte`.
fn char_index(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(0, |s| s.chars().count())
}

/// IPython's history search patterns: `*` any run of characters, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // match[j]: whether pattern[..i] matches text[..j], row by row.
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; t.len() + 1];
        if pc == '*' {
            let mut any = false;
            for (n, &r) in next.iter_mut().zip(&row) {
                any |= r;
                *n = any;
            }
        } else {
            for (j, &tc) in t.iter().enumerate() {
                next[j + 1] = row[j] && (pc == '?' || pc == tc);
            }
        }
        row = next;
    }
    row[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_cells_are_closed() {
        assert_eq!(
            cell_source(":rust\nlet x = 1;\n"),
            ":rust\nlet x = 1;\n:end"
        );
        assert_eq!(
            cell_source(":rust\nlet x = 1;\n:end"),
            ":rust\nlet x = 1;\n:end"
        );
        assert_eq!(cell_source("info"), "info");
        assert_eq!(cell_source(":rust let x = 1;"), ":rust let x = 1;");
    }

    #[test]
    fn cursor_positions_count_code_points() {
        let text = "é→x";
        assert_eq!(byte_offset(text, 2), 5);
        assert_eq!(char_index(text, 5), 2);
        assert_eq!(byte_offset(text, 9), text.len());
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("gen*", "generate --max-tokens 5"));
        assert!(glob_match("*tokens*", "generate --max-tokens 5"));
        assert!(!glob_match("info", "information"));
        assert!(glob_match("inf?", "info"));
    }

    #[test]
    fn inspect_finds_the_command_of_the_line() {
        let reply = inspect(&InspectRequest {
            code: "info\ngenerate --max-tokens 3".into(),
            cursor_pos: 12,
            detail_level: Some(0),
        });
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["found"], true);
        assert!(json["data"]["text/plain"]
            .as_str()
            .unwrap()
            .contains("generate"));
    }

    #[test]
    fn open_strings_are_incomplete() {
        let json = |c| serde_json::to_value(is_complete(c)).unwrap()["status"].clone();
        assert_eq!(json("generate --prompt \"to be"), "incomplete");
        assert_eq!(json("info"), "complete");
        assert_eq!(json(":rust\nlet x = 1;"), "incomplete");
    }
}
