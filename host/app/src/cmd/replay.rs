//! `tritlab replay`: prove a run's log by recomputing it, or rebuild the model at any step;
//! `tritlab log`: read a morphism log.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tritlab_morphism::StepRecord;
use tritlab_train::replay;

#[derive(clap::Args)]
pub struct Args {
    /// The run directory (as written by `tritlab train --out`).
    pub run: PathBuf,
    /// Recompute the steps and check every world hash against the log.
    #[arg(long, conflicts_with = "export")]
    pub verify: bool,
    /// First step to check (default 1).
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step to check, or the step to export (default: the last logged step).
    #[arg(long)]
    pub to: Option<u64>,
    /// Write the model as it was at --to STEP into this directory.
    #[arg(long, value_name = "DIR", requires = "to")]
    pub export: Option<PathBuf>,
}

fn progress_bar(label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{label} {{bar:30.cyan/blue}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn run(args: Args) -> Result<ExitCode> {
    let bar = progress_bar("recomputing");
    let mut tick = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let started = Instant::now();
    if let Some(out) = &args.export {
        let step = args.to.unwrap_or(0);
        replay::export_at(&args.run, step, out, &mut tick)
            .with_context(|| format!("exporting step {step} of {}", args.run.display()))?;
        bar.finish_and_clear();
        println!(
            "step {step}: latent weights recomputed and checked against the log, trits rebuilt from the flips and compared; model written to {}",
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !args.verify {
        bail!("say what to replay: --verify [--from A --to B], or --to STEP --export DIR (and `tritlab log` lists the steps)");
    }
    let report = replay::verify(&args.run, args.from, args.to, None, &mut tick)
        .with_context(|| format!("verifying {}", args.run.display()))?;
    bar.finish_and_clear();
    println!(
        "verified steps {}..={} of {}: recomputed {} steps from the checkpoint of step {} in {:.1} s; every world hash, loss, batch and flip set matches the log",
        report.from,
        report.to,
        args.run.display(),
        report.recomputed,
        report.checkpoint,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct LogArgs {
    /// A run directory, a model directory holding `morphisms.tml`, or a `.tml` file.
    pub path: PathBuf,
    /// Show one step in full: per-layer transition matrices, trit counts, GF(3) sums, scales.
    #[arg(long)]
    pub step: Option<u64>,
    /// Print records as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// First step to list (or to write with --write).
    #[arg(long)]
    pub from: Option<u64>,
    /// Last step to list (or to write with --write).
    #[arg(long)]
    pub to: Option<u64>,
    /// Write the steps --from..=--to as a new log file (an excerpt to ship beside a model).
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

/// The log file a path names.
pub fn log_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(tritlab_train::run::LOG_FILE)
    } else {
        path.to_path_buf()
    }
}

pub fn record_json(r: &StepRecord) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = r
        .layers
        .iter()
        .map(|l| {
            let t = l.flips.transitions();
            serde_json::json!({
                "name": l.name,
                "scale_before": l.scale_before,
                "scale_after": l.scale_after,
                "transitions": t.counts,
                "flips": l.flips.len(),
                "counts_before": [l.counts_before().neg, l.counts_before().zero, l.counts_before().pos],
                "counts_after": [l.counts_after().neg, l.counts_after().zero, l.counts_after().pos],
                "gf3_before": l.gf3_before(),
                "gf3_after": l.gf3_after(),
            })
        })
        .collect();
    serde_json::json!({
        "step": r.step,
        "learning_rate": r.learning_rate,
        "loss": r.loss,
        "grad_norm": r.grad_norm,
        "batch_hash": r.batch_hash.to_string(),
        "batch_position": r.batch_position,
        "world_before": r.world_before.to_string(),
        "world_after": r.world_after.to_string(),
        "flipped_trits": r.flipped_trits(),
        "layers": layers,
    })
}

pub fn run_log(args: LogArgs) -> Result<ExitCode> {
    let file = log_file(&args.path);
    if let Some(dst) = &args.write {
        let n = tritlab_train::run::write_excerpt(
            &file,
            dst,
            args.from.unwrap_or(1),
            args.to.unwrap_or(u64::MAX),
        )?;
        println!("wrote {n} records to {}", dst.display());
        return Ok(ExitCode::SUCCESS);
    }
    let (mut records, tail) = tritlab_train::run::read_log(&file)
        .with_context(|| format!("reading {}", file.display()))?;
    records.retain(|r| r.step >= args.from.unwrap_or(0) && r.step <= args.to.unwrap_or(u64::MAX));
    if let tritlab_morphism::TailStatus::Torn { dropped_bytes, .. } = tail {
        eprintln!("note: the log ends in a torn record ({dropped_bytes} bytes), ignored");
    }
    if let Some(step) = args.step {
        let Some(r) = records.iter().find(|r| r.step == step) else {
            bail!(
                "step {step} is not in {} (it holds steps {}..={})",
                file.display(),
                records.first().map_or(0, |r| r.step),
                records.last().map_or(0, |r| r.step)
            );
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&record_json(r))?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "step {}: loss {:.4}, lr {:.3e}, grad norm {:.4}, {} trits flipped",
            r.step,
            r.loss,
            r.learning_rate,
            r.grad_norm,
            r.flipped_trits()
        );
        println!("world {} → {}", r.world_before, r.world_after);
        println!("batch {} at sequence {}", r.batch_hash, r.batch_position);
        println!();
        println!(
            "{:<40} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>7}",
            "layer", "-1→0", "-1→+1", "0→-1", "0→+1", "+1→-1", "+1→0", "scale", "Δscale", "gf3"
        );
        for l in &r.layers {
            let c = &l.flips.transitions().counts;
            println!(
                "{:<40} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9.3e} {:>+9.2e} {:>3}→{}",
                l.name.trim_start_matches("model."),
                c[0][1],
                c[0][2],
                c[1][0],
                c[1][2],
                c[2][0],
                c[2][1],
                l.scale_after,
                l.scale_after - l.scale_before,
                l.gf3_before(),
                l.gf3_after()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        for r in &records {
            println!("{}", record_json(r));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>9} {:>4}  world after",
        "step", "lr", "loss", "grad", "flips", "gf3"
    );
    for r in &records {
        println!(
            "{:>6} {:>10.3e} {:>9.4} {:>9.4} {:>9} {:>4}  {}",
            r.step,
            r.learning_rate,
            r.loss,
            r.grad_norm,
            r.flipped_trits(),
            r.gf3_after(),
            &r.world_after.to_string()[..16]
        );
    }
    Ok(ExitCode::SUCCESS)
}
