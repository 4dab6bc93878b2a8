//! Loading a BitNet b1.58 model from one GGUF file.
//!
//! Three architecture names are in use: llama.cpp's `bitnet` (SiLU gate, rotate-half RoPE, as
//! transformers stores Q/K) and bitnet.cpp's `bitnet-b1.58` / `bitnet-25` (squared-ReLU gate,
//! the 2B-4T model; Q/K rows in llama's interleaved RoPE order, which is undone here). Ternary
//! tensors (TQ1_0, TQ2_0, I2_S) are read as trits and scales — no requantisation — and packed
//! once into the kernels' layout; TQ's per-256 scales stay per-group scales. An optional
//! `*.scale` F32 tensor (llama.cpp's per-tensor BitNet scale) multiplies them. Float or k-quant
//! linear weights that hold exactly `{−s, 0, +s}` become trits with scale `s`; anything else is
//! ternarised by absmean like an online checkpoint. F16/BF16/F32 embeddings stay in the mapping.

use super::{BitLinear, DecoderLayer, Model, WeightFormat};
use crate::config::{BitNetConfig, LinearClass, QuantizationConfig, TokenIds};
use crate::error::{EngineError, Result};
use crate::layout::{Dims, LayerTensors, ModelTensor, Proj};
use crate::ops::Rope;
use crate::weights::{FloatDtype, FloatMatrix};
use rayon::prelude::*;
use std::path::Path;
use tritlab_gguf::{GgmlType, GgufFile, TensorInfo, TritScales};
use tritlab_kernels::{
    count_trits, quantize_absmean, ScaleGranularity, TernaryMatrix, WeightScale,
};

impl From<tritlab_gguf::GgufError> for EngineError {
    fn from(e: tritlab_gguf::GgufError) -> Self {
        match e {
            tritlab_gguf::GgufError::Io { path, error } => EngineError::Io { path, error },
            // The message already names the file, tensor and offset.
            other => EngineError::Invalid(other.to_string()),
        }
    }
}

/// Whether `path` is a GGUF file (by extension, or by its magic bytes).
pub fn is_gguf(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

/// What an architecture name implies about the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufArch {
    pub name: &'static str,
    /// `hidden_act` of the equivalent transformers config.
    pub hidden_act: &'static str,
    /// Q/K rows are permuted for llama's interleaved RoPE (llama.cpp's `permute`).
    pub interleaved_qk: bool,
}

pub const ARCHES: [GgufArch; 3] = [
    GgufArch {
        name: "bitnet",
        hidden_act: "silu",
        interleaved_qk: false,
    },
    GgufArch {
        name: "bitnet-b1.58",
        hidden_act: "relu2",
        interleaved_qk: true,
    },
    GgufArch {
        name: "bitnet-25",
        hidden_act: "relu2",
        interleaved_qk: true,
    },
];

pub fn arch_of(g: &GgufFile) -> Result<GgufArch> {
    let name = g.str_key("general.architecture")?;
    ARCHES
        .iter()
        .find(|a| a.name == name)
        .copied()
        .ok_or_else(|| {
            EngineError::config(
                g.path(),
                format!(
                    "unsupported GGUF architecture {name:?} (tritlab runs \"bitnet\", \"bitnet-b1.58\" and \"bitnet-25\")"
                ),
            )
        })
}

/// The transformers-style config a GGUF file's hyper-parameters describe.
pub fn config_from_gguf(g: &GgufFile) -> Result<BitNetConfig> {
    let arch = arch_of(g)?;
    let a = arch.name;
    let req = |k: &str| -> Result<usize> {
        let key = format!("{a}.{k}");
        Ok(g.u64_key(&key)?.ok_or_else(|| {
            EngineError::config(g.path(), format!("metadata key `{key}` is missing"))
        })? as usize)
    };
    let opt = |k: &str| -> Result<Option<usize>> {
        Ok(g.u64_key(&format!("{a}.{k}"))?.map(|v| v as usize))
    };
    let embd_name = ModelTensor::Embedding.gguf_name();
    let embd = g.require(&embd_name)?;
    if embd.dims.len() != 2 {
        return Err(EngineError::config(
            g.path(),
            format!(
                "tensor `{embd_name}` has dimensions {:?}, expected 2",
                embd.dims
            ),
        ));
    }
    let hidden = req("embedding_length")?;
    let heads = req("attention.head_count")?;
    let head_dim = opt("attention.key_length")?;
    let bos = g.u64_key("tokenizer.ggml.bos_token_id")?;
    let mut eos: Vec<u32> = Vec::new();
    for k in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = g.u64_key(k)? {
            if !eos.contains(&(id as u32)) {
                eos.push(id as u32);
            }
        }
    }
    let config = BitNetConfig {
        model_type: "bitnet".into(),
        vocab_size: embd.dims[1],
        hidden_size: hidden,
        intermediate_size: req("feed_forward_length")?,
        num_hidden_layers: req("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(opt("attention.head_count_kv")?.unwrap_or(heads)),
        head_dim,
        hidden_act: arch.hidden_act.into(),
        max_position_embeddings: opt("context_length")?.unwrap_or(2048),
        rms_norm_eps: g
            .f64_key(&format!("{a}.attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta: Some(
            g.f64_key(&format!("{a}.rope.freq_base"))?
                .unwrap_or(10_000.0),
        ),
        rope_parameters: None,
        rope_scaling: None,
        tie_word_embeddings: g.tensor(&ModelTensor::LmHead.gguf_name()).is_none(),
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: bos.map(|b| TokenIds::One(b as u32)),
        eos_token_id: (!eos.is_empty()).then_some(TokenIds::Many(eos)),
        quantization_config: Some(QuantizationConfig {
            quant_method: Some("bitnet".into()),
            linear_class: Some("autobitlinear".into()),
            quantization_mode: Some("offline".into()),
            use_rms_norm: None,
            weight_group_size: None,
        }),
    };
    config.validate(g.path())?;
    if let Some(rot) = opt("rope.dimension_count")? {
        if rot != config.head_dim() {
            return Err(EngineError::config(
                g.path(),
                format!(
                    "`{a}.rope.dimension_count` is {rot}, but heads are {} wide (partial RoPE is not supported)",
                    config.head_dim()
                ),
            ));
        }
    }
    Ok(config)
}

/// A ternary matrix read from any GGUF tensor type, with what verify reports about it.
pub struct GgufTernary {
    pub trits: Vec<i8>,
    pub scale: WeightScale,
    /// "trits" (TQ1_0/TQ2_0/I2_S), "float-ternary" (floats in {−s, 0, +s}) or "latent"
    /// (floats ternarised by absmean).
    pub source: &'static str,
    /// Blocks whose stored scale was zero (their trits are read as zeros) or negative (their
    /// trits are negated and the scale made positive): the products are unchanged.
    pub zero_blocks: usize,
    pub negative_blocks: usize,
    /// The scales as the file stores them, before the `.scale` multiplier: one per block
    /// (TQ1_0/TQ2_0), one for the tensor (I2_S), none for floats.
    pub stored_scales: Vec<f32>,
}

fn tensor_value(g: &GgufFile, t: &TensorInfo, message: impl Into<String>) -> EngineError {
    EngineError::tensor_value(
        g.path(),
        &t.name,
        format!("(data at byte {}) {}", t.offset, message.into()),
    )
}

/// Reads one `[rows, cols]` linear weight (ggml dims `[cols, rows]`) as trits and scales.
/// A float or block-quantised tensor's `len` values widened to f32, or an error naming the
/// tensor and its byte offset when its type is one tritlab does not read.
pub fn dequantized(g: &GgufFile, t: &TensorInfo, len: usize) -> Result<Vec<f32>> {
    tritlab_gguf::dequantize(t.ty, g.data(t), len).ok_or_else(|| EngineError::TensorDtype {
        path: g.path().to_path_buf(),
        tensor: format!("{} (data at byte {})", t.name, t.offset),
        expected: "TQ1_0, TQ2_0, I2_S, F32, F16, BF16, Q8_0, Q4_K or Q6_K".into(),
        actual: t.ty.name().into(),
    })
}

pub fn read_ternary(g: &GgufFile, t: &TensorInfo, rows: usize, cols: usize) -> Result<GgufTernary> {
    if t.dims != [cols, rows] {
        return Err(EngineError::TensorShape {
            path: g.path().to_path_buf(),
            tensor: format!("{} (data at byte {})", t.name, t.offset),
            expected: vec![rows, cols],
            actual: t.shape(),
        });
    }
    let extra = tensor_scale(g, &t.name)?;
    let data = g.data(t);
    let out = if t.ty.is_ternary() {
        let tt = tritlab_gguf::ternary(t.ty, data, rows * cols).map_err(|e| {
            tensor_value(
                g,
                t,
                format!("at byte {} of its data: {}", e.byte, e.message),
            )
        })?;
        let (trits, raw) = (tt.trits, tt.scales);
        let mut r = GgufTernary {
            trits,
            scale: WeightScale::PerTensor(1.0),
            source: "trits",
            zero_blocks: 0,
            negative_blocks: 0,
            stored_scales: Vec::new(),
        };
        match raw {
            TritScales::PerTensor(stored) => {
                r.stored_scales = vec![stored];
                let s = stored * extra;
                if !(s.is_finite() && s > 0.0) {
                    return Err(tensor_value(
                        g,
                        t,
                        format!("scale {s} is not finite and positive"),
                    ));
                }
                r.scale = WeightScale::PerTensor(s);
            }
            TritScales::PerBlock { block, scales } => {
                let mut fixed = Vec::with_capacity(scales.len());
                for (b, &d) in scales.iter().enumerate() {
                    let d = d * extra;
                    let trits = &mut r.trits[b * block..(b + 1) * block];
                    if !d.is_finite() {
                        return Err(tensor_value(g, t, format!("block {b} has scale {d}")));
                    }
                    if d == 0.0 {
                        // The block's weights are all zero whatever its trits say.
                        trits.fill(0);
                        r.zero_blocks += 1;
                        fixed.push(f32::NAN);
                    } else if d < 0.0 {
                        trits.iter_mut().for_each(|x| *x = -*x);
                        r.negative_blocks += 1;
                        fixed.push(-d);
                    } else {
                        fixed.push(d);
                    }
                }
                // A zero block keeps the scale of a neighbour (any positive value gives 0).
                let fill = fixed.iter().copied().find(|v| !v.is_nan()).unwrap_or(1.0);
                fixed
                    .iter_mut()
                    .filter(|v| v.is_nan())
                    .for_each(|v| *v = fill);
                r.scale = if fixed.iter().all(|&v| v == fixed[0]) {
                    WeightScale::PerTensor(fixed[0])
                } else {
                    // Blocks run along rows (row length is a multiple of the block).
                    WeightScale::PerGroup {
                        group_size: block,
                        scales: fixed,
                    }
                };
                r.stored_scales = scales;
            }
        }
        r
    } else {
        let mut w = dequantized(g, t, rows * cols)?;
        if extra != 1.0 {
            w.iter_mut().for_each(|v| *v *= extra);
        }
        float_ternary(&w, rows, cols).map_err(|e| tensor_value(g, t, e.to_string()))?
    };
    if out.trits.len() != rows * cols {
        return Err(tensor_value(g, t, "decoded to the wrong number of values"));
    }
    out.scale
        .validate(rows, cols)
        .map_err(|e| tensor_value(g, t, e.to_string()))?;
    Ok(out)
}

/// Floats that are exactly `{−s, 0, +s}` give their trits and `s`; others are ternarised by
/// per-tensor absmean, as transformers' online mode does.
pub fn float_ternary(
    w: &[f32],
    rows: usize,
    cols: usize,
) -> std::result::Result<GgufTernary, tritlab_kernels::KernelError> {
    let s = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    if s > 0.0 && s.is_finite() && w.iter().all(|&v| v == 0.0 || v.abs() == s) {
        let trits = w
            .iter()
            .map(|&v| {
                if v == 0.0 {
                    0
                } else if v > 0.0 {
                    1
                } else {
                    -1
                }
            })
            .collect();
        return Ok(GgufTernary {
            trits,
            scale: WeightScale::PerTensor(s),
            source: "float-ternary",
            zero_blocks: 0,
            negative_blocks: 0,
            stored_scales: Vec::new(),
        });
    }
    let q = quantize_absmean(w, rows, cols, ScaleGranularity::PerTensor)?;
    Ok(GgufTernary {
        trits: q.trits,
        scale: q.scale,
        source: "latent",
        zero_blocks: 0,
        negative_blocks: 0,
        stored_scales: Vec::new(),
    })
}

/// llama.cpp's optional per-tensor scale (`blk.N.attn_q.scale`, F32 `[1]`), or 1.
pub fn tensor_scale(g: &GgufFile, weight_name: &str) -> Result<f32> {
    let name = crate::layout::gguf_scale_name_of(weight_name);
    let Some(t) = g.tensor(&name) else {
        return Ok(1.0);
    };
    let v = tritlab_gguf::dequantize(t.ty, g.data(t), t.elements()).unwrap_or_default();
    match v.as_slice() {
        [s] if s.is_finite() && *s > 0.0 => Ok(*s),
        _ => Err(tensor_value(
            g,
            t,
            format!("expected one finite, positive scale, got {v:?}"),
        )),
    }
}

/// Undoes llama's Q/K row permutation (`permute` in convert_hf_to_gguf.py): within each head,
/// stored row `2i + j` is transformers' row `j·head_dim/2 + i`.
pub fn unpermute_rows<T: Copy>(v: &[T], heads: usize, row_len: usize) -> Vec<T> {
    let rows = v.len() / row_len;
    let hd = rows / heads;
    let mut out = v.to_vec();
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * (hd / 2) + i;
                out[dst * row_len..(dst + 1) * row_len]
                    .copy_from_slice(&v[src * row_len..(src + 1) * row_len]);
            }
        }
    }
    out
}

/// The inverse of [`unpermute_rows`] (what a writer for the interleaved architectures does).
pub fn permute_rows<T: Copy>(v: &[T], heads: usize, row_len: usize) -> Vec<T> {
    let rows = v.len() / row_len;
    let hd = rows / heads;
    let mut out = v.to_vec();
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let dst = h * hd + 2 * i + j;
                let src = h * hd + j * (hd / 2) + i;
                out[dst * row_len..(dst + 1) * row_len]
                    .copy_from_slice(&v[src * row_len..(src + 1) * row_len]);
            }
        }
    }
    out
}

fn norm(g: &GgufFile, name: &str, size: usize) -> Result<Vec<f32>> {
    let t = g.require(name)?;
    if t.dims != [size] {
        return Err(EngineError::TensorShape {
            path: g.path().to_path_buf(),
            tensor: format!("{name} (data at byte {})", t.offset),
            expected: vec![size],
            actual: t.shape(),
        });
    }
    let v = tritlab_gguf::dequantize(t.ty, g.data(t), size)
        .ok_or_else(|| tensor_value(g, t, format!("{} is not a float type", t.ty)))?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(tensor_value(
            g,
            t,
            format!("non-finite value {} at index {i}", v[i]),
        ));
    }
    Ok(v)
}

/// A `[vocab, hidden]` float matrix: mapped as it lies for F32/F16/BF16, else dequantised.
fn float_matrix(g: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<FloatMatrix> {
    let t = g.require(name)?;
    if t.dims != [cols, rows] {
        return Err(EngineError::TensorShape {
            path: g.path().to_path_buf(),
            tensor: format!("{name} (data at byte {})", t.offset),
            expected: vec![rows, cols],
            actual: t.shape(),
        });
    }
    let dtype = match t.ty {
        GgmlType::F32 => Some(FloatDtype::F32),
        GgmlType::F16 => Some(FloatDtype::F16),
        GgmlType::BF16 => Some(FloatDtype::BF16),
        _ => None,
    };
    if let Some(dtype) = dtype {
        let range = g.range(t);
        if range.start.is_multiple_of(dtype.size()) {
            return FloatMatrix::mapped(g.mmap().clone(), range, rows, cols, dtype);
        }
    }
    let v = tritlab_gguf::dequantize(t.ty, g.data(t), rows * cols)
        .ok_or_else(|| tensor_value(g, t, format!("{} cannot be read as a float matrix", t.ty)))?;
    FloatMatrix::from_f32(v, rows, cols)
}

/// A layer's projection; the flag says whether its weights were latent floats.
fn linear(
    g: &GgufFile,
    layer: usize,
    proj: Proj,
    dims: &Dims,
    permute_heads: Option<usize>,
) -> Result<(BitLinear, bool)> {
    let tensor = ModelTensor::proj(layer, proj);
    let (rows, cols) = (dims.get(proj.out_dim()), dims.get(proj.in_dim()));
    let name = tensor.gguf_name();
    let t = g.require(&name)?;
    let mut r = read_ternary(g, t, rows, cols)?;
    if let Some(heads) = permute_heads {
        r.trits = unpermute_rows(&r.trits, heads, cols);
        if let WeightScale::PerGroup { group_size, scales } = &mut r.scale {
            let per_row = cols.div_ceil(*group_size);
            *scales = unpermute_rows(scales, heads, per_row);
        }
    }
    let err = |e: tritlab_kernels::KernelError| tensor_value(g, t, e.to_string());
    let counts = count_trits(&r.trits).map_err(err)?;
    let matrix = TernaryMatrix::from_trits(&r.trits, rows, cols, r.scale).map_err(err)?;
    g.release(t);
    Ok((
        BitLinear {
            name: tensor.hf_name(),
            matrix,
            trits: counts.into(),
        },
        r.source == "latent",
    ))
}

fn layer(g: &GgufFile, i: usize, c: &BitNetConfig, arch: GgufArch) -> Result<(DecoderLayer, bool)> {
    let dims = Dims::of(c);
    let mut latent = false;
    let layer = LayerTensors::try_build(
        |n| norm(g, &ModelTensor::norm(i, n).gguf_name(), dims.get(n.dim())),
        |p| {
            let heads = p.rope_heads(c).filter(|_| arch.interleaved_qk);
            let (l, lat) = linear(g, i, p, &dims, heads)?;
            latent |= lat;
            Ok(l)
        },
    )?;
    Ok((layer, latent))
}

/// Loads a GGUF file into a [`Model`].
pub fn load(path: &Path) -> Result<Model> {
    let g = GgufFile::open(path)?;
    let arch = arch_of(&g)?;
    let config = config_from_gguf(&g)?;
    let c = &config;
    // Layers beyond block_count mean the metadata describes another model.
    for t in g.tensors() {
        if let Some(idx) = crate::layout::gguf_layer_index(&t.name) {
            if idx >= c.num_hidden_layers {
                return Err(EngineError::ConfigMismatch {
                    path: path.to_path_buf(),
                    tensor: format!("{} (data at byte {})", t.name, t.offset),
                    message: format!(
                        "block_count is {}, but this layer exists",
                        c.num_hidden_layers
                    ),
                });
            }
        }
    }
    let embed = float_matrix(
        &g,
        &ModelTensor::Embedding.gguf_name(),
        c.vocab_size,
        c.hidden_size,
    )?;
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(float_matrix(
            &g,
            &ModelTensor::LmHead.gguf_name(),
            c.vocab_size,
            c.hidden_size,
        )?)
    };
    let norm_w = norm(&g, &ModelTensor::FinalNorm.gguf_name(), c.hidden_size)?;
    let loaded = (0..c.num_hidden_layers)
        .into_par_iter()
        .map(|i| layer(&g, i, c, arch))
        .collect::<Result<Vec<_>>>()?;
    let latent = loaded.iter().any(|(_, l)| *l);
    let layers = loaded.into_iter().map(|(l, _)| l).collect();
    let p = Path::new("config.json");
    Ok(Model {
        rope: Rope::new(c.head_dim(), c.rope_theta()),
        activation: c.activation(p)?,
        eos_token_ids: c.eos_token_ids(),
        format: if latent {
            WeightFormat::Latent
        } else {
            WeightFormat::Packed {
                linear_class: LinearClass::AutoBitLinear,
            }
        },
        config,
        path: path.to_path_buf(),
        embed,
        lm_head,
        head: None,
        layers,
        norm: norm_w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_round_trips() {
        let v: Vec<u32> = (0..8 * 3).collect();
        let p = permute_rows(&v, 2, 3);
        assert_ne!(p, v);
        assert_eq!(unpermute_rows(&p, 2, 3), v);
    }

    #[test]
    fn float_ternary_is_exact_or_absmean() {
        let w = [0.5f32, -0.5, 0.0, 0.5];
        let t = float_ternary(&w, 1, 4).unwrap();
        assert_eq!(t.source, "float-ternary");
        assert_eq!(t.trits, vec![1, -1, 0, 1]);
        assert_eq!(t.scale, WeightScale::PerTensor(0.5));
        let t = float_ternary(&[0.5, -0.25, 0.0, 0.1], 1, 4).unwrap();
        assert_eq!(t.source, "latent");
    }
}
