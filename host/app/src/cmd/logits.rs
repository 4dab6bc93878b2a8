//! `tritlab logits MODEL --ids 1,17,300 [--out FILE.safetensors | --json]`

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use tritlab_engine::Model;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (or a .safetensors file with config.json beside it).
    pub model: PathBuf,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<u32>,
    /// Write the logits as one f32 tensor `logits` [positions, vocab] to this safetensors file.
    #[arg(long, conflicts_with = "json")]
    pub out: Option<PathBuf>,
    /// Print the logits as JSON ({"shape": [positions, vocab], "logits": [[...], ...]}).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let model_dir = super::model_path(&args.model)?;
    if args.out.is_none() && !args.json {
        bail!("say where the logits go: --out FILE.safetensors or --json");
    }
    let model =
        Model::load(&model_dir).with_context(|| format!("loading {}", model_dir.display()))?;
    let mut cache = model.new_cache();
    let logits = model.forward(&args.ids, &mut cache)?;
    let (positions, vocab) = (args.ids.len(), model.vocab_size());
    if let Some(out) = &args.out {
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![positions, vocab],
            &bytes,
        )
        .context("building the logits tensor")?;
        safetensors::serialize_to_file([("logits", view)], None, out)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote logits [{positions}, {vocab}] to {}", out.display());
    }
    if args.json {
        let rows: Vec<&[f32]> = logits.chunks_exact(vocab).collect();
        let json =
            serde_json::json!({"shape": [positions, vocab], "ids": args.ids, "logits": rows});
        println!("{}", serde_json::to_string(&json)?);
    }
    Ok(ExitCode::SUCCESS)
}
