//! Synthetic checkpoints: random weights in the offline Hugging Face layout of
//! microsoft/bitnet-b1.58-2B-4T (packed uint8 trits + bf16 `weight_scale`, bf16 embedding),
//! with the real model's shapes or a tiny one. The real weights cannot be downloaded everywhere;
//! these load, run and benchmark exactly like them.
//!
//! Every tensor is drawn from its own ChaCha20 stream keyed by the seed and the tensor's name,
//! and written as it is generated, so writing the 2B-4T shape holds one tensor in memory at a
//! time and the same seed always gives the same bytes.

use crate::config::BitNetConfig;
use crate::error::{EngineError, Result};
use crate::layout::{Dims, ModelTensor, TensorKind};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, View};
use serde::Serialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The shapes `synth` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SynthShape {
    /// microsoft/bitnet-b1.58-2B-4T: 30 layers, hidden 2560, vocab 128256.
    Bitnet2b4t,
    /// 2 layers, hidden 128, vocab 512.
    Tiny,
}

impl SynthShape {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "bitnet-2b4t" | "2b4t" | "bitnet-b1.58-2B-4T" => Some(SynthShape::Bitnet2b4t),
            "tiny" => Some(SynthShape::Tiny),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SynthShape::Bitnet2b4t => "bitnet-2b4t",
            SynthShape::Tiny => "tiny",
        }
    }

    pub fn config(self) -> BitNetConfig {
        match self {
            SynthShape::Bitnet2b4t => BitNetConfig::bitnet_2b4t(),
            SynthShape::Tiny => BitNetConfig::tiny(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    pub dir: PathBuf,
    pub shape: &'static str,
    pub seed: u64,
    /// Ternary weights (trits) in the linear layers.
    pub ternary_params: u64,
    /// Float parameters (embedding, norms).
    pub float_params: u64,
    pub model_bytes: u64,
    /// What the tokenizer is (not the real one).
    pub tokenizer_note: String,
}

/// Probability of a zero trit; ±1 share the rest equally (trained BitNet weights are roughly so).
const ZERO_FRACTION: f64 = 0.4;

fn name_key(name: &str) -> u64 {
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn rng_for(seed: u64, name: &str) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&name_key(name).to_le_bytes());
    key[16..24].copy_from_slice(b"tritlab\0");
    ChaCha20Rng::from_seed(key)
}

/// A standard normal value (Box–Muller, portable `libm`).
fn normal(rng: &mut ChaCha20Rng) -> f64 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
}

enum Content {
    /// HF-packed trits of an `[out, in]` matrix.
    Packed { out: usize, inp: usize },
    /// bf16 normal values with this standard deviation.
    Normal { std: f64, n: usize },
    /// bf16 constant.
    Const { value: f32, n: usize },
}

/// A tensor generated when the writer asks for its bytes.
struct LazyTensor {
    name: String,
    seed: u64,
    dtype: Dtype,
    shape: Vec<usize>,
    content: Content,
}

fn bf16_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values
        .flat_map(|v| half::bf16::from_f32(v).to_bits().to_le_bytes())
        .collect()
}

impl LazyTensor {
    fn generate(&self) -> Result<Vec<u8>> {
        let mut rng = rng_for(self.seed, &self.name);
        Ok(match self.content {
            Content::Packed { out, inp } => {
                let neg = ((1.0 - ZERO_FRACTION) / 2.0 * 256.0) as u32;
                let zero = neg + (ZERO_FRACTION * 256.0) as u32;
                let mut trits = vec![0i8; out * inp];
                let mut word = 0u64;
                for (i, t) in trits.iter_mut().enumerate() {
                    if i % 8 == 0 {
                        word = rng.next_u64();
                    }
                    let byte = ((word >> (8 * (i % 8))) & 0xff) as u32;
                    *t = if byte < neg {
                        -1
                    } else if byte < zero {
                        0
                    } else {
                        1
                    };
                }
                tritlab_kernels::pack::hf_pack(&trits, out, inp)
                    .map_err(|e| EngineError::kernel(format!("packing `{}`", self.name), e))?
            }
            Content::Normal { std, n } => {
                bf16_bytes((0..n).map(|_| (normal(&mut rng) * std) as f32))
            }
            Content::Const { value, n } => bf16_bytes(std::iter::repeat_n(value, n)),
        })
    }
}

impl View for &LazyTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        // `View` cannot fail; generation only fails on shapes built below, which are valid.
        Cow::Owned(self.generate().unwrap_or_default())
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

fn tensors(c: &BitNetConfig, seed: u64) -> Vec<LazyTensor> {
    let dims = Dims::of(c);
    let t = |name: String, dtype: Dtype, shape: Vec<usize>, content: Content| LazyTensor {
        name,
        seed,
        dtype,
        shape,
        content,
    };
    let mut out = Vec::new();
    for tensor in ModelTensor::of_config(c) {
        let shape = tensor.shape(&dims);
        let n = shape.iter().product();
        match (tensor.kind(), shape.as_slice()) {
            // Logits std ≈ std·√hidden with the tied output projection; 0.05 keeps them near 2.5.
            (TensorKind::Embedding, _) => out.push(t(
                tensor.hf_name(),
                Dtype::BF16,
                shape.clone(),
                Content::Normal { std: 0.05, n },
            )),
            (TensorKind::Ternary, &[o, inp]) => {
                out.push(t(
                    tensor.hf_name(),
                    Dtype::U8,
                    vec![o.div_ceil(4), inp],
                    Content::Packed { out: o, inp },
                ));
                // autobitlinear multiplies by this: 1/√(nonzero fraction · in) keeps outputs near unit scale.
                let scale = (1.0 / ((1.0 - ZERO_FRACTION) * inp as f64).sqrt()) as f32;
                out.push(t(
                    tensor.hf_scale_name(),
                    Dtype::BF16,
                    vec![1],
                    Content::Const { value: scale, n: 1 },
                ));
            }
            _ => out.push(t(
                tensor.hf_name(),
                Dtype::BF16,
                shape.clone(),
                Content::Const { value: 1.0, n },
            )),
        }
    }
    out
}

/// GPT-2's byte → printable character map used by byte-level BPE.
fn byte_to_char() -> Vec<char> {
    let mut map = vec!['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).unwrap_or('?')
        } else {
            let c = char::from_u32(next).unwrap_or('?');
            next += 1;
            c
        };
    }
    map
}

/// A byte-level BPE tokenizer with exactly `vocab` ids: the 256 bytes, then filler tokens made
/// of 2 and 3 common characters (reachable by decoding only: there are no merges), then the
/// special tokens at the top, as Llama 3 places them.
pub fn byte_level_tokenizer_json(
    vocab: usize,
    specials: &[(u32, &str)],
) -> Result<serde_json::Value> {
    let chars = byte_to_char();
    let first_special = specials.iter().map(|s| s.0 as usize).min().unwrap_or(vocab);
    if first_special < 256 || vocab < 256 + specials.len() {
        return Err(EngineError::Invalid(format!(
            "vocabulary of {vocab} is too small for a byte-level tokenizer"
        )));
    }
    let mut v = serde_json::Map::new();
    for (b, c) in chars.iter().enumerate() {
        v.insert(c.to_string(), b.into());
    }
    let alphabet: Vec<char> = "etaoinsrhldcumfpgwybvkxjqzETAOINSRHLDCUMFPGWYBVKXJQZ0123456789.,"
        .chars()
        .chain(std::iter::once(chars[b' ' as usize]))
        .collect();
    let mut id = 256usize;
    'fill: for len in 2..=4 {
        let n = alphabet.len().pow(len as u32);
        for k in 0..n {
            if id >= first_special {
                break 'fill;
            }
            let mut s = String::new();
            let mut rest = k;
            for _ in 0..len {
                s.push(alphabet[rest % alphabet.len()]);
                rest /= alphabet.len();
            }
            v.insert(s, id.into());
            id += 1;
        }
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .map(|(id, content)| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    Ok(serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": v, "merges": []}
    }))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| EngineError::config(path, e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| EngineError::io(path, e))
}

/// Writes `config.json`, `generation_config.json`, `model.safetensors` and `tokenizer.json`.
pub fn synth(shape: SynthShape, seed: u64, out_dir: impl AsRef<Path>) -> Result<SynthReport> {
    let dir = out_dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let c = shape.config();

    let mut config =
        serde_json::to_value(&c).map_err(|e| EngineError::config(dir, e.to_string()))?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "architectures".into(),
            serde_json::json!(["BitNetForCausalLM"]),
        );
        obj.insert("torch_dtype".into(), "bfloat16".into());
        obj.insert(
            "tritlab_synthetic".into(),
            serde_json::json!({"shape": shape.name(), "seed": seed}),
        );
        obj.retain(|_, v| !v.is_null());
    }
    write_json(&dir.join("config.json"), &config)?;
    let bos = c.bos_token_id().unwrap_or(0);
    let eos = c.eos_token_ids();
    write_json(
        &dir.join("generation_config.json"),
        &serde_json::json!({"bos_token_id": bos, "eos_token_id": eos, "do_sample": false}),
    )?;

    let tensors = tensors(&c, seed);
    let ternary_params = tensors
        .iter()
        .filter_map(|t| match t.content {
            Content::Packed { out, inp } => Some((out * inp) as u64),
            _ => None,
        })
        .sum();
    let float_params = tensors
        .iter()
        .filter(|t| t.dtype == Dtype::BF16 && !t.name.ends_with(crate::layout::SCALE_SUFFIX))
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let model_path = dir.join("model.safetensors");
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors.iter().map(|t| (t.name.clone(), t)),
        Some(metadata),
        &model_path,
    )
    .map_err(|e| EngineError::Safetensors {
        path: model_path.clone(),
        message: format!("writing: {e}"),
    })?;
    // The writer goes through a private temporary file; give the checkpoint the usual mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&model_path, std::fs::Permissions::from_mode(0o644));
    }
    // A tensor that failed to generate would leave the file shorter than its header says.
    crate::weights::SafetensorsFile::open(&model_path)?;
    let model_bytes = std::fs::metadata(&model_path)
        .map_err(|e| EngineError::io(&model_path, e))?
        .len();

    let mut specials: Vec<(u32, String)> = vec![(bos, "<|begin_of_text|>".into())];
    for &e in &eos {
        specials.push((e, "<|end_of_text|>".into()));
    }
    let top = c.vocab_size as u32;
    for (n, id) in (specials.iter().map(|s| s.0).max().unwrap_or(top) + 1..top).enumerate() {
        specials.push((id, format!("<|reserved_special_token_{n}|>")));
    }
    let specials_ref: Vec<(u32, &str)> = specials.iter().map(|(i, s)| (*i, s.as_str())).collect();
    let tok_json = byte_level_tokenizer_json(c.vocab_size, &specials_ref)?;
    let tok_path = dir.join("tokenizer.json");
    write_json(&tok_path, &tok_json)?;
    // Make sure what we wrote is a tokenizer the loader accepts.
    crate::tokenizer::Tokenizer::from_file(&tok_path)?;

    Ok(SynthReport {
        dir: dir.to_path_buf(),
        shape: shape.name(),
        seed,
        ternary_params,
        float_params,
        model_bytes,
        tokenizer_note: format!(
            "tokenizer.json is a synthetic byte-level tokenizer with {} ids (bytes, filler tokens, special tokens at {}..{}), not the real model's",
            c.vocab_size,
            specials.iter().map(|s| s.0).min().unwrap_or(0),
            top
        ),
    })
}
