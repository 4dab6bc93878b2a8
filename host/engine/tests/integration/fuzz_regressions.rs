//! Inputs the fuzz targets (fuzz/, docs/FUZZING.md) found to crash a reader, kept so that they
//! stay errors.

use std::path::Path;

use tritlab_engine::{EngineError, Tokenizer};

fn regression(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(name)
}

/// A `tokenizer.json` whose `decoder` object, once mutated, holds a raw control character:
/// `tokenizers` 0.23 unwraps its own re-parse of the decoder (decoders/mod.rs:90) and panics
/// while loading. Loading must be a typed error naming the file.
#[test]
fn tokenizer_with_a_broken_decoder_is_an_error() {
    let path = regression("tokenizer-decoder-control-char.json");
    match Tokenizer::from_file(&path) {
        Err(EngineError::Tokenizer { path: named, .. }) => assert_eq!(named, path),
        Err(other) => panic!("expected a tokenizer error, got {other}"),
        Ok(_) => panic!("a tokenizer with a malformed decoder loaded"),
    }
}
