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
use crate::scheme::WorldScheme;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// Every ternary parameter of `world`, ternarised with the kernels' quantiser (a host world).
pub fn ternary_layers(world: &World, quant: WeightQuant) -> Result<Vec<TernaryLayer>> {
    ternary_layers_as(world, quant, WorldScheme::Host)
}

/// Every ternary parameter of `world`, ternarised with the quantiser of `scheme`.
pub fn ternary_layers_as(
    world: &World,
    quant: WeightQuant,
    scheme: WorldScheme,
) -> Result<Vec<TernaryLayer>> {
    world
        .params
        .par_iter()
        .filter(|p| p.spec.kind == ParamKind::Ternary)
        .map(|p| {
            let (rows, cols) = p.spec.matrix();
            let weights = match scheme {
                WorldScheme::Host => quantize_absmean(&p.value, rows, cols, quant.granularity())
                    .map_err(|e| {
                        TrainError::compute(format!("ternarising `{}`", p.spec.name), e)
                    })?,
                WorldScheme::Device => {
                    crate::scheme::quantize_exact(&p.value, rows, cols, quant.granularity())
                        .map_err(|e| {
                            TrainError::compute(format!("ternarising `{}`", p.spec.name), e)
                        })?
                }
            };
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

/// The files an export writes; `tritlab.json` marks a directory as a tritlab export.
pub const EXPORT_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tritlab.json",
];

/// Writes `config.json`, `generation_config.json`, `model.safetensors`, `tokenizer.json` (copied
/// from `tokenizer`) and `tritlab.json` as the directory `out`.
///
/// The files are written into a temporary directory beside `out`, synced, and the directory is
/// then renamed into place, so an interrupted export (a crash, a full disk, Ctrl-C) never leaves
/// a half-written model behind: `out` is either the previous export or the new one. An existing
/// export is replaced by two renames (old aside, new in), the closest to an atomic directory
/// swap portable `std` offers: for an instant `out` does not exist, but it never holds a mix.
/// A process that has the old model memory-mapped keeps reading the old files, which stay alive
/// until it unmaps them. Files someone added to an existing export (a log excerpt, a README)
/// are carried over. An existing `out` that is not a tritlab export (no `tritlab.json`) and is
/// not empty is refused rather than replaced.
pub fn export_model(
    world: &World,
    config: &BitNetConfig,
    quant: WeightQuant,
    tokenizer: &Path,
    provenance: &Provenance,
    out: &Path,
) -> Result<()> {
    export_model_as(
        world,
        config,
        quant,
        WorldScheme::Host,
        tokenizer,
        provenance,
        out,
    )
}

/// [`export_model`] with the trits of `scheme`'s quantiser: a device-world run exports exactly
/// the trits its log holds.
pub fn export_model_as(
    world: &World,
    config: &BitNetConfig,
    quant: WeightQuant,
    scheme: WorldScheme,
    tokenizer: &Path,
    provenance: &Provenance,
    out: &Path,
) -> Result<()> {
    let carried = check_replaceable(out)?;
    let (parent, name) = split_dir(out)?;
    std::fs::create_dir_all(&parent).map_err(|e| TrainError::io(&parent, e))?;
    let stage = parent.join(format!(".{name}.export-{}", std::process::id()));
    if stage.exists() {
        // Left by an earlier export of this process id that was interrupted.
        std::fs::remove_dir_all(&stage).map_err(|e| TrainError::io(&stage, e))?;
    }
    std::fs::create_dir(&stage).map_err(|e| TrainError::io(&stage, e))?;
    let staged = write_export(world, config, quant, scheme, tokenizer, provenance, &stage)
        .and_then(|()| carry_over(out, &carried, &stage))
        .and_then(|()| sync_dir(&stage));
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(e);
    }
    if let Err(e) = swap_into_place(&stage, out, &parent, &name) {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(e);
    }
    Ok(())
}

/// `out`'s parent directory (`.` for a bare name) and its file name.
fn split_dir(out: &Path) -> Result<(PathBuf, String)> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            TrainError::Invalid(format!(
                "{}: an export needs a directory name to write",
                out.display()
            ))
        })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Whether `out` may be replaced, and the names of the files in it that an export does not
/// write (to carry over into the new export).
fn check_replaceable(out: &Path) -> Result<Vec<std::ffi::OsString>> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(out, e)),
    };
    let mut extra = Vec::new();
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(out, e))?;
        any = true;
        let name = entry.file_name();
        if EXPORT_FILES.iter().any(|f| name == *f) {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| TrainError::io(entry.path(), e))?;
        if !kind.is_file() {
            return Err(TrainError::Invalid(format!(
                "{}: holds {}, which is not a file an export carries over; export into another directory",
                out.display(),
                entry.path().display()
            )));
        }
        extra.push(name);
    }
    if any && !out.join("tritlab.json").is_file() {
        return Err(TrainError::Invalid(format!(
            "{} is not empty and is not a tritlab model export (it has no tritlab.json); export into a new or empty directory",
            out.display()
        )));
    }
    Ok(extra)
}

/// Links (or, across file systems, copies) the extra files of the old export into the new one.
fn carry_over(out: &Path, names: &[std::ffi::OsString], stage: &Path) -> Result<()> {
    for name in names {
        let (from, to) = (out.join(name), stage.join(name));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| TrainError::io(&from, e))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directories cannot be opened for syncing everywhere (Windows); there the rename that
    // follows is what makes the export visible, and a failed sync only weakens durability.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Renames the finished `stage` to `out`, moving an existing `out` aside first and deleting it
/// once the new one is in place; on failure the old export is put back.
fn swap_into_place(stage: &Path, out: &Path, parent: &Path, name: &str) -> Result<()> {
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = out.exists();
    if had_old {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        }
        std::fs::rename(out, &old).map_err(|e| TrainError::io(out, e))?;
    }
    if let Err(e) = std::fs::rename(stage, out) {
        if had_old {
            let _ = std::fs::rename(&old, out);
        }
        return Err(TrainError::io(out, e));
    }
    sync_dir(parent)?;
    if had_old {
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    Ok(())
}

/// Writes the export's files into `out` (an empty directory).
fn write_export(
    world: &World,
    config: &BitNetConfig,
    quant: WeightQuant,
    scheme: WorldScheme,
    tokenizer: &Path,
    provenance: &Provenance,
    out: &Path,
) -> Result<()> {
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
    let layers = ternary_layers_as(world, quant, scheme)?;
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
                let scale_name = p.spec.tensor.hf_scale_name();
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
