//! `gay-tracer`: colours every step with Gay.jl's deterministic stream.
//!
//! Generation step `i` (counted from 0) gets `color_at(seed, i + 1)`, so the
//! first token wears Gay.jl's first colour; training step `i` gets colour
//! `i + 1` of the child stream `split_seed(seed, 1)`. Each colour maps to a
//! trit by hue, so any trace has a GF(3) sum the triad checker can verify.

wit_bindgen::generate!({
    path: "../../wit",
    world: "tracer-plugin",
});

mod gay;

use std::cell::Cell;

use exports::tritlab::plugin::plugin::Guest as PluginGuest;
use exports::tritlab::plugin::tracer::Guest as TracerGuest;
use tritlab::plugin::types::{
    Annotation, GenerationStep, OptionSpec, OptionValue, PluginInfo, PluginKind, Rgba, TrainingStep,
};

/// Stream number of training colours under the user's seed.
const TRAINING_STREAM: u64 = 1;

thread_local! {
    /// The configured seed. A component instance runs on one thread.
    static SEED: Cell<u64> = const { Cell::new(gay::DEFAULT_SEED) };
}

struct GayTracer;

fn annotate(seed: u64, step: u64) -> Annotation {
    let colour = gay::color_at(seed, step.wrapping_add(1));
    Annotation {
        colour: Rgba {
            r: colour.r,
            g: colour.g,
            b: colour.b,
            a: 0xff,
        },
        trit: gay::hue_trit(colour),
        label: colour.hex(),
    }
}

impl PluginGuest for GayTracer {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "gay-tracer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Tracer,
            description:
                "Gay.jl colours per step (SplitMix64 color_at), each mapped to a trit by hue."
                    .into(),
            options: vec![OptionSpec {
                name: "seed".into(),
                description: "Seed of the colour stream (unsigned 64-bit, decimal or 0x hex)."
                    .into(),
                default_value: gay::DEFAULT_SEED.to_string(),
            }],
        }
    }

    fn configure(options: Vec<OptionValue>) -> Result<(), String> {
        for option in options {
            match option.name.as_str() {
                "seed" => {
                    let seed = parse_seed(&option.value)?;
                    SEED.with(|cell| cell.set(seed));
                }
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(())
    }
}

fn parse_seed(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|err| format!("seed `{text}` is not an unsigned 64-bit integer: {err}"))
}

impl TracerGuest for GayTracer {
    fn trace_generation(step: GenerationStep) -> Result<Annotation, String> {
        Ok(annotate(SEED.with(Cell::get), step.step))
    }

    fn trace_training(step: TrainingStep) -> Result<Annotation, String> {
        let seed = gay::split_seed(SEED.with(Cell::get), TRAINING_STREAM);
        Ok(annotate(seed, step.step))
    }
}

export!(GayTracer);
