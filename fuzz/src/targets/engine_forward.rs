//! safetensors and config loading through a forward pass (`host/engine`).
//!
//! Input: `config.json` text, a NUL byte, then `model.safetensors` bytes. Configs larger than a
//! toy model are skipped, so each input loads and runs in microseconds.
//!
//! Properties: loading never panics; a model that loads has the config's shape, and one
//! forward step returns exactly `vocab_size` logits; a token id outside the vocabulary is an
//! error, not a panic or an out-of-bounds read.

use std::path::Path;

use crate::{scratch_path, split_nul};
use tritlab_engine::{BitNetConfig, Model};

fn tiny(c: &BitNetConfig) -> bool {
    c.vocab_size <= 64
        && c.hidden_size <= 64
        && c.intermediate_size <= 128
        && c.num_hidden_layers <= 2
        && c.num_attention_heads <= 8
        && c.head_dim() <= 32
        && c.max_position_embeddings <= 4096
}

pub fn run(data: &[u8]) {
    let (config_bytes, weights) = split_nul(data);
    let Ok(config_text) = std::str::from_utf8(config_bytes) else {
        return;
    };
    match BitNetConfig::from_json(config_text, Path::new("config.json")) {
        Ok(config) if tiny(&config) => {}
        _ => return,
    }
    let dir = scratch_path("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config_bytes).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    let Ok(model) = Model::load(&dir) else {
        return;
    };
    let config = model.config().clone();
    assert_eq!(model.layers().len(), config.num_hidden_layers);
    assert_eq!(model.vocab_size(), config.vocab_size);
    let vocab = config.vocab_size as u32;
    let mut cache = model.new_cache();
    let tokens = [0, (vocab - 1).min(1)];
    // Weights may be finite yet overflow to a non-finite activation: that is a typed error.
    if let Ok(logits) = model.forward_last(&tokens, &mut cache) {
        assert_eq!(logits.len(), config.vocab_size);
        assert_eq!(cache.len(), tokens.len());
    }
    let mut fresh = model.new_cache();
    assert!(
        model.forward_last(&[vocab], &mut fresh).is_err(),
        "token id {vocab} accepted by a vocabulary of {vocab}"
    );
}
