//! `tritlab generate MODEL --prompt "..." [--max-tokens N] [--seed S] [--temperature T] ...`

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tritlab_engine::{
    generate, GenerateOptions, Model, SamplingOptions, StepControl, StopReason, Tokenizer,
};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json, *.safetensors, tokenizer.json), or `default`.
    pub model: PathBuf,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Extra token ids that end generation, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub stop: Vec<u32>,
    /// Keep going past the model's end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Do not let the tokenizer add special tokens (BOS) to the prompt.
    #[arg(long)]
    pub no_special_tokens: bool,
    /// Print timing to stderr at the end.
    #[arg(long)]
    pub stats: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let model_dir = super::model_path(&args.model)?;
    let model =
        Model::load(&model_dir).with_context(|| format!("loading {}", model_dir.display()))?;
    let tokenizer = Tokenizer::for_model(&model_dir)?;
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingOptions {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop_tokens: args.stop.clone(),
        stop_at_eos: !args.ignore_eos,
        add_special_tokens: !args.no_special_tokens,
        ..GenerateOptions::default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0usize;
    let mut write_err = None;
    let generation = generate(&model, &tokenizer, &args.prompt, &options, |step| {
        printed += step.text.len();
        match out
            .write_all(step.text.as_bytes())
            .and_then(|_| out.flush())
        {
            Ok(()) => StepControl::Continue,
            Err(e) => {
                // A closed pipe (e.g. `| head`) ends generation quietly.
                write_err = Some(e);
                StepControl::Stop
            }
        }
    })?;
    if write_err.is_none() {
        let rest = generation.text.get(printed..).unwrap_or("");
        let _ = writeln!(out, "{rest}");
    }
    if args.stats {
        let n = generation.tokens.len();
        eprintln!(
            "prompt {} tokens in {:.3}s ({:.1} tok/s); generated {n} tokens in {:.3}s ({:.2} tok/s); stop: {}",
            generation.prompt_tokens.len(),
            generation.prefill_seconds,
            generation.prompt_tokens.len() as f64 / generation.prefill_seconds.max(1e-9),
            generation.decode_seconds,
            n as f64 / generation.decode_seconds.max(1e-9),
            match generation.stop_reason {
                StopReason::MaxTokens => "max tokens".to_string(),
                StopReason::StopToken(t) => format!("stop token {t}"),
                StopReason::Callback => "output closed".to_string(),
                StopReason::ContextFull => "context full".to_string(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
