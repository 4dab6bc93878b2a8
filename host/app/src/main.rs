//! The `tritlab` command line.
//!
//! One subcommand per module in `cmd/`; `tritlab` without arguments opens the workbench on a
//! desktop, and runs the terminal tour where there is no display.

mod cmd;
mod console;
mod interrupt;
mod render;

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
    /// Convert a model: to GGUF (TQ2_0, TQ1_0, I2_S) or to a transformers checkpoint.
    Convert(cmd::convert::Args),
    /// Write a random checkpoint with real shapes.
    Synth(cmd::synth::Args),
    /// Show a model's configuration and per-layer trit statistics.
    Info(cmd::info::Args),
    /// Train a ternary model with quantisation-aware training and a morphism log.
    Train(Box<cmd::train::Args>),
    /// Verify a training run by recomputing it, or export the model at any step.
    Replay(cmd::replay::Args),
    /// List the steps of a morphism log, or show one in full.
    Log(cmd::replay::LogArgs),
    /// A walk through kernels, model, verify and plugin-traced generation (the default).
    Tour(cmd::tour::Args),
    /// The command language at a prompt (or read from stdin when it is not a terminal).
    Repl(cmd::repl::Args),
    /// Run a workbook headless: every cell in order, outputs saved into it, exports written.
    Run(cmd::run::Args),
    /// The desktop workbench: workbook cells, REPL, inspector, training timeline (the default).
    Workbench(cmd::workbench::Args),
    /// A Jupyter kernel for the command language; `install` / `uninstall` its kernelspec.
    Kernel(cmd::kernel::Args),
}

/// The thread count a command runs with. Training and replay results depend on it, so a run's
/// recorded count wins and is checked against `--threads`.
fn thread_count(command: &Command, requested: Option<usize>) -> anyhow::Result<Option<usize>> {
    Ok(match command {
        Command::Train(a) => Some(cmd::train::threads(a, requested)?),
        Command::Replay(a) => Some(cmd::train::recorded_threads(&a.run, requested)?),
        _ => requested,
    })
}

fn main() -> ExitCode {
    // Exit quietly when the reader of our output goes away (`tritlab log RUN | head`), as Unix
    // tools do, instead of failing on the next print.
    sigpipe::reset();
    let cli = Cli::parse();
    // No subcommand: the workbench on a desktop, else the terminal tour of the default model.
    let command = cli.command.unwrap_or_else(|| {
        if cmd::workbench::display_available() {
            Command::Workbench(cmd::workbench::Args::default())
        } else {
            eprintln!(
                "(no display: the terminal tour; `tritlab workbench` opens the desktop workbench)"
            );
            Command::Tour(cmd::tour::Args {
                model: "default".into(),
                prompt: "To be, or not to be".into(),
                max_tokens: 24,
                plugins: None,
            })
        }
    });
    let threads = match thread_count(&command, cli.threads) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(n) = threads {
        // candle sizes its matrix-product split from this variable; rayon's pool is set to match.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
        // candle's element-wise ops otherwise keep their own spinning pool, which on few cores
        // competes with the matrix products for the same CPUs (about 10% of a training step).
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
        {
            eprintln!("error: cannot set up {n} threads: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match command {
        Command::Logits(a) => cmd::logits::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Train(a) => cmd::train::run(*a, threads.unwrap_or(1)),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Log(a) => cmd::replay::run_log(a),
        Command::Tour(a) => cmd::tour::run(a),
        Command::Workbench(a) => cmd::workbench::run(a),
        Command::Repl(a) => cmd::repl::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Kernel(a) => cmd::kernel::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
