//! What makes a BitNet real: are the stored linear weights ternary?
//!
//! For every linear weight of a checkpoint this counts how many stored values are ternary —
//! equal to −s, 0 or +s for the tensor's (or a row's, or a 128-column group's) scale `s`, not
//! merely close to −1/0/1 — and the −1/0/+1 counts after absmean quantisation with their GF(3)
//! sum. Packed uint8 tensors are ternary by construction when every 2-bit code is valid.
//! The verdict says whether the checkpoint stores ternary weights, stores latent weights that
//! are quantised when loaded, or is not ternary at all.
//!
//! A GGUF file is reported the same way, tensor by tensor as the file names them: TQ1_0, TQ2_0
//! and I2_S weights are trits by construction (an invalid code is an error naming the byte), so
//! what matters is their scales — TQ's one per 256-weight block (how many, their range, whether
//! they are all equal), I2_S's one per tensor, and llama.cpp's optional `.scale` tensor that
//! multiplies either. Float and k-quant linear weights get the safetensors check of every value
//! against {−s, 0, +s}. GGUF has no "quantise at load" mode (llama.cpp runs the stored values),
//! so a float weight that is not ternary makes the file not ternary.

use crate::bitnet::gguf_load;
use crate::error::{EngineError, Result};
use crate::layout::{self, Dim, LayerTensor, ModelTensor, Proj};
use crate::stats::TritSummary;
use crate::weights::{TensorRef, WeightSet};
use safetensors::tensor::Dtype;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tritlab_gguf::{GgmlType, GgufFile, TensorInfo, Value};
use tritlab_kernels::{count_trits, quantize_absmean, ScaleGranularity, TritCounts, WeightScale};

/// Relative tolerance for "equals s": two roundings of `t·s` to bf16 stay within 2⁻⁷ of each other.
pub const TERNARY_REL_TOL: f32 = 1.0 / 128.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every linear weight is stored ternary (packed trits, or floats in {−s, 0, +s}).
    StoresTernary,
    /// Float master weights that tritlab (and transformers' online mode) ternarise when loading.
    LatentQuantizedAtLoad,
    /// Some linear weight is neither ternary nor declared to be quantised at load.
    NotTernary,
    /// No linear weights were found.
    NoLinearWeights,
}

/// The per-block scales of a GGUF TQ1_0 / TQ2_0 tensor, as stored (one f16 `d` per block).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockScales {
    /// Weights per block (256).
    pub block: usize,
    /// Number of blocks.
    pub count: usize,
    pub min: f32,
    pub max: f32,
    /// Every block has the same scale: the tensor has one scale in effect (tritlab's writer
    /// stores 1 in every block and the tensor's scale in the `.scale` tensor).
    pub all_equal: bool,
    /// Blocks whose scale is 0 (their weights are all 0, whatever their trits).
    pub zero: usize,
    /// Blocks whose scale is negative (their trits count negated).
    pub negative: usize,
}

impl BlockScales {
    fn of(block: usize, scales: &[f32], zero: usize, negative: usize) -> Self {
        let (min, max) = scales
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        BlockScales {
            block,
            count: scales.len(),
            min,
            max,
            all_equal: scales.windows(2).all(|w| w[0] == w[1]),
            zero,
            negative,
        }
    }
}

/// The first stored value of a float weight that is not ternary, and the scale it was held to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offender {
    pub row: usize,
    pub col: usize,
    pub value: f32,
    /// The `s` of its tensor, row or group (the granularity that fit most values).
    pub scale: Option<f32>,
}

impl std::fmt::Display for Offender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.scale {
            Some(s) => write!(
                f,
                "{} at [{}, {}] is not 0 or ±{s}",
                self.value, self.row, self.col
            ),
            None => write!(f, "{} at [{}, {}] is not 0", self.value, self.row, self.col),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    /// The stored type: a safetensors dtype (`U8`, `BF16`, …) or a GGUF type (`TQ2_0`, `F16`, …).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// "packed" (trits: HF uint8 codes, or GGUF TQ1_0 / TQ2_0 / I2_S blocks) or "float".
    pub storage: &'static str,
    /// The logical `[out, in]` matrix.
    pub rows: usize,
    pub cols: usize,
    pub values: u64,
    /// Stored values that are ternary (valid codes, or in {−s, 0, +s}).
    pub ternary_values: u64,
    pub ternary: bool,
    /// Where the scale that makes the most values ternary lives: "packed" (HF's scale tensor),
    /// "tensor", "row", "group128", or "block256" (GGUF TQ1_0 / TQ2_0: one per 256 weights).
    pub scale_granularity: &'static str,
    /// The tensor scale (packed: the kernels' multiplier; float: `s`, or the absmean scale;
    /// GGUF trits: the one scale in effect, `.scale` included, when there is one).
    pub scale: Option<f32>,
    /// Trits: the stored ones for packed tensors (GGUF: as the blocks' scales leave them: zero
    /// for a zero scale, negated for a negative one), else after per-tensor absmean quantisation.
    pub trits: TritSummary,
    /// GGUF TQ1_0 / TQ2_0: the stored per-block scales.
    pub block_scales: Option<BlockScales>,
    /// GGUF: llama.cpp's per-tensor `.scale` beside the weight, which multiplies it, if present.
    pub tensor_scale: Option<f32>,
    /// A float weight that is not ternary: its first value outside {−s, 0, +s}.
    pub offender: Option<Offender>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtherTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyTotals {
    pub tensors: usize,
    pub ternary_tensors: usize,
    pub values: u64,
    pub ternary_values: u64,
    pub trits: TritSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// "safetensors" (a checkpoint directory or file) or "gguf".
    pub file_format: &'static str,
    /// config.json's `model_type`, or a GGUF file's `general.architecture`.
    pub model_type: Option<String>,
    /// config.json says BitNet (`model_type` "bitnet" or `quant_method` "bitnet"), or a GGUF
    /// file's architecture is one of the BitNet ones tritlab runs.
    pub claims_bitnet: bool,
    pub quantization_mode: Option<String>,
    pub linear_class: Option<String>,
    pub verdict: Verdict,
    /// The verdict in a sentence.
    pub summary: String,
    /// False for a checkpoint that claims BitNet and is not ternary (the CLI exits non-zero).
    pub ok: bool,
    pub linear: Vec<TensorReport>,
    /// Tensors BitNet keeps in full precision (embedding, norms, lm_head, scales).
    pub full_precision: Vec<OtherTensor>,
    pub total: VerifyTotals,
}

/// What config.json (if any) says, read leniently: verify also inspects non-BitNet checkpoints.
#[derive(Default)]
struct ConfigClaims {
    model_type: Option<String>,
    quant_method: Option<String>,
    mode: Option<String>,
    linear_class: Option<String>,
    hidden: Option<usize>,
    intermediate: Option<usize>,
    q_dim: Option<usize>,
    kv_dim: Option<usize>,
}

fn read_claims(config_path: &Path) -> Result<ConfigClaims> {
    if !config_path.is_file() {
        return Ok(ConfigClaims::default());
    }
    let text = std::fs::read_to_string(config_path).map_err(|e| EngineError::io(config_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::config(config_path, format!("invalid JSON: {e}")))?;
    let s = |x: Option<&serde_json::Value>| x.and_then(|v| v.as_str()).map(str::to_string);
    let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
    let q = v.get("quantization_config");
    let (hidden, heads) = (u("hidden_size"), u("num_attention_heads"));
    let head_dim = u("head_dim").or_else(|| Some(hidden? / heads?.max(1)));
    let kv_heads = u("num_key_value_heads").or(heads);
    Ok(ConfigClaims {
        model_type: s(v.get("model_type")),
        quant_method: s(q.and_then(|q| q.get("quant_method"))),
        mode: s(q.and_then(|q| q.get("quantization_mode"))),
        linear_class: s(q.and_then(|q| q.get("linear_class"))),
        hidden,
        intermediate: u("intermediate_size"),
        q_dim: heads.zip(head_dim).map(|(h, d)| h * d),
        kv_dim: kv_heads.zip(head_dim).map(|(h, d)| h * d),
    })
}

impl ConfigClaims {
    fn claims_bitnet(&self) -> bool {
        self.model_type.as_deref() == Some("bitnet")
            || self.quant_method.as_deref() == Some("bitnet")
    }

    /// out_features of a packed tensor, from its name and the config (packed rows hide it).
    fn out_features(&self, name: &str) -> Option<usize> {
        match layout::proj_of_weight_name(name)?.out_dim() {
            Dim::Hidden => self.hidden,
            Dim::Intermediate => self.intermediate,
            Dim::QueryWidth => self.q_dim,
            Dim::KvWidth => self.kv_dim,
            Dim::Vocab => None,
        }
    }
}

/// Verifies a model directory, a single `.safetensors` file (with `config.json` beside it, if
/// any) or a GGUF file.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = path.as_ref();
    if gguf_load::is_gguf(path) {
        return verify_gguf(path);
    }
    let config_path = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).join("config.json")
    } else {
        path.join("config.json")
    };
    let claims = read_claims(&config_path)?;
    let weights = WeightSet::open(path)?;

    let names: Vec<String> = weights.names().map(str::to_string).collect();
    let mut linear_names: Vec<&String> = names
        .iter()
        .filter(|n| layout::is_projection_name(n))
        .collect();
    if linear_names.is_empty() {
        // A checkpoint with other names: every 2-D matrix that BitNet would quantise.
        linear_names = names
            .iter()
            .filter(|n| !layout::is_full_precision_name(n))
            .filter(|n| weights.get(n).map(|t| t.shape.len() == 2).unwrap_or(false))
            .collect();
    }
    let mut linear = Vec::new();
    let mut full_precision = Vec::new();
    for name in &names {
        let t = weights.get(name)?;
        if linear_names.contains(&name) {
            linear.push(check_tensor(&weights, &t, &claims)?);
        } else {
            full_precision.push(OtherTensor {
                name: name.clone(),
                dtype: format!("{:?}", t.dtype),
                shape: t.shape.clone(),
            });
        }
    }
    linear.sort_by_key(|r| natural_key(&r.name));
    let latent_declared = claims.claims_bitnet() && claims.mode.as_deref() != Some("offline");
    Ok(conclude(
        Claims {
            path,
            file_format: "safetensors",
            claims_bitnet: claims.claims_bitnet(),
            latent_declared,
            model_type: claims.model_type,
            quantization_mode: claims.mode,
            linear_class: claims.linear_class,
        },
        linear,
        full_precision,
    ))
}

/// What a file says about itself, for the verdict.
struct Claims<'a> {
    path: &'a Path,
    file_format: &'static str,
    claims_bitnet: bool,
    /// Latent weights are declared to be ternarised at load (transformers' online mode).
    latent_declared: bool,
    model_type: Option<String>,
    quantization_mode: Option<String>,
    linear_class: Option<String>,
}

/// At most this many tensors are named in a verdict that some are not ternary.
const NAMED_OFFENDERS: usize = 3;

/// The verdict and totals over the tensors' reports.
fn conclude(
    claims: Claims<'_>,
    linear: Vec<TensorReport>,
    full_precision: Vec<OtherTensor>,
) -> VerifyReport {
    let mut total = VerifyTotals::default();
    for r in &linear {
        total.tensors += 1;
        total.ternary_tensors += r.ternary as usize;
        total.values += r.values;
        total.ternary_values += r.ternary_values;
        total.trits.merge(&r.trits);
    }
    let all_ternary = total.tensors > 0 && total.ternary_tensors == total.tensors;
    let any_packed_bad = linear.iter().any(|r| r.storage == "packed" && !r.ternary);
    let verdict = if linear.is_empty() {
        Verdict::NoLinearWeights
    } else if all_ternary {
        Verdict::StoresTernary
    } else if claims.latent_declared && !any_packed_bad {
        Verdict::LatentQuantizedAtLoad
    } else {
        Verdict::NotTernary
    };
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    let gguf = claims.file_format == "gguf";
    let summary = match verdict {
        Verdict::StoresTernary => {
            let packed = linear.iter().all(|r| r.storage == "packed");
            let how = if gguf {
                format!("ternary: {}", formats(&linear))
            } else if packed {
                "packed trits with a scale per tensor".to_string()
            } else {
                "in {-s, 0, +s}".to_string()
            };
            format!(
                "stores ternary weights: all {} linear weights ({} values) are {how}",
                total.tensors, total.values,
            )
        }
        Verdict::LatentQuantizedAtLoad => format!(
            "stores latent (full-precision) weights that are quantised to ternary at run time: {:.2}% of {} stored values are ternary; absmean gives {} -1 / {} 0 / {} +1",
            pct(total.ternary_values, total.values),
            total.values,
            total.trits.neg,
            total.trits.zero,
            total.trits.pos
        ),
        Verdict::NotTernary => format!(
            "not ternary: {} of {} linear weights are not ternary ({:.2}% of {} stored values are){}; {}{}",
            total.tensors - total.ternary_tensors,
            total.tensors,
            pct(total.ternary_values, total.values),
            total.values,
            if claims.claims_bitnet {
                if gguf {
                    ", although the architecture is BitNet"
                } else {
                    ", although the config claims BitNet"
                }
            } else {
                ""
            },
            offenders(&linear),
            if gguf {
                " (tritlab ternarises such weights by absmean when it loads the file; llama.cpp \
                 runs them as stored)"
            } else {
                ""
            }
        ),
        Verdict::NoLinearWeights => "no linear weights found".to_string(),
    };
    let ok = !(claims.claims_bitnet
        && matches!(verdict, Verdict::NotTernary | Verdict::NoLinearWeights));
    VerifyReport {
        path: claims.path.to_path_buf(),
        file_format: claims.file_format,
        claims_bitnet: claims.claims_bitnet,
        model_type: claims.model_type,
        quantization_mode: claims.quantization_mode,
        linear_class: claims.linear_class,
        verdict,
        summary,
        ok,
        linear,
        full_precision,
        total,
    }
}

/// How many linear weights are stored in which type, e.g. `12 TQ2_0 (scales per 256-weight
/// block), 2 F16 (in {-s, 0, +s})`.
fn formats(linear: &[TensorReport]) -> String {
    // (type, tensors, granularity, whether every tensor's blocks share one scale)
    let mut seen: Vec<(&str, usize, &'static str, bool)> = Vec::new();
    for r in linear {
        let equal = r.block_scales.as_ref().is_some_and(|b| b.all_equal);
        match seen.iter_mut().find(|(d, ..)| *d == r.dtype) {
            Some(entry) => {
                entry.1 += 1;
                entry.3 &= equal;
            }
            None => seen.push((&r.dtype, 1, r.scale_granularity, equal)),
        }
    }
    seen.iter()
        .map(|&(dtype, n, granularity, equal)| {
            let how = match granularity {
                "block256" if equal => "scales per 256-weight block, all equal within each tensor",
                "block256" => "scales per 256-weight block",
                "packed" => "a scale per tensor",
                "tensor" if dtype.starts_with("I2") => "a scale per tensor",
                _ => "in {-s, 0, +s}",
            };
            format!("{n} {dtype} ({how})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first few tensors that are not ternary, each with why.
fn offenders(linear: &[TensorReport]) -> String {
    let bad: Vec<&TensorReport> = linear.iter().filter(|r| !r.ternary).collect();
    let mut named: Vec<String> = bad
        .iter()
        .take(NAMED_OFFENDERS)
        .map(|r| match &r.offender {
            Some(o) => format!("`{}` ({}: {o})", r.name, r.dtype),
            None => format!(
                "`{}` ({}: {} of {} values)",
                r.name,
                r.dtype,
                r.values - r.ternary_values,
                r.values
            ),
        })
        .collect();
    if bad.len() > NAMED_OFFENDERS {
        named.push(format!("and {} more", bad.len() - NAMED_OFFENDERS));
    }
    format!("not ternary: {}", named.join(", "))
}

/// Verifies a GGUF file: every tensor a BitNet layout names as a projection
/// (`blk.N.attn_q.weight`, …; llama.cpp's other architectures use the same names).
fn verify_gguf(path: &Path) -> Result<VerifyReport> {
    let g = GgufFile::open(path)?;
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .map(str::to_string);
    let claims_bitnet = arch
        .as_deref()
        .is_some_and(|a| gguf_load::ARCHES.iter().any(|x| x.name == a));
    let mut linear = Vec::new();
    let mut full_precision = Vec::new();
    for t in g.tensors() {
        if let Some(ModelTensor::Layer(i, LayerTensor::Proj(p))) = ModelTensor::parse_gguf(&t.name)
        {
            linear.push((i, p, check_gguf_tensor(&g, t)?));
        } else {
            full_precision.push(OtherTensor {
                name: t.name.clone(),
                dtype: t.ty.name().to_string(),
                shape: t.shape(),
            });
        }
    }
    // Block by block, each block's projections in the layout's order.
    linear.sort_by_key(|&(i, p, _)| (i, Proj::ALL.iter().position(|&q| q == p)));
    let linear = linear.into_iter().map(|(_, _, r)| r).collect();
    Ok(conclude(
        Claims {
            path,
            file_format: "gguf",
            claims_bitnet,
            latent_declared: false,
            model_type: arch,
            quantization_mode: None,
            linear_class: None,
        },
        linear,
        full_precision,
    ))
}

/// One GGUF linear weight (ggml dims `[cols, rows]`): trits with their scales, or floats held to
/// {−s, 0, +s}.
fn check_gguf_tensor(g: &GgufFile, t: &TensorInfo) -> Result<TensorReport> {
    let [cols, rows] = t.dims[..] else {
        return Err(EngineError::TensorShape {
            path: g.path().to_path_buf(),
            tensor: format!("{} (data at byte {})", t.name, t.offset),
            expected: vec![0, 0],
            actual: t.shape(),
        });
    };
    let scale_tensor = g
        .tensor(&layout::gguf_scale_name_of(&t.name))
        .is_some()
        .then(|| gguf_load::tensor_scale(g, &t.name))
        .transpose()?;
    let report = if t.ty.is_ternary() {
        // Decoded exactly as the loader decodes it: the same scale checks, the same errors
        // naming the file, the tensor and the byte.
        let r = gguf_load::read_ternary(g, t, rows, cols)?;
        let counts = count_trits(&r.trits).map_err(|e| {
            EngineError::tensor_value(
                g.path(),
                &t.name,
                format!("(data at byte {}) {e}", t.offset),
            )
        })?;
        let block_scales = matches!(t.ty, GgmlType::TQ1_0 | GgmlType::TQ2_0).then(|| {
            BlockScales::of(
                tritlab_gguf::QK_K,
                &r.stored_scales,
                r.zero_blocks,
                r.negative_blocks,
            )
        });
        let values = (rows * cols) as u64;
        TensorReport {
            name: t.name.clone(),
            dtype: t.ty.name().to_string(),
            shape: t.shape(),
            storage: "packed",
            rows,
            cols,
            values,
            ternary_values: values,
            ternary: true,
            scale_granularity: if block_scales.is_some() {
                "block256"
            } else {
                "tensor"
            },
            scale: match r.scale {
                WeightScale::PerTensor(s) => Some(s),
                _ => None,
            },
            trits: counts.into(),
            block_scales,
            tensor_scale: scale_tensor,
            offender: None,
        }
    } else {
        let mut w = gguf_load::dequantized(g, t, rows * cols)?;
        if let Some(s) = scale_tensor {
            w.iter_mut().for_each(|v| *v *= s);
        }
        let mut r = float_report(
            g.path(),
            &t.name,
            t.ty.name().into(),
            t.shape(),
            &w,
            rows,
            cols,
        )?;
        r.tensor_scale = scale_tensor;
        r
    };
    g.release(t);
    Ok(report)
}

/// Sort key that orders "layers.10" after "layers.9".
fn natural_key(name: &str) -> Vec<(String, u64)> {
    name.split('.')
        .map(|p| match p.parse::<u64>() {
            Ok(n) => (String::new(), n),
            Err(_) => (p.to_string(), 0),
        })
        .collect()
}

fn check_tensor(weights: &WeightSet, t: &TensorRef, claims: &ConfigClaims) -> Result<TensorReport> {
    if t.shape.len() != 2 {
        return Err(EngineError::TensorShape {
            path: t.path().to_path_buf(),
            tensor: t.name.clone(),
            expected: vec![0, 0],
            actual: t.shape.clone(),
        });
    }
    let (r0, cols) = (t.shape[0], t.shape[1]);
    let report = if t.dtype == Dtype::U8 {
        let rows = claims
            .out_features(&t.name)
            .filter(|&o| o.div_ceil(4) == r0)
            .unwrap_or(4 * r0);
        let (counts, invalid) = count_packed(t.bytes(), r0, rows, cols);
        let scale_name = layout::scale_name_of(&t.name);
        let scale = match scale_name {
            Some(n) if weights.contains(&n) => {
                let s = weights.get(&n)?.to_f32()?.first().copied();
                match claims.linear_class.as_deref() {
                    Some("autobitlinear") => s,
                    _ => s.map(|v| 1.0 / v),
                }
            }
            _ => None,
        };
        let values = (rows * cols) as u64;
        TensorReport {
            name: t.name.clone(),
            dtype: "U8".into(),
            shape: t.shape.clone(),
            storage: "packed",
            rows,
            cols,
            values,
            ternary_values: values - invalid,
            ternary: invalid == 0,
            scale_granularity: "packed",
            scale,
            trits: counts.into(),
            block_scales: None,
            tensor_scale: None,
            offender: None,
        }
    } else {
        let w = t.to_f32()?;
        float_report(
            t.path(),
            &t.name,
            format!("{:?}", t.dtype),
            t.shape.clone(),
            &w,
            r0,
            cols,
        )?
    };
    t.release();
    Ok(report)
}

/// A float linear weight `[rows, cols]`: how many values are in {−s, 0, +s} at the best scale
/// granularity, the first that is not, and the trits absmean would give.
fn float_report(
    path: &Path,
    name: &str,
    dtype: String,
    shape: Vec<usize>,
    w: &[f32],
    rows: usize,
    cols: usize,
) -> Result<TensorReport> {
    let (ternary_values, granularity, s) = ternary_fit(w, cols);
    let q = quantize_absmean(w, rows, cols, ScaleGranularity::PerTensor)
        .map_err(|e| EngineError::tensor_value(path, name, e.to_string()))?;
    let mut counts = TritCounts::default();
    for &v in &q.trits {
        counts.add(v);
    }
    let values = w.len() as u64;
    let ternary = ternary_values == values;
    let absmean = match q.scale {
        WeightScale::PerTensor(x) => Some(x),
        _ => None,
    };
    Ok(TensorReport {
        name: name.to_string(),
        dtype,
        shape,
        storage: "float",
        rows,
        cols,
        values,
        ternary_values,
        ternary,
        scale_granularity: granularity,
        scale: if ternary { s } else { absmean },
        trits: counts.into(),
        block_scales: None,
        tensor_scale: None,
        offender: if ternary {
            None
        } else {
            first_offender(w, cols, granularity)
        },
    })
}

/// Trit counts and the number of invalid codes of an HF-packed tensor with `rows` logical rows.
fn count_packed(bytes: &[u8], packed_rows: usize, rows: usize, cols: usize) -> (TritCounts, u64) {
    let mut counts = TritCounts::default();
    let mut invalid = 0u64;
    for i in 0..4 {
        for p in 0..packed_rows {
            if i * packed_rows + p >= rows {
                break; // padding rows of the last slab
            }
            for &b in &bytes[p * cols..(p + 1) * cols] {
                match (b >> (2 * i)) & 3 {
                    0 => counts.neg += 1,
                    1 => counts.zero += 1,
                    2 => counts.pos += 1,
                    _ => invalid += 1,
                }
            }
        }
    }
    (counts, invalid)
}

/// The typical nonzero magnitude of `values`: the median of up to 4096 evenly spaced nonzero
/// |w|. In a ternary tensor every nonzero |w| is `s`, so this is `s` exactly.
fn typical_magnitude(values: &[f32]) -> Option<f32> {
    let nz: Vec<f32> = values
        .iter()
        .map(|v| v.abs())
        .filter(|&a| a > 0.0 && a.is_finite())
        .collect();
    if nz.is_empty() {
        return None;
    }
    let step = nz.len().div_ceil(4096);
    let mut sample: Vec<f32> = nz.iter().step_by(step).copied().collect();
    let mid = sample.len() / 2;
    sample.select_nth_unstable_by(mid, f32::total_cmp);
    Some(sample[mid])
}

/// Whether `v` is 0, or ±`s` within [`TERNARY_REL_TOL`].
fn is_ternary_value(v: f32, s: Option<f32>) -> bool {
    v == 0.0 || s.is_some_and(|s| (v.abs() - s).abs() <= TERNARY_REL_TOL * s)
}

fn count_ternary(values: &[f32], s: Option<f32>) -> u64 {
    values.iter().filter(|&&v| is_ternary_value(v, s)).count() as u64
}

/// The first value (in row-major order) outside {−s, 0, +s} for the scale `granularity` ("tensor",
/// "row" or "group128", as [`ternary_fit`] chose) gives it.
fn first_offender(w: &[f32], cols: usize, granularity: &str) -> Option<Offender> {
    let tensor = match granularity {
        "row" | "group128" => None,
        _ => typical_magnitude(w),
    };
    for (row, values) in w.chunks(cols.max(1)).enumerate() {
        let row_scale = match granularity {
            "row" => typical_magnitude(values),
            _ => None,
        };
        for (g, group) in values.chunks(128).enumerate() {
            let s = match granularity {
                "row" => row_scale,
                "group128" => typical_magnitude(group),
                _ => tensor,
            };
            if let Some(j) = group.iter().position(|&v| !is_ternary_value(v, s)) {
                return Some(Offender {
                    row,
                    col: 128 * g + j,
                    value: group[j],
                    scale: s,
                });
            }
        }
    }
    None
}

/// How many values are in {−s, 0, +s}, trying one scale per tensor, per row and per 128-column
/// group; returns the best count, its granularity and (per tensor) the scale.
fn ternary_fit(w: &[f32], cols: usize) -> (u64, &'static str, Option<f32>) {
    let s = typical_magnitude(w);
    let per_tensor = count_ternary(w, s);
    if per_tensor == w.len() as u64 {
        return (per_tensor, "tensor", s);
    }
    let per_row: u64 = w
        .chunks(cols)
        .map(|r| count_ternary(r, typical_magnitude(r)))
        .sum();
    let per_group: u64 = w
        .chunks(cols)
        .flat_map(|r| r.chunks(128))
        .map(|g| count_ternary(g, typical_magnitude(g)))
        .sum();
    // The coarsest granularity wins ties.
    let mut best = (per_tensor, "tensor");
    for cand in [(per_row, "row"), (per_group, "group128")] {
        if cand.0 > best.0 {
            best = cand;
        }
    }
    (best.0, best.1, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternary_fit_sees_scaled_trits_and_rejects_gaussians() {
        let s = 0.037f32;
        let w: Vec<f32> = (0..512).map(|i| [(-1.0f32), 0.0, 1.0][i % 3] * s).collect();
        assert_eq!(ternary_fit(&w, 128).0, 512);
        // per-row scales
        let w2: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1 + i / 128) as f32)
            .collect();
        let (n, g, _) = ternary_fit(&w2, 128);
        assert_eq!((n, g), (512, "row"));
        let lat: Vec<f32> = (0..512)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 1000.0)
            .collect();
        assert!(ternary_fit(&lat, 128).0 < 100);
    }
}
