//! A minimal tracer plugin, and the template `scripts/new-plugin.sh` copies.
//!
//! It colours each generated token by the sign of its step's trit balance
//! (more +1 than -1 weights: warm; more -1: cool; tied: grey) and labels it
//! with the token text. Everything a plugin needs is here: bindings generated
//! from the contract, a `describe` that says what the plugin is, `configure`
//! for options, and the two tracer calls.

wit_bindgen::generate!({
    path: "../../wit",
    world: "tracer-plugin",
});

use std::cell::RefCell;

use exports::tritlab::plugin::plugin::Guest as PluginGuest;
use exports::tritlab::plugin::tracer::Guest as TracerGuest;
use tritlab::plugin::host::{log, LogLevel};
use tritlab::plugin::types::{
    Annotation, GenerationStep, OptionSpec, OptionValue, PluginInfo, PluginKind, Rgba,
    TrainingStep, TritCounts,
};

const WARM: Rgba = Rgba {
    r: 0xE0,
    g: 0x6C,
    b: 0x3C,
    a: 0xFF,
};
const COOL: Rgba = Rgba {
    r: 0x3C,
    g: 0x7C,
    b: 0xE0,
    a: 0xFF,
};
const GREY: Rgba = Rgba {
    r: 0x90,
    g: 0x90,
    b: 0x90,
    a: 0xFF,
};

thread_local! {
    /// Text put before every label; set through the `prefix` option.
    /// A component instance is single-threaded, so a thread-local is the
    /// plugin's whole state.
    static PREFIX: RefCell<String> = const { RefCell::new(String::new()) };
}

struct Example;

/// -1, 0 or +1: which of the two non-zero trit values dominates.
fn balance_trit(counts: &TritCounts) -> i8 {
    match counts.positive.cmp(&counts.negative) {
        std::cmp::Ordering::Greater => 1,
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
    }
}

fn annotate(counts: &TritCounts, text: &str) -> Annotation {
    let trit = balance_trit(counts);
    let colour = match trit {
        1 => WARM,
        -1 => COOL,
        _ => GREY,
    };
    let label = PREFIX.with(|prefix| format!("{}{}", prefix.borrow(), text));
    Annotation {
        colour,
        trit,
        label,
    }
}

impl PluginGuest for Example {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "example".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Tracer,
            description: "Colours each step by the sign of its trit balance.".into(),
            options: vec![OptionSpec {
                name: "prefix".into(),
                description: "Text put before every label.".into(),
                default_value: String::new(),
            }],
        }
    }

    fn configure(options: Vec<OptionValue>) -> Result<(), String> {
        for option in options {
            match option.name.as_str() {
                "prefix" => PREFIX.with(|prefix| *prefix.borrow_mut() = option.value),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        log(LogLevel::Debug, "example configured");
        Ok(())
    }
}

impl TracerGuest for Example {
    fn trace_generation(step: GenerationStep) -> Result<Annotation, String> {
        Ok(annotate(&step.trits, &step.token_text))
    }

    fn trace_training(step: TrainingStep) -> Result<Annotation, String> {
        Ok(annotate(&step.counts, &format!("step {}", step.step)))
    }
}

export!(Example);
