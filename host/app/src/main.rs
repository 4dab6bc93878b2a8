//! The `tritlab` command line.
//!
//! `tritlab` without arguments opens the workbench on a desktop, and runs the terminal tour
//! where there is no display. The subcommands that are commands of the session's language
//! (`info`, `generate`, `train`, `replay`, `synth`, `export`/`convert`, …;
//! [`cmd::session::SUBCOMMANDS`]) take their arguments as the language does and run through the
//! same session as the REPL, workbooks, the workbench and Jupyter; `--json` prints their typed
//! outputs. The others (`tour`, `repl`, `run`, `workbench`, `kernel`, `serve`) are faces of
//! their own, one module each in `cmd/`.
//!
//! Exit codes: 0 success; 2 a command that does not parse or cannot be carried out as asked
//! (clap's own usage errors are 2 too); 130 cancelled with Ctrl-C; 1 any other failure.

mod cmd;
mod console;
mod interrupt;
mod render;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use std::process::ExitCode;

#[derive(clap::Parser)]
#[command(disable_help_subcommand = true)]
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
    /// The command language's reference: every command, or one (`--markdown`: docs/COMMANDS.md).
    Help(cmd::help::Args),
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
    /// An OpenAI-compatible HTTP server with continuous batching (completions, chat, streaming).
    Serve(cmd::serve::Args),
}

/// Sets the worker thread count of this process: rayon's global pool and candle's split.
pub fn use_threads(n: usize) -> anyhow::Result<()> {
    // candle sizes its matrix-product split from this variable; rayon's pool is set to match.
    // Nothing else runs yet, so changing the environment races with no one.
    std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    // candle's element-wise ops otherwise keep their own spinning pool, which on few cores
    // competes with the matrix products for the same CPUs (about 10% of a training step).
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot set up {n} threads: {e}"))
}

/// The clap command: the derived subcommands plus one per session command, described from the
/// command table (its summary, and its whole `help` text for `--help`).
fn cli_command() -> clap::Command {
    let mut command = Cli::command();
    for name in cmd::session::SUBCOMMANDS {
        let spec = tritlab_session::lang::find_command(name);
        let about = spec.map(|s| s.summary).unwrap_or_default();
        let help = tritlab_session::lang::help_command(name).unwrap_or_default();
        command = command.subcommand(
            clap::Command::new(*name)
                .about(about)
                .after_help(format!(
                    "{help}\n\nThis face also takes: --model default|PATH (load it first), \
                     --head-precision exact|bf16|int8|q6|q4 (how it keeps its output projection), \
                     --packing i2|t1 (how it keeps its ternary layers), \
                     --run DIR (open that training run first), --json (print the outputs as JSON)."
                ))
                .disable_help_flag(false)
                .arg(
                    clap::Arg::new("words")
                        .num_args(0..)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true)
                        .value_name("ARGS")
                        .help("the command's arguments and options, as `tritlab help` lists them"),
                ),
        );
    }
    command
}

fn main() -> ExitCode {
    // Exit quietly when the reader of our output goes away (`tritlab log RUN | head`), as Unix
    // tools do, instead of failing on the next print.
    sigpipe::reset();
    let matches = cli_command().get_matches();
    if let Some((name, sub)) = matches.subcommand() {
        if cmd::session::SUBCOMMANDS.contains(&name) {
            let words: Vec<String> = sub
                .get_many::<String>("words")
                .map(|w| w.cloned().collect())
                .unwrap_or_default();
            let threads = sub
                .get_one::<usize>("threads")
                .or(matches.get_one::<usize>("threads"))
                .copied();
            return match cmd::session::run(name, &words, threads) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
    if let Some(n) = cli.threads {
        if let Err(e) = use_threads(n) {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let result = match command {
        Command::Help(a) => cmd::help::run(a),
        Command::Tour(a) => cmd::tour::run(a),
        Command::Workbench(a) => cmd::workbench::run(a),
        Command::Repl(a) => cmd::repl::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Kernel(a) => cmd::kernel::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
