//! One module per fuzz target; each `run(data)` checks one input and panics on a broken property.

pub mod command_lang;
pub mod engine_config;
pub mod engine_forward;
pub mod morphism_log;
pub mod plugin_convert;
pub mod png_asset;
pub mod tokenizer;
pub mod train_checkpoint;
pub mod train_run_json;
pub mod trit_flips;
pub mod workbook_export;
pub mod workbook_roundtrip;

/// A fuzz target as the replay test sees it.
pub struct Target {
    /// The name of its libFuzzer binary in `fuzz_targets/` (`cargo fuzz list`).
    pub name: &'static str,
    /// Checks one input; panics when a property fails.
    pub run: fn(&[u8]),
    /// What the target's custom libFuzzer mutator applies after a mutation, if it has one.
    pub repair: Option<fn(&mut [u8], u32)>,
}

/// Every target.
pub const ALL: &[Target] = &[
    Target {
        name: "command_lang",
        run: command_lang::run,
        repair: None,
    },
    Target {
        name: "engine_config",
        run: engine_config::run,
        repair: None,
    },
    Target {
        name: "engine_forward",
        run: engine_forward::run,
        repair: None,
    },
    Target {
        name: "morphism_log",
        run: morphism_log::run,
        repair: Some(morphism_log::repair),
    },
    Target {
        name: "plugin_convert",
        run: plugin_convert::run,
        repair: None,
    },
    Target {
        name: "png_asset",
        run: png_asset::run,
        repair: None,
    },
    Target {
        name: "tokenizer",
        run: tokenizer::run,
        repair: None,
    },
    Target {
        name: "train_checkpoint",
        run: train_checkpoint::run,
        repair: None,
    },
    Target {
        name: "train_run_json",
        run: train_run_json::run,
        repair: None,
    },
    Target {
        name: "trit_flips",
        run: trit_flips::run,
        repair: None,
    },
    Target {
        name: "workbook_export",
        run: workbook_export::run,
        repair: None,
    },
    Target {
        name: "workbook_roundtrip",
        run: workbook_roundtrip::run,
        repair: None,
    },
];
