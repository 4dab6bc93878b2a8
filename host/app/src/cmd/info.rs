//! `tritlab info MODEL [--json]`: configuration and a per-layer table of trit counts.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use tritlab_engine::Model;

#[derive(clap::Args)]
pub struct Args {
    pub model: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let model_dir = super::model_path(&args.model)?;
    let model =
        Model::load(&model_dir).with_context(|| format!("loading {}", model_dir.display()))?;
    let c = model.config();
    let layers = model.layer_stats();
    let total = model.total_trits();
    if args.json {
        let json = serde_json::json!({
            "config": c,
            "weight_format": model.weight_format(),
            "ternary_bytes": model.ternary_bytes(),
            "float_bytes": model.float_bytes(),
            "layers": layers,
            "total": total,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", model.path().display());
    println!(
        "bitnet: {} layers, hidden {}, intermediate {}, heads {} (kv {}, head_dim {}), vocab {}, context {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_kv_heads(),
        c.head_dim(),
        c.vocab_size,
        c.max_position_embeddings
    );
    println!(
        "rope_theta {}, rms_norm_eps {}, tied embeddings: {}, weights: {:?}, embedding dtype {:?}",
        c.rope_theta(),
        c.rms_norm_eps,
        c.tie_word_embeddings,
        model.weight_format(),
        model.embedding().dtype()
    );
    println!(
        "ternary weights {:.1} MB in the kernels' layout, float weights {:.1} MB, KV cache {} KB per position",
        model.ternary_bytes() as f64 / 1e6,
        model.float_bytes() as f64 / 1e6,
        model.kv_bytes_per_position() / 1024
    );
    println!();
    println!(
        "{:>5} {:>14} {:>14} {:>14} {:>7} {:>4}",
        "layer", "-1", "0", "+1", "zeros", "gf3"
    );
    for l in &layers {
        println!(
            "{:>5} {:>14} {:>14} {:>14} {:>6.2}% {:>4}",
            l.layer,
            l.total.neg,
            l.total.zero,
            l.total.pos,
            100.0 * l.total.zero_fraction(),
            l.total.gf3_sum
        );
    }
    println!(
        "{:>5} {:>14} {:>14} {:>14} {:>6.2}% {:>4}",
        "all",
        total.neg,
        total.zero,
        total.pos,
        100.0 * total.zero_fraction(),
        total.gf3_sum
    );
    Ok(ExitCode::SUCCESS)
}
