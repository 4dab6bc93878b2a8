//! `tritlab synth --shape bitnet-2b4t|tiny --seed S --out DIR`

use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use tritlab_engine::{synth, SynthShape};

#[derive(clap::Args)]
pub struct Args {
    /// bitnet-2b4t (microsoft/bitnet-b1.58-2B-4T's shapes) or tiny.
    #[arg(long)]
    pub shape: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let shape = SynthShape::parse(&args.shape).ok_or_else(|| {
        anyhow!(
            "unknown shape {:?} (expected bitnet-2b4t or tiny)",
            args.shape
        )
    })?;
    let r = synth(shape, args.seed, &args.out)?;
    println!(
        "wrote a random {} checkpoint (seed {}) to {}: {} ternary + {} float parameters, model.safetensors {:.1} MB",
        r.shape,
        r.seed,
        r.dir.display(),
        r.ternary_params,
        r.float_params,
        r.model_bytes as f64 / 1e6
    );
    println!("note: {}", r.tokenizer_note);
    println!("note: the weights are random: it runs and benchmarks like the real model but writes gibberish");
    Ok(ExitCode::SUCCESS)
}
