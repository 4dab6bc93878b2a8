//! The subcommands that are session commands: `tritlab generate "To be" --seed 7`,
//! `tritlab info --model DIR`, `tritlab train --data corpus.txt --out runs/a`, …
//!
//! Their arguments are not declared to clap: they are handed, word for word, to the command
//! language's parser, so that the command table (`tritlab help`, `docs/COMMANDS.md`) is the one
//! place that says which options exist, what they take, their defaults and their checks, and so
//! that the terminal, the REPL, workbooks, the workbench and Jupyter run the same executor
//! with the same defaults. A few options belong to this face only and are taken out first:
//! `--model` (load it before the command), `--head-precision` (how that model, or the default
//! one, keeps its output projection: `load`'s option of the same name), `--packing` (how it
//! keeps its ternary layers, also `load`'s), `--run` (open that training run before it), `--json`
//! (print the typed outputs as JSON instead of text) and `--threads` (as everywhere).
//!
//! Exit codes follow from the error's kind: 0 success, 2 a command that does not parse or
//! cannot be carried out as asked (a usage error, no model), 130 cancelled with Ctrl-C, 1 any
//! other failure (the engine, training, plugins, files, a checkpoint that is not ternary).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tritlab_session::lang::{self, ModelRef};
use tritlab_session::{Command, ErrorKind, Execution};

use crate::console::{self, Console};
use crate::interrupt;

/// The top-level commands that run through the session, with the table's summaries as their
/// `--help` lines. Session-only commands (`seek`, `step`, `plugin`, …) need a session that
/// lives on, so they stay in `tritlab repl`.
pub const SUBCOMMANDS: &[&str] = &[
    "info", "layers", "verify", "generate", "chat", "logits", "eval", "bench", "show", "export",
    "convert", "synth", "train", "log", "replay", "check", "plugins",
];

/// The options of this face, not of the command language.
#[derive(Debug, Default, PartialEq)]
pub struct FaceOptions {
    pub model: Option<String>,
    pub head: Option<lang::HeadPrecision>,
    pub packing: Option<lang::Packing>,
    pub run: Option<PathBuf>,
    pub json: bool,
    pub threads: Option<usize>,
}

/// Takes the face's options out of `words` (wherever they are), leaving the command's own.
pub fn split_face_options(words: &[String]) -> Result<(FaceOptions, Vec<String>)> {
    let mut face = FaceOptions::default();
    let mut rest = Vec::new();
    let mut iter = words.iter();
    while let Some(word) = iter.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (word.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| iter.next().cloned()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value"),
            }
        };
        match name {
            "--json" if inline.is_none() => face.json = true,
            "--model" => face.model = Some(value(name)?),
            "--head-precision" => {
                let v = value(name)?;
                face.head = Some(lang::HeadPrecision::from_name(&v).with_context(|| {
                    format!(
                        "--head-precision {v}: expected one of {}",
                        lang::HeadPrecision::NAMES.join(", ")
                    )
                })?);
            }
            "--packing" => {
                let v = value(name)?;
                face.packing = Some(lang::Packing::from_name(&v).with_context(|| {
                    format!(
                        "--packing {v}: expected one of {}",
                        lang::Packing::NAMES.join(", ")
                    )
                })?);
            }
            "--run" => face.run = Some(PathBuf::from(value(name)?)),
            "--threads" => {
                let v = value(name)?;
                face.threads = Some(
                    v.parse()
                        .with_context(|| format!("--threads {v}: not a thread count"))?,
                );
            }
            _ => rest.push(word.clone()),
        }
    }
    Ok((face, rest))
}

/// The exit code for a finished command: see the module documentation.
pub fn exit_code(exec: &Execution) -> ExitCode {
    match exec.error.as_ref().map(|e| e.kind()) {
        None if exec.cancelled => ExitCode::from(130),
        None => ExitCode::SUCCESS,
        Some(ErrorKind::Parse | ErrorKind::Usage | ErrorKind::NoModel) => ExitCode::from(2),
        Some(ErrorKind::Cancelled) => ExitCode::from(130),
        Some(_) => ExitCode::FAILURE,
    }
}

/// Whether the command needs a loaded model when `--model` is not given (then the default
/// model is loaded).
fn needs_model(command: &Command) -> bool {
    match command {
        Command::Info
        | Command::Layers
        | Command::Generate(_)
        | Command::Chat(_)
        | Command::Logits(_)
        | Command::Eval(_)
        | Command::Bench(_) => true,
        Command::Verify(v) => v.path.is_none(),
        Command::Show(_) | Command::Export(_) => true,
        _ => false,
    }
}

/// Runs `tritlab NAME WORDS…` through a session; `threads` is `--threads` given before the
/// subcommand.
pub fn run(name: &str, words: &[String], threads: Option<usize>) -> Result<ExitCode> {
    let (face, rest) = split_face_options(words)?;
    let mut all = vec![name.to_string()];
    all.extend(rest);
    let line = lang::line_from_words(&all);
    // Parse here first: a usage error needs no model, plugins or threads.
    let command = match tritlab_session::parse(&line) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", e.render(&line));
            eprintln!("(`tritlab help {name}` describes the command)");
            return Ok(ExitCode::from(2));
        }
    };
    let threads = face.threads.or(threads);
    set_up_threads(threads, run_to_recompute(&command, face.run.as_ref()))?;
    interrupt::install();
    // The default model loads with the session unless a model, or another head for it, is asked.
    let explicit_load = face.model.is_some() || face.head.is_some() || face.packing.is_some();
    // `export --run DIR` writes the run's model at a step, not a loaded one.
    let needs_model =
        needs_model(&command) && !(matches!(command, Command::Export(_)) && face.run.is_some());
    let mut config = console::session_config(!explicit_load && needs_model);
    config.threads = threads;
    let (worker, snapshot) = console::start_worker(config, tritlab_rust_cells::Preparation::Wait);
    let quiet = Console {
        show_outputs: false,
        ..Console::new(false)
    };
    // What this face sets up before the command, written as commands too.
    let mut setup = Vec::new();
    if explicit_load {
        let model = match face.model.as_deref() {
            None | Some("default") => ModelRef::Default,
            Some(path) => ModelRef::Path(PathBuf::from(path)),
        };
        setup.push(Command::Load(lang::Load {
            model,
            head: face.head.unwrap_or(lang::HeadPrecision::DEFAULT),
            packing: face.packing.unwrap_or(lang::Packing::DEFAULT),
        }));
    } else if needs_model {
        for note in console::startup_notes(&snapshot) {
            eprintln!("note: {note}");
        }
    }
    if let Some(run) = &face.run {
        setup.push(Command::Replay(lang::Replay::Open { run: run.clone() }));
    }
    for step in setup {
        let job = quiet.run(&worker, &step.to_string());
        if job.exec.error.is_some() {
            return Ok(finish(&job.exec, face.json, true));
        }
    }
    let console = if face.json { quiet } else { Console::new(true) };
    let job = console.run(&worker, &command.to_string());
    Ok(finish(&job.exec, face.json, false))
}

/// Prints what the text console did not (JSON, or a setup step's error) and picks the exit code.
fn finish(exec: &Execution, json: bool, setup_failed: bool) -> ExitCode {
    if json {
        let mut out = std::io::stdout().lock();
        let written = serde_json::to_writer_pretty(&mut out, &exec.outputs)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out));
        if let Err(e) = written {
            eprintln!("error: writing the outputs: {e}");
            return ExitCode::FAILURE;
        }
        if let Some(e) = &exec.error {
            eprintln!("error: {e}");
        }
    } else if setup_failed {
        if let Some(e) = &exec.error {
            eprintln!("error: {e}");
        }
    }
    exit_code(exec)
}

/// The run a command recomputes (so it must run with the run's thread count), if any.
fn run_to_recompute(command: &Command, opened: Option<&PathBuf>) -> Option<PathBuf> {
    match command {
        Command::Train(lang::Train::Resume(r)) => Some(r.run.clone()),
        Command::Replay(lang::Replay::Verify { .. } | lang::Replay::Export { .. })
        | Command::Export(_) => opened.cloned(),
        _ => None,
    }
}

/// Sizes the process's thread pool: `--threads`, else the recorded count of the run the command
/// recomputes (so `tritlab replay verify --run DIR` needs no `--threads`), else all cores. The
/// session checks the count against the run either way.
fn set_up_threads(requested: Option<usize>, run: Option<PathBuf>) -> Result<()> {
    let recorded = run
        .filter(|dir| dir.join(tritlab_train::RunConfig::FILE).is_file())
        .and_then(|dir| tritlab_train::RunConfig::read(&dir).ok())
        .map(|c| c.threads);
    if let Some(n) = requested.or(recorded) {
        crate::use_threads(n)?;
    }
    Ok(())
}
