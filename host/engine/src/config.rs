//! `config.json` of a BitNet b1.58 checkpoint, as Hugging Face transformers writes it.
//!
//! The struct accepts both spellings of RoPE's base frequency: `rope_theta` at the top level
//! (microsoft/bitnet-b1.58-2B-4T, transformers < 5) and `rope_parameters.rope_theta` (what newer
//! transformers writes). [`BitNetConfig::validate`] checks the numbers against each other; the
//! loader then checks them against the tensors, so a config that contradicts its weights is an
//! error that names the tensor rather than a wrong answer.

use crate::error::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One id or a list of ids (`eos_token_id` is either in the wild).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// RoPE as newer transformers spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// How the linear layers' weights are stored and scaled (`quantization_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationConfig {
    #[serde(default)]
    pub quant_method: Option<String>,
    /// `"autobitlinear"` multiplies by `weight_scale`; `"bitlinear"` (transformers' default when
    /// absent) divides by it.
    #[serde(default)]
    pub linear_class: Option<String>,
    /// `"offline"` (transformers' default): packed uint8 trits + `weight_scale`;
    /// `"online"`: float master weights, ternarised by absmean when loaded.
    #[serde(default)]
    pub quantization_mode: Option<String>,
    /// transformers' BitLinear can put an extra RMSNorm in front of the activation quantiser;
    /// no published BitNet checkpoint uses it and tritlab does not implement it.
    #[serde(default)]
    pub use_rms_norm: Option<bool>,
    /// tritlab's extension for models trained with per-group absmean scales: online master
    /// weights are ternarised with one scale per `weight_group_size` consecutive weights of a row
    /// instead of one per tensor. transformers ignores the key (and would use one scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_group_size: Option<usize>,
}

/// The feed-forward gate's activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `relu(x)²`: BitNet b1.58's squared ReLU.
    Relu2,
    /// `x · sigmoid(x)`: with the gate/up product, SwiGLU.
    Silu,
}

/// The linear layer flavour, resolved from `quantization_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearClass {
    /// `y = linear(x_q, W_trits) · weight_scale`.
    AutoBitLinear,
    /// `y = linear(x_q, W_trits) / weight_scale`.
    BitLinear,
}

/// Where the ternary weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantizationMode {
    /// Packed uint8 trits with a `weight_scale` per layer.
    Offline,
    /// Float master weights, quantised by absmean (per tensor) at load.
    Online,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BitNetConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Absent means multi-head attention (as many KV heads as query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers' BitNetConfig defaults to untied.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub quantization_config: Option<QuantizationConfig>,
}

fn default_hidden_act() -> String {
    "relu2".to_string()
}
fn default_max_position_embeddings() -> usize {
    2048
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}

// The largest value tritlab accepts for each size in `config.json`: generous (several times the
// largest published models; Llama 3.1 405B has hidden_size 16384, 126 layers, 128 heads and a
// vocabulary of 128256) but finite, because the sizes multiply into tensor widths and
// allocations, and bounding each keeps every product far from overflow.

/// The largest `vocab_size`.
pub const MAX_VOCAB_SIZE: usize = 1 << 24;
/// The largest `hidden_size`.
pub const MAX_HIDDEN_SIZE: usize = 1 << 16;
/// The largest `intermediate_size`.
pub const MAX_INTERMEDIATE_SIZE: usize = 1 << 18;
/// The largest `num_hidden_layers`.
pub const MAX_LAYERS: usize = 1024;
/// The largest `num_attention_heads` and `num_key_value_heads`.
pub const MAX_HEADS: usize = 1024;
/// The largest explicit `head_dim`.
pub const MAX_HEAD_DIM: usize = 4096;
/// The largest `max_position_embeddings`.
pub const MAX_POSITIONS: usize = 1 << 24;
/// The largest `heads × head_dim` (query or key/value width) tritlab accepts.
pub const MAX_ATTENTION_WIDTH: usize = 1 << 18;

/// The largest `quantization_config.weight_group_size`.
pub const MAX_WEIGHT_GROUP_SIZE: usize = 1 << 20;

/// transformers' default RoPE base for BitNet, used only when the file names none.
pub const DEFAULT_ROPE_THETA: f64 = 500_000.0;

impl BitNetConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses and validates config JSON; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        // Look at model_type first, so a foreign model gets "unknown model_type", not a
        // complaint about some field it happens to lack.
        let raw: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| EngineError::config(path, format!("invalid JSON: {e}")))?;
        match raw.get("model_type").and_then(|v| v.as_str()) {
            Some("bitnet") => {}
            Some(other) => {
                return Err(EngineError::UnknownModelType {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                })
            }
            None => {
                return Err(EngineError::config(
                    path,
                    "no \"model_type\" (expected \"bitnet\")",
                ))
            }
        }
        let config: BitNetConfig = serde_json::from_value(raw)
            .map_err(|e| EngineError::config(path, format!("invalid BitNet config: {e}")))?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the numbers against each other and rejects features tritlab does not run.
    ///
    /// Every size is bounded (see [`MAX_HIDDEN_SIZE`] and its neighbours) and every product the loader and the forward pass
    /// form from them is computed with overflow checks, so a hostile or corrupt config is an
    /// error naming the key and its value, never an arithmetic panic, a division by zero or a
    /// huge allocation made before a single weight is read.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |m: String| Err(EngineError::config(path, m));
        let bad = |key: &str, value: &dyn std::fmt::Display, reason: String| {
            Err(EngineError::config_value(path, key, value, reason))
        };
        let sizes = [
            ("vocab_size", Some(self.vocab_size), MAX_VOCAB_SIZE),
            ("hidden_size", Some(self.hidden_size), MAX_HIDDEN_SIZE),
            (
                "intermediate_size",
                Some(self.intermediate_size),
                MAX_INTERMEDIATE_SIZE,
            ),
            (
                "num_hidden_layers",
                Some(self.num_hidden_layers),
                MAX_LAYERS,
            ),
            (
                "num_attention_heads",
                Some(self.num_attention_heads),
                MAX_HEADS,
            ),
            ("num_key_value_heads", Some(self.num_kv_heads()), MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            (
                "max_position_embeddings",
                Some(self.max_position_embeddings),
                MAX_POSITIONS,
            ),
        ];
        for (key, value, max) in sizes {
            let Some(value) = value else { continue };
            if value == 0 {
                return bad(key, &value, "must be positive".into());
            }
            if value > max {
                return bad(
                    key,
                    &value,
                    format!("is more than {max}, the largest tritlab accepts"),
                );
            }
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "hidden_size",
                &self.hidden_size,
                format!(
                    "is not a multiple of num_attention_heads {} (and there is no head_dim)",
                    self.num_attention_heads
                ),
            );
        }
        let head_dim = self.head_dim();
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return bad(
                "head_dim",
                &head_dim,
                "must be positive and even (RoPE rotates halves)".into(),
            );
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return bad(
                "num_attention_heads",
                &self.num_attention_heads,
                format!(
                    "is not a multiple of num_key_value_heads {}",
                    self.num_kv_heads()
                ),
            );
        }
        // The widths the loader expects tensors of, and the largest matrices it maps: checked
        // so that no product wraps (and silently matches a wrong tensor) or overflows a Vec.
        for (key, heads) in [
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_kv_heads()),
        ] {
            match heads.checked_mul(head_dim) {
                Some(width) if width <= MAX_ATTENTION_WIDTH => {}
                _ => {
                    return bad(
                        key,
                        &heads,
                        format!(
                            "× head_dim {head_dim} is more than {MAX_ATTENTION_WIDTH}, the largest attention width tritlab accepts"
                        ),
                    )
                }
            }
        }
        for (key, value, other, other_key) in [
            (
                "vocab_size",
                self.vocab_size,
                self.hidden_size,
                "hidden_size",
            ),
            (
                "intermediate_size",
                self.intermediate_size,
                self.hidden_size,
                "hidden_size",
            ),
        ] {
            let bytes = value
                .checked_mul(other)
                .and_then(|n| n.checked_mul(std::mem::size_of::<f32>()))
                .filter(|&b| b <= isize::MAX as usize);
            if bytes.is_none() {
                return bad(
                    key,
                    &value,
                    format!("× {other_key} {other} is too large a matrix for this machine"),
                );
            }
        }
        for (key, id) in self
            .bos_token_id
            .iter()
            .flat_map(|b| b.to_vec().into_iter().map(|id| ("bos_token_id", id)))
            .chain(
                self.eos_token_ids()
                    .into_iter()
                    .map(|id| ("eos_token_id", id)),
            )
        {
            if id as usize >= self.vocab_size {
                return bad(
                    key,
                    &id,
                    format!("is not a token id of a vocabulary of {}", self.vocab_size),
                );
            }
        }
        self.activation(path)?;
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return bad(
                "rms_norm_eps",
                &self.rms_norm_eps,
                "must be a finite number ≥ 0".into(),
            );
        }
        if self.attention_bias || self.mlp_bias {
            return err(
                "biases are not part of BitNet b1.58 (attention_bias / mlp_bias must be false)"
                    .into(),
            );
        }
        if let Some(p) = &self.rope_parameters {
            if let Some(t) = p.rope_type.as_deref() {
                if t != "default" {
                    return err(format!(
                        "rope_parameters.rope_type {t:?} is not supported (only \"default\")"
                    ));
                }
            }
        }
        if let Some(s) = &self.rope_scaling {
            if !s.is_null() {
                let default = s.get("rope_type").and_then(|v| v.as_str()) == Some("default");
                if !default {
                    return err(format!("rope_scaling {s} is not supported"));
                }
            }
        }
        let theta = self.rope_theta();
        if !(theta.is_finite() && theta > 1.0) {
            return bad(
                "rope_theta",
                &theta,
                "must be a finite number greater than 1".into(),
            );
        }
        if let Some(q) = &self.quantization_config {
            if let Some(m) = q.quant_method.as_deref() {
                if m != "bitnet" {
                    return err(format!(
                        "quantization_config.quant_method {m:?} is not \"bitnet\""
                    ));
                }
            }
            self.linear_class(path)?;
            self.quantization_mode(path)?;
            self.weight_group_size(path)?;
            if q.use_rms_norm == Some(true) {
                return err("quantization_config.use_rms_norm = true is not supported".into());
            }
        }
        Ok(())
    }

    /// The gate activation named by `hidden_act`.
    pub fn activation(&self, path: &Path) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "relu2" => Ok(Activation::Relu2),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(EngineError::config(
                path,
                format!("hidden_act {other:?} is not supported (\"relu2\" or \"silu\")"),
            )),
        }
    }

    /// The per-group weight scale size of online checkpoints, if the config asks for one.
    pub fn weight_group_size(&self, path: &Path) -> Result<Option<usize>> {
        let Some(g) = self
            .quantization_config
            .as_ref()
            .and_then(|q| q.weight_group_size)
        else {
            return Ok(None);
        };
        if g == 0 || g > MAX_WEIGHT_GROUP_SIZE {
            return Err(EngineError::config_value(
                path,
                "quantization_config.weight_group_size",
                g,
                format!("must be between 1 and {MAX_WEIGHT_GROUP_SIZE}"),
            ));
        }
        Ok(Some(g))
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// `rope_parameters.rope_theta` if present, else top-level `rope_theta`, else BitNet's default.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(DEFAULT_ROPE_THETA)
    }

    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
            .as_ref()
            .and_then(|b| b.to_vec().first().copied())
    }

    /// The linear class; transformers uses "bitlinear" when `linear_class` is absent.
    pub fn linear_class(&self, path: &Path) -> Result<LinearClass> {
        let name = self
            .quantization_config
            .as_ref()
            .and_then(|q| q.linear_class.as_deref());
        match name {
            None | Some("bitlinear") => Ok(LinearClass::BitLinear),
            Some("autobitlinear") => Ok(LinearClass::AutoBitLinear),
            Some(other) => Err(EngineError::config(
                path,
                format!("quantization_config.linear_class {other:?} is not \"bitlinear\" or \"autobitlinear\""),
            )),
        }
    }

    /// The quantisation mode, or `None` when there is no `quantization_config` at all (then the
    /// tensors' dtype decides: uint8 is offline, float weights are quantised at load).
    pub fn quantization_mode(&self, path: &Path) -> Result<Option<QuantizationMode>> {
        let Some(q) = &self.quantization_config else {
            return Ok(None);
        };
        match q.quantization_mode.as_deref() {
            None | Some("offline") => Ok(Some(QuantizationMode::Offline)),
            Some("online") => Ok(Some(QuantizationMode::Online)),
            Some(other) => Err(EngineError::config(
                path,
                format!("quantization_config.quantization_mode {other:?} is not \"offline\" or \"online\""),
            )),
        }
    }

    /// microsoft/bitnet-b1.58-2B-4T's configuration.
    pub fn bitnet_2b4t() -> Self {
        Self {
            model_type: "bitnet".into(),
            vocab_size: 128_256,
            hidden_size: 2560,
            intermediate_size: 6912,
            num_hidden_layers: 30,
            num_attention_heads: 20,
            num_key_value_heads: Some(5),
            head_dim: None,
            hidden_act: "relu2".into(),
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: Some(500_000.0),
            rope_parameters: None,
            rope_scaling: None,
            tie_word_embeddings: true,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(TokenIds::One(128_000)),
            eos_token_id: Some(TokenIds::One(128_001)),
            quantization_config: Some(QuantizationConfig {
                quant_method: Some("bitnet".into()),
                linear_class: Some("autobitlinear".into()),
                quantization_mode: Some("offline".into()),
                use_rms_norm: None,
                weight_group_size: None,
            }),
        }
    }

    /// A tiny model of the same architecture, for tests and demos.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 512,
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            max_position_embeddings: 256,
            rope_theta: Some(10_000.0),
            // Special tokens at the top of the vocabulary, as in Llama 3 / 2B-4T.
            bos_token_id: Some(TokenIds::One(510)),
            eos_token_id: Some(TokenIds::One(511)),
            ..Self::bitnet_2b4t()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rope_spellings() {
        let p = Path::new("config.json");
        let base = serde_json::to_value(BitNetConfig::tiny()).unwrap();
        let mut a = base.clone();
        a["rope_theta"] = serde_json::json!(1234.0);
        assert_eq!(
            BitNetConfig::from_json(&a.to_string(), p)
                .unwrap()
                .rope_theta(),
            1234.0
        );
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove("rope_theta");
        b["rope_parameters"] = serde_json::json!({"rope_theta": 777.0, "rope_type": "default"});
        assert_eq!(
            BitNetConfig::from_json(&b.to_string(), p)
                .unwrap()
                .rope_theta(),
            777.0
        );
    }

    #[test]
    fn rejects_foreign_models_and_bad_numbers() {
        let p = Path::new("m/config.json");
        let e = BitNetConfig::from_json(r#"{"model_type": "llama"}"#, p).unwrap_err();
        assert!(
            e.to_string().contains("llama") && e.to_string().contains("m/config.json"),
            "{e}"
        );
        let mut c = serde_json::to_value(BitNetConfig::tiny()).unwrap();
        c["num_key_value_heads"] = serde_json::json!(3);
        assert!(BitNetConfig::from_json(&c.to_string(), p).is_err());
    }
}
