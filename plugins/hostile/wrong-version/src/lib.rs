//! A well-behaved tracer built against contract version 9.0.0.
//!
//! `wit/tritlab-plugin.wit` here is the real contract with its version
//! rewritten by `scripts/build-plugins.sh`; the host must refuse the plugin
//! at load and name both versions.

wit_bindgen::generate!({
    path: "wit",
    world: "tracer-plugin",
});

use exports::tritlab::plugin::plugin::Guest as PluginGuest;
use exports::tritlab::plugin::tracer::Guest as TracerGuest;
use tritlab::plugin::types::{
    Annotation, GenerationStep, OptionValue, PluginInfo, PluginKind, Rgba, TrainingStep,
};

const GREY: Rgba = Rgba {
    r: 0x80,
    g: 0x80,
    b: 0x80,
    a: 0xFF,
};

struct WrongVersion;

impl PluginGuest for WrongVersion {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-wrong-version".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Tracer,
            description: "Built against contract 9.0.0; must be refused.".into(),
            options: Vec::new(),
        }
    }

    fn configure(_options: Vec<OptionValue>) -> Result<(), String> {
        Ok(())
    }
}

impl TracerGuest for WrongVersion {
    fn trace_generation(step: GenerationStep) -> Result<Annotation, String> {
        Ok(Annotation {
            colour: GREY,
            trit: 0,
            label: step.token_text,
        })
    }

    fn trace_training(step: TrainingStep) -> Result<Annotation, String> {
        Ok(Annotation {
            colour: GREY,
            trit: 0,
            label: format!("training {}", step.step),
        })
    }
}

export!(WrongVersion);
