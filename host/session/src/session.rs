//! A session: the engine state one person works with (a model, plugins, an open training run)
//! and the execution of commands against it, producing typed outputs.
//!
//! The terminal REPL, headless workbooks and the desktop workbench all run commands through
//! [`Session::execute`]; none of them holds engine logic. Long commands report progress and
//! stream tokens through [`Context`], and stop at the next step when its cancel flag is set.

use crate::convert;
use crate::error::{ExecutionError, SessionError};
use crate::lang::{self, Command, ModelRef};
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tritlab_engine::{
    generate, ChatTemplate, Conversation, GenerateOptions, GenerationStep, HeadPrecision, Model,
    OutputHead, SamplingOptions, StepControl, StopReason, Tokenizer,
};
use tritlab_plugin_host::{self as ph, HostConfig, PluginHost, PluginKind};
use tritlab_train::Timeline;
use tritlab_workbook::{Output, Table, Trace, TraceToken};

/// Where a session finds its default model and plugins.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// What `load default` loads; also loaded when the session starts, if present.
    pub default_model: Option<PathBuf>,
    /// Folders whose `*.wasm` plugins are loaded at start.
    pub plugin_dirs: Vec<PathBuf>,
    /// Cache of compiled plugins.
    pub plugin_cache: Option<PathBuf>,
    /// Load the default model when the session starts.
    pub load_default_model: bool,
    /// What went wrong while finding the above, shown by `info` with the other start-up notes.
    pub notes: Vec<String>,
    /// The worker thread count the face was asked for (`tritlab --threads N`), if any. The
    /// session computes on the current rayon pool; this is kept to refuse resuming or replaying
    /// a run recorded with another count with a message that names the option.
    pub threads: Option<usize>,
}

impl SessionConfig {
    /// The model and plugins tritlab ships (see `tritlab_assets`: embedded in the binary and
    /// unpacked into the user's data folder, overridable with `TRITLAB_DEFAULT_MODEL` and
    /// `TRITLAB_PLUGIN_DIR`), plus the user's plugin folder.
    pub fn standard() -> Self {
        let mut notes = Vec::new();
        let default_model = tritlab_assets::default_model()
            .map_err(|e| notes.push(format!("no default model: {e}")))
            .ok();
        let mut plugin_dirs = Vec::new();
        match tritlab_assets::bundled_plugin_dir() {
            Ok(Some(dir)) => plugin_dirs.push(dir),
            Ok(None) => notes.push(
                "this tritlab was built without its plugins (scripts/build-plugins.sh, then \
                 build again)"
                    .to_string(),
            ),
            Err(e) => notes.push(format!("no bundled plugins: {e}")),
        }
        if let Some(user) = tritlab_plugin_host::user_plugin_dir() {
            plugin_dirs.push(user);
        }
        SessionConfig {
            default_model,
            plugin_dirs,
            plugin_cache: tritlab_plugin_host::default_cache_dir(),
            load_default_model: true,
            notes,
            threads: None,
        }
    }

    /// The directory a model argument names (`default` → the default model).
    /// Where the model `model` names is: the default model's folder, a path as given, or, for
    /// a training run's folder, the model the run wrote (`model/`).
    pub fn resolve_model(&self, model: &ModelRef) -> Result<PathBuf, SessionError> {
        match model {
            ModelRef::Path(p) => {
                let trained = p.join(tritlab_train::run::MODEL_DIR);
                if p.join(tritlab_train::RunConfig::FILE).is_file() && trained.is_dir() {
                    return Ok(trained);
                }
                Ok(p.clone())
            }
            ModelRef::Default => self
                .default_model
                .clone()
                .ok_or_else(|| SessionError::Usage("no default model is configured".into())),
        }
    }
}

/// Evaluates Rust cells (`:rust` lines and `rust` workbook cells).
pub trait RustEvaluator: Send {
    /// Runs a snippet and returns what it printed (and its value, if it has one).
    fn eval(&mut self, code: &str, cancel: &AtomicBool) -> Result<String, String>;
}

/// Something a running command reports before it finishes.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    Progress {
        label: String,
        done: u64,
        total: Option<u64>,
    },
    /// A generated token, as soon as it exists.
    Token(TraceToken),
    /// A line of text (e.g. a training step).
    Line(String),
}

/// What a command runs with: its cancel flag and where live events go.
pub struct Context<'a> {
    pub cancel: &'a AtomicBool,
    pub events: &'a mut dyn FnMut(LiveEvent),
}

impl Context<'_> {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn progress(&mut self, label: &str, done: u64, total: Option<u64>) {
        (self.events)(LiveEvent::Progress {
            label: label.to_string(),
            done,
            total,
        });
    }
}

/// The result of executing a cell or line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Execution {
    pub outputs: Vec<Output>,
    /// The first error, which stopped the cell (its message is also the last output).
    pub error: Option<ExecutionError>,
    /// The cancel flag was set while the cell ran: a command stopped early (a generation or a
    /// training run ends at its next step, with what it had) or the cell stopped before its
    /// next command (then `error` is [`SessionError::Cancelled`]).
    pub cancelled: bool,
    /// `quit` was run.
    pub quit: bool,
    /// `clear` was run: faces clear their transcript.
    pub clear: bool,
    /// Set when a command panicked: a bug, not bad input. The panic is caught, the session is
    /// reset as [`Session::execute`] describes, and `error` carries the same message.
    pub internal_error: Option<InternalError>,
}

impl Execution {
    /// The execution of a job whose session thread is gone (it failed to start, or ended):
    /// nothing ran. `message` says so in the face's words.
    pub fn stopped_worker(message: impl Into<String>) -> Execution {
        let error = ExecutionError::new(1, SessionError::Stopped(message.into()));
        Execution {
            outputs: vec![Output::Error(error.to_string())],
            error: Some(error),
            ..Execution::default()
        }
    }

    /// The error's message, as the last output shows it.
    pub fn error_message(&self) -> Option<String> {
        self.error.as_ref().map(|e| e.to_string())
    }
}

/// A command that panicked instead of returning. This is always a bug in tritlab (or in code it
/// calls), never the user's fault, so the message says where it happened and what the panic said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal error in `{command}`: {message}")]
pub struct InternalError {
    /// The command that was running, as its first word (`generate`, `train`, `:rust`…), or
    /// `parse` when the command language parser itself failed.
    pub command: String,
    /// The panic's message, when it had a text payload.
    pub message: String,
}

impl InternalError {
    fn from_panic(command: impl Into<String>, payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "a panic without a message".to_owned()
        };
        InternalError {
            command: command.into(),
            message,
        }
    }
}

/// A loaded model and its tokenizer, if it ships one.
pub struct LoadedModel {
    pub path: PathBuf,
    /// How outputs name the model: `default`, or the path as the command gave it. Outputs
    /// end up in exported workbooks and notebooks, which must not carry the absolute path of
    /// someone's home directory; the resolved [`LoadedModel::path`] is for loading files.
    pub shown: String,
    pub model: Model,
    /// `None` for a model without a tokenizer (a checkpoint without `tokenizer.json`, a GGUF file
    /// without `tokenizer.ggml.*`): its weights still run on token ids (`logits --ids`, `bench`,
    /// `layers`, `verify`); the commands that read or write text ask for it through
    /// [`LoadedModel::require_tokenizer`].
    pub tokenizer: Option<Tokenizer>,
    /// Unique to this load in this process: what tells a snapshot cache that the model changed,
    /// even when the same path is loaded again.
    pub(crate) load_id: u64,
}

impl LoadedModel {
    /// The tokenizer, or a usage error saying that `command` needs one and this model has none.
    pub fn require_tokenizer(&self, command: &str) -> Result<&Tokenizer, SessionError> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| self.no_tokenizer(command))
    }

    /// Takes the tokenizer out (a face that drives the engine itself, after
    /// [`Session::into_engine`]), or a usage error as [`LoadedModel::require_tokenizer`] gives.
    pub fn take_tokenizer(&mut self, command: &str) -> Result<Tokenizer, SessionError> {
        match self.tokenizer.take() {
            Some(t) => Ok(t),
            None => Err(self.no_tokenizer(command)),
        }
    }

    fn no_tokenizer(&self, command: &str) -> SessionError {
        SessionError::Usage(format!(
            "`{command}` needs a tokenizer, and {} has none ({}); `logits --ids 1,2,3` and \
             `bench` run on token ids without one",
            self.shown,
            Tokenizer::missing_reason(&self.path)
        ))
    }

    /// What to tell the user when the model has no tokenizer, or `None` when it has one.
    pub fn tokenizer_warning(&self) -> Option<String> {
        self.tokenizer.is_none().then(|| {
            format!(
                "{} has no tokenizer ({}): `generate`, `chat`, `eval` and `logits TEXT` need \
                 one; `info`, `layers`, `verify`, `logits --ids` and `bench` work without it",
                self.shown,
                Tokenizer::missing_reason(&self.path)
            )
        })
    }
}

/// The next [`LoadedModel::load_id`].
static NEXT_LOAD_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A training run opened for replay and inspection.
pub struct OpenRun {
    pub dir: PathBuf,
    pub timeline: Timeline,
    /// The tracer's colour for each logged step (from the first tracer), if plugins are loaded.
    pub colours: Vec<Option<[u8; 3]>>,
}

/// The conversation `chat` keeps between turns.
pub(crate) struct ChatState {
    /// Its messages, and the KV cache of the ids the model has read of them.
    pub(crate) conversation: Conversation,
    /// The template it is rendered with: given by `--template`, or the model's once a turn
    /// needed it.
    pub(crate) template: Option<ChatTemplate>,
    /// The model load it belongs to ([`LoadedModel::load_id`]).
    pub(crate) load_id: u64,
}

pub(crate) type CmdResult = Result<Vec<Output>, SessionError>;

/// The kernels' name for a `--packing` word.
pub(crate) fn kernel_packing(packing: lang::Packing) -> tritlab_engine::Packing {
    match packing {
        lang::Packing::I2 => tritlab_engine::Packing::I2,
        lang::Packing::T1 => tritlab_engine::Packing::T1,
    }
}

/// The engine's name for a `--head-precision` word.
pub(crate) fn output_head(head: lang::HeadPrecision) -> OutputHead {
    match head {
        lang::HeadPrecision::Exact => OutputHead::Exact,
        lang::HeadPrecision::Bf16 => OutputHead::Quantized(HeadPrecision::Bf16),
        lang::HeadPrecision::Int8 => OutputHead::Quantized(HeadPrecision::Int8),
        lang::HeadPrecision::Q6 => OutputHead::Quantized(HeadPrecision::Q6),
        lang::HeadPrecision::Q4 => OutputHead::Quantized(HeadPrecision::Q4),
    }
}

pub struct Session {
    pub(crate) config: SessionConfig,
    pub(crate) model: Option<LoadedModel>,
    pub(crate) plugins: Option<PluginHost>,
    pub(crate) plugin_problem: Option<String>,
    pub(crate) run: Option<OpenRun>,
    /// The last generation's tracer annotations, for `check PLUGIN --on trace`.
    pub(crate) last_trace: Vec<ph::AnnotatedStep>,
    /// The conversation of `chat`, if one was started with the loaded model.
    pub(crate) chat: Option<ChatState>,
    pub(crate) rust: Option<Box<dyn RustEvaluator>>,
    /// Notes from starting up (a model or plugin that did not load), shown by `info`.
    pub(crate) startup_notes: Vec<String>,
}

impl Session {
    /// A session with the configured plugins loaded (and the default model, if asked).
    pub fn new(config: SessionConfig) -> Session {
        let mut s = Session {
            config,
            model: None,
            plugins: None,
            plugin_problem: None,
            run: None,
            last_trace: Vec::new(),
            chat: None,
            rust: None,
            startup_notes: Vec::new(),
        };
        s.startup_notes = s.config.notes.clone();
        s.start_plugins();
        if s.config.load_default_model {
            if let Some(path) = s.config.default_model.clone() {
                match s.load_model(
                    &path,
                    default_name(&path),
                    lang::HeadPrecision::DEFAULT,
                    lang::Packing::DEFAULT,
                ) {
                    Ok(m) => {
                        if let Some(w) = m.tokenizer_warning() {
                            s.startup_notes.push(w);
                        }
                    }
                    Err(e) => s
                        .startup_notes
                        .push(format!("default model not loaded: {e}")),
                }
            }
        }
        s
    }

    pub fn set_rust_evaluator(&mut self, eval: Box<dyn RustEvaluator>) {
        self.rust = Some(eval);
    }

    fn start_plugins(&mut self) {
        let config = HostConfig {
            cache_dir: self.config.plugin_cache.clone(),
            ..HostConfig::default()
        };
        match PluginHost::new(config) {
            Ok(mut host) => {
                for dir in self.config.plugin_dirs.clone() {
                    if !dir.is_dir() {
                        continue;
                    }
                    for result in host.load_dir(&dir) {
                        if let Err(e) = result {
                            self.startup_notes.push(format!("plugin not loaded: {e}"));
                        }
                    }
                }
                self.plugins = Some(host);
            }
            Err(e) => self.plugin_problem = Some(format!("the plugin host did not start: {e}")),
        }
    }

    pub fn model(&self) -> Option<&LoadedModel> {
        self.model.as_ref()
    }

    /// The loaded model and the plugin host, for a face that drives the engine itself: the HTTP
    /// server runs many sequences per step with the engine's batched forward pass, which the
    /// one-command-at-a-time executor cannot. The model was loaded as `load` loads it and the
    /// plugins started as every session starts them; the session ends here.
    pub fn into_engine(self) -> (Option<LoadedModel>, Option<PluginHost>) {
        (self.model, self.plugins)
    }

    pub fn run(&self) -> Option<&OpenRun> {
        self.run.as_ref()
    }

    pub fn plugins(&self) -> Option<&PluginHost> {
        self.plugins.as_ref()
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub(crate) fn load_model(
        &mut self,
        path: &Path,
        shown: String,
        head: lang::HeadPrecision,
        packing: lang::Packing,
    ) -> Result<&LoadedModel, SessionError> {
        let mut model = Model::load_with(path, output_head(head))?;
        model.set_packing(kernel_packing(packing))?;
        // A model without a tokenizer loads (its weights run on token ids); one that ships a
        // tokenizer that cannot be read does not.
        let tokenizer = Tokenizer::find_for_model(path)?;
        tritlab_kernels::mem::trim_heap();
        // A conversation's cache and template belong to the model that read it.
        self.chat = None;
        self.model = Some(LoadedModel {
            path: path.to_path_buf(),
            shown,
            model,
            tokenizer,
            load_id: NEXT_LOAD_ID.fetch_add(1, Ordering::Relaxed),
        });
        Ok(self.model.as_ref().expect("just set"))
    }

    pub(crate) fn require_model(&self) -> Result<&LoadedModel, SessionError> {
        self.model.as_ref().ok_or(SessionError::NoModel)
    }

    pub(crate) fn host(&mut self) -> Result<&mut PluginHost, SessionError> {
        let problem = self.plugin_problem.clone();
        self.plugins.as_mut().ok_or_else(|| {
            SessionError::plugin(std::io::Error::other(
                problem.unwrap_or_else(|| "plugins are not available".into()),
            ))
        })
    }

    /// The first enabled plugin of `kind`, preferring `preferred`.
    pub(crate) fn pick_plugin(&self, kind: PluginKind, preferred: &str) -> Option<String> {
        let host = self.plugins.as_ref()?;
        let candidates: Vec<_> = host
            .plugins()
            .into_iter()
            .filter(|p| p.enabled && p.info.kind == kind)
            .map(|p| p.info.name)
            .collect();
        candidates
            .iter()
            .find(|n| n.as_str() == preferred)
            .or(candidates.first())
            .cloned()
    }

    /// Runs every command of `source` in order; stops at the first error.
    ///
    /// This is the one place commands run, so it is where panics stop: a command that panics
    /// fails with an [`InternalError`] and the session lives on for the next command. Unwinding
    /// may have left whatever the command was changing half-updated, and which part that is
    /// cannot be known, so the session then drops everything a command changes in place: the
    /// loaded model, the open training run (releasing its directory), the last trace and the
    /// plugin host, which is started afresh from the configured folders. The configuration and
    /// the Rust evaluator (which belongs to the face that installed it) are kept. Dropping a
    /// model costs a `load`; keeping one that a panic interrupted mid-update could give wrong
    /// numbers with no error at all.
    pub fn execute(&mut self, source: &str, ctx: &mut Context<'_>) -> Execution {
        let mut exec = Execution::default();
        let fail = |exec: &mut Execution, line: usize, error: SessionError| {
            let error = ExecutionError::new(line, error);
            exec.outputs.push(Output::Error(error.to_string()));
            exec.error = Some(error);
        };
        // The parser only reads `source`; nothing of the session can be half-updated by it.
        let parsed = panic::catch_unwind(|| lang::parse_script(source));
        let statements = match parsed {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                fail(&mut exec, 1, SessionError::parse(e, source));
                return exec;
            }
            Err(payload) => {
                let internal = InternalError::from_panic("parse", payload.as_ref());
                let message =
                    format!("{internal}. This is a bug in tritlab; the session is unchanged.");
                exec.internal_error = Some(internal.clone());
                fail(
                    &mut exec,
                    1,
                    SessionError::Internal {
                        message,
                        error: internal,
                    },
                );
                return exec;
            }
        };
        for statement in statements {
            if ctx.cancelled() {
                exec.cancelled = true;
                fail(&mut exec, 1, SessionError::Cancelled);
                break;
            }
            match &statement.command {
                Command::Quit => {
                    exec.quit = true;
                    break;
                }
                Command::Clear => {
                    exec.clear = true;
                    continue;
                }
                _ => {}
            }
            let command = &statement.command;
            // `AssertUnwindSafe`: after a panic the state the command could reach is reset by
            // `recover_from_panic` before anything reads it again.
            let result =
                match panic::catch_unwind(AssertUnwindSafe(|| self.run_command(command, ctx))) {
                    Ok(result) => result,
                    Err(payload) => {
                        let internal =
                            InternalError::from_panic(command_word(command), payload.as_ref());
                        let reset = self.recover_from_panic(&internal);
                        exec.internal_error = Some(internal.clone());
                        Err(SessionError::Internal {
                            message: format!("{internal}. This is a bug in tritlab. {reset}"),
                            error: internal,
                        })
                    }
                };
            match result {
                Ok(outputs) => exec.outputs.extend(outputs),
                Err(error) => {
                    fail(&mut exec, statement.line, error);
                    break;
                }
            }
        }
        exec.cancelled |= ctx.cancelled();
        exec
    }

    /// Drops the state a panicking command may have left half-updated (see [`Session::execute`])
    /// and says what was dropped, for the error message.
    fn recover_from_panic(&mut self, internal: &InternalError) -> String {
        let mut dropped = Vec::new();
        if let Some(model) = self.model.take() {
            dropped.push(format!("the model {} was unloaded", model.path.display()));
        }
        if let Some(run) = self.run.take() {
            dropped.push(format!("the training run {} was closed", run.dir.display()));
        }
        self.last_trace.clear();
        if self
            .chat
            .take()
            .is_some_and(|c| !c.conversation.messages().is_empty())
        {
            dropped.push("the chat conversation was forgotten".to_owned());
        }
        let had_plugins = self
            .plugins
            .take()
            .is_some_and(|host| !host.plugins().is_empty());
        self.plugin_problem = None;
        self.start_plugins();
        if had_plugins {
            dropped.push("the plugins were reloaded".to_owned());
        }
        self.startup_notes
            .push(format!("the session was reset after an {internal}"));
        if dropped.is_empty() {
            "Nothing was loaded, so nothing was lost.".to_owned()
        } else {
            let mut text = dropped.join(", ");
            text.push_str(" in case the command left them half-changed.");
            let mut chars = text.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }

    /// Runs one command.
    pub fn run_command(&mut self, command: &Command, ctx: &mut Context<'_>) -> CmdResult {
        match command {
            Command::Help(h) => Ok(vec![Output::Text(match &h.command {
                None => lang::help_index(),
                Some(name) => lang::help_command(name).ok_or_else(|| {
                    SessionError::Usage(format!("no command `{name}`; `help` lists them"))
                })?,
            })]),
            Command::Load(l) => {
                let path = self.config.resolve_model(&l.model)?;
                let shown = match &l.model {
                    ModelRef::Default => default_name(&path),
                    ModelRef::Path(p) => shown_path(p),
                };
                let loaded = self.load_model(&path, shown, l.head, l.packing)?;
                // Said live, so that every face shows it, even one that runs `load` quietly
                // before its command (`tritlab layers --model FILE.gguf`).
                if let Some(warning) = loaded.tokenizer_warning() {
                    (ctx.events)(LiveEvent::Line(format!("warning: {warning}")));
                }
                Ok(vec![Output::Text(model_line(loaded))])
            }
            Command::Info => self.info(),
            Command::Layers => self.layers(),
            Command::Verify(v) => self.verify(v.path.as_deref()),
            Command::Show(s) => self.show(&s.tensor, s.with.as_deref(), s.step),
            Command::Export(e) => self.export(e, ctx),
            Command::Synth(s) => synth(s),
            Command::Generate(g) => self.generate(g, ctx),
            Command::Chat(c) => self.chat(c, ctx),
            Command::Logits(l) => self.logits(l),
            Command::Eval(e) => self.eval(e, ctx),
            Command::Bench(b) => self.bench(b, ctx),
            Command::Train(t) => self.train(t, ctx),
            Command::Log(l) => self.log(l),
            Command::Replay(r) => self.replay(r, ctx),
            Command::Seek(s) => self.move_timeline(Move::Seek(s.step)),
            Command::Step(s) => self.move_timeline(Move::Forward(s.count)),
            Command::Back(b) => self.move_timeline(Move::Backward(b.count)),
            Command::Plugins => self.plugin_table(),
            Command::Plugin(p) => self.plugin(p),
            Command::Check(c) => self.check(&c.plugin, c.on),
            Command::Rust(code) => self.rust(code, ctx),
            Command::Clear | Command::Quit => Ok(Vec::new()),
        }
    }

    fn info(&self) -> CmdResult {
        let mut rows = Vec::new();
        let mut row = |k: &str, v: String| rows.push(vec![k.to_string(), v]);
        match &self.model {
            Some(m) => {
                let c = m.model.config();
                let t = m.model.total_trits();
                row("model", m.shown.clone());
                row(
                    "architecture",
                    format!(
                        "{} layers, d_model {}, {} query / {} KV heads, ffn {} ({})",
                        c.num_hidden_layers,
                        c.hidden_size,
                        c.num_attention_heads,
                        c.num_kv_heads(),
                        c.intermediate_size,
                        c.hidden_act
                    ),
                );
                row("vocabulary", format!("{} tokens", c.vocab_size));
                row("weights", weight_format_words(m.model.weight_format()));
                row(
                    "ternary weights",
                    format!(
                        "{} (−1 {}, 0 {}, +1 {}), Σ mod 3 = {}",
                        t.neg + t.zero + t.pos,
                        t.neg,
                        t.zero,
                        t.pos,
                        t.gf3_sum
                    ),
                );
                row(
                    "tokenizer",
                    match &m.tokenizer {
                        Some(t) => shown_path(t.path()),
                        None => format!(
                            "none ({}): `generate`, `chat`, `eval` and `logits TEXT` need one",
                            Tokenizer::missing_reason(&m.path)
                        ),
                    },
                );
                row(
                    "output head",
                    format!(
                        "{}, {:.2} MB read per token",
                        m.model.output_head(),
                        m.model.head_bytes() as f64 / 1e6
                    ),
                );
                row(
                    "memory",
                    format!(
                        "{:.2} MB ternary ({} packing) + {:.2} MB float",
                        m.model.ternary_bytes() as f64 / 1e6,
                        m.model.packing(),
                        m.model.float_bytes() as f64 / 1e6
                    ),
                );
            }
            None => row("model", "none loaded".into()),
        }
        if let Some(h) = &self.plugins {
            let names: Vec<String> = h.plugins().into_iter().map(|p| p.info.name).collect();
            row("plugins", names.join(", "));
        } else if let Some(p) = &self.plugin_problem {
            row("plugins", p.clone());
        }
        if let Some(r) = &self.run {
            row(
                "training run",
                format!(
                    "{} at step {} of {}..={}",
                    r.dir.display(),
                    r.timeline.position(),
                    r.timeline.first_step(),
                    r.timeline.last_step()
                ),
            );
        }
        for n in &self.startup_notes {
            row("note", n.clone());
        }
        Ok(vec![Output::Table(Table {
            title: Some("session".into()),
            columns: vec!["".into(), "".into()],
            rows,
        })])
    }

    fn layers(&self) -> CmdResult {
        let m = self.require_model()?;
        let mut rows = Vec::new();
        for layer in m.model.layer_stats() {
            for t in layer.tensors {
                rows.push(vec![
                    t.name.trim_start_matches("model.").to_string(),
                    format!("{}×{}", t.rows, t.cols),
                    t.trits.neg.to_string(),
                    t.trits.zero.to_string(),
                    t.trits.pos.to_string(),
                    t.trits.gf3_sum.to_string(),
                    format!("{:.4e}", t.scale),
                ]);
            }
        }
        Ok(vec![Output::Table(Table {
            title: Some(format!("ternary layers of {}", m.shown)),
            columns: ["tensor", "shape", "−1", "0", "+1", "Σ mod 3", "scale"]
                .map(String::from)
                .to_vec(),
            rows,
        })])
    }

    fn verify(&self, path: Option<&Path>) -> CmdResult {
        let (path, shown) = match path {
            Some(p) => (p.to_path_buf(), shown_path(p)),
            None => {
                let m = self.require_model()?;
                (m.path.clone(), m.shown.clone())
            }
        };
        let report = tritlab_engine::verify(&path)?;
        let rows = report
            .linear
            .iter()
            .map(|t| {
                vec![
                    t.name.trim_start_matches("model.").to_string(),
                    t.dtype.clone(),
                    format!(
                        "{:.2}%",
                        100.0 * t.ternary_values as f64 / t.values.max(1) as f64
                    ),
                    scale_cell(t),
                    t.trits.neg.to_string(),
                    t.trits.zero.to_string(),
                    t.trits.pos.to_string(),
                    t.trits.gf3_sum.to_string(),
                ]
            })
            .collect();
        let mut out = vec![Output::Table(Table {
            title: Some(format!("verify {shown}")),
            columns: [
                "tensor", "dtype", "ternary", "scale", "−1", "0", "+1", "Σ mod 3",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        })];
        out.push(Output::Text(format!("verdict: {}", report.summary)));
        if !report.ok {
            return Err(SessionError::NotTernary(report.summary));
        }
        Ok(out)
    }

    /// The trits of a tensor: the open run's at its current step (or `step`), else the model's.
    pub(crate) fn tensor_trits(
        &mut self,
        name: &str,
        step: Option<u64>,
    ) -> Result<(String, usize, usize, Vec<i8>, String), SessionError> {
        let full = if name.starts_with("model.") {
            name.to_string()
        } else {
            format!("model.{name}")
        };
        let full = if full.ends_with(".weight") {
            full
        } else {
            format!("{full}.weight")
        };
        if let Some(run) = self.run.as_mut() {
            if let Some(s) = step {
                run.timeline.seek(s)?;
            }
            if let Some(l) = run.timeline.layer(&full) {
                let at = format!("step {}", run.timeline.position());
                return Ok((full, l.rows, l.cols, l.trits.clone(), at));
            }
        }
        if step.is_some() {
            return Err("--step needs an open training run (`replay open RUN_DIR`)".into());
        }
        let m = self.require_model()?;
        for layer in m.model.layers() {
            for lin in layer.projections() {
                if lin.name() == full {
                    let trits = lin.matrix().to_trits();
                    return Ok((
                        full,
                        lin.out_features(),
                        lin.in_features(),
                        trits,
                        "the loaded model".into(),
                    ));
                }
            }
        }
        let example =
            tritlab_engine::layout::ModelTensor::proj(0, tritlab_engine::layout::Proj::Up);
        Err(SessionError::Usage(format!(
            "no ternary tensor `{name}`; `layers` lists them (e.g. {})",
            example.hf_module()
        )))
    }

    fn show(&mut self, tensor: &str, with: Option<&str>, step: Option<u64>) -> CmdResult {
        let (name, rows, cols, trits, at) = self.tensor_trits(tensor, step)?;
        let plugin = match with {
            Some(p) => p.to_string(),
            None => self
                .pick_plugin(PluginKind::Visualiser, "trit-visualiser")
                .ok_or("no visualiser plugin is loaded (`plugins` lists them)")?,
        };
        let tensor = ph::TritTensor {
            name: name.clone(),
            shape: vec![rows as u32, cols as u32],
            trits: trits
                .iter()
                .map(|&t| ph::Trit::from_i8(t).unwrap_or(ph::Trit::Zero))
                .collect(),
        };
        let visuals = self
            .host()?
            .render(&plugin, &ph::VisualInput::Tensor(tensor))?;
        let mut out = vec![Output::Text(format!(
            "{name} ({rows}×{cols}) at {at}, drawn by {plugin}"
        ))];
        out.extend(visuals.into_iter().map(convert::visual));
        Ok(out)
    }

    fn export(&mut self, e: &lang::Export, ctx: &mut Context<'_>) -> CmdResult {
        let shown_out = shown_path(&e.out);
        if let Some(run) = &self.run {
            let step = run.timeline.position();
            let run_dir = run.dir.clone();
            self.check_threads(&run_dir)?;
            let mut tick = |d: u64, t: u64| ctx.progress("recomputing", d, Some(t));
            let what = format!("the model at step {step} of {}", shown_path(&run_dir));
            if e.to == lang::ExportFormat::Hf {
                tritlab_train::replay::export_at(&run_dir, step, &e.out, &mut tick)?;
                return Ok(vec![Output::Text(format!("{what} written to {shown_out}"))]);
            }
            // The step's weights exist only as a recomputed world: write them as a checkpoint
            // first, then convert that.
            let scratch = tempfile::tempdir().map_err(|err| SessionError::io(&e.out, err))?;
            let dir = tritlab_train::replay::export_at(&run_dir, step, scratch.path(), &mut tick)?;
            let model = Model::load(&dir)?;
            let tokenizer = Tokenizer::for_model(&dir).ok();
            let template = tritlab_engine::chat_template_for(&dir);
            return gguf_export(&model, tokenizer.as_ref(), template.as_deref(), e, &what);
        }
        let m = self.require_model()?;
        if e.to != lang::ExportFormat::Hf {
            let template = tritlab_engine::chat_template_for(&m.path);
            let what = format!("the model {}", m.shown);
            return gguf_export(
                &m.model,
                m.tokenizer.as_ref(),
                template.as_deref(),
                e,
                &what,
            );
        }
        if tritlab_engine::bitnet::gguf_load::is_gguf(&m.path) {
            let template = tritlab_engine::chat_template_for(&m.path);
            m.model
                .export_hf(&e.out, m.tokenizer.as_ref(), template.as_deref())?;
            return Ok(vec![Output::Text(format!(
                "{} written to {shown_out} as an offline-packed Hugging Face checkpoint",
                m.shown
            ))]);
        }
        // A safetensors checkpoint is copied as it is: its own dtypes, its latent weights if it
        // has them, and every file beside them that transformers reads.
        let src = if m.path.is_dir() {
            m.path.clone()
        } else {
            m.path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let dir = &e.out;
        std::fs::create_dir_all(dir).map_err(|err| SessionError::io(dir, err))?;
        let mut copied = Vec::new();
        for entry in std::fs::read_dir(&src).map_err(|err| SessionError::io(&src, err))? {
            let entry = entry.map_err(|err| SessionError::io(&src, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = name.ends_with(".json") || name.ends_with(".safetensors");
            if keep && entry.path().is_file() {
                let bytes = std::fs::read(entry.path())
                    .map_err(|err| SessionError::io(entry.path(), err))?;
                let to = dir.join(&name);
                tritlab_workbook::write_atomic(&to, &bytes)
                    .map_err(|err| SessionError::io(&to, std::io::Error::other(err)))?;
                copied.push(name);
            }
        }
        copied.sort();
        Ok(vec![Output::Text(format!(
            "copied {} to {shown_out}",
            copied.join(", ")
        ))])
    }

    /// The tracer a generation is coloured by: the one asked for, else the first enabled.
    fn tracer_for(&self, asked: &Option<String>) -> Option<String> {
        match asked {
            Some(t) => Some(t.clone()),
            None => self.pick_plugin(PluginKind::Tracer, "gay-tracer"),
        }
    }

    fn generate(&mut self, g: &lang::Generate, ctx: &mut Context<'_>) -> CmdResult {
        let o = g.options();
        let tracer = self.tracer_for(&o.tracer);
        let options = engine_options(self.require_model()?, &o, "generate")?;
        let model = self.model.take().ok_or(SessionError::NoModel)?;
        let tokenizer = match model.require_tokenizer("generate") {
            Ok(t) => t,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let mut host = self.plugins.take();
        let mut recorder = TraceRecorder::new(tracer, o.max_tokens);
        let cancel = ctx.cancel;
        let result = generate(&model.model, tokenizer, &g.prompt, &options, |step| {
            recorder.step(host.as_mut(), step, ctx)
        });
        self.model = Some(model);
        self.plugins = host;
        let generation = result?;
        self.last_trace = std::mem::take(&mut recorder.annotated);
        let n = generation.tokens.len();
        let mut out = vec![
            Output::Text(g.prompt.clone()),
            Output::Trace(recorder.trace(None)),
            Output::Text(format!(
                "{n} tokens; prefill {:.1} ms, {:.1} tokens/s; stopped: {:?}{}",
                generation.prefill_seconds * 1e3,
                n as f64 / generation.decode_seconds.max(1e-9),
                generation.stop_reason,
                recorder
                    .tracer_error
                    .map(|e| format!("; tracer error: {e}"))
                    .unwrap_or_default()
            )),
        ];
        if cancel.load(Ordering::Relaxed) {
            out.push(Output::Text("cancelled".into()));
        }
        Ok(out)
    }

    /// `chat`: starts or continues the conversation, then runs one turn when there is a message.
    fn chat(&mut self, c: &lang::Chat, ctx: &mut Context<'_>) -> CmdResult {
        let tracer = self.tracer_for(&c.options.tracer);
        // Out of the session while the turn runs, so that the conversation and the plugins
        // can be borrowed beside it.
        let model = self.model.take().ok_or(SessionError::NoModel)?;
        let result = self.chat_with(&model, tracer, c, ctx);
        self.model = Some(model);
        result
    }

    fn chat_with(
        &mut self,
        m: &LoadedModel,
        tracer: Option<String>,
        c: &lang::Chat,
        ctx: &mut Context<'_>,
    ) -> CmdResult {
        let tokenizer = m.require_tokenizer("chat")?;
        let mut options = engine_options(m, &c.options, "chat")?;
        let given = match &c.template {
            Some(path) => Some(ChatTemplate::from_file_for_model(
                path, &m.model, tokenizer,
            )?),
            None => None,
        };
        let load_id = m.load_id;
        let continuing = !c.reset
            && c.system.is_none()
            && self.chat.as_ref().is_some_and(|s| s.load_id == load_id);
        if !continuing {
            self.chat = Some(ChatState {
                conversation: Conversation::new(&m.model, c.system.clone()),
                template: None,
                load_id,
            });
        }
        let state = self.chat.as_mut().expect("a conversation was set above");
        if given.is_some() {
            state.template = given;
        }
        let Some(message) = &c.message else {
            return Ok(vec![Output::Text(match &c.system {
                Some(system) => format!("new conversation; system message: {system}"),
                None => "new conversation".to_string(),
            })]);
        };
        if state.template.is_none() {
            let shipped = ChatTemplate::for_model(&m.model, tokenizer)?;
            state.template = Some(shipped.ok_or_else(|| {
                SessionError::Usage(format!(
                    "the model {} has no chat template (no `chat_template` in its \
                     tokenizer_config.json, no chat_template.jinja, no tokenizer.chat_template \
                     in its GGUF metadata): give one with `chat MESSAGE --template FILE`",
                    m.shown
                ))
            })?);
        }
        let template = state.template.as_ref().expect("a template was set above");
        options.stop_tokens.extend(tritlab_engine::turn_end_ids(
            &m.model,
            tokenizer,
            Some(template),
        ));
        let mut recorder = TraceRecorder::new(tracer, c.options.max_tokens);
        let cancel = ctx.cancel;
        let turn = state
            .conversation
            .start_turn(&m.model, tokenizer, template, message, options)
            .and_then(|pending| {
                pending.run(&mut state.conversation, |step| {
                    recorder.step(self.plugins.as_mut(), step, ctx)
                })
            })?;
        let number = state.conversation.turns();
        let stop = match turn.stop_reason {
            StopReason::StopToken(id) => format!(
                "end of turn ({}, id {id})",
                tokenizer.id_to_token(id).unwrap_or_default()
            ),
            StopReason::MaxTokens => "--max-tokens reached".to_string(),
            StopReason::StopString => "stop text reached".to_string(),
            StopReason::Callback => "stopped".to_string(),
            StopReason::ContextFull => "context full".to_string(),
        };
        let origin = template.origin();
        let template_name = Path::new(origin)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| origin.to_string());
        let n = turn.tokens.len();
        let mut rows = vec![
            vec!["reply tokens".to_string(), n.to_string()],
            vec!["stopped".to_string(), stop],
            vec![
                "conversation tokens".to_string(),
                turn.prompt_tokens.to_string(),
            ],
            vec![
                "reused from the cache".to_string(),
                turn.reused_tokens.to_string(),
            ],
            vec!["prefilled".to_string(), turn.prefilled_tokens().to_string()],
            vec![
                "prefill".to_string(),
                format!("{:.1} ms", turn.prefill_seconds * 1e3),
            ],
            vec![
                "decode".to_string(),
                format!("{:.1} tokens/s", n as f64 / turn.decode_seconds.max(1e-9)),
            ],
            vec!["template".to_string(), template_name],
        ];
        if let Some(e) = recorder.tracer_error.take() {
            rows.push(vec!["tracer error".to_string(), e]);
        }
        self.last_trace = std::mem::take(&mut recorder.annotated);
        let mut out = vec![
            Output::Text(message.clone()),
            Output::Trace(recorder.trace(Some("assistant"))),
            Output::Table(Table {
                title: Some(format!("chat turn {number}")),
                columns: vec!["".into(), "".into()],
                rows,
            }),
        ];
        if cancel.load(Ordering::Relaxed) {
            out.push(Output::Text("cancelled".into()));
        }
        Ok(out)
    }

    fn logits(&self, l: &lang::Logits) -> CmdResult {
        let m = self.require_model()?;
        let ids = match &l.input {
            lang::LogitsInput::Ids(ids) => ids.clone(),
            lang::LogitsInput::Prompt(p) => m.require_tokenizer("logits TEXT")?.encode(p, true)?,
        };
        if ids.is_empty() {
            return Err("the input encodes to no tokens".into());
        }
        let mut notes = Vec::new();
        let logits = match &l.out {
            None => m.model.forward_last(&ids, &mut m.model.new_cache())?,
            Some(out) => {
                if tritlab_engine::LogitsFormat::for_path(out).is_none() {
                    return Err(SessionError::Usage(format!(
                        "--out {}: logits are written to a `.safetensors` or a `.json` file",
                        shown_path(out)
                    )));
                }
                let all = m.model.forward(&ids, &mut m.model.new_cache())?;
                let vocab = m.model.vocab_size();
                tritlab_engine::write_logits(out, &ids, &all, vocab)?;
                notes.push(Output::Text(format!(
                    "wrote the logits of {} positions × {vocab} to {}",
                    ids.len(),
                    shown_path(out)
                )));
                all[all.len() - vocab..].to_vec()
            }
        };
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let z: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let rows = order
            .iter()
            .take(l.top as usize)
            .enumerate()
            .map(|(rank, &id)| {
                let mut row = vec![(rank + 1).to_string(), id.to_string()];
                // Without a tokenizer the ids are all there is to show.
                if let Some(t) = &m.tokenizer {
                    let text = t.decode(&[id as u32], false).unwrap_or_default();
                    row.push(format!("{text:?}"));
                }
                row.push(format!("{:.4}", logits[id]));
                row.push(format!("{:.4}", ((logits[id] - max) as f64).exp() / z));
                row
            })
            .collect();
        let columns: &[&str] = if m.tokenizer.is_some() {
            &["rank", "id", "token", "logit", "probability"]
        } else {
            &["rank", "id", "logit", "probability"]
        };
        let mut out = vec![Output::Table(Table {
            title: Some(format!(
                "next-token logits after {} tokens {:?}",
                ids.len(),
                &ids[..ids.len().min(16)]
            )),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        })];
        out.extend(notes);
        Ok(out)
    }

    fn plugin_table(&self) -> CmdResult {
        let Some(host) = &self.plugins else {
            return Err(SessionError::plugin(std::io::Error::other(
                self.plugin_problem
                    .clone()
                    .unwrap_or_else(|| "plugins are not available".into()),
            )));
        };
        let rows = host
            .plugins()
            .into_iter()
            .map(|p| {
                vec![
                    p.info.name,
                    format!("{:?}", p.info.kind).to_lowercase(),
                    p.info.version,
                    if p.enabled { "enabled" } else { "disabled" }.into(),
                    p.total_failures.to_string(),
                    p.last_error.unwrap_or_default(),
                ]
            })
            .collect();
        Ok(vec![Output::Table(Table {
            title: Some("plugins".into()),
            columns: ["name", "kind", "version", "state", "failures", "last error"]
                .map(String::from)
                .to_vec(),
            rows,
        })])
    }

    fn plugin(&mut self, p: &lang::Plugin) -> CmdResult {
        let host = self.host()?;
        let text = match p {
            lang::Plugin::Load { path } => {
                let info = host.load_file(path)?;
                format!("loaded {} {} ({:?})", info.name, info.version, info.kind)
            }
            lang::Plugin::Enable { name } => {
                host.set_enabled(name, true)?;
                format!("{name} enabled")
            }
            lang::Plugin::Disable { name } => {
                host.set_enabled(name, false)?;
                format!("{name} disabled")
            }
            lang::Plugin::Set { name, key, value } => {
                host.configure(name, &[(key.as_str(), value.as_str())])?;
                format!("{name}: {key} = {value}")
            }
        };
        Ok(vec![Output::Text(text)])
    }

    fn check(&mut self, plugin: &str, on: Option<lang::CheckTarget>) -> CmdResult {
        use lang::CheckTarget;
        let mut subjects: Vec<(String, ph::CheckSubject)> = Vec::new();
        let all = on.is_none();
        if all || on == Some(CheckTarget::Trace) {
            if !self.last_trace.is_empty() {
                subjects.push((
                    format!("the last trace ({} tokens)", self.last_trace.len()),
                    ph::CheckSubject::Trace(self.last_trace.clone()),
                ));
            } else if !all {
                return Err("no traced generation yet: run `generate` first".into());
            }
        }
        if all || on == Some(CheckTarget::Weights) {
            let layers: Vec<ph::LayerCounts> = if let Some(run) = &self.run {
                run.timeline
                    .layers()
                    .iter()
                    .map(|l| {
                        let c = tritlab_kernels::count_trits(&l.trits).unwrap_or_default();
                        ph::LayerCounts {
                            layer: l.name.clone(),
                            counts: c,
                        }
                    })
                    .collect()
            } else if let Some(m) = &self.model {
                m.model
                    .layers()
                    .iter()
                    .flat_map(|l| l.projections())
                    .map(|lin| {
                        let c = lin.trits().counts();
                        ph::LayerCounts {
                            layer: lin.name().to_string(),
                            counts: c,
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if layers.is_empty() && !all {
                return Err("no weights to check: load a model or open a run".into());
            }
            for l in layers {
                subjects.push((l.layer.clone(), ph::CheckSubject::Layer(l)));
            }
        }
        if all || on == Some(CheckTarget::Step) {
            if let Some(r) = self.run.as_ref().and_then(|r| r.timeline.current_record()) {
                let step = convert::training_step(r);
                for l in step.layers {
                    subjects.push((
                        format!("step {} {}", r.step, l.layer),
                        ph::CheckSubject::Layer(ph::LayerCounts {
                            layer: l.layer,
                            counts: l.counts,
                        }),
                    ));
                }
            } else if !all {
                return Err("no training step selected: `replay open RUN_DIR`, then `step`".into());
            }
        }
        if subjects.is_empty() {
            return Err("nothing to check yet: generate, load a model or open a run".into());
        }
        let host = self.host()?;
        let mut rows = Vec::new();
        let mut violated = 0;
        for (what, subject) in &subjects {
            let verdicts = host.check(plugin, subject)?;
            for v in verdicts {
                if v.status == ph::VerdictStatus::Violated {
                    violated += 1;
                }
                rows.push(vec![
                    what.trim_start_matches("model.").to_string(),
                    v.check,
                    if v.status == ph::VerdictStatus::Ok {
                        "ok"
                    } else {
                        "violated"
                    }
                    .into(),
                    v.message,
                ]);
            }
        }
        Ok(vec![
            Output::Table(Table {
                title: Some(format!("{plugin}: {} subjects", subjects.len())),
                columns: ["subject", "check", "status", "message"]
                    .map(String::from)
                    .to_vec(),
                rows,
            }),
            Output::Text(format!(
                "{violated} of the checks violated (GF(3) balance is Σ trits ≡ 0 mod 3)"
            )),
        ])
    }

    fn rust(&mut self, code: &str, ctx: &mut Context<'_>) -> CmdResult {
        let eval = self.rust.as_mut().ok_or_else(|| SessionError::Rust(
            "Rust cells are not available in this session (they need the evcxr evaluator and a Rust toolchain)".into(),
        ))?;
        let started = Instant::now();
        let text = eval.eval(code, ctx.cancel).map_err(SessionError::Rust)?;
        let mut out = Vec::new();
        if !text.is_empty() {
            out.push(Output::Text(text));
        }
        (ctx.events)(LiveEvent::Line(format!(
            "rust cell: {:.2} s",
            started.elapsed().as_secs_f64()
        )));
        Ok(out)
    }
}

/// The engine's options for the generation options of `generate` and `chat`.
fn engine_options(
    m: &LoadedModel,
    o: &lang::GenerationOptions,
    command: &str,
) -> Result<GenerateOptions, SessionError> {
    let mut stop_tokens = Vec::new();
    if let Some(stop) = &o.stop {
        stop_tokens = m.require_tokenizer(command)?.encode(stop, false)?;
        if stop_tokens.len() != 1 {
            return Err(SessionError::Usage(format!(
                "--stop {stop:?} is {} tokens; it must be exactly one",
                stop_tokens.len()
            )));
        }
    }
    Ok(GenerateOptions {
        max_tokens: o.max_tokens as usize,
        sampling: SamplingOptions {
            temperature: if o.greedy { 0.0 } else { o.temperature },
            top_k: o.top_k.map(|k| k as usize),
            top_p: o.top_p,
            seed: o.seed,
        },
        stop_tokens,
        ..GenerateOptions::default()
    })
}

/// What a generation's steps leave behind: each token as a trace token (coloured by the tracer,
/// if one is loaded), the tracer's annotations for `check --on trace`, the tracer's first error.
/// Each token is also sent live to the face as it comes.
struct TraceRecorder {
    tracer: Option<String>,
    total: u64,
    tokens: Vec<TraceToken>,
    annotated: Vec<ph::AnnotatedStep>,
    tracer_error: Option<String>,
}

impl TraceRecorder {
    fn new(tracer: Option<String>, max_tokens: u32) -> Self {
        TraceRecorder {
            tracer,
            total: u64::from(max_tokens),
            tokens: Vec::new(),
            annotated: Vec::new(),
            tracer_error: None,
        }
    }

    /// Records one step; asks to stop when the command is cancelled.
    fn step(
        &mut self,
        host: Option<&mut PluginHost>,
        step: &GenerationStep,
        ctx: &mut Context<'_>,
    ) -> StepControl {
        let annotation = match (host, &self.tracer) {
            (Some(h), Some(name)) => {
                match h.trace_generation(name, &convert::generation_step(step)) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        self.tracer_error.get_or_insert(e.to_string());
                        None
                    }
                }
            }
            _ => None,
        };
        let note = format!(
            "token {} · id {} · entropy {:.2}",
            step.index, step.token_id, step.logit_stats.entropy
        );
        let text = if step.text.is_empty() {
            "·"
        } else {
            &step.text
        };
        let token = convert::trace_token(text, annotation.as_ref(), note);
        (ctx.events)(LiveEvent::Token(token.clone()));
        ctx.progress("generating", step.index as u64 + 1, Some(self.total));
        self.tokens.push(token);
        if let Some(a) = annotation {
            self.annotated.push(ph::AnnotatedStep {
                step: step.index as u64,
                annotation: a,
            });
        }
        if ctx.cancelled() {
            StepControl::Stop
        } else {
            StepControl::Continue
        }
    }

    /// The trace, titled by who speaks (if anyone) and what coloured it.
    fn trace(&mut self, speaker: Option<&str>) -> Trace {
        let colour = match &self.tracer {
            Some(t) => format!("coloured by {t}"),
            None => "no tracer loaded".into(),
        };
        Trace {
            title: Some(match speaker {
                Some(who) => format!("{who} · {colour}"),
                None => colour,
            }),
            tokens: std::mem::take(&mut self.tokens),
        }
    }
}

/// The word a command is typed with, for naming it in an [`InternalError`].
fn command_word(command: &Command) -> String {
    let text = command.to_string();
    text.split_whitespace()
        .next()
        .unwrap_or("command")
        .to_owned()
}

/// `export --to gguf-…` of `model`: the file, and what each tensor became where it is not the
/// asked-for type.
fn gguf_export(
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    template: Option<&str>,
    e: &lang::Export,
    what: &str,
) -> CmdResult {
    use lang::{EmbedType, ExportFormat};
    use tritlab_engine::GgmlType;
    let ty = match e.to {
        ExportFormat::GgufTq2_0 => GgmlType::TQ2_0,
        ExportFormat::GgufTq1_0 => GgmlType::TQ1_0,
        ExportFormat::GgufI2S => GgmlType::I2S,
        ExportFormat::Hf => {
            return Err(SessionError::Usage(
                "`--to hf` writes a checkpoint directory, not a GGUF file".into(),
            ))
        }
    };
    let embed = match e.embed_type {
        EmbedType::F16 => GgmlType::F16,
        EmbedType::Bf16 => GgmlType::BF16,
        EmbedType::F32 => GgmlType::F32,
        EmbedType::Q8_0 => GgmlType::Q8_0,
        EmbedType::Q6K => GgmlType::Q6K,
    };
    let report = model.export_gguf(&e.out, ty, embed, tokenizer, template)?;
    let mut out = vec![Output::Text(format!(
        "{what} written to {} as {ty} with a {embed} embedding: {} tensors, {:.2} MB, \
         architecture {:?}{}",
        shown_path(&e.out),
        report.tensors.len(),
        report.bytes as f64 / 1e6,
        report.architecture,
        if tokenizer.is_some() {
            ""
        } else {
            " (no tokenizer: the file has no vocabulary)"
        }
    ))];
    let rows: Vec<Vec<String>> = report
        .tensors
        .iter()
        .filter_map(|t| {
            let note = t.note.as_ref()?;
            Some(vec![t.name.clone(), t.ty.clone(), note.clone()])
        })
        .collect();
    if !rows.is_empty() {
        out.push(Output::Table(Table {
            title: Some(format!("tensors not written as {ty}")),
            columns: ["tensor", "type", "why"].map(String::from).to_vec(),
            rows,
        }));
    }
    Ok(out)
}

/// `synth`: a random checkpoint of a real model's shape.
fn synth(s: &lang::Synth) -> CmdResult {
    let shape = match s.shape {
        lang::SynthShape::Bitnet2b4t => tritlab_engine::SynthShape::Bitnet2b4t,
        lang::SynthShape::Tiny => tritlab_engine::SynthShape::Tiny,
    };
    let r = tritlab_engine::synth(shape, s.seed, &s.out)?;
    Ok(vec![
        Output::Text(format!(
            "wrote a random {} checkpoint (seed {}) to {}: {} ternary and {} float parameters, \
             model.safetensors {:.1} MB",
            r.shape,
            r.seed,
            shown_path(&s.out),
            r.ternary_params,
            r.float_params,
            r.model_bytes as f64 / 1e6
        )),
        Output::Text(format!("note: {}", r.tokenizer_note)),
        Output::Text(
            "note: the weights are random: it runs and benchmarks like the real model but \
             writes gibberish"
                .into(),
        ),
    ])
}

pub(crate) fn model_line(m: &LoadedModel) -> String {
    let c = m.model.config();
    let t = m.model.total_trits();
    format!(
        "loaded {}: {} layers, d_model {}, vocab {}, {} ternary weights (Σ mod 3 = {}){}",
        m.shown,
        c.num_hidden_layers,
        c.hidden_size,
        c.vocab_size,
        t.neg + t.zero + t.pos,
        t.gf3_sum,
        if m.tokenizer.is_none() {
            "; no tokenizer"
        } else {
            ""
        }
    )
}

/// verify's scale column: the scale a tensor's values were held to, or its stored scales.
fn scale_cell(t: &tritlab_engine::verify::TensorReport) -> String {
    let mut cell = match (&t.block_scales, t.scale_granularity, t.scale) {
        (Some(b), _, _) => {
            let mut c = if b.all_equal {
                format!("{} blocks of {}, all {:.4e}", b.count, b.block, b.min)
            } else {
                format!(
                    "{} blocks of {}, {:.4e} to {:.4e}",
                    b.count, b.block, b.min, b.max
                )
            };
            for (n, what) in [(b.zero, "zero"), (b.negative, "negative")] {
                if n > 0 {
                    c.push_str(&format!(", {n} {what}"));
                }
            }
            c
        }
        (None, _, Some(s)) if !t.ternary => format!("absmean {s:.4e}"),
        (None, "row", _) => "one per row".to_string(),
        (None, "group128", _) => "one per 128 columns".to_string(),
        (None, _, Some(s)) => format!("{s:.4e}"),
        (None, _, None) => "none".to_string(),
    };
    match t.tensor_scale {
        Some(s) if t.block_scales.is_some() => cell.push_str(&format!(" × .scale {s:.4e}")),
        Some(s) => cell.push_str(&format!(" (.scale {s:.4e} included)")),
        None => {}
    }
    cell
}

/// How outputs name the default model: `default` and its folder's name.
fn default_name(path: &Path) -> String {
    format!("default ({})", shown_path(path))
}

/// How outputs name a model directory given as `path`: as given when it is relative (to the
/// session's folder, which for a workbook is the workbook's), else by its last component only.
/// Outputs are saved into workbooks and exported, and must not carry someone's home folder.
pub(crate) fn shown_path(path: &Path) -> String {
    if path.is_relative() {
        return path.display().to_string();
    }
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// How a checkpoint stores its ternary weights, in words.
fn weight_format_words(format: tritlab_engine::WeightFormat) -> String {
    use tritlab_engine::{LinearClass, WeightFormat};
    match format {
        WeightFormat::Packed { linear_class } => format!(
            "packed trits with a weight scale per tensor ({})",
            match linear_class {
                LinearClass::AutoBitLinear => "AutoBitLinear: output times the scale",
                LinearClass::BitLinear => "BitLinear: output divided by the scale",
            }
        ),
        WeightFormat::Latent => {
            "full-precision latent weights, made ternary by absmean when loaded".to_string()
        }
    }
}

/// A timeline move.
pub(crate) enum Move {
    Seek(u64),
    Forward(u64),
    Backward(u64),
}
