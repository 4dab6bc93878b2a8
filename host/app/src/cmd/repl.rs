//! `tritlab repl`: the command language at a prompt.
//!
//! In a terminal: line editing with persistent history, tab completion (commands, options,
//! paths, and the session's tensors, plugins and steps), inline hints, syntax colours and
//! multi-line entries (an open string, a trailing `\` or a `:rust` block continue on the next
//! line). Ctrl-C cancels the running command, or clears the line at the prompt; Ctrl-D quits.
//!
//! Without a terminal on stdin, commands are read line by line (entries still continue over
//! lines the same way), outputs are printed plainly, and the exit status is 1 if any command
//! failed, so scripts and tests can drive it.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Editor, Helper};
use unicode_width::UnicodeWidthStr;

use tritlab_rust_cells::Preparation;

use crate::console::{self, Console, SessionNames};
use crate::interrupt;
use crate::render::{self, Renderer, Style};

#[derive(clap::Args)]
pub struct Args {
    /// Start without loading the default model (`load default` loads it later).
    #[arg(long)]
    pub no_default_model: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    interrupt::install();
    let config = console::session_config(!args.no_default_model);
    if std::io::stdin().is_terminal() {
        interactive(config)
    } else {
        scripted(config)
    }
}

/// Commands from a pipe or file: one entry per complete line (or lines), outputs plain.
fn scripted(config: tritlab_session::SessionConfig) -> Result<ExitCode> {
    let (worker, snapshot) = console::start_worker(config, Preparation::Wait);
    // Plain text for scripts, whatever stdout is.
    let console = Console {
        renderer: Renderer::new(Style::PLAIN),
        err_style: Style::PLAIN,
        ..Console::new(true)
    };
    for note in console::startup_notes(&snapshot) {
        eprintln!("note: {note}");
    }
    let mut failed = 0usize;
    let mut entry = String::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let line = match lines.next() {
            Some(Ok(line)) => Some(line),
            Some(Err(e)) => {
                return Err(anyhow::Error::new(e).context("reading commands from stdin"))
            }
            None => None,
        };
        let at_end = line.is_none();
        if let Some(line) = line {
            if !entry.is_empty() {
                entry.push('\n');
            }
            entry.push_str(&line);
            if !tritlab_session::is_complete(&entry) {
                continue;
            }
        }
        // At the end of input an unfinished entry is run anyway: parsing reports what is open.
        if !entry.trim().is_empty() {
            let job = console.run(&worker, &entry);
            if job.exec.error.is_some() {
                failed += 1;
            }
            if job.exec.quit || !worker.is_running() {
                break;
            }
        }
        entry.clear();
        if at_end {
            break;
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn interactive(config: tritlab_session::SessionConfig) -> Result<ExitCode> {
    let style = Style::stdout();
    let err = Style::stderr();
    eprintln!(
        "{}",
        err.dim(&format!(
            "tritlab {} — `help` lists the commands; Tab completes, Ctrl-C cancels, Ctrl-D quits",
            env!("CARGO_PKG_VERSION")
        ))
    );
    let (worker, snapshot) = console::start_worker(config, Preparation::Report);
    if let Some(m) = &snapshot.model {
        eprintln!(
            "{}",
            err.dim(&format!(
                "model {}: {} layers, d_model {}, vocabulary {}",
                m.path.display(),
                m.layers,
                m.hidden,
                m.vocab
            ))
        );
    }
    for note in console::startup_notes(&snapshot) {
        eprintln!("{}", err.yellow(&format!("note: {note}")));
    }
    let console = Console::new(true);

    let editor_config = Config::builder()
        .history_ignore_space(true)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor: Editor<ReplHelper, FileHistory> = Editor::with_config(editor_config)?;
    editor.set_helper(Some(ReplHelper {
        names: SessionNames::from_snapshot(&snapshot),
        colour: style.colour,
    }));
    let history = history_file();
    if let Some(path) = &history {
        if path.is_file() {
            if let Err(e) = editor.load_history(path) {
                eprintln!("note: history not loaded from {}: {e}", path.display());
            }
        }
    }
    let prompt = if style.colour {
        "\x1b[1;32mtritlab>\x1b[0m "
    } else {
        "tritlab> "
    };
    loop {
        // A snapshot that came after the last command finished.
        while let Some(event) = worker.try_recv() {
            if let tritlab_session::WorkerEvent::Snapshot(s) = event {
                if let Some(h) = editor.helper_mut() {
                    h.names = SessionNames::from_snapshot(&s);
                }
            }
        }
        let entry = match editor.readline(prompt) {
            Ok(entry) => entry,
            // Ctrl-C at the prompt: the line is dropped, the session goes on.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(anyhow::Error::new(e).context("reading a line")),
        };
        if entry.trim().is_empty() {
            continue;
        }
        if editor.add_history_entry(entry.as_str())? {
            if let Some(path) = &history {
                save_history(&mut editor, path);
            }
        }
        let job = console.run(&worker, &entry);
        if let Some(s) = &job.snapshot {
            if let Some(h) = editor.helper_mut() {
                h.names = SessionNames::from_snapshot(s);
            }
        }
        if job.exec.clear && style.colour {
            editor.clear_screen()?;
        }
        if job.exec.quit {
            break;
        }
        if !worker.is_running() {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `$XDG_STATE_HOME/tritlab/history`, else `~/.local/state/tritlab/history`.
fn history_file() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("tritlab").join("history"))
}

fn save_history(editor: &mut Editor<ReplHelper, FileHistory>, path: &std::path::Path) {
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(ReadlineError::from)
        .and_then(|()| editor.append_history(path));
    if let Err(e) = result {
        eprintln!("note: history not saved to {}: {e}", path.display());
    }
}

/// Completion, hints, colours and multi-line entry for the line editor, all from the command
/// language's own helpers.
#[derive(Helper)]
struct ReplHelper {
    names: SessionNames,
    colour: bool,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let completion = tritlab_session::complete(line, pos, &self.names);
        let width = completion
            .candidates
            .iter()
            .map(|c| c.display.width())
            .max()
            .unwrap_or(0);
        let pairs = completion
            .candidates
            .into_iter()
            .map(|c| Pair {
                display: if c.description.is_empty() {
                    c.display
                } else {
                    let pad = " ".repeat(width - c.display.width());
                    format!("{}{pad}  {}", c.display, c.description)
                },
                replacement: c.replacement,
            })
            .collect();
        Ok((completion.start, pairs))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &rustyline::Context<'_>) -> Option<String> {
        if pos < line.len() {
            return None;
        }
        tritlab_session::hint(line)
    }
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.colour {
            Cow::Owned(render::highlight_line(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.colour {
            Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Any edit can change what a word is (a command, an error), so every change repaints.
        self.colour && kind != CmdKind::MoveCursor
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if tritlab_session::is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}
