//! What makes a BitNet real: are the stored linear weights ternary?
//!
//! For every linear weight of a checkpoint this counts how many stored values are ternary —
//! equal to −s, 0 or +s for the tensor's (or a row's, or a 128-column group's) scale `s`, not
//! merely close to −1/0/1 — and the −1/0/+1 counts after absmean quantisation with their GF(3)
//! sum. Packed uint8 tensors are ternary by construction when every 2-bit code is valid.
//! The verdict says whether the checkpoint stores ternary weights, stores latent weights that
//! are quantised when loaded, or is not ternary at all.

use crate::error::{EngineError, Result};
use crate::layout::{self, Dim};
use crate::stats::TritSummary;
use crate::weights::{TensorRef, WeightSet};
use safetensors::tensor::Dtype;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tritlab_kernels::{quantize_absmean, ScaleGranularity, TritCounts};

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

#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// "packed" (uint8 trits) or "float".
    pub storage: &'static str,
    /// The logical `[out, in]` matrix.
    pub rows: usize,
    pub cols: usize,
    pub values: u64,
    /// Stored values that are ternary (valid codes, or in {−s, 0, +s}).
    pub ternary_values: u64,
    pub ternary: bool,
    /// Where the scale that makes the most values ternary lives: "packed", "tensor", "row" or
    /// "group128".
    pub scale_granularity: &'static str,
    /// The tensor scale (packed: the kernels' multiplier; float: `s`, or the absmean scale).
    pub scale: Option<f32>,
    /// Trits: the stored ones for packed tensors, else after per-tensor absmean quantisation.
    pub trits: TritSummary,
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
    pub model_type: Option<String>,
    /// config.json says BitNet (`model_type` "bitnet" or `quant_method` "bitnet").
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

/// Verifies a model directory or a single `.safetensors` file (with `config.json` beside it, if any).
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = path.as_ref();
    if crate::bitnet::gguf_load::is_gguf(path) {
        // GGUF stores its ternary tensors in block formats (TQ1_0, TQ2_0, I2_S) with their own
        // scales; this report reads safetensors checkpoints. Say so instead of failing to parse
        // the file as one.
        return Err(EngineError::Invalid(format!(
            "{}: verify reads safetensors checkpoints, not GGUF files yet (docs/GGUF.md lists \
             the ternary formats tritlab loads from GGUF: TQ1_0, TQ2_0 and I2_S)",
            path.display()
        )));
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
    let latent_declared = claims.claims_bitnet() && claims.mode.as_deref() != Some("offline");
    let verdict = if linear.is_empty() {
        Verdict::NoLinearWeights
    } else if all_ternary {
        Verdict::StoresTernary
    } else if latent_declared && !any_packed_bad {
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
    let summary = match verdict {
        Verdict::StoresTernary => {
            let packed = linear.iter().all(|r| r.storage == "packed");
            format!(
                "stores ternary weights: all {} linear weights ({} values) are {}",
                total.tensors,
                total.values,
                if packed { "packed trits with a scale per tensor" } else { "in {-s, 0, +s}" }
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
            "not ternary: {} of {} linear weights are not ternary ({:.2}% of {} stored values are){}",
            total.tensors - total.ternary_tensors,
            total.tensors,
            pct(total.ternary_values, total.values),
            total.values,
            if claims.claims_bitnet() { ", although the config claims BitNet" } else { "" }
        ),
        Verdict::NoLinearWeights => "no linear weights found".to_string(),
    };
    let ok = !(claims.claims_bitnet()
        && matches!(verdict, Verdict::NotTernary | Verdict::NoLinearWeights));
    Ok(VerifyReport {
        path: path.to_path_buf(),
        claims_bitnet: claims.claims_bitnet(),
        model_type: claims.model_type,
        quantization_mode: claims.mode,
        linear_class: claims.linear_class,
        verdict,
        summary,
        ok,
        linear,
        full_precision,
        total,
    })
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
        }
    } else {
        let w = t.to_f32()?;
        let (ternary_values, granularity, s) = ternary_fit(&w, cols);
        let q = quantize_absmean(&w, r0, cols, ScaleGranularity::PerTensor)
            .map_err(|e| EngineError::tensor_value(t.path(), &t.name, e.to_string()))?;
        let mut counts = TritCounts::default();
        for &v in &q.trits {
            counts.add(v);
        }
        let values = w.len() as u64;
        let ternary = ternary_values == values;
        let absmean = match q.scale {
            tritlab_kernels::WeightScale::PerTensor(x) => Some(x),
            _ => None,
        };
        TensorReport {
            name: t.name.clone(),
            dtype: format!("{:?}", t.dtype),
            shape: t.shape.clone(),
            storage: "float",
            rows: r0,
            cols,
            values,
            ternary_values,
            ternary,
            scale_granularity: granularity,
            scale: if ternary { s } else { absmean },
            trits: counts.into(),
        }
    };
    t.release();
    Ok(report)
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

fn count_ternary(values: &[f32], s: Option<f32>) -> u64 {
    values
        .iter()
        .filter(|&&v| v == 0.0 || s.is_some_and(|s| (v.abs() - s).abs() <= TERNARY_REL_TOL * s))
        .count() as u64
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
