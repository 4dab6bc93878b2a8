//! The ternary view of a world, and writing it as a Hugging Face BitNet checkpoint.
//!
//! Per-tensor models are written in transformers' offline layout (packed uint8 trits with an
//! `autobitlinear` `weight_scale`), the layout of microsoft/bitnet-b1.58-2B-4T; the trits are
//! exactly those training computed with. Per-group models cannot be expressed in that layout, so
//! they are written online (f32 latent weights) with tritlab's `weight_group_size`, which the
//! engine honours when it ternarises them at load.

use crate::config::WeightQuant;
use crate::error::{write_atomic, Result, TrainError};
use crate::model::{ParamKind, World};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;
use tritlab_engine::{BitNetConfig, QuantizationConfig};
use tritlab_kernels::{quantize_absmean, TernaryWeights, WeightScale};

/// One ternary layer as the forward pass sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryLayer {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub weights: TernaryWeights,
}

impl TernaryLayer {
    /// The layer's scale as one number: the tensor's, or the mean of its group scales.
    pub fn scale(&self) -> f32 {
        match &self.weights.scale {
            WeightScale::PerTensor(s) => *s,
            WeightScale::PerGroup { scales, .. } => {
                (scales.iter().map(|&s| s as f64).sum::<f64>() / scales.len().max(1) as f64) as f32
            }
        }
    }
}

/// Every ternary parameter of `world`, ternarised.
pub fn ternary_layers(world: &World, quant: WeightQuant) -> Result<Vec<TernaryLayer>> {
    world
        .params
        .par_iter()
        .filter(|p| p.spec.kind == ParamKind::Ternary)
        .map(|p| {
            let (rows, cols) = p.spec.matrix();
            let weights = quantize_absmean(&p.value, rows, cols, quant.granularity())
                .map_err(|e| TrainError::compute(format!("ternarising `{}`", p.spec.name), e))?;
            Ok(TernaryLayer {
                name: p.spec.name.clone(),
                rows,
                cols,
                weights,
            })
        })
        .collect()
}

/// Provenance written beside an exported model as `tritlab.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    pub run: Option<String>,
    pub step: u64,
    pub world_hash: String,
    pub weight_quant: WeightQuant,
}

/// Writes `config.json`, `generation_config.json`, `model.safetensors`, `tokenizer.json` (copied
/// from `tokenizer`) and `tritlab.json` into `out`.
pub fn export_model(
    world: &World,
    config: &BitNetConfig,
    quant: WeightQuant,
    tokenizer: &Path,
    provenance: &Provenance,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut config = config.clone();
    config.quantization_config = Some(QuantizationConfig {
        quant_method: Some("bitnet".into()),
        linear_class: Some("autobitlinear".into()),
        quantization_mode: Some(
            match quant {
                WeightQuant::Tensor => "offline",
                WeightQuant::Group128 => "online",
            }
            .into(),
        ),
        use_rms_norm: None,
        weight_group_size: match quant {
            WeightQuant::Tensor => None,
            WeightQuant::Group128 => Some(128),
        },
    });

    // Tensors: packed trits + scale (offline) or latent f32 (online) for ternary layers; f32 rest.
    let layers = ternary_layers(world, quant)?;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for p in &world.params {
        let name = &p.spec.name;
        match (p.spec.kind, quant) {
            (ParamKind::Ternary, WeightQuant::Tensor) => {
                let layer = layers
                    .iter()
                    .find(|l| &l.name == name)
                    .ok_or_else(|| TrainError::Invalid(format!("no ternary view of `{name}`")))?;
                let packed =
                    tritlab_kernels::pack::hf_pack(&layer.weights.trits, layer.rows, layer.cols)
                        .map_err(|e| TrainError::compute(format!("packing `{name}`"), e))?;
                owned.push((
                    name.clone(),
                    Dtype::U8,
                    vec![layer.rows.div_ceil(4), layer.cols],
                    packed,
                ));
                let scale_name = name.replace(".weight", ".weight_scale");
                owned.push((
                    scale_name,
                    Dtype::F32,
                    vec![1],
                    layer.scale().to_le_bytes().to_vec(),
                ));
            }
            _ => owned.push((
                name.clone(),
                Dtype::F32,
                p.spec.shape.clone(),
                bytemuck::cast_slice(&p.value).to_vec(),
            )),
        }
    }
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| TrainError::Invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let model_path = out.join("model.safetensors");
    let bytes = safetensors::serialize(
        views,
        Some(HashMap::from([("format".to_string(), "pt".to_string())])),
    )
    .map_err(|e| TrainError::format(&model_path, format!("writing: {e}")))?;
    write_atomic(&model_path, &bytes)?;

    let mut value =
        serde_json::to_value(&config).map_err(|e| TrainError::format(out, e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "architectures".into(),
            serde_json::json!(["BitNetForCausalLM"]),
        );
        obj.insert("torch_dtype".into(), "float32".into());
        obj.retain(|_, v| !v.is_null());
    }
    let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    write_atomic(&out.join("config.json"), json(&value).as_bytes())?;
    let eos = config.eos_token_ids();
    let gen = serde_json::json!({
        "bos_token_id": config.bos_token_id(),
        "eos_token_id": eos,
        "do_sample": true,
        "temperature": 0.8,
    });
    write_atomic(&out.join("generation_config.json"), json(&gen).as_bytes())?;
    let tok = std::fs::read(tokenizer).map_err(|e| TrainError::io(tokenizer, e))?;
    write_atomic(&out.join("tokenizer.json"), &tok)?;
    let prov =
        serde_json::to_value(provenance).map_err(|e| TrainError::format(out, e.to_string()))?;
    write_atomic(&out.join("tritlab.json"), json(&prov).as_bytes())?;
    Ok(())
}
