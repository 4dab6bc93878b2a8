//! The `tritlab` command line.
//!
//! One subcommand per module in `cmd/`; `tritlab` without arguments runs the tour.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tritlab",
    version,
    about = "A workbench for ternary BitNet b1.58 language models"
)]
struct Cli {
    /// Worker threads for the kernels and the model (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Logits of every position for given token ids.
    Logits(cmd::logits::Args),
    /// Generate text from a prompt, streamed to stdout.
    Generate(cmd::generate::Args),
    /// Check whether a checkpoint's weights are really ternary.
    Verify(cmd::verify::Args),
    /// Write a random checkpoint with real shapes.
    Synth(cmd::synth::Args),
    /// Show a model's configuration and per-layer trit statistics.
    Info(cmd::info::Args),
    /// A walk through kernels, model, verify and plugin-traced generation (the default).
    Tour(cmd::tour::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
        {
            eprintln!("error: cannot set up {n} threads: {e}");
            return ExitCode::FAILURE;
        }
    }
    // No subcommand: the tour of the default model.
    let command = cli.command.unwrap_or(Command::Tour(cmd::tour::Args {
        model: "default".into(),
        prompt: "To be, or not to be".into(),
        max_tokens: 24,
        plugins: None,
    }));
    let result = match command {
        Command::Logits(a) => cmd::logits::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Tour(a) => cmd::tour::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
