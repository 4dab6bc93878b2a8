//! The BitNet b1.58 tensor set, defined once.
//!
//! Every tensor of a `BitNetForCausalLM` checkpoint is a [`ModelTensor`]: the embedding, the
//! final norm, the untied output projection, or one of the eleven [`LayerTensor`]s of each
//! decoder layer (four RMSNorm gains, seven ternary projections). Each knows its transformers
//! name, its llama.cpp (GGUF) name, its shape as symbolic [`Dim`]s resolved against a config by
//! [`Dims`], and whether it is ternary. The loader, the random-checkpoint writer, verify, both
//! exporters, the GGUF loader and the trainer all read the layout from here, so a name or a shape
//! formula cannot drift between them.
//!
//! [`LayerTensors`] is the one mapping from a layer role to a named field: the engine keeps its
//! converted layers in it, the trainer its per-layer parameters.

use crate::config::BitNetConfig;

/// Suffix of every weight's transformers and GGUF name.
pub const WEIGHT_SUFFIX: &str = ".weight";
/// Suffix of a packed projection's scale tensor (transformers' offline layout).
pub const SCALE_SUFFIX: &str = ".weight_scale";
/// Suffix of llama.cpp's optional per-tensor scale of a ternary GGUF tensor.
pub const GGUF_SCALE_SUFFIX: &str = ".scale";

const HF_LAYER_PREFIX: &str = "model.layers.";
const GGUF_LAYER_PREFIX: &str = "blk.";

/// A dimension of a tensor, named by what it measures; [`Dims`] gives its size for a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Vocab,
    Hidden,
    Intermediate,
    /// `num_attention_heads × head_dim`: the width of the queries and the attention output.
    QueryWidth,
    /// `num_key_value_heads × head_dim`: the width of the keys and the values.
    KvWidth,
}

/// The sizes of every [`Dim`] for one config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub query_width: usize,
    pub kv_width: usize,
}

impl Dims {
    /// The sizes a config implies (its `validate` bounds the head products).
    pub fn of(c: &BitNetConfig) -> Dims {
        Dims {
            vocab: c.vocab_size,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            query_width: c.num_attention_heads * c.head_dim(),
            kv_width: c.num_kv_heads() * c.head_dim(),
        }
    }

    pub fn get(&self, d: Dim) -> usize {
        match d {
            Dim::Vocab => self.vocab,
            Dim::Hidden => self.hidden,
            Dim::Intermediate => self.intermediate,
            Dim::QueryWidth => self.query_width,
            Dim::KvWidth => self.kv_width,
        }
    }

    /// The concrete shape of symbolic dimensions.
    pub fn shape(&self, dims: &[Dim]) -> Vec<usize> {
        dims.iter().map(|&d| self.get(d)).collect()
    }
}

/// What a tensor is, which decides how it is stored, loaded, initialised and trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// A BitLinear's weights `[out, in]`: ternary (packed trits, or latent floats ternarised).
    Ternary,
    /// The token embedding (also the output projection when tied) or the untied `lm_head`:
    /// full-precision matrices `[vocab, hidden]`, never quantised.
    Embedding,
    /// An RMSNorm gain.
    Norm,
}

/// The four RMSNorm gains of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Norm {
    /// Before attention.
    Input,
    /// Before the feed-forward block.
    PostAttention,
    /// BitNet's extra norm on the attention output, before `o_proj`.
    AttnSub,
    /// BitNet's extra norm on the gated activations, before `down_proj`.
    FfnSub,
}

impl Norm {
    pub const ALL: [Norm; 4] = [
        Norm::Input,
        Norm::PostAttention,
        Norm::AttnSub,
        Norm::FfnSub,
    ];

    /// The name inside a transformers layer (`model.layers.{i}.<hf>.weight`).
    pub const fn hf(self) -> &'static str {
        match self {
            Norm::Input => "input_layernorm",
            Norm::PostAttention => "post_attention_layernorm",
            Norm::AttnSub => "self_attn.attn_sub_norm",
            Norm::FfnSub => "mlp.ffn_sub_norm",
        }
    }

    /// The name inside a llama.cpp block (`blk.{i}.<gguf>.weight`).
    pub const fn gguf(self) -> &'static str {
        match self {
            Norm::Input => "attn_norm",
            Norm::PostAttention => "ffn_norm",
            Norm::AttnSub => "attn_sub_norm",
            Norm::FfnSub => "ffn_sub_norm",
        }
    }

    /// The width the gain scales.
    pub const fn dim(self) -> Dim {
        match self {
            Norm::Input | Norm::PostAttention => Dim::Hidden,
            Norm::AttnSub => Dim::QueryWidth,
            Norm::FfnSub => Dim::Intermediate,
        }
    }
}

/// The seven ternary projections of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// The name inside a transformers layer (`model.layers.{i}.<hf>.weight`).
    pub const fn hf(self) -> &'static str {
        match self {
            Proj::Q => "self_attn.q_proj",
            Proj::K => "self_attn.k_proj",
            Proj::V => "self_attn.v_proj",
            Proj::O => "self_attn.o_proj",
            Proj::Gate => "mlp.gate_proj",
            Proj::Up => "mlp.up_proj",
            Proj::Down => "mlp.down_proj",
        }
    }

    /// The name inside a llama.cpp block (`blk.{i}.<gguf>.weight`).
    pub const fn gguf(self) -> &'static str {
        match self {
            Proj::Q => "attn_q",
            Proj::K => "attn_k",
            Proj::V => "attn_v",
            Proj::O => "attn_output",
            Proj::Gate => "ffn_gate",
            Proj::Up => "ffn_up",
            Proj::Down => "ffn_down",
        }
    }

    /// `out_features` (the rows of the weight).
    pub const fn out_dim(self) -> Dim {
        match self {
            Proj::Q => Dim::QueryWidth,
            Proj::K | Proj::V => Dim::KvWidth,
            Proj::O | Proj::Down => Dim::Hidden,
            Proj::Gate | Proj::Up => Dim::Intermediate,
        }
    }

    /// `in_features` (the columns of the weight).
    pub const fn in_dim(self) -> Dim {
        match self {
            Proj::O => Dim::QueryWidth,
            Proj::Down => Dim::Intermediate,
            _ => Dim::Hidden,
        }
    }

    /// Heads of the rows llama.cpp's converter interleaves for its RoPE (queries and keys only):
    /// GGUF files of those architectures store these rows permuted.
    pub fn rope_heads(self, c: &BitNetConfig) -> Option<usize> {
        match self {
            Proj::Q => Some(c.num_attention_heads),
            Proj::K => Some(c.num_kv_heads()),
            _ => None,
        }
    }
}

/// One tensor of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerTensor {
    Norm(Norm),
    Proj(Proj),
}

impl LayerTensor {
    /// A layer's tensors: the norms, then the projections (the order of the trainer's world).
    pub const ALL: [LayerTensor; 11] = [
        LayerTensor::Norm(Norm::Input),
        LayerTensor::Norm(Norm::PostAttention),
        LayerTensor::Norm(Norm::AttnSub),
        LayerTensor::Norm(Norm::FfnSub),
        LayerTensor::Proj(Proj::Q),
        LayerTensor::Proj(Proj::K),
        LayerTensor::Proj(Proj::V),
        LayerTensor::Proj(Proj::O),
        LayerTensor::Proj(Proj::Gate),
        LayerTensor::Proj(Proj::Up),
        LayerTensor::Proj(Proj::Down),
    ];

    pub const fn hf(self) -> &'static str {
        match self {
            LayerTensor::Norm(n) => n.hf(),
            LayerTensor::Proj(p) => p.hf(),
        }
    }

    pub const fn gguf(self) -> &'static str {
        match self {
            LayerTensor::Norm(n) => n.gguf(),
            LayerTensor::Proj(p) => p.gguf(),
        }
    }

    pub fn dims(self) -> Vec<Dim> {
        match self {
            LayerTensor::Norm(n) => vec![n.dim()],
            LayerTensor::Proj(p) => vec![p.out_dim(), p.in_dim()],
        }
    }

    pub const fn kind(self) -> TensorKind {
        match self {
            LayerTensor::Norm(_) => TensorKind::Norm,
            LayerTensor::Proj(_) => TensorKind::Ternary,
        }
    }
}

/// One tensor of a BitNet model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelTensor {
    /// `[vocab, hidden]` token embedding.
    Embedding,
    /// A tensor of decoder layer `layer`.
    Layer(usize, LayerTensor),
    /// The gain of the norm before the output projection.
    FinalNorm,
    /// The untied output projection `[vocab, hidden]` (absent when tied to the embedding).
    LmHead,
}

impl ModelTensor {
    /// A projection of layer `layer`.
    pub const fn proj(layer: usize, p: Proj) -> ModelTensor {
        ModelTensor::Layer(layer, LayerTensor::Proj(p))
    }

    /// A norm of layer `layer`.
    pub const fn norm(layer: usize, n: Norm) -> ModelTensor {
        ModelTensor::Layer(layer, LayerTensor::Norm(n))
    }

    /// The transformers name, without the `.weight` suffix (the module's path).
    pub fn hf_module(&self) -> String {
        match self {
            ModelTensor::Embedding => "model.embed_tokens".into(),
            ModelTensor::Layer(i, t) => format!("{HF_LAYER_PREFIX}{i}.{}", t.hf()),
            ModelTensor::FinalNorm => "model.norm".into(),
            ModelTensor::LmHead => "lm_head".into(),
        }
    }

    /// The transformers tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub fn hf_name(&self) -> String {
        format!("{}{WEIGHT_SUFFIX}", self.hf_module())
    }

    /// The name of the packed weight's scale (transformers' offline layout; only projections
    /// have one, but the name is well defined for every tensor).
    pub fn hf_scale_name(&self) -> String {
        format!("{}{SCALE_SUFFIX}", self.hf_module())
    }

    /// The llama.cpp name without the `.weight` suffix, e.g. `blk.0.attn_q`.
    pub fn gguf_module(&self) -> String {
        match self {
            ModelTensor::Embedding => "token_embd".into(),
            ModelTensor::Layer(i, t) => format!("{GGUF_LAYER_PREFIX}{i}.{}", t.gguf()),
            ModelTensor::FinalNorm => "output_norm".into(),
            ModelTensor::LmHead => "output".into(),
        }
    }

    /// The llama.cpp tensor name, e.g. `blk.0.attn_q.weight`.
    pub fn gguf_name(&self) -> String {
        format!("{}{WEIGHT_SUFFIX}", self.gguf_module())
    }

    /// llama.cpp's per-tensor scale beside a ternary weight, e.g. `blk.0.attn_q.scale`.
    pub fn gguf_scale_name(&self) -> String {
        format!("{}{GGUF_SCALE_SUFFIX}", self.gguf_module())
    }

    /// The shape in symbolic dimensions (`[out, in]` for matrices).
    pub fn dims(&self) -> Vec<Dim> {
        match self {
            ModelTensor::Embedding | ModelTensor::LmHead => vec![Dim::Vocab, Dim::Hidden],
            ModelTensor::Layer(_, t) => t.dims(),
            ModelTensor::FinalNorm => vec![Dim::Hidden],
        }
    }

    /// The logical shape for a config (packed storage differs: see the loader).
    pub fn shape(&self, d: &Dims) -> Vec<usize> {
        d.shape(&self.dims())
    }

    pub fn kind(&self) -> TensorKind {
        match self {
            ModelTensor::Embedding | ModelTensor::LmHead => TensorKind::Embedding,
            ModelTensor::Layer(_, t) => t.kind(),
            ModelTensor::FinalNorm => TensorKind::Norm,
        }
    }

    pub fn is_ternary(&self) -> bool {
        self.kind() == TensorKind::Ternary
    }

    /// The tensor a transformers weight name denotes, if it is one of BitNet's.
    pub fn parse_hf(name: &str) -> Option<ModelTensor> {
        let module = name.strip_suffix(WEIGHT_SUFFIX)?;
        [
            ModelTensor::Embedding,
            ModelTensor::FinalNorm,
            ModelTensor::LmHead,
        ]
        .into_iter()
        .find(|t| t.hf_module() == module)
        .or_else(|| {
            let (i, rest) = split_layer(module, HF_LAYER_PREFIX)?;
            LayerTensor::ALL
                .into_iter()
                .find(|t| t.hf() == rest)
                .map(|t| ModelTensor::Layer(i, t))
        })
    }

    /// The tensor a llama.cpp (GGUF) weight name denotes, if it is one of BitNet's.
    pub fn parse_gguf(name: &str) -> Option<ModelTensor> {
        let module = name.strip_suffix(WEIGHT_SUFFIX)?;
        [
            ModelTensor::Embedding,
            ModelTensor::FinalNorm,
            ModelTensor::LmHead,
        ]
        .into_iter()
        .find(|t| t.gguf_module() == module)
        .or_else(|| {
            let (i, rest) = split_layer(module, GGUF_LAYER_PREFIX)?;
            LayerTensor::ALL
                .into_iter()
                .find(|t| t.gguf() == rest)
                .map(|t| ModelTensor::Layer(i, t))
        })
    }

    /// Every tensor of a model with `layers` decoder layers: the embedding, each layer's
    /// tensors in [`LayerTensor::ALL`] order, the final norm, and `lm_head` unless `tied`.
    pub fn all(layers: usize, tied: bool) -> Vec<ModelTensor> {
        let mut out = vec![ModelTensor::Embedding];
        for i in 0..layers {
            out.extend(LayerTensor::ALL.map(|t| ModelTensor::Layer(i, t)));
        }
        out.push(ModelTensor::FinalNorm);
        if !tied {
            out.push(ModelTensor::LmHead);
        }
        out
    }

    /// Every tensor a config describes.
    pub fn of_config(c: &BitNetConfig) -> Vec<ModelTensor> {
        Self::all(c.num_hidden_layers, c.tie_word_embeddings)
    }
}

/// `{prefix}{layer}.{rest}` → `(layer, rest)`.
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let (index, rest) = name.strip_prefix(prefix)?.split_once('.')?;
    Some((index.parse().ok()?, rest))
}

/// The decoder layer a transformers tensor name belongs to, if it names one (of any width).
pub fn hf_layer_index(name: &str) -> Option<usize> {
    split_layer(name, HF_LAYER_PREFIX).map(|(i, _)| i)
}

/// The block a GGUF tensor name belongs to, if it names one.
pub fn gguf_layer_index(name: &str) -> Option<usize> {
    split_layer(name, GGUF_LAYER_PREFIX).map(|(i, _)| i)
}

/// The scale tensor's name for a weight name (`….weight` → `….weight_scale`), if it is one.
pub fn scale_name_of(weight_name: &str) -> Option<String> {
    weight_name
        .strip_suffix(WEIGHT_SUFFIX)
        .map(|m| format!("{m}{SCALE_SUFFIX}"))
}

/// llama.cpp's per-tensor scale name for any GGUF weight name (`….weight` → `….scale`).
pub fn gguf_scale_name_of(weight_name: &str) -> String {
    let module = weight_name
        .strip_suffix(WEIGHT_SUFFIX)
        .unwrap_or(weight_name);
    format!("{module}{GGUF_SCALE_SUFFIX}")
}

/// The projection a weight name denotes: a BitNet name, or any name whose last module is one of
/// BitNet's projection modules (`…q_proj.weight`), as Llama-family checkpoints name them.
pub fn proj_of_weight_name(name: &str) -> Option<Proj> {
    if let Some(ModelTensor::Layer(_, LayerTensor::Proj(p))) = ModelTensor::parse_hf(name) {
        return Some(p);
    }
    let leaf = name.strip_suffix(WEIGHT_SUFFIX)?.rsplit('.').next()?;
    Proj::ALL
        .into_iter()
        .find(|p| p.hf().rsplit('.').next() == Some(leaf))
}

/// Whether a tensor of some checkpoint is a linear layer's weight: BitNet's projections, or by
/// the `*_proj.weight` convention that Llama-family checkpoints share (verify inspects those too).
pub fn is_projection_name(name: &str) -> bool {
    ModelTensor::parse_hf(name).is_some_and(|t| t.is_ternary()) || name.ends_with("_proj.weight")
}

/// Whether a tensor of some checkpoint is one BitNet keeps in full precision: a known embedding,
/// norm or output projection, a scale, or (for other architectures) anything named like one.
pub fn is_full_precision_name(name: &str) -> bool {
    ModelTensor::parse_hf(name).is_some_and(|t| !t.is_ternary())
        || name.contains("embed")
        || name.contains(&ModelTensor::LmHead.hf_module())
        || name.contains("norm")
        || name.ends_with(SCALE_SUFFIX)
}

/// A decoder layer's eleven tensors as named fields; `N` is a norm's type, `P` a projection's.
///
/// The engine holds its converted layers as `LayerTensors<Vec<f32>, BitLinear>`, the trainer its
/// parameters as graph tensors; [`LayerTensors::norm`] and [`LayerTensors::proj`] are the one
/// place a role maps to its field.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTensors<N, P> {
    pub input_layernorm: N,
    pub post_attention_layernorm: N,
    pub attn_sub_norm: N,
    pub ffn_sub_norm: N,
    pub q_proj: P,
    pub k_proj: P,
    pub v_proj: P,
    pub o_proj: P,
    pub gate_proj: P,
    pub up_proj: P,
    pub down_proj: P,
}

impl<N, P> LayerTensors<N, P> {
    /// Builds a layer role by role, norms first, stopping at the first error.
    pub fn try_build<E>(
        mut norm: impl FnMut(Norm) -> Result<N, E>,
        mut proj: impl FnMut(Proj) -> Result<P, E>,
    ) -> Result<Self, E> {
        Ok(LayerTensors {
            input_layernorm: norm(Norm::Input)?,
            post_attention_layernorm: norm(Norm::PostAttention)?,
            attn_sub_norm: norm(Norm::AttnSub)?,
            ffn_sub_norm: norm(Norm::FfnSub)?,
            q_proj: proj(Proj::Q)?,
            k_proj: proj(Proj::K)?,
            v_proj: proj(Proj::V)?,
            o_proj: proj(Proj::O)?,
            gate_proj: proj(Proj::Gate)?,
            up_proj: proj(Proj::Up)?,
            down_proj: proj(Proj::Down)?,
        })
    }

    pub fn norm(&self, n: Norm) -> &N {
        match n {
            Norm::Input => &self.input_layernorm,
            Norm::PostAttention => &self.post_attention_layernorm,
            Norm::AttnSub => &self.attn_sub_norm,
            Norm::FfnSub => &self.ffn_sub_norm,
        }
    }

    pub fn proj(&self, p: Proj) -> &P {
        match p {
            Proj::Q => &self.q_proj,
            Proj::K => &self.k_proj,
            Proj::V => &self.v_proj,
            Proj::O => &self.o_proj,
            Proj::Gate => &self.gate_proj,
            Proj::Up => &self.up_proj,
            Proj::Down => &self.down_proj,
        }
    }

    /// The projections in [`Proj::ALL`] order.
    pub fn projections(&self) -> [&P; 7] {
        Proj::ALL.map(|p| self.proj(p))
    }

    /// The projections in [`Proj::ALL`] order, to change in place.
    pub fn projections_mut(&mut self) -> [&mut P; 7] {
        [
            &mut self.q_proj,
            &mut self.k_proj,
            &mut self.v_proj,
            &mut self.o_proj,
            &mut self.gate_proj,
            &mut self.up_proj,
            &mut self.down_proj,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ModelTensor::all(3, false) {
            assert_eq!(ModelTensor::parse_hf(&t.hf_name()), Some(t), "{t:?}");
            assert_eq!(ModelTensor::parse_gguf(&t.gguf_name()), Some(t), "{t:?}");
            assert_eq!(ModelTensor::parse_gguf(&t.hf_name()), None, "{t:?}");
        }
        assert_eq!(ModelTensor::parse_gguf("blk.0.attn_q.scale"), None);
        assert_eq!(
            ModelTensor::proj(2, Proj::Q).hf_name(),
            "model.layers.2.self_attn.q_proj.weight"
        );
        assert_eq!(
            ModelTensor::proj(2, Proj::O).gguf_name(),
            "blk.2.attn_output.weight"
        );
        assert_eq!(
            hf_layer_index("model.layers.12.mlp.up_proj.weight"),
            Some(12)
        );
        assert_eq!(gguf_layer_index("blk.4.ffn_up.weight"), Some(4));
        assert_eq!(
            ModelTensor::parse_hf("model.layers.x.mlp.up_proj.weight"),
            None
        );
    }

    #[test]
    fn every_layer_tensor_has_a_distinct_field() {
        let l: LayerTensors<usize, usize> =
            LayerTensors::try_build::<()>(|n| Ok(n as usize), |p| Ok(10 + p as usize)).unwrap();
        for n in Norm::ALL {
            assert_eq!(*l.norm(n), n as usize);
        }
        for p in Proj::ALL {
            assert_eq!(*l.proj(p), 10 + p as usize);
        }
    }
}
