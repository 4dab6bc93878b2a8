//! Subcommands. Each returns the process exit code, or an error that `main` prints.

pub mod convert;
pub mod help;
pub mod kernel;
pub mod logits;
pub mod repl;
pub mod run;
pub mod session;
pub mod synth;
pub mod tour;
pub mod workbench;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The checkout this binary was built from: where the default model and the built plugins live
/// when tritlab runs from its source tree (`cargo run`).
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Resolves a model argument: `default` is the model tritlab ships (override with
/// `TRITLAB_DEFAULT_MODEL`); anything else is a path.
pub fn model_path(arg: impl AsRef<Path>) -> Result<PathBuf> {
    let arg = arg.as_ref();
    if arg != Path::new("default") {
        return Ok(arg.to_path_buf());
    }
    let dir = match std::env::var_os("TRITLAB_DEFAULT_MODEL") {
        Some(dir) => PathBuf::from(dir),
        None => source_root().join("assets/default-model"),
    };
    if !dir.join("config.json").is_file() {
        bail!(
            "the default model is not at {} (set TRITLAB_DEFAULT_MODEL to a model directory)",
            dir.display()
        );
    }
    Ok(dir)
}
