//! A tiny model's parameter list, so checkpoint inputs stay a few kilobytes.

use std::sync::OnceLock;

use tritlab_engine::BitNetConfig;
use tritlab_train::model::{param_specs, ParamSpec};

/// The parameters of a 1-layer model with hidden size 8 and a 16-token vocabulary.
pub fn tiny_specs() -> &'static [ParamSpec] {
    static SPECS: OnceLock<Vec<ParamSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let config = BitNetConfig {
            vocab_size: 16,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: Some(1),
            ..BitNetConfig::tiny()
        };
        param_specs(&config)
    })
}
