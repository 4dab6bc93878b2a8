//! `tritlab` with no arguments, or `tritlab tour`: a walk through the engine in the terminal.
//!
//! Kernels on this CPU (with a live check that every SIMD path equals the scalar reference),
//! the default model's layers and their trits, what `verify` says of it, and a generation whose
//! every token is coloured by the gay-tracer plugin and checked by the triad-checker; then the
//! last training steps that made the model, undone and replayed through their trit flips.

use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use tritlab_kernels::{Backend, QuantizedActivations, TernaryMatrix, WeightScale};
use tritlab_session::lang::{self, ModelRef};
use tritlab_session::Command;

use super::model_path;
use crate::console::{self, Console};
use crate::interrupt;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Model directory, or `default`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Prompt for the generation step.
    #[arg(long, default_value = "To be, or not to be")]
    pub prompt: String,
    #[arg(long, default_value_t = 24)]
    pub max_tokens: u32,
    /// Folder of built plugins (default: the plugins this tritlab ships).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
}

/// Whether to write ANSI colours: only to a terminal, and never when NO_COLOR is set.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn heading(n: usize, title: &str) {
    if colour() {
        println!("\n\x1b[1m{n}. {title}\x1b[0m");
    } else {
        println!("\n{n}. {title}");
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    println!("tritlab — a workbench for ternary (BitNet b1.58) language models");
    println!("This is the terminal tour; `tritlab --help` lists every command.");

    heading(1, "Kernels");
    kernels()?;

    // The rest is commands of the session's language, run by the same session as the REPL,
    // workbooks and the workbench (workbooks/tour.md is the same walk as a workbook).
    let model = if args.model == "default" {
        ModelRef::Default
    } else {
        ModelRef::Path(PathBuf::from(&args.model))
    };
    let run_dir = model_path(&args.model)?;
    let mut config = console::session_config(false);
    if let Some(dir) = &args.plugins {
        config.plugin_dirs = vec![dir.clone()];
    }
    interrupt::install();
    let (worker, snapshot) = console::start_worker(config, tritlab_rust_cells::Preparation::Wait);
    for note in console::startup_notes(&snapshot) {
        println!("(note: {note})");
    }
    let console = Console::new(true);
    // Through the parser, so the table's defaults and checks apply to the tour's options too.
    let max_tokens = args.max_tokens.to_string();
    let words = [
        "generate",
        &args.prompt,
        "--max-tokens",
        &max_tokens,
        "--seed",
        "7",
    ];
    let line = lang::line_from_words(&words);
    let generate = tritlab_session::parse(&line).map_err(|e| anyhow!("{}", e.render(&line)))?;
    let sections: [(&str, Vec<Command>); 4] = [
        (
            "Model",
            vec![Command::Load(lang::Load::new(model)), Command::Layers],
        ),
        ("Verify", vec![Command::Verify(lang::Verify { path: None })]),
        (
            "Generate, traced by plugins",
            vec![
                generate,
                Command::Check(lang::Check {
                    plugin: "triad-checker".into(),
                    on: Some(lang::CheckTarget::Trace),
                }),
            ],
        ),
        (
            "Training steps, rewound and replayed",
            vec![
                Command::Replay(lang::Replay::Open { run: run_dir }),
                Command::Back(lang::Back { count: 3 }),
                Command::Step(lang::Step { count: 3 }),
            ],
        ),
    ];
    let mut failed = false;
    for (n, (title, commands)) in sections.into_iter().enumerate() {
        heading(n + 2, title);
        for command in commands {
            let line = command.to_string();
            println!("{}", dim(&format!("tritlab> {line}")));
            let job = console.run(&worker, &line);
            if job.exec.cancelled {
                return Ok(ExitCode::from(130));
            }
            // A step that needs a plugin that is not built says so and the tour goes on.
            failed |= job
                .exec
                .error
                .as_ref()
                .is_some_and(|e| !matches!(e.kind(), tritlab_session::ErrorKind::Plugin));
        }
    }
    println!();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn dim(text: &str) -> String {
    if colour() {
        format!("\x1b[2m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Reports the backends and checks, on a product with awkward sizes, that they agree bit for bit.
fn kernels() -> Result<()> {
    Backend::requested().context("reading TRITLAB_KERNEL")?;
    let supported = Backend::supported();
    let names: Vec<_> = supported.iter().map(|b| b.name()).collect();
    println!(
        "active backend: {} (this CPU supports: {})",
        Backend::active(),
        names.join(", ")
    );
    let (rows, cols) = (333, 1000);
    let trits: Vec<i8> = (0..rows * cols)
        .map(|i| ((i * 7 + i / 11) % 3) as i8 - 1)
        .collect();
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let m = TernaryMatrix::from_trits(&trits, rows, cols, WeightScale::PerTensor(0.05))?;
    let q = QuantizedActivations::quantize(&x, 1, cols)?;
    let mut reference = vec![0.0f32; rows];
    m.matmul_with(Backend::Scalar, &q, &mut reference)?;
    for &b in &supported {
        let mut y = vec![0.0f32; rows];
        m.matmul_with(b, &q, &mut y)?;
        let same = y
            .iter()
            .zip(&reference)
            .all(|(a, r)| a.to_bits() == r.to_bits());
        println!(
            "  {:<12} {}",
            b.name(),
            if same {
                "equals the scalar reference bit for bit"
            } else {
                "DIFFERS from the scalar reference"
            }
        );
        anyhow::ensure!(
            same,
            "kernel backend {b} disagrees with the scalar reference"
        );
    }
    Ok(())
}
