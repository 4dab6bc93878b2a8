//! Writing a loaded model out again: as GGUF (TQ2_0, TQ1_0 or I2_S trits, embeddings F16 or
//! another float / quantised type, tokenizer and chat template in the metadata), or as a
//! transformers offline checkpoint (packed uint8 trits + `weight_scale`).
//!
//! Trits and scales are written as loaded, so HF → GGUF → HF gives back the same trits and
//! scales. A per-tensor scale is stored exactly: TQ blocks get scale 1 and the f32 scale goes in
//! llama.cpp's optional `blk.N.*.scale` tensor. Rows that are not whole 256-blocks (TQ) fall back
//! to F16 trits with the same `.scale` tensor, which llama.cpp also runs.

use super::gguf_load::permute_rows;
use super::Model;
use crate::config::Activation;
use crate::error::{EngineError, Result};
use crate::layout::{LayerTensor, ModelTensor};
use crate::tokenizer::gguf::{TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED};
use crate::tokenizer::Tokenizer;
use crate::weights::FloatMatrix;
use serde::Serialize;
use std::path::Path;
use tritlab_gguf::{GgmlType, GgufWriter, Value};
use tritlab_kernels::{pack, TernaryMatrix, WeightScale};

/// What one exported tensor became.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedTensor {
    pub name: String,
    pub ty: String,
    /// Why the tensor is not in the requested type, if it is not.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub architecture: String,
    pub tensors: Vec<ExportedTensor>,
    pub bytes: u64,
}

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::Invalid(m.into())
}

/// f32 values of a float matrix, row by row.
fn matrix_f32(m: &FloatMatrix) -> Vec<f32> {
    let mut out = vec![0f32; m.rows() * m.cols()];
    for (r, row) in out.chunks_exact_mut(m.cols()).enumerate() {
        m.row_f32(r, row);
    }
    out
}

/// Encodes a float matrix (`[rows, cols]`) as `ty`, falling back to F16 when rows are not whole
/// blocks of `ty`.
fn float_tensor(
    w: &mut GgufWriter,
    name: &str,
    m: &FloatMatrix,
    ty: GgmlType,
    report: &mut Vec<ExportedTensor>,
) -> Result<()> {
    let values = matrix_f32(m);
    let (block, _) = ty.block();
    let (ty, note) = if m.cols().is_multiple_of(block) {
        (ty, None)
    } else {
        (
            GgmlType::F16,
            Some(format!("rows of {} are not whole {ty} blocks", m.cols())),
        )
    };
    let data = tritlab_gguf::quantize(ty, &values)
        .ok_or_else(|| invalid(format!("{ty} cannot be written")))?;
    w.add_tensor(name, &[m.cols(), m.rows()], ty, data)?;
    report.push(ExportedTensor {
        name: name.into(),
        ty: ty.name().into(),
        note,
    });
    Ok(())
}

fn f32_tensor(
    w: &mut GgufWriter,
    name: &str,
    v: &[f32],
    report: &mut Vec<ExportedTensor>,
) -> Result<()> {
    w.add_tensor(
        name,
        &[v.len()],
        GgmlType::F32,
        tritlab_gguf::quantize(GgmlType::F32, v).unwrap_or_default(),
    )?;
    report.push(ExportedTensor {
        name: name.into(),
        ty: "F32".into(),
        note: None,
    });
    Ok(())
}

/// One ternary linear layer as `ty`, with the fallbacks described in the module docs.
fn ternary_tensor(
    w: &mut GgufWriter,
    tensor: ModelTensor,
    m: &TernaryMatrix,
    ty: GgmlType,
    permute_heads: Option<usize>,
    report: &mut Vec<ExportedTensor>,
) -> Result<()> {
    let (rows, cols) = (m.rows(), m.cols());
    let mut trits = m.to_trits();
    let mut scale = m.scale().clone();
    if let Some(h) = permute_heads {
        trits = permute_rows(&trits, h, cols);
        if let WeightScale::PerGroup { group_size, scales } = &mut scale {
            *scales = permute_rows(scales, h, cols.div_ceil(*group_size));
        }
    }
    let name = tensor.gguf_name();
    let scale_name = tensor.gguf_scale_name();
    let dims = [cols, rows];
    let mut push = |ty: GgmlType, note: Option<String>| {
        report.push(ExportedTensor {
            name: name.clone(),
            ty: ty.name().into(),
            note,
        })
    };
    let fits = match ty {
        GgmlType::I2S => (rows * cols).is_multiple_of(tritlab_gguf::QK_I2_S),
        _ => cols.is_multiple_of(tritlab_gguf::QK_K),
    };
    match (&scale, fits) {
        (WeightScale::PerTensor(s), true) => {
            let blocks = match ty {
                GgmlType::I2S => vec![*s],
                _ => vec![1.0; rows * cols / tritlab_gguf::QK_K],
            };
            let data = tritlab_gguf::encode_ternary(ty, &trits, &blocks)
                .ok_or_else(|| invalid(format!("{ty} is not a ternary type")))?;
            w.add_tensor(&name, &dims, ty, data)?;
            push(ty, None);
            if ty != GgmlType::I2S {
                w.add_tensor(&scale_name, &[1], GgmlType::F32, s.to_le_bytes().to_vec())?;
            }
        }
        (WeightScale::PerGroup { group_size, scales }, true)
            if *group_size == tritlab_gguf::QK_K
                && ty != GgmlType::I2S
                && scales.iter().all(|&s| half::f16::from_f32(s).to_f32() == s) =>
        {
            let data = tritlab_gguf::encode_ternary(ty, &trits, scales)
                .ok_or_else(|| invalid(format!("{ty} is not a ternary type")))?;
            w.add_tensor(&name, &dims, ty, data)?;
            push(ty, None);
        }
        (WeightScale::PerTensor(s), false) => {
            let values: Vec<f32> = trits.iter().map(|&t| t as f32).collect();
            let data = tritlab_gguf::quantize(GgmlType::F16, &values).unwrap_or_default();
            w.add_tensor(&name, &dims, GgmlType::F16, data)?;
            w.add_tensor(&scale_name, &[1], GgmlType::F32, s.to_le_bytes().to_vec())?;
            push(
                GgmlType::F16,
                Some(format!(
                    "rows of {cols} are not whole {ty} blocks: F16 trits and a .scale tensor"
                )),
            );
        }
        (WeightScale::PerGroup { group_size, .. }, _) => {
            if ty == GgmlType::I2S {
                return Err(invalid(format!(
                    "`{name}` has one scale per {group_size} weights; I2_S holds one per tensor (use TQ2_0 or TQ1_0)"
                )));
            }
            let values: Vec<f32> = trits
                .iter()
                .enumerate()
                .map(|(i, &t)| t as f32 * scale.at(i / cols, i % cols, cols))
                .collect();
            let data = tritlab_gguf::quantize(GgmlType::F32, &values).unwrap_or_default();
            w.add_tensor(&name, &dims, GgmlType::F32, data)?;
            push(
                GgmlType::F32,
                Some(format!(
                    "scales per {group_size} weights do not fit {ty}'s f16 block scales"
                )),
            );
        }
    }
    Ok(())
}

/// Tokenizer metadata: byte-level BPE tokens in id order, merges, types, pre-tokenizer name.
fn tokenizer_metadata(
    w: &mut GgufWriter,
    tok: &Tokenizer,
    vocab_size: usize,
    bos: Option<u32>,
    eos: &[u32],
) -> Result<()> {
    let json: serde_json::Value = serde_json::from_str(
        &tok.inner()
            .to_string(false)
            .map_err(|e| invalid(format!("serialising the tokenizer: {e}")))?,
    )
    .map_err(|e| invalid(format!("serialising the tokenizer: {e}")))?;
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(invalid("GGUF export needs a byte-level BPE tokenizer"));
    }
    let mut tokens = vec![String::new(); vocab_size];
    let mut types = vec![5i32; vocab_size]; // unused until a token claims the id
    let mut set = |id: usize, content: &str, ty: i32| {
        if id < vocab_size {
            tokens[id] = content.to_string();
            types[id] = ty;
        }
    };
    if let Some(v) = model["vocab"].as_object() {
        for (k, id) in v {
            set(id.as_u64().unwrap_or(u64::MAX) as usize, k, TOKEN_NORMAL);
        }
    }
    if let Some(a) = json["added_tokens"].as_array() {
        for t in a {
            let ty = if t["special"] == true {
                TOKEN_CONTROL
            } else {
                TOKEN_USER_DEFINED
            };
            set(
                t["id"].as_u64().unwrap_or(u64::MAX) as usize,
                t["content"].as_str().unwrap_or(""),
                ty,
            );
        }
    }
    for (id, t) in tokens.iter_mut().enumerate() {
        if t.is_empty() {
            *t = format!("[PAD{id}]");
        }
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| match m {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(p) => p
                        .iter()
                        .map(|x| x.as_str().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let pre = &json["pre_tokenizer"];
    let pre_name = if pre["type"] == "ByteLevel" && pre["use_regex"] == true {
        "gpt-2"
    } else if pre.to_string().contains(r"\\p{N}{1,3}") {
        "llama-bpe"
    } else {
        return Err(invalid(format!(
            "the tokenizer's pre-tokenizer has no GGUF name tritlab knows: {pre}"
        )));
    };
    let add_bos = json["post_processor"]["type"] == "TemplateProcessing"
        && json["post_processor"]["single"][0]
            .get("SpecialToken")
            .is_some();
    w.set("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.pre", pre_name);
    w.set("tokenizer.ggml.tokens", tokens);
    w.set("tokenizer.ggml.token_type", types);
    w.set("tokenizer.ggml.merges", merges);
    if let Some(b) = bos {
        w.set("tokenizer.ggml.bos_token_id", b);
    }
    if let Some(&e) = eos.first() {
        w.set("tokenizer.ggml.eos_token_id", e);
    }
    w.set("tokenizer.ggml.add_bos_token", add_bos);
    Ok(())
}

impl Model {
    /// Writes the model as GGUF with ternary layers in `ty` (TQ2_0, TQ1_0 or I2_S) and the
    /// embedding (and untied output) in `embed` (F32, F16, BF16, Q8_0 or Q6_K).
    pub fn export_gguf(
        &self,
        out: &Path,
        ty: GgmlType,
        embed: GgmlType,
        tokenizer: Option<&Tokenizer>,
        chat_template: Option<&str>,
    ) -> Result<ExportReport> {
        if !ty.is_ternary() {
            return Err(invalid(format!("{ty} is not a ternary GGUF type")));
        }
        let c = &self.config;
        let (arch, interleaved) = match self.activation {
            Activation::Silu => ("bitnet", false),
            Activation::Relu2 => ("bitnet-b1.58", true),
        };
        let mut w = GgufWriter::new();
        w.set("general.architecture", arch);
        w.set(
            "general.name",
            self.path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("tritlab model"),
        );
        let u = |v: usize| Value::U32(v as u32);
        w.set(&format!("{arch}.vocab_size"), u(c.vocab_size));
        w.set(
            &format!("{arch}.context_length"),
            u(c.max_position_embeddings),
        );
        w.set(&format!("{arch}.embedding_length"), u(c.hidden_size));
        w.set(&format!("{arch}.block_count"), u(c.num_hidden_layers));
        w.set(
            &format!("{arch}.feed_forward_length"),
            u(c.intermediate_size),
        );
        w.set(
            &format!("{arch}.attention.head_count"),
            u(c.num_attention_heads),
        );
        w.set(
            &format!("{arch}.attention.head_count_kv"),
            u(c.num_kv_heads()),
        );
        w.set(&format!("{arch}.rope.dimension_count"), u(c.head_dim()));
        if c.head_dim.is_some() {
            w.set(&format!("{arch}.attention.key_length"), u(c.head_dim()));
            w.set(&format!("{arch}.attention.value_length"), u(c.head_dim()));
        }
        w.set(&format!("{arch}.rope.freq_base"), c.rope_theta() as f32);
        w.set(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            c.rms_norm_eps as f32,
        );
        if let Some(tok) = tokenizer {
            tokenizer_metadata(
                &mut w,
                tok,
                c.vocab_size,
                c.bos_token_id(),
                &self.eos_token_ids,
            )?;
        } else {
            // llama.cpp requires the key and reads "none" as a vocabulary of `vocab_size`
            // dummy tokens: a model without a tokenizer still loads there and runs on ids.
            w.set("tokenizer.ggml.model", "none");
        }
        if let Some(t) = chat_template {
            w.set("tokenizer.chat_template", t);
        }
        let mut report = Vec::new();
        float_tensor(
            &mut w,
            &ModelTensor::Embedding.gguf_name(),
            &self.embed,
            embed,
            &mut report,
        )?;
        f32_tensor(
            &mut w,
            &ModelTensor::FinalNorm.gguf_name(),
            &self.norm,
            &mut report,
        )?;
        if let Some(head) = &self.lm_head {
            float_tensor(
                &mut w,
                &ModelTensor::LmHead.gguf_name(),
                head,
                embed,
                &mut report,
            )?;
        }
        for (i, l) in self.layers.iter().enumerate() {
            for role in LayerTensor::ALL {
                let tensor = ModelTensor::Layer(i, role);
                match role {
                    LayerTensor::Norm(n) => {
                        f32_tensor(&mut w, &tensor.gguf_name(), l.norm(n), &mut report)?
                    }
                    LayerTensor::Proj(p) => ternary_tensor(
                        &mut w,
                        tensor,
                        &l.proj(p).matrix,
                        ty,
                        p.rope_heads(c).filter(|_| interleaved),
                        &mut report,
                    )?,
                }
            }
        }
        w.write(out)?;
        let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        Ok(ExportReport {
            architecture: arch.into(),
            tensors: report,
            bytes,
        })
    }

    /// Writes a transformers offline checkpoint directory: `config.json`, `model.safetensors`
    /// (packed uint8 trits, f32 `weight_scale`, norms in f32, embeddings in their loaded dtype),
    /// the tokenizer and, when given, a `tokenizer_config.json` holding the chat template.
    pub fn export_hf(
        &self,
        dir: &Path,
        tokenizer: Option<&Tokenizer>,
        chat_template: Option<&str>,
    ) -> Result<()> {
        use safetensors::tensor::{Dtype, TensorView};
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let float = |m: &FloatMatrix| -> (Dtype, Vec<u8>) {
            let v = matrix_f32(m);
            match m.dtype() {
                crate::weights::FloatDtype::BF16 => (
                    Dtype::BF16,
                    v.iter()
                        .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes())
                        .collect(),
                ),
                crate::weights::FloatDtype::F16 => (
                    Dtype::F16,
                    v.iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
                        .collect(),
                ),
                crate::weights::FloatDtype::F32 => (Dtype::F32, f32_bytes(&v)),
            }
        };
        let c = &self.config;
        let dims = crate::layout::Dims::of(c);
        for tensor in ModelTensor::of_config(c) {
            match tensor {
                ModelTensor::Embedding | ModelTensor::LmHead => {
                    let m = match tensor {
                        ModelTensor::LmHead => self.lm_head.as_ref().ok_or_else(|| {
                            invalid("the config unties lm_head, but the model has none")
                        })?,
                        _ => &self.embed,
                    };
                    let (dt, b) = float(m);
                    tensors.push((tensor.hf_name(), dt, tensor.shape(&dims), b));
                }
                ModelTensor::FinalNorm => tensors.push((
                    tensor.hf_name(),
                    Dtype::F32,
                    vec![self.norm.len()],
                    f32_bytes(&self.norm),
                )),
                ModelTensor::Layer(i, LayerTensor::Norm(n)) => {
                    let v = self.layers[i].norm(n);
                    tensors.push((tensor.hf_name(), Dtype::F32, vec![v.len()], f32_bytes(v)));
                }
                ModelTensor::Layer(i, LayerTensor::Proj(p)) => {
                    let lin = self.layers[i].proj(p);
                    let m = &lin.matrix;
                    let s = match m.scale() {
                        WeightScale::PerTensor(s) => *s,
                        WeightScale::PerGroup { group_size, .. } => {
                            return Err(invalid(format!(
                                "`{}` has one scale per {group_size} weights; transformers' offline layout holds one per tensor",
                                lin.name
                            )))
                        }
                    };
                    let packed = pack::hf_pack(&m.to_trits(), m.rows(), m.cols())
                        .map_err(|e| EngineError::kernel(format!("packing `{}`", lin.name), e))?;
                    tensors.push((
                        tensor.hf_name(),
                        Dtype::U8,
                        vec![m.rows().div_ceil(4), m.cols()],
                        packed,
                    ));
                    tensors.push((
                        tensor.hf_scale_name(),
                        Dtype::F32,
                        vec![1],
                        s.to_le_bytes().to_vec(),
                    ));
                }
            }
        }
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, dt, shape, b)| {
                TensorView::new(*dt, shape.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| invalid(format!("tensor `{n}`: {e}")))
            })
            .collect::<Result<_>>()?;
        let st = dir.join("model.safetensors");
        safetensors::serialize_to_file(views, None, &st).map_err(|e| EngineError::Safetensors {
            path: st.clone(),
            message: e.to_string(),
        })?;
        let mut config = c.clone();
        config.quantization_config = Some(crate::config::QuantizationConfig {
            quant_method: Some("bitnet".into()),
            linear_class: Some("autobitlinear".into()),
            quantization_mode: Some("offline".into()),
            use_rms_norm: None,
            weight_group_size: None,
        });
        config.eos_token_id = (!self.eos_token_ids.is_empty())
            .then(|| crate::config::TokenIds::Many(self.eos_token_ids.clone()));
        let mut json = serde_json::to_value(&config).map_err(|e| invalid(e.to_string()))?;
        json["architectures"] = serde_json::json!(["BitNetForCausalLM"]);
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| EngineError::io(&p, e))
        };
        write(
            "config.json",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        if let Some(tok) = tokenizer {
            let text = tok
                .inner()
                .to_string(true)
                .map_err(|e| invalid(format!("serialising the tokenizer: {e}")))?;
            write("tokenizer.json", text)?;
        }
        if let Some(t) = chat_template {
            write(
                "tokenizer_config.json",
                serde_json::to_string_pretty(&serde_json::json!({ "chat_template": t }))
                    .unwrap_or_default(),
            )?;
        }
        Ok(())
    }
}

/// The chat template of a model: `tokenizer.chat_template` of a GGUF file, or `chat_template`
/// of `tokenizer_config.json` beside a checkpoint. None when there is none (or it is unreadable).
pub fn chat_template_for(path: &Path) -> Option<String> {
    if super::gguf_load::is_gguf(path) {
        let g = tritlab_gguf::GgufFile::open(path).ok()?;
        return crate::tokenizer::gguf::chat_template(&g);
    }
    let dir = if path.is_file() { path.parent()? } else { path };
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("chat_template")?.as_str().map(str::to_string)
}
