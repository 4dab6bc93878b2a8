//! Subcommands. Each returns the process exit code, or an error that `main` prints.

pub mod convert;
pub mod generate;
pub mod info;
pub mod kernel;
pub mod logits;
pub mod repl;
pub mod replay;
pub mod run;
pub mod synth;
pub mod tour;
pub mod train;
pub mod verify;
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

/// The plugins tritlab ships (override with `TRITLAB_PLUGIN_DIR`).
pub fn bundled_plugin_dir() -> Result<PathBuf> {
    tritlab_assets::bundled_plugin_dir()?.ok_or_else(|| {
        anyhow::anyhow!(
            "this tritlab was built without its plugins: run scripts/build-plugins.sh, then build \
             again (or set TRITLAB_PLUGIN_DIR)"
        )
    })
}
