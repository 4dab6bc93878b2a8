//! Subcommands. Each returns the process exit code, or an error that `main` prints.

pub mod help;
pub mod kernel;
pub mod repl;
pub mod run;
pub mod serve;
pub mod session;
pub mod tour;
pub mod workbench;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Resolves a model argument: `default` is the model tritlab ships (override with
/// `TRITLAB_DEFAULT_MODEL`); anything else is a path.
pub fn model_path(arg: impl AsRef<Path>) -> Result<PathBuf> {
    let arg = arg.as_ref();
    if arg != Path::new("default") {
        return Ok(arg.to_path_buf());
    }
    let dir = tritlab_assets::default_model()?;
    if !dir.join("config.json").is_file() {
        bail!(
            "the default model is not at {} (set TRITLAB_DEFAULT_MODEL to a model directory)",
            dir.display()
        );
    }
    Ok(dir)
}
