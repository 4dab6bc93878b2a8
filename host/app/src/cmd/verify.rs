//! `tritlab verify PATH [--json]`: exits 1 for a checkpoint that claims BitNet and is not ternary.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use tritlab_engine::verify;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory or .safetensors file.
    pub path: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let report = verify::verify(super::model_path(&args.path)?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.path.display());
        println!(
            "model_type: {}   quantization: {}   linear class: {}",
            report.model_type.as_deref().unwrap_or("-"),
            report.quantization_mode.as_deref().unwrap_or("-"),
            report.linear_class.as_deref().unwrap_or("-")
        );
        println!();
        println!(
            "{:<44} {:>6} {:>14} {:>9} {:>8} {:>12} {:>12} {:>12} {:>4}",
            "tensor", "dtype", "shape", "ternary", "scale", "-1", "0", "+1", "gf3"
        );
        for t in &report.linear {
            let pct = 100.0 * t.ternary_values as f64 / t.values.max(1) as f64;
            println!(
                "{:<44} {:>6} {:>14} {:>8.2}% {:>8} {:>12} {:>12} {:>12} {:>4}",
                t.name,
                t.dtype,
                format!("{}x{}", t.rows, t.cols),
                pct,
                t.scale.map_or("-".to_string(), |s| format!("{s:.3e}")),
                t.trits.neg,
                t.trits.zero,
                t.trits.pos,
                t.trits.gf3_sum
            );
        }
        let tt = &report.total;
        println!(
            "{:<44} {:>6} {:>14} {:>8.2}% {:>8} {:>12} {:>12} {:>12} {:>4}",
            format!(
                "total ({} of {} tensors ternary)",
                tt.ternary_tensors, tt.tensors
            ),
            "",
            tt.values,
            100.0 * tt.ternary_values as f64 / tt.values.max(1) as f64,
            "",
            tt.trits.neg,
            tt.trits.zero,
            tt.trits.pos,
            tt.trits.gf3_sum
        );
        println!(
            "full precision (not quantised by BitNet): {} tensors",
            report.full_precision.len()
        );
        println!();
        println!("verdict: {}", report.summary);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
