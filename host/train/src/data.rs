//! Text in, batches out: reading text files or folders, loading or training a byte-level BPE
//! tokenizer, and a deterministic stream of batches.
//!
//! Batches are a pure function of `(seed, step)`: step `s` draws its `batch` window offsets from
//! a ChaCha20 stream keyed by the seed and `s`. A resumed or replayed run therefore needs no
//! saved cursor to continue exactly where the interrupted one was.

use crate::error::{Result, TrainError};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer, TokenizerBuilder, TokenizerImpl,
};

/// The special token a trained tokenizer reserves (id 0), used between documents.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The text files under `path` (itself, if it is a file), sorted, skipping hidden entries.
pub fn text_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| TrainError::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(|e| TrainError::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(TrainError::Data(format!(
            "{} holds no files to train on",
            path.display()
        )));
    }
    Ok(out)
}

/// Reads files as UTF-8 text, one document each.
pub fn read_documents(files: &[PathBuf]) -> Result<Vec<String>> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|e| TrainError::io(f, e))?;
            String::from_utf8(bytes).map_err(|e| {
                TrainError::Data(format!(
                    "{} is not UTF-8 text (invalid byte at offset {})",
                    f.display(),
                    e.utf8_error().valid_up_to()
                ))
            })
        })
        .collect()
}

/// Splits the documents' concatenation into training text and a held-out tail of about
/// `fraction` of it, cut at a line boundary.
pub fn hold_out(documents: Vec<String>, fraction: f64) -> Result<(Vec<String>, Vec<String>)> {
    if !(0.0..1.0).contains(&fraction) || fraction == 0.0 {
        return Err(TrainError::Options(format!(
            "validation fraction {fraction} must be in (0, 1)"
        )));
    }
    let total: usize = documents.iter().map(String::len).sum();
    let mut keep = ((total as f64) * (1.0 - fraction)) as usize;
    let mut train = Vec::new();
    let mut val = Vec::new();
    for doc in documents {
        if keep >= doc.len() {
            keep -= doc.len();
            train.push(doc);
        } else if keep == 0 {
            val.push(doc);
        } else {
            // Cut after the last newline at or before `keep` (or at a char boundary).
            let mut cut = doc[..=floor_char_boundary(&doc, keep)]
                .rfind('\n')
                .map(|i| i + 1)
                .unwrap_or_else(|| floor_char_boundary(&doc, keep));
            if cut == 0 {
                cut = floor_char_boundary(&doc, keep);
            }
            let (a, b) = doc.split_at(cut);
            train.push(a.to_string());
            val.push(b.to_string());
            keep = 0;
        }
    }
    if train.iter().all(|d| d.trim().is_empty()) || val.iter().all(|d| d.trim().is_empty()) {
        return Err(TrainError::Data(
            "the text is too short to hold out a validation split".into(),
        ));
    }
    Ok((train, val))
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len().saturating_sub(1));
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Runs a call into `tokenizers`, which panics on some malformed `tokenizer.json` files (at
/// load or at the first encode), turning a panic into an error about `path`. A run directory's
/// tokenizer is a file like any other: a bad one must be an error, never a crash.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(TrainError::Tokenizer {
            path: path.to_path_buf(),
            message: format!("the tokenizers library panicked while {what} ({detail})"),
        })
    })
}

/// Loads a `tokenizer.json`, without any truncation or padding it may carry (GPT-2's public
/// copy truncates to 50 tokens, which would silently drop almost all of a corpus).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let fail = |e: tokenizers::Error| TrainError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    guarded(path, "loading", || {
        let mut tokenizer = Tokenizer::from_file(path).map_err(fail)?;
        tokenizer
            .with_truncation(None)
            .map_err(fail)?
            .with_padding(None);
        Ok(tokenizer)
    })
}

/// Trains a byte-level BPE tokenizer (GPT-2 style: byte alphabet, no unknown token) with
/// `vocab_size` ids, the first being [`END_OF_TEXT`].
pub fn train_tokenizer(documents: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let alphabet = ByteLevel::alphabet();
    if vocab_size < alphabet.len() + 1 {
        return Err(TrainError::Options(format!(
            "--train-tokenizer {vocab_size}: a byte-level tokenizer needs at least {} ids",
            alphabet.len() + 1
        )));
    }
    let fail = |e: tokenizers::Error| TrainError::Tokenizer {
        path: PathBuf::from("(training)"),
        message: e.to_string(),
    };
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(alphabet.into_iter().collect())
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .build()
        .into();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(BPE::default().into())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(byte_level.into()))
        .with_post_processor(None)
        .with_decoder(Some(byte_level.into()))
        .build()
        .map_err(fail)?;
    // Lines are the training sequences; the pre-tokenizer splits them into words.
    let lines = documents.iter().flat_map(|d| d.split_inclusive('\n'));
    tokenizer.train(&mut trainer, lines).map_err(fail)?;
    Ok(Tokenizer::from(tokenizer))
}

/// Writes a tokenizer as `tokenizer.json`.
pub fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let json = tokenizer
        .to_string(true)
        .map_err(|e| TrainError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    crate::error::write_atomic(path, json.as_bytes())
}

/// The id used between documents: `<|endoftext|>` if the tokenizer has it.
pub fn separator_id(tokenizer: &Tokenizer) -> Option<u32> {
    tokenizer.token_to_id(END_OF_TEXT)
}

/// Encodes documents into one token stream, a separator (if any) after each document.
pub fn encode_documents(tokenizer: &Tokenizer, documents: &[String]) -> Result<Vec<u32>> {
    let sep = separator_id(tokenizer);
    let mut ids = Vec::new();
    for doc in documents {
        // Encode line groups so the pre-tokenizer never sees one huge string.
        for chunk in chunks_at_lines(doc, 1 << 16) {
            let enc = guarded(Path::new("tokenizer.json"), "encoding", || {
                tokenizer
                    .encode_fast(chunk, false)
                    .map_err(|e| TrainError::Data(format!("tokenising: {e}")))
            })?;
            ids.extend_from_slice(enc.get_ids());
        }
        if let Some(s) = sep {
            ids.push(s);
        }
    }
    Ok(ids)
}

/// Splits text into pieces of about `size` bytes, each ending at a newline where possible.
fn chunks_at_lines(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size.max(4)).min(text.len());
        if end < text.len() {
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            if let Some(nl) = text[start..end].rfind('\n') {
                end = start + nl + 1;
            }
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

/// blake3 of token ids (little-endian u32s), as hex.
pub fn tokens_hash(ids: &[u32]) -> String {
    blake3::hash(bytemuck::cast_slice(ids)).to_hex().to_string()
}

/// One training batch: `batch × seq` inputs and the next-token targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub offsets: Vec<u64>,
}

impl Batch {
    /// blake3 of the inputs followed by the targets.
    pub fn content_hash(&self) -> tritlab_morphism::ContentHash {
        let mut h = blake3::Hasher::new();
        h.update(bytemuck::cast_slice(&self.inputs));
        h.update(bytemuck::cast_slice(&self.targets));
        tritlab_morphism::ContentHash(*h.finalize().as_bytes())
    }
}

/// The deterministic batch stream over a token sequence.
#[derive(Debug, Clone)]
pub struct BatchStream {
    seed: u64,
    batch: usize,
    seq: usize,
}

impl BatchStream {
    pub fn new(seed: u64, batch: usize, seq: usize) -> Self {
        BatchStream { seed, batch, seq }
    }

    /// The key of step `step`'s generator: what the morphism log stores as the RNG state.
    pub fn rng_state(&self, step: u64) -> Vec<u8> {
        let mut state = Vec::with_capacity(16);
        state.extend_from_slice(&self.seed.to_le_bytes());
        state.extend_from_slice(&step.to_le_bytes());
        state
    }

    fn rng(&self, step: u64) -> ChaCha20Rng {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&self.rng_state(step));
        key[16..24].copy_from_slice(b"batches\0");
        ChaCha20Rng::from_seed(key)
    }

    /// Where step `step`'s batch starts in the stream, counted in sequences.
    pub fn position(&self, step: u64) -> u64 {
        step.saturating_sub(1) * self.batch as u64
    }

    /// The batch of step `step` (1-based): `batch` random windows of `seq + 1` tokens.
    pub fn batch(&self, tokens: &[u32], step: u64) -> Result<Batch> {
        let window = self.seq + 1;
        if tokens.len() < window {
            return Err(TrainError::Data(format!(
                "{} training tokens are fewer than one sequence of {} (+1 target)",
                tokens.len(),
                self.seq
            )));
        }
        let span = (tokens.len() - window + 1) as u64;
        let mut rng = self.rng(step);
        let mut b = Batch {
            inputs: Vec::with_capacity(self.batch * self.seq),
            targets: Vec::with_capacity(self.batch * self.seq),
            offsets: Vec::with_capacity(self.batch),
        };
        for _ in 0..self.batch {
            let o = rng.next_u64() % span;
            let w = &tokens[o as usize..o as usize + window];
            b.inputs.extend_from_slice(&w[..self.seq]);
            b.targets.extend_from_slice(&w[1..]);
            b.offsets.push(o);
        }
        Ok(b)
    }
}

/// Non-overlapping validation windows: `(inputs, targets)` of `seq` tokens each, at most `limit`.
pub fn validation_windows(
    tokens: &[u32],
    seq: usize,
    limit: Option<usize>,
) -> Vec<(&[u32], &[u32])> {
    let window = seq + 1;
    let n = if tokens.len() >= window {
        (tokens.len() - 1) / seq
    } else {
        0
    };
    (0..n)
        .take(limit.unwrap_or(usize::MAX))
        .map(|i| {
            let s = i * seq;
            (&tokens[s..s + seq], &tokens[s + 1..s + seq + 1])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_a_function_of_seed_and_step() {
        let tokens: Vec<u32> = (0..1000).collect();
        let a = BatchStream::new(7, 4, 16);
        let b = BatchStream::new(7, 4, 16);
        assert_eq!(a.batch(&tokens, 3).unwrap(), b.batch(&tokens, 3).unwrap());
        assert_ne!(a.batch(&tokens, 3).unwrap(), a.batch(&tokens, 4).unwrap());
        assert_ne!(
            a.batch(&tokens, 3).unwrap(),
            BatchStream::new(8, 4, 16).batch(&tokens, 3).unwrap()
        );
        let batch = a.batch(&tokens, 1).unwrap();
        for (i, &o) in batch.offsets.iter().enumerate() {
            assert_eq!(batch.inputs[i * 16], o as u32);
            assert_eq!(batch.targets[i * 16], o as u32 + 1);
        }
        assert!(a.batch(&tokens[..10], 1).is_err());
    }

    #[test]
    fn hold_out_cuts_at_a_line_and_keeps_everything() {
        let docs = vec![
            "one\ntwo\nthree\n".to_string(),
            "four\nfive\nsix\n".to_string(),
        ];
        let (train, val) = hold_out(docs.clone(), 0.3).unwrap();
        assert_eq!(train.concat() + &val.concat(), docs.concat());
        assert!(val.concat().starts_with("five") || val.concat().starts_with("six"));
        assert!(hold_out(vec!["x".into()], 0.5).is_err());
    }

    #[test]
    fn validation_windows_do_not_overlap() {
        let tokens: Vec<u32> = (0..50).collect();
        let w = validation_windows(&tokens, 10, None);
        assert_eq!(w.len(), 4);
        assert_eq!(w[1].0[0], 10);
        assert_eq!(w[3].1[9], 40);
    }

    #[test]
    fn trained_tokenizer_round_trips_text() {
        let docs = vec!["To be, or not to be: that is the question.\n".repeat(50)];
        let tok = train_tokenizer(&docs, 300).unwrap();
        assert_eq!(tok.token_to_id(END_OF_TEXT), Some(0));
        let ids = tok.encode("not to be", false).unwrap();
        assert!(ids.get_ids().len() < "not to be".len());
        let text = tok.decode(ids.get_ids(), true).unwrap();
        assert_eq!(text, "not to be");
    }
}
