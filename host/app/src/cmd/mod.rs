//! Subcommands. Each returns the process exit code, or an error that `main` prints.

pub mod generate;
pub mod info;
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

/// Where `scripts/build-plugins.sh` puts the bundled plugins (override with `TRITLAB_PLUGIN_DIR`).
pub fn bundled_plugin_dir() -> PathBuf {
    match std::env::var_os("TRITLAB_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => source_root().join("target/plugins"),
    }
}

/// A logged training step in the plugin contract's terms (for tracers).
pub fn tour_training_step(r: &tritlab_morphism::StepRecord) -> tritlab_plugin_host::TrainingStep {
    let mut counts = tritlab_plugin_host::TritCounts::default();
    let layers = r
        .layers
        .iter()
        .map(|l| {
            let c = l.counts_after();
            let lc = tritlab_plugin_host::TritCounts {
                negative: c.neg,
                zero: c.zero,
                positive: c.pos,
            };
            counts.negative += c.neg;
            counts.zero += c.zero;
            counts.positive += c.pos;
            tritlab_plugin_host::LayerTransition {
                layer: l.name.clone(),
                transitions: l.flips.transitions().counts,
                counts: lc,
                gf3_sum: l.gf3_after(),
            }
        })
        .collect();
    tritlab_plugin_host::TrainingStep {
        step: r.step,
        loss: r.loss as f32,
        learning_rate: r.learning_rate as f32,
        grad_norm: r.grad_norm as f32,
        world_hash_before: r.world_before.to_string(),
        world_hash_after: r.world_after.to_string(),
        layers,
        gf3_sum: counts.gf3_sum(),
        counts,
    }
}
