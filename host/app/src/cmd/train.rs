//! `tritlab train`: quantisation-aware training with a morphism log, resumable after Ctrl-C or
//! a crash.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tritlab_train::{
    NewRun, Preset, RunConfig, TokenizerSource, TrainOptions, Trainer, WeightQuant,
};

#[derive(clap::Args)]
pub struct Args {
    /// Continue the run in this directory from its newest checkpoint (all other options come
    /// from its run.json).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["data", "out"])]
    pub resume: Option<PathBuf>,
    /// Model architecture: tiny, small (8 layers, d_model 512, GQA 8/4, SwiGLU) or bitnet-2b4t.
    #[arg(long, default_value = "tiny", value_parser = parse_preset)]
    pub preset: Preset,
    /// Change the preset: decoder layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Change the preset: model width (d_model).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Change the preset: feed-forward width.
    #[arg(long)]
    pub intermediate: Option<usize>,
    /// Change the preset: query heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Change the preset: key/value heads.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Training text: a file, or a folder of text files.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Validation text; without it, --val-fraction of the training text is held out.
    #[arg(long)]
    pub val: Option<PathBuf>,
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// An existing tokenizer.json.
    #[arg(long, conflicts_with = "train_tokenizer")]
    pub tokenizer: Option<PathBuf>,
    /// Train a byte-level BPE tokenizer with this many ids on the training text (the default,
    /// with 2048, when --tokenizer is not given).
    #[arg(long, value_name = "VOCAB")]
    pub train_tokenizer: Option<usize>,
    #[arg(long, default_value_t = 200)]
    pub steps: u64,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    pub seq: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// The cosine decays to lr × this.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    #[arg(long, default_value_t = 1069)]
    pub seed: u64,
    /// Weight scales: one per tensor (BitNet b1.58) or one per 128 weights of a row.
    #[arg(long, default_value = "tensor", value_parser = parse_quant)]
    pub quant: WeightQuant,
    /// Snap latent weights to trit × scale after every step (the projection recipe).
    #[arg(long)]
    pub projection: bool,
    /// Also train a full-precision twin (same init, data and order) and report the gap.
    #[arg(long)]
    pub twin: bool,
    /// Latent checkpoint every this many steps.
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: u64,
    /// Keep only the newest this many checkpoints besides step 0 (0: keep all).
    #[arg(long, default_value_t = 0)]
    pub keep_checkpoints: usize,
    /// Validate every this many steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    /// Held-out sequences used by periodic validation (the final one uses all).
    #[arg(long, default_value_t = 64)]
    pub eval_sequences: usize,
    /// Run directory to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::parse(s).ok_or_else(|| format!("unknown preset `{s}` (tiny, small, bitnet-2b4t)"))
}

fn parse_quant(s: &str) -> Result<WeightQuant, String> {
    WeightQuant::parse(s)
        .ok_or_else(|| format!("unknown weight quantisation `{s}` (tensor, group128)"))
}

/// The thread count this command must run with: a resumed run's recorded one.
pub fn threads(args: &Args, requested: Option<usize>) -> Result<usize> {
    match &args.resume {
        Some(dir) => recorded_threads(dir, requested),
        None => Ok(requested.unwrap_or_else(default_threads)),
    }
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A run's recorded thread count; asking for another is an error, since results would differ.
pub fn recorded_threads(dir: &Path, requested: Option<usize>) -> Result<usize> {
    let config = RunConfig::read(dir)?;
    if let Some(n) = requested {
        if n != config.threads {
            bail!(
                "the run in {} was computed with {} threads; float sums depend on the thread count, so it must continue with --threads {}",
                dir.display(),
                config.threads,
                config.threads
            );
        }
    }
    Ok(config.threads)
}

/// Sets a flag on Ctrl-C (and SIGTERM); a second Ctrl-C exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without waiting for the step");
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to abort)…");
    });
    flag
}

pub fn run(args: Args, threads: usize) -> Result<ExitCode> {
    let interrupted = interrupt_flag();
    let mut trainer = match &args.resume {
        Some(dir) => {
            let (t, info) = Trainer::resume(dir)
                .with_context(|| format!("resuming the run in {}", dir.display()))?;
            eprintln!(
                "resuming {}: checkpoint of step {}, {} steps logged{}",
                dir.display(),
                info.checkpoint_step,
                info.logged_steps,
                if info.dropped_tail_bytes > 0 {
                    format!(
                        " (dropped a torn last record of {} bytes)",
                        info.dropped_tail_bytes
                    )
                } else {
                    String::new()
                }
            );
            t
        }
        None => {
            let new = new_run(&args, threads)?;
            eprintln!("preparing {} …", new.out.display());
            Trainer::create(&new)?
        }
    };
    let run_dir = trainer.run().dir.clone();
    describe(&trainer);
    if trainer.is_done() {
        eprintln!(
            "the run has already finished its {} steps",
            trainer.total_steps()
        );
    }

    let o = trainer.run().options().clone();
    let tokens_per_step = (o.batch_size * o.seq_len) as f64;
    let interactive = std::io::stderr().is_terminal();
    let bar = if interactive {
        let bar = ProgressBar::new(o.steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(trainer.step_count());
        bar
    } else {
        ProgressBar::hidden()
    };
    let every = (o.steps / 20).max(1);
    let started = Instant::now();
    let first_step = trainer.step_count();
    while !trainer.is_done() {
        let t0 = Instant::now();
        let report = trainer.step()?;
        let secs = t0.elapsed().as_secs_f64();
        let r = &report.record;
        let tps = tokens_per_step * if o.twin { 2.0 } else { 1.0 } / secs;
        let msg = format!(
            "loss {:.4}{} lr {:.2e} flips {} {:.0} tok/s{}",
            r.loss,
            report
                .twin_loss
                .map_or(String::new(), |l| format!(" (fp {l:.4})")),
            r.learning_rate,
            r.flipped_trits(),
            tps,
            if report.verified {
                " (re-computed, matches the log)"
            } else {
                ""
            }
        );
        bar.set_position(r.step);
        bar.set_message(msg.clone());
        if !interactive && (r.step % every == 0 || r.step == o.steps || r.step == 1) {
            eprintln!("step {}/{} {msg}", r.step, o.steps);
        }
        if o.eval_every > 0 && r.step % o.eval_every == 0 && r.step < o.steps {
            let e = trainer.evaluate(Some(o.eval_sequences))?;
            bar.println(eval_line(&e));
            if !interactive {
                eprintln!("{}", eval_line(&e));
            }
        }
        if interrupted.load(Ordering::SeqCst) && !trainer.is_done() {
            bar.finish_and_clear();
            let path = trainer.checkpoint()?;
            eprintln!(
                "stopped at step {} (checkpoint {}); continue with:\n  tritlab train --resume {}",
                trainer.step_count(),
                path.display(),
                run_dir.display()
            );
            return Ok(ExitCode::from(130));
        }
    }
    bar.finish_and_clear();
    let trained = trainer.step_count() - first_step;
    let elapsed = started.elapsed().as_secs_f64();
    if trained > 0 {
        eprintln!(
            "{trained} steps in {elapsed:.1} s: {:.2} steps/s, {:.0} tokens/s{}",
            trained as f64 / elapsed,
            trained as f64 * tokens_per_step / elapsed,
            if o.twin {
                " (ternary model and full-precision twin)"
            } else {
                ""
            }
        );
    }
    eprintln!("validating on all held-out sequences …");
    let e = trainer.evaluate(None)?;
    println!("{}", eval_line(&e));
    if let (Some(fp), true) = (e.twin_perplexity, e.twin_loss.is_some()) {
        println!(
            "ternary − full precision: loss {:+.4}, perplexity ×{:.3}",
            e.loss - e.twin_loss.unwrap_or(e.loss),
            e.perplexity / fp
        );
    }
    let model = trainer.export(None)?;
    println!(
        "world {} at step {}",
        trainer.world_hash(),
        trainer.step_count()
    );
    println!("model: {}", model.display());
    println!(
        "log:   {}",
        run_dir.join(tritlab_train::run::LOG_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn eval_line(e: &tritlab_train::Evaluation) -> String {
    let mut s = format!(
        "step {}: validation loss {:.4}, perplexity {:.2} ({} sequences)",
        e.step, e.loss, e.perplexity, e.sequences
    );
    if let (Some(l), Some(p)) = (e.twin_loss, e.twin_perplexity) {
        s.push_str(&format!("; full-precision twin {l:.4}, perplexity {p:.2}"));
    }
    s
}

fn describe(t: &Trainer) {
    let run = t.run();
    let c = &run.config.model;
    let o = run.options();
    let params = t.world().numel();
    let ternary: usize = t.ternary_layers().iter().map(|l| l.rows * l.cols).sum();
    eprintln!(
        "{} preset: {} layers, d_model {}, {}/{} heads, {} ({}), vocab {}; {:.2} M parameters ({:.2} M ternary)",
        o.preset.name(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_kv_heads(),
        c.hidden_act,
        if c.hidden_act == "silu" { "SwiGLU" } else { "ReLU²-GLU" },
        c.vocab_size,
        params as f64 / 1e6,
        ternary as f64 / 1e6
    );
    eprintln!(
        "data: {} training / {} validation tokens; {} steps of {}×{} tokens, lr {:.1e}, seed {}, {} threads{}{}",
        run.config.data.train_tokens,
        run.config.data.val_tokens,
        o.steps,
        o.batch_size,
        o.seq_len,
        o.learning_rate,
        o.seed,
        run.config.threads,
        if o.twin { ", with a full-precision twin" } else { "" },
        if o.projection { ", projection recipe" } else { "" }
    );
}

fn new_run(args: &Args, threads: usize) -> Result<NewRun> {
    let (Some(data), Some(out)) = (&args.data, &args.out) else {
        bail!("--data and --out are required to start a run");
    };
    let mut o = TrainOptions::new(args.preset);
    o.steps = args.steps;
    o.seq_len = args.seq;
    o.batch_size = args.batch;
    o.learning_rate = args.lr;
    o.warmup_steps = args.warmup.min(args.steps);
    o.min_lr_ratio = args.min_lr_ratio;
    o.weight_decay = args.weight_decay;
    o.grad_clip = args.clip;
    o.seed = args.seed;
    o.weight_quant = args.quant;
    o.projection = args.projection;
    o.twin = args.twin;
    o.checkpoint_every = args.checkpoint_every;
    o.keep_checkpoints = args.keep_checkpoints;
    o.eval_every = args.eval_every;
    o.eval_sequences = args.eval_sequences;
    let tokenizer = match (&args.tokenizer, args.train_tokenizer) {
        (Some(p), _) => TokenizerSource::File(p.clone()),
        (None, Some(n)) => TokenizerSource::Train(n),
        (None, None) => TokenizerSource::Train(2048),
    };
    Ok(NewRun {
        out: out.clone(),
        data: data.clone(),
        val: args.val.clone(),
        val_fraction: args.val_fraction,
        tokenizer,
        options: o,
        shape: tritlab_train::ShapeOverrides {
            layers: args.layers,
            hidden: args.hidden,
            intermediate: args.intermediate,
            heads: args.heads,
            kv_heads: args.kv_heads,
        },
        threads,
    })
}
