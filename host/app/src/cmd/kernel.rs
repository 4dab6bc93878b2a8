//! `tritlab kernel`: the command language as a Jupyter kernel, and its kernelspec.
//!
//! `tritlab kernel install` writes the kernelspec that makes JupyterLab, VS Code, `jupyter
//! console` and nbclient start `tritlab kernel --connection-file FILE` (this binary, by its
//! absolute path); `tritlab kernel uninstall` removes it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tritlab_kernel::spec::{self, Location};
use tritlab_kernel::{KernelOptions, RustFactory};

use crate::console;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The connection file Jupyter writes for the kernel (ports, key, signature scheme).
    #[arg(long, short = 'f', value_name = "FILE")]
    connection_file: Option<PathBuf>,
    /// Start without loading the default model (`load default` loads it later).
    #[arg(long)]
    no_default_model: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Write the kernelspec (kernel.json naming this binary, logos); `--user` unless told.
    Install(Where),
    /// Remove the kernelspec from where `install` put it.
    Uninstall(Where),
}

/// Which Jupyter data directory: the user's (the default), the active Python environment's, or
/// one under a prefix.
#[derive(clap::Args)]
#[group(multiple = false)]
struct Where {
    /// The user's Jupyter data directory (the default).
    #[arg(long)]
    user: bool,
    /// The active Python environment (virtualenv or conda): PREFIX/share/jupyter.
    #[arg(long)]
    sys_prefix: bool,
    /// DIR/share/jupyter.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
}

impl Where {
    fn location(&self) -> Location {
        match (&self.prefix, self.sys_prefix, self.user) {
            (Some(dir), _, _) => Location::Prefix(dir.clone()),
            (None, true, _) => Location::SysPrefix,
            // `--user`, and where nothing is said.
            (None, false, _) => Location::User,
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    match (args.action, args.connection_file) {
        (Some(Action::Install(w)), _) => {
            // Jupyter starts the kernel from anywhere: name this binary by its absolute path.
            let exe = std::env::current_exe()
                .and_then(|p| p.canonicalize())
                .context("finding the tritlab binary's path")?;
            let dir = spec::install(&w.location(), &exe)?;
            println!("installed the tritlab kernelspec in {}", dir.display());
        }
        (Some(Action::Uninstall(w)), _) => match spec::uninstall(&w.location())? {
            Some(dir) => println!("removed the tritlab kernelspec from {}", dir.display()),
            None => println!(
                "no tritlab kernelspec in {}",
                w.location().kernel_dir()?.display()
            ),
        },
        (None, Some(file)) => {
            let options = KernelOptions {
                session: console::session_config(!args.no_default_model),
                rust: rust_cells(),
            };
            tritlab_kernel::run(&file, options)?;
        }
        (None, None) => bail!(
            "`tritlab kernel` needs --connection-file FILE (Jupyter passes it), or `install` / \
             `uninstall`"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Rust cells in the runner process, one runner per session. A notebook cell waits while the
/// runner is first built (the cell shows as busy, and interrupt stops the wait).
fn rust_cells() -> RustFactory {
    Arc::new(|| {
        Some(Box::new(tritlab_rust_cells::SidecarEvaluator::new(
            tritlab_rust_cells::Preparation::Wait,
        )) as Box<dyn tritlab_session::RustEvaluator>)
    })
}
