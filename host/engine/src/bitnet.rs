//! The BitNet b1.58 decoder (transformers' `BitNetForCausalLM`) on tritlab's ternary kernels.
//!
//! ```text
//! h   = embed[ids]                                   (no scaling)
//! per layer:
//!   x = rms_norm(h, input_layernorm)
//!   q, k, v = BitLinear(x)                           (int8 per-token activations × trits)
//!   q, k = rope(q), rope(k)                          (rotate_half convention)
//!   a = softmax(q kᵀ / √head_dim + causal) v         (grouped-query: head h reads KV h / group)
//!   h = h + o_proj(rms_norm(a, attn_sub_norm))
//!   y = rms_norm(h, post_attention_layernorm)
//!   h = h + down_proj(rms_norm(act(gate(y)) · up(y), ffn_sub_norm))   (act: relu², or silu)
//! logits = rms_norm(h, norm) · lm_headᵀ             (float, never quantised; tied to embed or not)
//! ```
//!
//! A BitLinear computes `y = scale_w · scale_x · (W_trits · q)` with `q` the token's absmax int8
//! activations. For `linear_class = "autobitlinear"` `scale_w` is the stored `weight_scale`; for
//! `"bitlinear"` the stored value is its inverse; for online checkpoints it is the absmean of the
//! latent weights, computed at load. Weights are converted once, at load, into
//! [`TernaryMatrix`]'s blocked layout; the embedding and `lm_head` stay in their stored dtype.

use crate::config::{Activation, BitNetConfig, LinearClass, QuantizationMode};
use crate::error::{EngineError, Result};
use crate::head::OutputHead;
use crate::layout::{Dims, LayerTensors, ModelTensor, Proj};
use crate::ops::{self, AttentionShape, Rope};
use crate::stats::{LayerTritStats, StepTritStats, TensorTritStats, TritSummary};
use crate::weights::{FloatMatrix, TensorRef, WeightSet};
use rayon::prelude::*;
use safetensors::tensor::Dtype;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tritlab_kernels::{
    count_trits, pack, quantize_absmean, HeadMatrix, Packing, QuantizedActivations,
    ScaleGranularity, TernaryMatrix, WeightScale,
};

/// How the checkpoint stores its ternary layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Packed uint8 trits + `weight_scale` (transformers' offline mode).
    Packed { linear_class: LinearClass },
    /// Float master weights ternarised by absmean when loaded (online mode, the `-bf16` variant).
    Latent,
}

/// A ternary linear layer: the kernel matrix plus what the inspector shows about it.
pub struct BitLinear {
    name: String,
    matrix: TernaryMatrix,
    trits: TritSummary,
}

impl BitLinear {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn matrix(&self) -> &TernaryMatrix {
        &self.matrix
    }
    pub fn trits(&self) -> TritSummary {
        self.trits
    }
    pub fn out_features(&self) -> usize {
        self.matrix.rows()
    }
    pub fn in_features(&self) -> usize {
        self.matrix.cols()
    }

    /// The per-tensor scale the kernels multiply by.
    pub fn scale(&self) -> f32 {
        match self.matrix.scale() {
            WeightScale::PerTensor(s) => *s,
            WeightScale::PerGroup { scales, .. } => scales.first().copied().unwrap_or(0.0),
        }
    }

    fn forward(&self, x: &QuantizedActivations, y: &mut [f32]) -> Result<()> {
        self.matrix
            .matmul(x, y)
            .map_err(|e| EngineError::kernel(format!("matmul of `{}`", self.name), e))
    }

    /// Several layers applied to the same activations in one parallel pass (q/k/v, gate/up).
    fn forward_many(
        layers: &[&BitLinear],
        x: &QuantizedActivations,
        ys: &mut [&mut [f32]],
    ) -> Result<()> {
        let matrices: Vec<&TernaryMatrix> = layers.iter().map(|l| &l.matrix).collect();
        TernaryMatrix::matmul_many(&matrices, x, ys).map_err(|e| {
            let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
            EngineError::kernel(format!("matmul of `{}`", names.join("`, `")), e)
        })
    }

    fn stats(&self) -> TensorTritStats {
        TensorTritStats {
            name: self.name.clone(),
            rows: self.matrix.rows(),
            cols: self.matrix.cols(),
            scale: self.scale(),
            trits: self.trits,
        }
    }
}

/// One decoder layer's weights: RMSNorm gains in f32 and the seven ternary projections.
pub type DecoderLayer = LayerTensors<Vec<f32>, BitLinear>;

/// Keys and values of every position seen so far, per layer (`[positions, kv_heads·head_dim]`).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self {
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Layers it has room for (0 for a default, unusable cache).
    pub fn layers(&self) -> usize {
        self.keys.len()
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Forgets positions `len..` (to rewind a conversation).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let per_pos = self
            .keys
            .first()
            .and_then(|k| k.len().checked_div(self.len))
            .unwrap_or(0);
        for (k, v) in self.keys.iter_mut().zip(&mut self.values) {
            k.truncate(len * per_pos);
            v.truncate(len * per_pos);
        }
        self.len = len;
    }

    /// Bytes held (keys and values, f32).
    pub fn bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|v| v.len() * 4)
            .sum()
    }
}

/// Which positions' logits a forward pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Every position: `[tokens, vocab]`.
    All,
    /// Only the last position: `[vocab]` (generation; saves the output projection for the prompt).
    Last,
    /// None: a chunk of a prompt whose end is still to come (the output projection is skipped).
    None,
}

/// A loaded BitNet b1.58 model.
pub struct Model {
    config: BitNetConfig,
    path: PathBuf,
    format: WeightFormat,
    embed: FloatMatrix,
    lm_head: Option<FloatMatrix>,
    /// The output projection converted into a kernels head format ([`OutputHead::Quantized`]);
    /// `None` multiplies the stored matrix ([`OutputHead::Exact`]).
    head: Option<HeadMatrix>,
    layers: Vec<DecoderLayer>,
    norm: Vec<f32>,
    rope: Rope,
    activation: Activation,
    eos_token_ids: Vec<u32>,
}

/// Where the config and weights of a model path are.
fn resolve(path: &Path) -> Result<(PathBuf, PathBuf)> {
    if path.is_file() {
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        return Ok((dir.join("config.json"), path.to_path_buf()));
    }
    if path.is_dir() {
        return Ok((path.join("config.json"), path.to_path_buf()));
    }
    Err(EngineError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such model file or directory",
        ),
    ))
}

/// eos ids from `generation_config.json`, if there is one (its list often extends config.json's).
fn generation_eos(dir: &Path) -> Result<Vec<u32>> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::config(&path, format!("invalid JSON: {e}")))?;
    Ok(match json.get("eos_token_id") {
        Some(v) => serde_json::from_value::<crate::config::TokenIds>(v.clone())
            .map_err(|e| EngineError::config(&path, format!("eos_token_id: {e}")))?
            .to_vec(),
        None => Vec::new(),
    })
}

struct Loader<'a> {
    weights: &'a WeightSet,
    mode: QuantizationMode,
    linear_class: LinearClass,
    /// Per-group absmean scales for online weights (tritlab's `weight_group_size`).
    weight_group_size: Option<usize>,
}

impl Loader<'_> {
    fn norm(&self, tensor: ModelTensor, dims: &Dims) -> Result<Vec<f32>> {
        let t = self.weights.get(&tensor.hf_name())?;
        t.expect_shape(&tensor.shape(dims))?;
        t.to_f32_finite()
    }

    fn linear(&self, tensor: ModelTensor, dims: &Dims) -> Result<BitLinear> {
        let (out_f, in_f) = match tensor.shape(dims)[..] {
            [o, i] => (o, i),
            _ => return Err(EngineError::Invalid(format!("{tensor:?} is not a matrix"))),
        };
        let wname = tensor.hf_name();
        let t = self.weights.get(&wname)?;
        let kernel_err = |t: &TensorRef, e: tritlab_kernels::KernelError| {
            EngineError::tensor_value(t.path(), &t.name, e.to_string())
        };
        self.check_linear(&t, out_f, in_f)?;
        let (matrix, counts) = match self.mode {
            QuantizationMode::Offline => {
                let scale = self.weight_scale(&tensor.hf_scale_name())?;
                let trits =
                    pack::hf_unpack(t.bytes(), out_f, in_f).map_err(|e| kernel_err(&t, e))?;
                let counts = count_trits(&trits).map_err(|e| kernel_err(&t, e))?;
                let m =
                    TernaryMatrix::from_trits(&trits, out_f, in_f, WeightScale::PerTensor(scale))
                        .map_err(|e| kernel_err(&t, e))?;
                (m, counts)
            }
            QuantizationMode::Online => {
                let w = t.to_f32()?;
                let granularity = match self.weight_group_size {
                    Some(group_size) => ScaleGranularity::PerGroup { group_size },
                    None => ScaleGranularity::PerTensor,
                };
                let q = quantize_absmean(&w, out_f, in_f, granularity)
                    .map_err(|e| kernel_err(&t, e))?;
                drop(w);
                let counts = count_trits(&q.trits).map_err(|e| kernel_err(&t, e))?;
                (
                    TernaryMatrix::from_weights(&q).map_err(|e| kernel_err(&t, e))?,
                    counts,
                )
            }
        };
        // The stored form is not needed again: let its pages go.
        t.release();
        Ok(BitLinear {
            name: wname,
            matrix,
            trits: counts.into(),
        })
    }

    /// The stored form of a linear layer's weight must match the quantisation mode (packed U8
    /// trits offline, float master weights online) and the shape the config implies.
    fn check_linear(&self, t: &TensorRef, out_f: usize, in_f: usize) -> Result<()> {
        match self.mode {
            QuantizationMode::Offline => {
                if t.dtype != Dtype::U8 {
                    return Err(EngineError::ConfigMismatch {
                        path: t.path().to_path_buf(),
                        tensor: t.name.clone(),
                        message: format!(
                            "quantization_mode \"offline\" needs packed U8 weights, the tensor is {:?}",
                            t.dtype
                        ),
                    });
                }
                t.expect_shape(&[out_f.div_ceil(4), in_f])
            }
            QuantizationMode::Online => {
                if t.dtype == Dtype::U8 {
                    return Err(EngineError::ConfigMismatch {
                        path: t.path().to_path_buf(),
                        tensor: t.name.clone(),
                        message: "packed U8 weights, but quantization_mode is \"online\" (float master weights)".into(),
                    });
                }
                t.expect_shape(&[out_f, in_f])
            }
        }
    }

    /// Checks that every tensor the config implies exists with the shape it implies, before
    /// anything is converted or allocated: a checkpoint that contradicts its config fails in
    /// milliseconds, naming the tensor, rather than after converting the layers before it.
    fn check_shapes(&self, c: &BitNetConfig) -> Result<()> {
        let dims = Dims::of(c);
        for tensor in ModelTensor::of_config(c) {
            let shape = tensor.shape(&dims);
            let t = self.weights.get(&tensor.hf_name())?;
            if !tensor.is_ternary() {
                t.expect_shape(&shape)?;
                continue;
            }
            self.check_linear(&t, shape[0], shape[1])?;
            if self.mode == QuantizationMode::Offline {
                let scale = self.weights.get(&tensor.hf_scale_name())?;
                if scale.numel() != 1 {
                    return Err(EngineError::TensorShape {
                        path: scale.path().to_path_buf(),
                        tensor: scale.name.clone(),
                        expected: vec![1],
                        actual: scale.shape.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The kernels' multiplier from `weight_scale` (one value, finite and positive).
    fn weight_scale(&self, scale_name: &str) -> Result<f32> {
        let t = self.weights.get(scale_name)?;
        if t.numel() != 1 {
            return Err(EngineError::TensorShape {
                path: t.path().to_path_buf(),
                tensor: t.name.clone(),
                expected: vec![1],
                actual: t.shape.clone(),
            });
        }
        let v = t.to_f32()?[0];
        if !(v.is_finite() && v > 0.0) {
            return Err(EngineError::tensor_value(
                t.path(),
                &t.name,
                format!("weight scale {v} is not a finite, positive number"),
            ));
        }
        let s = match self.linear_class {
            LinearClass::AutoBitLinear => v,
            LinearClass::BitLinear => 1.0 / v,
        };
        if !(s.is_finite() && s > 0.0) {
            return Err(EngineError::tensor_value(
                t.path(),
                &t.name,
                format!("weight scale {v} has no usable inverse"),
            ));
        }
        Ok(s)
    }

    fn layer(&self, i: usize, dims: &Dims) -> Result<DecoderLayer> {
        LayerTensors::try_build(
            |n| self.norm(ModelTensor::norm(i, n), dims),
            |p| self.linear(ModelTensor::proj(i, p), dims),
        )
    }
}

impl Model {
    /// Loads a model directory (`config.json` + `model.safetensors` or a sharded index), or a
    /// single `.safetensors` file with `config.json` beside it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let model = if gguf_load::is_gguf(path) {
            gguf_load::load(path)?
        } else {
            let (config_path, weights_path) = resolve(path)?;
            let config = BitNetConfig::from_file(&config_path)?;
            let weights = WeightSet::open(&weights_path)?;
            Self::from_weights(config, &config_path, &weights, path)?
        };
        // How to stream one token's weights was measured on the previous model's shapes, which
        // may have fitted in cache: measure again on this one's first decoded tokens.
        tritlab_kernels::tune::restart();
        Ok(model)
    }

    /// Builds the model from a parsed config and opened weights.
    pub fn from_weights(
        config: BitNetConfig,
        config_path: &Path,
        weights: &WeightSet,
        path: &Path,
    ) -> Result<Self> {
        // A config built in code (not read by `from_file`) gets the same checks.
        config.validate(config_path)?;
        let c = &config;
        let linear_class = c.linear_class(config_path)?;
        // Without a quantization_config, the tensors' dtype says how they are stored.
        let mode = match c.quantization_mode(config_path)? {
            Some(m) => m,
            None => {
                let probe = weights.get(&ModelTensor::proj(0, Proj::Q).hf_name())?;
                if probe.dtype == Dtype::U8 {
                    QuantizationMode::Offline
                } else {
                    QuantizationMode::Online
                }
            }
        };
        // Layers beyond num_hidden_layers mean the config describes another model.
        for name in weights.names() {
            if let Some(idx) = crate::layout::hf_layer_index(name) {
                if idx >= c.num_hidden_layers {
                    return Err(EngineError::ConfigMismatch {
                        path: weights.origin().to_path_buf(),
                        tensor: name.to_string(),
                        message: format!(
                            "num_hidden_layers is {}, but this layer exists",
                            c.num_hidden_layers
                        ),
                    });
                }
            }
        }
        let loader = Loader {
            weights,
            mode,
            linear_class,
            weight_group_size: c.weight_group_size(config_path)?,
        };
        let dims = Dims::of(c);
        let embed_t = weights.get(&ModelTensor::Embedding.hf_name())?;
        if embed_t.shape.len() == 2 && embed_t.shape[1] != c.hidden_size {
            return Err(EngineError::ConfigMismatch {
                path: embed_t.path().to_path_buf(),
                tensor: embed_t.name.clone(),
                message: format!(
                    "hidden_size is {}, the embedding has width {}",
                    c.hidden_size, embed_t.shape[1]
                ),
            });
        }
        loader.check_shapes(c)?;
        let embed = embed_t.to_float_matrix(c.vocab_size, c.hidden_size)?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            let t = weights.get(&ModelTensor::LmHead.hf_name())?;
            Some(t.to_float_matrix(c.vocab_size, c.hidden_size)?)
        };
        let norm = loader.norm(ModelTensor::FinalNorm, &dims)?;
        // Layers convert independently; each holds only its own tensor's trits while converting.
        let layers = (0..c.num_hidden_layers)
            .into_par_iter()
            .map(|i| loader.layer(i, &dims))
            .collect::<Result<Vec<_>>>()?;
        let mut eos = c.eos_token_ids();
        let dir = config_path.parent().unwrap_or(Path::new("."));
        for id in generation_eos(dir)? {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let format = match mode {
            QuantizationMode::Offline => WeightFormat::Packed { linear_class },
            QuantizationMode::Online => WeightFormat::Latent,
        };
        Ok(Self {
            rope: Rope::new(c.head_dim(), c.rope_theta()),
            activation: c.activation(config_path)?,
            config,
            path: path.to_path_buf(),
            format,
            embed,
            lm_head,
            head: None,
            layers,
            norm,
            eos_token_ids: eos,
        })
    }

    /// [`load`](Self::load) with the output projection kept as `head` says.
    pub fn load_with(path: impl AsRef<Path>, head: OutputHead) -> Result<Self> {
        let mut model = Self::load(path)?;
        model.set_output_head(head)?;
        Ok(model)
    }

    /// Keeps the output projection as `head` says: exactly as stored, or converted once into a
    /// kernels head format (the stored matrix's resident pages are then released; the
    /// embedding lookup reads it a row at a time).
    pub fn set_output_head(&mut self, head: OutputHead) -> Result<()> {
        self.head = match head {
            OutputHead::Exact => None,
            OutputHead::Quantized(p) => {
                let m = self.lm_head();
                // A mapped matrix's rows are read from the file, not through the mapping
                // (`FloatMatrix::row_f32`), so the stored and the converted head are never both
                // resident: peak memory stays near the converted head, not their sum.
                let converted =
                    HeadMatrix::from_rows(m.rows(), m.cols(), p, |r, out| m.row_f32(r, out))
                        .map_err(|e| EngineError::kernel("converting the output projection", e))?;
                // Pages an earlier exact product made resident are not needed any more.
                m.release_resident();
                Some(converted)
            }
        };
        Ok(())
    }

    /// Repacks every ternary layer into `packing` (see [`Packing`]: the same trits and the same
    /// products, bit for bit; fewer bytes per token for T1). One layer at a time, so memory
    /// grows by one layer at most while it runs.
    pub fn set_packing(&mut self, packing: Packing) -> Result<()> {
        for layer in &mut self.layers {
            for proj in layer.projections_mut() {
                proj.matrix = proj.matrix.repack(packing).map_err(|e| {
                    EngineError::kernel(format!("repacking `{}` as {packing}", proj.name), e)
                })?;
            }
        }
        tritlab_kernels::mem::trim_heap();
        Ok(())
    }

    /// How the ternary layers are packed (the first layer's; [`set_packing`](Self::set_packing)
    /// keeps them all alike).
    pub fn packing(&self) -> Packing {
        self.layers
            .first()
            .map_or(Packing::default(), |l| l.q_proj.matrix.packing())
    }

    /// How the output projection is kept.
    pub fn output_head(&self) -> OutputHead {
        self.head
            .as_ref()
            .map_or(OutputHead::Exact, |h| OutputHead::Quantized(h.precision()))
    }

    /// Bytes the output projection reads per generated token.
    pub fn head_bytes(&self) -> usize {
        self.head
            .as_ref()
            .map_or_else(|| self.lm_head().bytes(), HeadMatrix::bytes)
    }

    pub fn config(&self) -> &BitNetConfig {
        &self.config
    }

    /// The path the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn weight_format(&self) -> WeightFormat {
        self.format
    }

    pub fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    pub fn embedding(&self) -> &FloatMatrix {
        &self.embed
    }

    /// The output projection (the embedding when tied).
    pub fn lm_head(&self) -> &FloatMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    /// End-of-sequence ids from config.json and generation_config.json.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Bytes of the kernels' ternary matrices (what each decoded token streams from them).
    pub fn ternary_bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.projections())
            .map(|b| b.matrix.packed_bytes())
            .sum()
    }

    /// Bytes of the float matrices (embedding, and lm_head when untied).
    pub fn float_bytes(&self) -> usize {
        self.embed.bytes() + self.lm_head.as_ref().map_or(0, FloatMatrix::bytes)
    }

    /// KV-cache bytes per position.
    pub fn kv_bytes_per_position(&self) -> usize {
        2 * self.layers.len() * Dims::of(&self.config).kv_width * 4
    }

    /// Trit counts and GF(3) sums of every layer's ternary weights.
    pub fn layer_stats(&self) -> Vec<LayerTritStats> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let tensors: Vec<TensorTritStats> =
                    l.projections().iter().map(|b| b.stats()).collect();
                let mut total = TritSummary::default();
                for t in &tensors {
                    total.merge(&t.trits);
                }
                LayerTritStats {
                    layer: i,
                    tensors,
                    total,
                }
            })
            .collect()
    }

    /// Trit counts of the whole model's ternary weights.
    pub fn total_trits(&self) -> TritSummary {
        let mut total = TritSummary::default();
        for l in self.layer_stats() {
            total.merge(&l.total);
        }
        total
    }

    /// Logits of every position of `tokens`, appended to `cache`: `[tokens, vocab]` row-major.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        self.forward_with(tokens, cache, Logits::All, None)
    }

    /// Logits of the last position only (`[vocab]`).
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        self.forward_with(tokens, cache, Logits::Last, None)
    }

    /// The forward pass. All tokens go through each layer together: the kernels' GEMM path for a
    /// prompt, their GEMV path for one decoded token. `trace`, if given, receives the activation
    /// trit statistics of the last token (see [`StepTritStats`]). One sequence's
    /// [`forward_batch`](Self::forward_batch).
    pub fn forward_with(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        logits: Logits,
        trace: Option<&mut StepTritStats>,
    ) -> Result<Vec<f32>> {
        let mut items = [BatchItem {
            tokens,
            cache,
            logits,
            trace,
        }];
        let mut out = self.forward_batch(&mut items)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// The forward pass of several sequences at once, each with its own KV cache: every linear
    /// layer (and the output projection) runs one product over the rows of all of them, so a
    /// decode step of `B` sequences streams the weights once instead of `B` times; RoPE uses each
    /// row's own position and attention runs per sequence against its own cache.
    ///
    /// Every per-row operation (RMSNorm, per-token int8 quantisation, exact i32 ternary dots
    /// with the shared f32 epilogue, attention over one query row, the head's per-row product)
    /// is independent of the other rows, so each item's logits are bit for bit those of
    /// [`forward_with`](Self::forward_with) on that item alone (property-tested in
    /// `tests/integration/batch.rs`). Returns one logits vector per item, in order (empty for
    /// [`Logits::None`]). On error no cache is changed.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        // A lone sequence's errors read as they always have; a batch's name the item.
        let batched = items.len() > 1;
        let named = |i: usize, message: String| {
            if batched {
                EngineError::Invalid(format!("batch item {i}: {message}"))
            } else {
                EngineError::Invalid(message)
            }
        };
        if items.is_empty() {
            return Ok(Vec::new());
        }
        for (i, item) in items.iter().enumerate() {
            if item.tokens.is_empty() {
                return Err(named(i, "forward pass needs at least one token".into()));
            }
            if let Some(&bad) = item.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(named(
                    i,
                    format!(
                        "token id {bad} is outside the vocabulary (size {})",
                        c.vocab_size
                    ),
                ));
            }
            if item.cache.keys.len() != self.layers.len() {
                return Err(named(
                    i,
                    "KV cache belongs to a model with another layer count".into(),
                ));
            }
            let (start, t_len) = (item.cache.len, item.tokens.len());
            if start + t_len > c.max_position_embeddings {
                return Err(named(
                    i,
                    format!(
                        "context full: {start} cached + {t_len} new positions exceed max_position_embeddings {}",
                        c.max_position_embeddings
                    ),
                ));
            }
        }
        let d = Dims::of(c);
        let (h, inter, q_dim, kv_dim) = (d.hidden, d.intermediate, d.query_width, d.kv_width);
        let shape = AttentionShape {
            heads: c.num_attention_heads,
            kv_heads: c.num_kv_heads(),
            head_dim: c.head_dim(),
        };
        let eps = c.rms_norm_eps;
        // Rows of each item: `spans[i] = (first row, rows, first position)`.
        let mut spans = Vec::with_capacity(items.len());
        let mut rows = 0;
        for item in items.iter() {
            spans.push((rows, item.tokens.len(), item.cache.len));
            rows += item.tokens.len();
        }
        let rope: Vec<(Vec<f32>, Vec<f32>)> = spans
            .iter()
            .flat_map(|&(_, n, start)| start..start + n)
            .map(|p| self.rope.cos_sin(p))
            .collect();

        let mut hidden = vec![0.0f32; rows * h];
        let all_tokens = items.iter().flat_map(|it| it.tokens.iter());
        for (row, &tok) in hidden.chunks_exact_mut(h).zip(all_tokens) {
            self.embed.row_f32(tok as usize, row);
        }
        let mut x = vec![0.0f32; rows * h];
        let mut q = vec![0.0f32; rows * q_dim];
        let mut k = vec![0.0f32; rows * kv_dim];
        let mut v = vec![0.0f32; rows * kv_dim];
        let mut attn = vec![0.0f32; rows * q_dim];
        let mut proj = vec![0.0f32; rows * h];
        let mut gate = vec![0.0f32; rows * inter];
        let mut up = vec![0.0f32; rows * inter];
        let mut qa = QuantizedActivations::default();

        // Quantises all rows per token; each traced item records its last row's activations.
        let quantize = |items: &mut [BatchItem<'_>],
                        qa: &mut QuantizedActivations,
                        x: &[f32],
                        cols: usize,
                        layer: usize,
                        what: &[Proj]|
         -> Result<()> {
            qa.quantize_into(x, rows, cols).map_err(|e| {
                let names: Vec<&str> = what.iter().map(|p| p.hf()).collect();
                EngineError::kernel(
                    format!(
                        "layer {layer}: quantising the input of {}",
                        names.join(", ")
                    ),
                    e,
                )
            })?;
            for (item, &(first, n, _)) in items.iter_mut().zip(&spans) {
                if let Some(tr) = item.trace.as_deref_mut() {
                    tr.record(layer, &qa.token(first + n - 1)[..cols]);
                }
            }
            Ok(())
        };

        let result = (|| -> Result<()> {
            for (li, layer) in self.layers.iter().enumerate() {
                // Attention block.
                ops::rms_norm_into(&hidden, &layer.input_layernorm, eps, &mut x);
                quantize(items, &mut qa, &x, h, li, &[Proj::Q, Proj::K, Proj::V])?;
                BitLinear::forward_many(
                    &[&layer.q_proj, &layer.k_proj, &layer.v_proj],
                    &qa,
                    &mut [&mut q, &mut k, &mut v],
                )?;
                for (t, (cos, sin)) in rope.iter().enumerate() {
                    self.rope
                        .apply(&mut q[t * q_dim..(t + 1) * q_dim], cos, sin);
                    self.rope
                        .apply(&mut k[t * kv_dim..(t + 1) * kv_dim], cos, sin);
                }
                // Each sequence appends its own keys and values and attends to its own cache.
                let mut rest = &mut attn[..];
                let mut work = Vec::with_capacity(items.len());
                for (item, &(first, n, start)) in items.iter_mut().zip(&spans) {
                    let (mine, tail) = rest.split_at_mut(n * q_dim);
                    rest = tail;
                    let cache = &mut *item.cache;
                    cache.keys[li].extend_from_slice(&k[first * kv_dim..(first + n) * kv_dim]);
                    cache.values[li].extend_from_slice(&v[first * kv_dim..(first + n) * kv_dim]);
                    work.push((&*cache, first, n, start, mine));
                }
                let attend =
                    |(cache, first, n, start, out): (&KvCache, usize, usize, usize, &mut [f32])| {
                        ops::attention(
                            &q[first * q_dim..(first + n) * q_dim],
                            &cache.keys[li],
                            &cache.values[li],
                            start,
                            n,
                            shape,
                            out,
                        )
                    };
                if work.len() == 1 {
                    work.into_iter().for_each(attend);
                } else {
                    work.into_par_iter().for_each(attend);
                }
                ops::rms_norm(&mut attn, &layer.attn_sub_norm, eps);
                quantize(items, &mut qa, &attn, q_dim, li, &[Proj::O])?;
                layer.o_proj.forward(&qa, &mut proj)?;
                for (a, b) in hidden.iter_mut().zip(&proj) {
                    *a += b;
                }
                // Feed-forward block.
                ops::rms_norm_into(&hidden, &layer.post_attention_layernorm, eps, &mut x);
                quantize(items, &mut qa, &x, h, li, &[Proj::Gate, Proj::Up])?;
                BitLinear::forward_many(
                    &[&layer.gate_proj, &layer.up_proj],
                    &qa,
                    &mut [&mut gate, &mut up],
                )?;
                match self.activation {
                    Activation::Relu2 => ops::relu2_mul(&mut gate, &up),
                    Activation::Silu => ops::silu_mul(&mut gate, &up),
                }
                ops::rms_norm(&mut gate, &layer.ffn_sub_norm, eps);
                quantize(items, &mut qa, &gate, inter, li, &[Proj::Down])?;
                layer.down_proj.forward(&qa, &mut proj)?;
                for (a, b) in hidden.iter_mut().zip(&proj) {
                    *a += b;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Leave every cache as it was before this call.
            for (item, &(_, _, start)) in items.iter_mut().zip(&spans) {
                let cache = &mut *item.cache;
                for (kc, vc) in cache.keys.iter_mut().zip(&mut cache.values) {
                    kc.truncate(start * kv_dim);
                    vc.truncate(start * kv_dim);
                }
            }
            return Err(e);
        }
        for (item, &(_, n, start)) in items.iter_mut().zip(&spans) {
            item.cache.len = start + n;
        }

        // The rows whose logits are wanted, through the output projection in one product.
        let mut picked: Vec<(usize, usize)> = Vec::with_capacity(items.len());
        let mut selected = Vec::new();
        for (item, &(first, n, _)) in items.iter().zip(&spans) {
            let (from, count) = match item.logits {
                Logits::All => (first, n),
                Logits::Last => (first + n - 1, 1),
                Logits::None => (first, 0),
            };
            picked.push((selected.len() / h, count));
            selected.extend_from_slice(&hidden[from * h..(from + count) * h]);
        }
        let n = selected.len() / h;
        let mut normed = vec![0.0f32; selected.len()];
        ops::rms_norm_into(&selected, &self.norm, eps, &mut normed);
        let vocab = c.vocab_size;
        let mut out = vec![0.0f32; n * vocab];
        if n > 0 {
            match &self.head {
                None => self.lm_head().matmul(&normed, n, &mut out),
                Some(head) => if n == 1 {
                    head.gemv(&normed, &mut out, 0)
                } else {
                    head.gemm(&normed, n, &mut out)
                }
                .map_err(|e| EngineError::kernel("the output projection", e))?,
            }
        }
        Ok(picked
            .into_iter()
            .map(|(row, count)| out[row * vocab..(row + count) * vocab].to_vec())
            .collect())
    }
}

/// One sequence of a [`Model::forward_batch`]: its new tokens, its cache (which they are
/// appended to), which logits it wants, and where its step's activation trits go.
pub struct BatchItem<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
    pub trace: Option<&'a mut StepTritStats>,
}

/// GGUF files: loading (`Model::load` of a `.gguf` path) and export (GGUF and transformers).
pub mod export;
pub mod gguf_load;
