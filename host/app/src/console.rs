//! Running commands on a session worker from the terminal: starting the worker, streaming live
//! events while a command runs, Ctrl-C, and printing the outputs.

use std::collections::{HashSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tritlab_session::{
    Command, Execution, LiveEvent, SessionConfig, SessionWorker, Snapshot, WorkerEvent,
};
use tritlab_workbook::{Output, TraceToken};

use tritlab_rust_cells::{Preparation, SidecarEvaluator};

use crate::interrupt;
use crate::render::{self, Renderer, Style};

/// How often a waiting face looks at Ctrl-C.
const POLL: Duration = Duration::from_millis(50);
/// The least time between two redraws of the progress line.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// The session configuration tritlab's faces use: the bundled model and plugins, with paths
/// made absolute so that changing the working directory (as `tritlab run` does) keeps them.
pub fn session_config(load_default_model: bool) -> SessionConfig {
    let mut config = SessionConfig::standard();
    let absolute = |p: PathBuf| {
        std::fs::canonicalize(&p)
            .or_else(|_| std::path::absolute(&p))
            .unwrap_or(p)
    };
    config.default_model = config.default_model.map(absolute);
    config.plugin_dirs = config.plugin_dirs.into_iter().map(absolute).collect();
    config.plugin_cache = config.plugin_cache.map(absolute);
    config.load_default_model = load_default_model;
    config
}

/// Starts a session worker (its Rust cells in the runner process, waiting for or reporting on
/// the runner's first build as `preparation` says) and waits until it is up.
pub fn start_worker(
    config: SessionConfig,
    preparation: Preparation,
) -> (SessionWorker, Box<Snapshot>) {
    let rust: Option<Box<dyn tritlab_session::RustEvaluator>> =
        Some(Box::new(SidecarEvaluator::new(preparation)));
    let worker = SessionWorker::spawn(config, rust);
    loop {
        match worker.recv_timeout(Duration::from_secs(3600)) {
            Some(WorkerEvent::Ready(snapshot)) => return (worker, snapshot),
            Some(_) => {}
            // The thread died while starting; the first command will say so.
            None => return (worker, Box::default()),
        }
    }
}

/// Startup notes worth showing: a model or plugin that did not load.
pub fn startup_notes(snapshot: &Snapshot) -> Vec<String> {
    let mut notes = snapshot.notes.clone();
    if let Some(p) = &snapshot.plugin_problem {
        notes.push(p.clone());
    }
    notes
}

/// What a face shows while a command runs and when it is done.
#[derive(Debug, Clone)]
pub struct Console {
    /// How outputs are written to stdout.
    pub renderer: Renderer,
    /// How progress and errors are written to stderr.
    pub err_style: Style,
    /// Whether stderr is a terminal (for a redrawn progress line).
    pub status_line: bool,
    /// Stream generated tokens as they come and print every output; `false` shows progress only.
    pub show_outputs: bool,
}

/// A finished command.
#[derive(Debug)]
pub struct Job {
    pub exec: Execution,
    /// The session state after it, if the worker sent it in time.
    pub snapshot: Option<Box<Snapshot>>,
}

impl Console {
    /// A console for this process's stdout and stderr.
    pub fn new(show_outputs: bool) -> Console {
        Console {
            renderer: Renderer::new(Style::stdout()),
            err_style: Style::stderr(),
            status_line: std::io::stderr().is_terminal(),
            show_outputs,
        }
    }

    /// Runs `source` on the worker, showing live events; Ctrl-C cancels it (a second one warns,
    /// a third ends tritlab). Prints the outputs when `show_outputs`.
    pub fn run(&self, worker: &SessionWorker, source: &str) -> Job {
        let mut live = Live::new(self, source);
        interrupt::reset();
        let id = worker.submit(source);
        let mut handled = 0;
        let mut finished: Option<(Execution, Instant)> = None;
        let mut snapshot = None;
        loop {
            let interrupts = interrupt::count();
            if interrupts > handled && finished.is_none() {
                handled = interrupts;
                live.end();
                match handled {
                    1 => {
                        worker.cancel();
                        eprintln!("{}", self.err_style.yellow("cancelling…"));
                    }
                    2 => eprintln!(
                        "{}",
                        self.err_style
                            .yellow("still stopping; press Ctrl-C again to quit tritlab")
                    ),
                    _ => std::process::exit(130),
                }
            }
            match worker.recv_timeout(POLL) {
                Some(WorkerEvent::Live(j, event)) if j == id => live.event(event),
                Some(WorkerEvent::Finished(j, exec)) if j == id => {
                    finished = Some((exec, Instant::now()));
                }
                Some(WorkerEvent::Snapshot(s)) if finished.is_some() => {
                    snapshot = Some(s);
                    break;
                }
                Some(_) => {}
                None if finished.is_none() && !worker.is_running() => {
                    live.end();
                    finished = Some((
                        Execution::stopped_worker(
                            "the session stopped unexpectedly; restart tritlab",
                        ),
                        Instant::now(),
                    ));
                }
                None => {}
            }
            // The snapshot follows the result at once; a slow one is picked up later.
            if let Some((_, at)) = &finished {
                if at.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
        }
        let (exec, _) = finished.expect("the loop ends only once the job finished");
        live.end();
        if self.show_outputs {
            live.print_outputs(&exec.outputs);
        }
        Job { exec, snapshot }
    }
}

/// The live part of a running command.
struct Live<'a> {
    console: &'a Console,
    /// Prompts of the `generate` and `chat` commands in the source, in order, to print before
    /// their tokens; a chat message stands on a line of its own above the reply.
    prompts: VecDeque<(String, bool)>,
    /// Generations streamed so far: the prompt printed before each, and its tokens.
    streams: Vec<(Option<String>, Vec<TraceToken>)>,
    streaming: bool,
    status_shown: bool,
    last_status: Option<Instant>,
}

impl<'a> Live<'a> {
    fn new(console: &'a Console, source: &str) -> Live<'a> {
        let prompts = tritlab_session::parse_script(source)
            .map(|statements| {
                statements
                    .into_iter()
                    .filter_map(|s| match s.command {
                        Command::Generate(g) => Some((g.prompt, false)),
                        // A chat without a message only starts a conversation: no tokens.
                        Command::Chat(c) => c.message.map(|m| (m, true)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Live {
            console,
            prompts,
            streams: Vec::new(),
            streaming: false,
            status_shown: false,
            last_status: None,
        }
    }

    fn event(&mut self, event: LiveEvent) {
        match event {
            LiveEvent::Token(token) if self.console.show_outputs => self.token(token),
            LiveEvent::Token(_) => {}
            LiveEvent::Progress { label, done, total } => {
                if !self.streaming {
                    self.status(&label, done, total);
                }
            }
            LiveEvent::Line(line) => {
                self.end();
                eprintln!("{}", self.console.err_style.dim(&render::sanitize(&line)));
            }
        }
    }

    fn token(&mut self, token: TraceToken) {
        let mut out = std::io::stdout().lock();
        if !self.streaming {
            self.clear_status();
            self.streaming = true;
            let prompt = self.prompts.pop_front();
            if let Some((p, own_line)) = &prompt {
                let _ = write!(
                    out,
                    "{}{}",
                    self.console.renderer.style.bold(&render::sanitize(p)),
                    if *own_line { "\n" } else { "" }
                );
            }
            self.streams.push((prompt.map(|(p, _)| p), Vec::new()));
        }
        let _ = write!(
            out,
            "{}",
            render::token_text(&token, self.console.renderer.style)
        );
        let _ = out.flush();
        if let Some((_, tokens)) = self.streams.last_mut() {
            tokens.push(token);
        }
    }

    fn status(&mut self, label: &str, done: u64, total: Option<u64>) {
        if !self.console.status_line {
            return;
        }
        let complete = total.is_some_and(|t| done >= t);
        if self
            .last_status
            .is_some_and(|at| at.elapsed() < STATUS_EVERY && !complete)
        {
            return;
        }
        self.last_status = Some(Instant::now());
        let text = match total {
            Some(t) if t > 0 => format!(
                "{label} {done}/{t} ({:.0}%)",
                100.0 * done as f64 / t as f64
            ),
            _ => format!("{label} {done}"),
        };
        eprint!(
            "\r\x1b[K{}",
            self.console.err_style.dim(&render::sanitize(&text))
        );
        let _ = std::io::stderr().flush();
        self.status_shown = true;
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
            self.status_shown = false;
        }
    }

    /// Ends a token stream or progress line, so the next text starts on a fresh line.
    fn end(&mut self) {
        if self.streaming {
            println!();
            self.streaming = false;
        }
        self.clear_status();
    }

    /// Prints `outputs`, leaving out the traces already streamed (and the prompts printed before
    /// them); a streamed trace's title is still shown.
    fn print_outputs(&self, outputs: &[Output]) {
        let mut skip = HashSet::new();
        let mut titles_only = HashSet::new();
        let mut streams = self.streams.iter().peekable();
        for (i, output) in outputs.iter().enumerate() {
            let Output::Trace(trace) = output else {
                continue;
            };
            let Some((prompt, tokens)) = streams.peek() else {
                break;
            };
            if *tokens != trace.tokens {
                continue;
            }
            streams.next();
            titles_only.insert(i);
            if let (Some(p), Some(Output::Text(before))) =
                (prompt, i.checked_sub(1).map(|j| &outputs[j]))
            {
                if p == before {
                    skip.insert(i - 1);
                }
            }
        }
        let style = self.console.renderer.style;
        for (i, output) in outputs.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            if titles_only.contains(&i) {
                if let Output::Trace(t) = output {
                    if let Some(title) = &t.title {
                        println!("{}", style.dim(&format!("[{}]", render::sanitize(title))));
                    }
                }
                continue;
            }
            let rendered = self.console.renderer.render(output);
            if rendered.is_error {
                let text = if self.console.err_style.colour == style.colour {
                    rendered.text
                } else {
                    Renderer {
                        style: self.console.err_style,
                        ..self.console.renderer.clone()
                    }
                    .render(output)
                    .text
                };
                eprintln!("{text}");
            } else {
                println!("{}", rendered.text);
            }
        }
        let _ = std::io::stdout().flush();
    }
}

/// The names the running session knows, for tab completion (the REPL's and Jupyter's alike).
pub use tritlab_session::SnapshotNames as SessionNames;

#[cfg(test)]
mod tests {
    use super::*;
    use tritlab_session::lang::{CompletionSource, PluginRole};
    use tritlab_session::snapshot::{ModelSummary, PluginRow, TensorRow};

    fn tensor(name: &str) -> TensorRow {
        TensorRow {
            name: name.into(),
            rows: 1,
            cols: 1,
            neg: 0,
            zero: 1,
            pos: 0,
            gf3: 0,
            scale: 1.0,
            thumbnail: None,
        }
    }

    fn plugin(name: &str, kind: &str) -> PluginRow {
        PluginRow {
            name: name.into(),
            kind: kind.into(),
            version: "0.1.0".into(),
            description: String::new(),
            enabled: true,
            failures: 0,
            last_error: None,
            options: Vec::new(),
        }
    }

    #[test]
    fn completion_names_come_from_the_snapshot() {
        let snapshot = Snapshot {
            model: Some(std::sync::Arc::new(ModelSummary {
                path: "m".into(),
                name: "m".into(),
                layers: 1,
                hidden: 1,
                vocab: 1,
                tensors: vec![tensor("layers.0.mlp.up_proj.weight")],
            })),
            plugins: vec![
                plugin("gay-tracer", "tracer"),
                plugin("triad-checker", "checker"),
            ],
            ..Snapshot::default()
        };
        let names = SessionNames::from_snapshot(&snapshot);
        assert_eq!(names.tensor_names(), ["layers.0.mlp.up_proj.weight"]);
        assert_eq!(names.layer_names(), ["layers.0.mlp.up_proj"]);
        assert_eq!(
            names.plugin_names(Some(PluginRole::Checker)),
            ["triad-checker"]
        );
        assert_eq!(names.plugin_names(None).len(), 2);
        assert!(names.run_steps().is_empty());

        let c = tritlab_session::complete("check t", 7, &names);
        let offered: Vec<&str> = c
            .candidates
            .iter()
            .map(|c| c.replacement.as_str())
            .collect();
        assert_eq!(offered, ["triad-checker"]);
        let c = tritlab_session::complete("show layers.0.mlp.u", 19, &names);
        let offered: Vec<&str> = c
            .candidates
            .iter()
            .map(|c| c.replacement.as_str())
            .collect();
        assert_eq!(
            offered,
            ["layers.0.mlp.up_proj.weight", "layers.0.mlp.up_proj"]
        );
    }
}
