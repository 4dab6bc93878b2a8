//! `config.json` parsing and validation (`host/engine/src/config.rs`).
//!
//! Input: the file's text.
//!
//! Properties: parsing never panics; an accepted config has the shape the loader relies on
//! (positive sizes, an even head dimension, query heads a multiple of KV heads, products that do
//! not overflow) and its accessors answer without panicking; written back to JSON it parses to
//! the same config.

use std::path::Path;

use tritlab_engine::BitNetConfig;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/config.json");
    let Ok(config) = BitNetConfig::from_json(text, path) else {
        return;
    };
    let head_dim = config.head_dim();
    let kv = config.num_kv_heads();
    assert!(config.vocab_size > 0 && config.hidden_size > 0 && config.intermediate_size > 0);
    assert!(config.num_hidden_layers > 0 && config.num_attention_heads > 0 && kv > 0);
    assert!(head_dim > 0 && head_dim % 2 == 0, "head_dim {head_dim}");
    assert_eq!(config.num_attention_heads % kv, 0);
    // The products the loader forms from an accepted config.
    for (a, b) in [
        (config.vocab_size, config.hidden_size),
        (config.intermediate_size, config.hidden_size),
        (config.num_attention_heads, head_dim),
        (kv, head_dim),
    ] {
        assert!(
            a.checked_mul(b).and_then(|n| n.checked_mul(4)).is_some(),
            "{a} × {b} overflows"
        );
    }
    let theta = config.rope_theta();
    let _ = (config.eos_token_ids(), config.bos_token_id());
    let _ = (
        config.activation(path),
        config.linear_class(path),
        config.quantization_mode(path),
        config.weight_group_size(path),
    );
    assert!(
        !theta.is_nan() || config.validate(path).is_err(),
        "NaN rope_theta accepted"
    );

    let json = serde_json::to_string(&config).expect("a config serialises");
    let again = BitNetConfig::from_json(&json, path).expect("a written config parses again");
    let json_again = serde_json::to_string(&again).unwrap();
    assert_eq!(
        json, json_again,
        "config does not survive a write and a read"
    );
}
