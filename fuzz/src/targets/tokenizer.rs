//! `tokenizer.json` loading and encode/decode (`host/engine/src/tokenizer.rs`).
//!
//! Input: `tokenizer.json` bytes, a NUL byte, then text to encode.
//!
//! Properties: loading and encoding never panic; every id an accepted tokenizer produces names a
//! token of its vocabulary; decoding the ids and streaming them through `TokenStream` never panic;
//! and with the default model's byte-level tokenizer, decode(encode(text)) == text.

use std::sync::OnceLock;

use crate::{scratch_path, split_nul};
use tritlab_engine::{TokenStream, Tokenizer};

static DEFAULT_JSON: &[u8] = include_bytes!("../../../assets/default-model/tokenizer.json");

fn default_tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = scratch_path("default-tokenizer.json");
        std::fs::write(&path, DEFAULT_JSON).unwrap();
        Tokenizer::from_file(&path).expect("the default model's tokenizer loads")
    })
}

pub fn run(data: &[u8]) {
    let (json, text) = split_nul(data);
    let text = String::from_utf8_lossy(text);
    // Keep each input linear-time-sized for the tokenizer's regexes.
    let text: String = text.chars().take(512).collect();

    let default = default_tokenizer();
    let ids = default
        .encode(&text, false)
        .expect("the default tokenizer encodes any text");
    let back = default
        .decode(&ids, false)
        .expect("and decodes its own ids");
    assert_eq!(back, text, "byte-level round trip lost text");

    let path = scratch_path("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    let Ok(tokenizer) = Tokenizer::from_file(&path) else {
        return;
    };
    for special in [false, true] {
        let Ok(ids) = tokenizer.encode(&text, special) else {
            continue;
        };
        for &id in &ids {
            assert!(
                tokenizer.id_to_token(id).is_some(),
                "id {id} names no token"
            );
        }
        let _ = tokenizer.decode(&ids, special);
        let mut stream = TokenStream::new();
        for &id in ids.iter().take(64) {
            let _ = stream.push(&tokenizer, id);
        }
        let _ = stream.flush(&tokenizer);
    }
}
