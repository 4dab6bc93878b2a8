//! `tokenizer.json` through Hugging Face's `tokenizers`, and streaming detokenisation.
//!
//! `tokenizers` trusts its input more than a reader of downloaded files should: some
//! well-formed `tokenizer.json` files make it panic, at load or at the first encode or decode
//! (a `Precompiled` normaliser whose character map holds an empty trie indexes past its end;
//! a `Strip` decoder asked to strip more characters than a token has slices out of range).
//! Every call into it is therefore made under [`std::panic::catch_unwind`], and a panic becomes
//! an [`EngineError::Tokenizer`] naming the file. The default panic hook still prints the
//! panic's message to stderr; the process carries on.

use crate::error::{EngineError, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs `f`, turning a panic inside `tokenizers` into an error about `path`.
///
/// `AssertUnwindSafe` is sound here in the sense that matters: after a panic the tokenizer may
/// hold a half-updated cache, but its caches only memoise results, and the caller gets an error
/// for this call; a later call that trips over the same state panics again and is caught again.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(EngineError::Tokenizer {
                path: path.to_path_buf(),
                message: format!(
                    "the tokenizers library panicked while {what} ({detail}); the file is malformed or uses a combination it does not support"
                ),
            })
        }
    }
}

/// A model's tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl Tokenizer {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let tokenizer_err = |e: tokenizers::Error| EngineError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let inner = guarded(path, "loading", || {
            let mut inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(tokenizer_err)?;
            // Some published tokenizer.json files carry a truncation or padding setting
            // (GPT-2's public copy truncates to 50 tokens); a prompt or a corpus must never be
            // cut or padded.
            inner
                .with_truncation(None)
                .map_err(tokenizer_err)?
                .with_padding(None);
            Ok(inner)
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The tokenizer of a model: `tokenizer.json` of a model directory (or beside a model
    /// file), or a GGUF file's `tokenizer.ggml.*`. A model that ships none is an error that
    /// says so ([`Tokenizer::missing_reason`]); [`Tokenizer::find_for_model`] tells that case
    /// apart.
    pub fn for_model(model_path: impl AsRef<Path>) -> Result<Self> {
        let p = model_path.as_ref();
        Self::find_for_model(p)?.ok_or_else(|| EngineError::Tokenizer {
            path: p.to_path_buf(),
            message: format!(
                "the model has no tokenizer ({}): give token ids",
                Self::missing_reason(p)
            ),
        })
    }

    /// The tokenizer a model ships, or `None` when it ships none: a checkpoint without
    /// `tokenizer.json`, or a GGUF file without `tokenizer.ggml.model` (or with it set to
    /// "none", as llama.cpp's writers mark a file without a vocabulary). The weights of such a
    /// model still run on token ids. A tokenizer that is there but cannot be read is an error,
    /// as in [`Tokenizer::for_model`].
    pub fn find_for_model(model_path: impl AsRef<Path>) -> Result<Option<Self>> {
        let p = model_path.as_ref();
        if crate::bitnet::gguf_load::is_gguf(p) {
            return Self::find_in_gguf(p);
        }
        let file = tokenizer_json_of(p);
        if !file.exists() {
            return Ok(None);
        }
        Self::from_file(file).map(Some)
    }

    /// Where [`Tokenizer::find_for_model`] looked for `model_path`'s tokenizer and found none,
    /// in words (`no tokenizer.json beside the weights`); for messages about such a model.
    pub fn missing_reason(model_path: impl AsRef<Path>) -> String {
        let p = model_path.as_ref();
        if crate::bitnet::gguf_load::is_gguf(p) {
            return match tritlab_gguf::GgufFile::open(p) {
                Ok(g) => gguf::missing_reason(&g)
                    .unwrap_or_else(|| "the GGUF file has `tokenizer.ggml.*` metadata".into()),
                Err(e) => e.to_string(),
            };
        }
        "no tokenizer.json beside the weights".into()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's template (e.g. BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        guarded(&self.path, "encoding", || {
            let enc = self
                .inner
                .encode(text, add_special_tokens)
                .map_err(|e| self.err(e))?;
            Ok(enc.get_ids().to_vec())
        })
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        guarded(&self.path, "decoding", || {
            self.inner
                .decode(ids, skip_special_tokens)
                .map_err(|e| self.err(e))
        })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of `content` when it is one of the tokenizer's added tokens (the special tokens
    /// such as `<|eot_id|>`), not merely a string of its vocabulary.
    pub fn added_token_id(&self, content: &str) -> Option<u32> {
        self.inner
            .get_added_tokens_decoder()
            .into_iter()
            .find(|(_, token)| token.content == content)
            .map(|(id, _)| id)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Where a checkpoint's `tokenizer.json` lies: in its directory, or beside its weights file.
fn tokenizer_json_of(model_path: &Path) -> PathBuf {
    let dir = if model_path.is_file() {
        model_path.parent().unwrap_or(Path::new("."))
    } else {
        model_path
    };
    dir.join("tokenizer.json")
}

/// Turns a stream of token ids into text pieces as soon as they are whole characters.
///
/// Byte-level tokens can split a UTF-8 character; decoding token by token would print
/// replacement characters. This decodes a short window and emits only the new, complete text.
#[derive(Debug, Clone, Default)]
pub struct TokenStream {
    tokens: Vec<u32>,
    prev: usize,
    current: usize,
}

impl TokenStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        let before = tokenizer.decode(&self.tokens[self.prev..self.current], false)?;
        self.tokens.push(id);
        let text = tokenizer.decode(&self.tokens[self.prev..], false)?;
        if text.ends_with('\u{FFFD}') || text.len() <= before.len() {
            return Ok(String::new());
        }
        match text.get(before.len()..) {
            Some(new) if text.starts_with(&before) => {
                let new = new.to_string();
                self.prev = self.current;
                self.current = self.tokens.len();
                Ok(new)
            }
            _ => Ok(String::new()),
        }
    }

    /// Whatever text is still held back (an incomplete character is decoded lossily).
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let before = tokenizer.decode(&self.tokens[self.prev..self.current], false)?;
        let text = tokenizer.decode(&self.tokens[self.prev..], false)?;
        self.prev = self.tokens.len();
        self.current = self.tokens.len();
        Ok(match text.get(before.len()..) {
            Some(new) if text.starts_with(&before) => new.to_string(),
            _ => String::new(),
        })
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// Tokenizers rebuilt from GGUF metadata.
pub mod gguf;
