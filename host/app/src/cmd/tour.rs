//! `tritlab` with no arguments, or `tritlab tour`: a walk through the engine in the terminal.
//!
//! Kernels on this CPU (with a live check that every SIMD path equals the scalar reference),
//! the default model's layers and their trits, what `verify` says of it, and a generation whose
//! every token is coloured by the gay-tracer plugin and checked by the triad-checker; then the
//! last training steps that made the model, undone and replayed through their trit flips.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tritlab_engine::layout::{ModelTensor, Proj};
use tritlab_engine::{
    generate, verify, GenerateOptions, Model, StepControl, Tokenizer, WeightFormat,
};
use tritlab_kernels::{Backend, QuantizedActivations, TernaryMatrix, WeightScale};
use tritlab_plugin_host::{AnnotatedStep, CheckSubject, HostConfig, PluginHost, VerdictStatus};

use super::model_path;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Model directory, or `default`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Prompt for the generation step.
    #[arg(long, default_value = "To be, or not to be")]
    pub prompt: String,
    #[arg(long, default_value_t = 24)]
    pub max_tokens: usize,
    /// Folder of built plugins (default: the plugins this tritlab ships).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
}

/// Whether to write ANSI colours: only to a terminal, and never when NO_COLOR is set.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn heading(n: usize, title: &str) {
    if colour() {
        println!("\n\x1b[1m{n}. {title}\x1b[0m");
    } else {
        println!("\n{n}. {title}");
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    println!("tritlab — a workbench for ternary (BitNet b1.58) language models");
    println!("This is the terminal tour; `tritlab --help` lists every command.");

    heading(1, "Kernels");
    kernels()?;

    heading(2, "Model");
    let dir = model_path(&args.model)?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let t = Instant::now();
    let model = Model::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let tokenizer = Tokenizer::for_model(&dir)?;
    let c = model.config();
    println!(
        "{} — {} layers, hidden {}, {} heads / {} KV heads, vocab {}, {}; loaded in {:.0} ms",
        dir.display(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads.unwrap_or(c.num_attention_heads),
        c.vocab_size,
        match model.weight_format() {
            WeightFormat::Packed { .. } => "packed ternary weights (offline)",
            WeightFormat::Latent => "latent weights ternarised at load (online)",
        },
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>6}",
        "layer", "-1", "0", "+1", "GF(3)"
    );
    for layer in model.layer_stats() {
        let s = &layer.total;
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>6}",
            layer.layer, s.neg, s.zero, s.pos, s.gf3_sum
        );
    }

    heading(3, "Verify");
    let report = verify(&dir)?;
    println!(
        "{}/{} linear tensors ternary, {} of {} stored values; Σ trits mod 3 = {}",
        report.total.ternary_tensors,
        report.total.tensors,
        report.total.ternary_values,
        report.total.values,
        report.total.trits.gf3_sum
    );
    println!("verdict: {}", report.summary);

    heading(4, "Generate, traced by plugins");
    let mut host = load_plugins(args.plugins.as_deref());
    generate_traced(&model, &tokenizer, &args, host.as_mut())?;

    heading(5, "Training steps, rewound and replayed");
    training_steps(&dir, host.as_mut())?;
    println!();
    Ok(ExitCode::SUCCESS)
}

/// Walks the last logged training steps of the model backwards and forwards again through their
/// trit flips (the model ships an excerpt of the morphism log that made it).
fn training_steps(dir: &Path, mut host: Option<&mut PluginHost>) -> Result<()> {
    let log = dir.join(tritlab_train::run::LOG_FILE);
    if !log.is_file() {
        println!("({} has no morphism log to replay)", dir.display());
        return Ok(());
    }
    let mut timeline = tritlab_train::Timeline::open_model(dir, &log)?;
    let last = timeline.last_step();
    let back = 3.min(last - timeline.first_step());
    println!(
        "the model is the world after step {last}; its log holds steps {}..={last}",
        timeline.first_step() + 1
    );
    let probe = ModelTensor::proj(0, Proj::Up).hf_name();
    let at_end = timeline.layer(&probe).map(|l| l.trits.clone());
    for _ in 0..back {
        if let Some(r) = timeline.back()? {
            let colour = host.as_deref_mut().and_then(|h| {
                h.trace_training("gay-tracer", &tritlab_session::convert::training_step(r))
                    .ok()
            });
            let c = colour.map(|a| a.colour.hex()).unwrap_or_default();
            println!(
                "undo step {:>5}: loss {:.4}, {:>6} trits flipped back, world {}… {c}",
                r.step,
                r.loss,
                r.flipped_trits(),
                &r.world_before.to_string()[..12]
            );
        }
    }
    timeline.seek(last)?;
    let same = timeline.layer(&probe).map(|l| l.trits.clone()) == at_end;
    println!(
        "replayed forward to step {last}: {probe} {} the shipped weights",
        if same { "matches" } else { "DIFFERS from" }
    );
    Ok(())
}

/// Reports the backends and checks, on a product with awkward sizes, that they agree bit for bit.
fn kernels() -> Result<()> {
    Backend::requested().context("reading TRITLAB_KERNEL")?;
    let supported = Backend::supported();
    let names: Vec<_> = supported.iter().map(|b| b.name()).collect();
    println!(
        "active backend: {} (this CPU supports: {})",
        Backend::active(),
        names.join(", ")
    );
    let (rows, cols) = (333, 1000);
    let trits: Vec<i8> = (0..rows * cols)
        .map(|i| ((i * 7 + i / 11) % 3) as i8 - 1)
        .collect();
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let m = TernaryMatrix::from_trits(&trits, rows, cols, WeightScale::PerTensor(0.05))?;
    let q = QuantizedActivations::quantize(&x, 1, cols)?;
    let mut reference = vec![0.0f32; rows];
    m.matmul_with(Backend::Scalar, &q, &mut reference)?;
    for &b in &supported {
        let mut y = vec![0.0f32; rows];
        m.matmul_with(b, &q, &mut y)?;
        let same = y
            .iter()
            .zip(&reference)
            .all(|(a, r)| a.to_bits() == r.to_bits());
        println!(
            "  {:<12} {}",
            b.name(),
            if same {
                "equals the scalar reference bit for bit"
            } else {
                "DIFFERS from the scalar reference"
            }
        );
        anyhow::ensure!(
            same,
            "kernel backend {b} disagrees with the scalar reference"
        );
    }
    Ok(())
}

/// Loads the bundled plugins; the tour goes on uncoloured when they are not built.
fn load_plugins(dir: Option<&Path>) -> Option<PluginHost> {
    let dir = match dir
        .map(Path::to_path_buf)
        .map_or_else(super::bundled_plugin_dir, Ok)
    {
        Ok(dir) => dir,
        Err(e) => {
            println!("({e}; the tokens stay uncoloured)");
            return None;
        }
    };
    if !dir.join("gay-tracer.wasm").is_file() {
        println!(
            "(no plugins in {}: run scripts/build-plugins.sh to colour the tokens)",
            dir.display()
        );
        return None;
    }
    let mut host = match PluginHost::new(HostConfig::default()) {
        Ok(host) => host,
        Err(e) => {
            println!("(plugin host unavailable: {e})");
            return None;
        }
    };
    for result in host.load_dir(&dir) {
        if let Err(e) = result {
            println!("(plugin not loaded: {e})");
        }
    }
    let names: Vec<String> = host.plugins().into_iter().map(|p| p.info.name).collect();
    println!("plugins: {}", names.join(", "));
    Some(host)
}

fn generate_traced(
    model: &Model,
    tokenizer: &Tokenizer,
    args: &Args,
    mut host: Option<&mut PluginHost>,
) -> Result<()> {
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let colour = colour();
    print!("{}", args.prompt);
    std::io::stdout().flush().ok();
    let mut trace = Vec::new();
    let mut trace_errors = Vec::new();
    let generation = generate(model, tokenizer, &args.prompt, &options, |step| {
        let annotation = host.as_deref_mut().map(|h| {
            h.trace_generation(
                "gay-tracer",
                &tritlab_session::convert::generation_step(step),
            )
        });
        match annotation {
            Some(Ok(a)) => {
                let c = a.colour;
                // A token whose bytes do not finish a character yet still gets its coloured cell.
                let text = if step.text.is_empty() {
                    "·"
                } else {
                    step.text.as_str()
                };
                if colour {
                    // Background in the tracer's colour, text black or white for contrast.
                    let luma = 0.299 * c.r as f32 + 0.587 * c.g as f32 + 0.114 * c.b as f32;
                    let fg = if luma > 140.0 { "30" } else { "97" };
                    print!("\x1b[48;2;{};{};{}m\x1b[{fg}m{text}\x1b[0m", c.r, c.g, c.b);
                } else {
                    print!("[{text}|{}]", c.hex());
                }
                trace.push(AnnotatedStep {
                    step: step.index as u64,
                    annotation: a,
                });
            }
            Some(Err(e)) => {
                trace_errors.push(e.to_string());
                print!("{}", step.text);
            }
            None => print!("{}", step.text),
        }
        std::io::stdout().flush().ok();
        StepControl::Continue
    })?;
    println!();
    let n = generation.tokens.len();
    println!(
        "{n} tokens, prefill {:.1} ms, decode {:.1} tok/s",
        generation.prefill_seconds * 1e3,
        n as f64 / generation.decode_seconds.max(1e-9)
    );
    for e in trace_errors.iter().take(3) {
        println!("tracer error: {e}");
    }
    if let Some(host) = host {
        let trits: Vec<String> = trace
            .iter()
            .map(|s| format!("{:+}", s.annotation.trit.value()))
            .collect();
        println!("tracer trits: {}", trits.join(" "));
        match host.check("triad-checker", &CheckSubject::Trace(trace)) {
            Ok(verdicts) => {
                for v in verdicts {
                    let mark = if v.status == VerdictStatus::Ok {
                        "ok"
                    } else {
                        "violated"
                    };
                    println!("triad-checker {}: {mark} — {}", v.check, v.message);
                }
            }
            Err(e) => println!("triad-checker failed: {e}"),
        }
    }
    Ok(())
}
