//! A `tokenizers` tokenizer rebuilt from a GGUF file's `tokenizer.ggml.*` metadata: byte-level
//! BPE (`tokenizer.ggml.model = "gpt2"`), its tokens, merges and token types, the pre-tokenizer
//! named by `tokenizer.ggml.pre`, and BOS when `tokenizer.ggml.add_bos_token` asks for it.
//!
//! A file without `tokenizer.ggml.pre` (the published 2B-4T GGUF has none) gets the Llama 3
//! pre-tokenizer — what every BitNet b1.58 release uses — with a warning on stderr, rather than
//! a split that would produce different ids.

use super::Tokenizer;
use crate::error::{EngineError, Result};
use serde_json::{json, Value as Json};
use std::path::Path;
use tritlab_gguf::{GgufFile, Value};

/// Llama 3's pre-tokenizer split (`llama-bpe` in llama.cpp).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's token types.
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;

/// The pre-tokenizer (and whether BPE ignores merges for whole-word hits) for a `tokenizer.ggml.pre` name.
fn pre_tokenizer(name: &str) -> Option<(Json, bool)> {
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    match name {
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" => Some((
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
            true,
        )),
        "gpt-2" | "gpt2" | "default" => Some((byte_level(true), false)),
        _ => None,
    }
}

/// Why the file has no tokenizer, or `None` when it has one (which may still be unreadable):
/// no `tokenizer.ggml.model` key, or the value llama.cpp's writers give a file without a
/// vocabulary ("none"; "no_vocab" in some versions).
pub fn missing_reason(g: &GgufFile) -> Option<String> {
    match g.get("tokenizer.ggml.model") {
        None => Some("no `tokenizer.ggml.model` key in the GGUF file".into()),
        Some(v) => match v.as_str() {
            Some(m @ ("none" | "no_vocab")) => {
                Some(format!("`tokenizer.ggml.model` is {m:?} in the GGUF file"))
            }
            _ => None,
        },
    }
}

/// The tokenizer.json text that `tokenizer.ggml.*` describes, and warnings about guesses made.
pub fn tokenizer_json(g: &GgufFile) -> Result<(String, Vec<String>)> {
    let path = g.path();
    let err = |m: String| EngineError::Tokenizer {
        path: path.to_path_buf(),
        message: m,
    };
    if let Some(reason) = missing_reason(g) {
        return Err(err(format!(
            "the file has no tokenizer ({reason}): give token ids"
        )));
    }
    let model = g
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .ok_or_else(|| err("`tokenizer.ggml.model` is not a string".into()))?;
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer.ggml.model {model:?} is not supported (only byte-level BPE, \"gpt2\")"
        )));
    }
    let strings = |key: &str| -> Result<Vec<&str>> {
        g.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| err(format!("`{key}` is missing or not an array")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| err(format!("`{key}` holds a non-string")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i32> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .map(|v| v.as_i64().unwrap_or(TOKEN_NORMAL as i64) as i32)
            .collect(),
        None => vec![TOKEN_NORMAL; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(err(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let mut warnings = Vec::new();
    let pre_name = g.get("tokenizer.ggml.pre").and_then(Value::as_str);
    let (pre, ignore_merges) = match pre_name {
        Some(n) => match pre_tokenizer(n) {
            Some(p) => p,
            None => {
                warnings.push(format!(
                    "{}: tokenizer.ggml.pre {n:?} is not known to tritlab; using the Llama 3 pre-tokenizer",
                    path.display()
                ));
                pre_tokenizer("llama-bpe").expect("known")
            }
        },
        None => {
            warnings.push(format!(
                "{}: no tokenizer.ggml.pre; using the Llama 3 pre-tokenizer (what BitNet b1.58 models use)",
                path.display()
            ));
            pre_tokenizer("llama-bpe").expect("known")
        }
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        vocab.insert(tok.to_string(), json!(id));
        if ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == TOKEN_CONTROL,
            }));
        }
    }
    let add_bos = g
        .get("tokenizer.ggml.add_bos_token")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let bos = g
        .u64_key("tokenizer.ggml.bos_token_id")
        .map_err(|e| err(e.to_string()))?;
    let post = match (add_bos, bos) {
        (true, Some(id)) => {
            let tok = tokens
                .get(id as usize)
                .ok_or_else(|| err(format!("bos_token_id {id} is outside the vocabulary")))?;
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": tok, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {*tok: {"id": tok, "ids": [id], "tokens": [tok]}}})
        }
        _ => Json::Null,
    };
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
        },
    });
    Ok((doc.to_string(), warnings))
}

impl Tokenizer {
    /// The tokenizer of a GGUF model file; warnings about guessed settings go to stderr.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let g = GgufFile::open(path)?;
        Self::from_gguf_file(&g)
    }

    /// The tokenizer of a GGUF model file, or `None` when it has none ([`missing_reason`]).
    pub(crate) fn find_in_gguf(path: &Path) -> Result<Option<Self>> {
        let g = GgufFile::open(path)?;
        if missing_reason(&g).is_some() {
            return Ok(None);
        }
        Self::from_gguf_file(&g).map(Some)
    }

    fn from_gguf_file(g: &GgufFile) -> Result<Self> {
        let path = g.path();
        let (text, warnings) = tokenizer_json(g)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        let inner = tokenizers::Tokenizer::from_bytes(text.as_bytes()).map_err(|e| {
            EngineError::Tokenizer {
                path: path.to_path_buf(),
                message: format!("rebuilding from tokenizer.ggml.*: {e}"),
            }
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }
}

/// `tokenizer.chat_template` of a GGUF file, if it has one.
pub fn chat_template(g: &GgufFile) -> Option<String> {
    g.get("tokenizer.chat_template")
        .and_then(Value::as_str)
        .map(str::to_string)
}
