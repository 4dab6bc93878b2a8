//! `tritlab convert SRC OUT --to gguf-tq2_0|gguf-tq1_0|gguf-i2_s|hf [--embed-type f16|...]`:
//! writes any model tritlab loads (a Hugging Face directory, a GGUF file, a training run's model,
//! `default`) as GGUF with ternary blocks or as a transformers offline checkpoint. Trits and
//! scales are copied, never requantised.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tritlab_engine::{GgmlType, Model, Tokenizer};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory, .gguf file, training run directory, or `default`.
    pub src: PathBuf,
    /// Output: a .gguf file, or a directory for `--to hf`.
    pub out: PathBuf,
    /// gguf-tq2_0 (default), gguf-tq1_0, gguf-i2_s or hf.
    #[arg(long, default_value = "gguf-tq2_0")]
    pub to: String,
    /// Type of the embedding and untied output in GGUF: f16 (default), bf16, f32, q8_0, q6_k.
    #[arg(long, default_value = "f16")]
    pub embed_type: String,
    /// Print what each tensor became as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A training run directory holds its exported model in `model/`.
fn resolve_source(p: &Path) -> PathBuf {
    if p.join("run.json").is_file() && p.join("model").is_dir() {
        return p.join("model");
    }
    p.to_path_buf()
}

pub fn run(args: Args) -> Result<ExitCode> {
    let src = resolve_source(&super::model_path(&args.src)?);
    let target = match args.to.as_str() {
        "gguf-tq2_0" => Some(GgmlType::TQ2_0),
        "gguf-tq1_0" => Some(GgmlType::TQ1_0),
        "gguf-i2_s" => Some(GgmlType::I2S),
        "hf" => None,
        other => bail!("unknown --to {other:?} (gguf-tq2_0, gguf-tq1_0, gguf-i2_s or hf)"),
    };
    let embed = match args.embed_type.as_str() {
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::BF16,
        "f32" => GgmlType::F32,
        "q8_0" => GgmlType::Q8_0,
        "q6_k" => GgmlType::Q6K,
        other => bail!("unknown --embed-type {other:?} (f16, bf16, f32, q8_0 or q6_k)"),
    };
    let model = Model::load(&src).with_context(|| format!("loading {}", src.display()))?;
    // A model without a tokenizer still converts; its file just has no vocabulary.
    let tokenizer = match Tokenizer::for_model(&src) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: no tokenizer written: {e}");
            None
        }
    };
    let template = tritlab_engine::chat_template_for(&src);
    match target {
        Some(ty) => {
            let r = model.export_gguf(
                &args.out,
                ty,
                embed,
                tokenizer.as_ref(),
                template.as_deref(),
            )?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {} ({} tensors, {:.2} MB, architecture {:?})",
                    args.out.display(),
                    r.tensors.len(),
                    r.bytes as f64 / 1e6,
                    r.architecture
                );
                for t in r.tensors.iter().filter(|t| t.note.is_some()) {
                    println!(
                        "  {} as {}: {}",
                        t.name,
                        t.ty,
                        t.note.as_deref().unwrap_or("")
                    );
                }
            }
        }
        None => {
            model.export_hf(&args.out, tokenizer.as_ref(), template.as_deref())?;
            println!(
                "wrote {} (transformers offline checkpoint)",
                args.out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
