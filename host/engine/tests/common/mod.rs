//! Helpers shared by the engine's integration tests: synthetic checkpoints and rewriting them.

#![allow(dead_code)]

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use tritlab_engine::{synth, SynthShape};

/// One tensor held in memory.
#[derive(Clone)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn tiny_model(dir: &Path, seed: u64) -> PathBuf {
    let d = dir.join("tiny");
    synth(SynthShape::Tiny, seed, &d).expect("synth tiny");
    d
}

pub fn read_tensors(path: &Path) -> Vec<Tensor> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parse safetensors");
    let mut out: Vec<Tensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| Tensor {
            name,
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn write_tensors(path: &Path, tensors: &[Tensor]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes())
        .collect()
}

/// Deterministic pseudo-random values in (-1, 1).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites a packed tiny model as float master weights (`linear` gives each [out, in] matrix)
/// with `quantization_mode` set to `mode`.
pub fn to_float_model(
    dir: &Path,
    mode: &str,
    dtype: Dtype,
    mut linear: impl FnMut(&str, usize, usize) -> Vec<f32>,
) {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let hidden = cfg["hidden_size"].as_u64().unwrap() as usize;
    let inter = cfg["intermediate_size"].as_u64().unwrap() as usize;
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let hd = hidden / heads;
    let path = dir.join("model.safetensors");
    let mut out = Vec::new();
    for t in read_tensors(&path) {
        if t.name.ends_with("weight_scale") {
            continue;
        }
        if t.name.ends_with("_proj.weight") {
            let (o, i) = if t.name.contains("q_proj") {
                (heads * hd, hidden)
            } else if t.name.contains("k_proj") || t.name.contains("v_proj") {
                (kv * hd, hidden)
            } else if t.name.contains("o_proj") {
                (hidden, heads * hd)
            } else if t.name.contains("down_proj") {
                (hidden, inter)
            } else {
                (inter, hidden)
            };
            let w = linear(&t.name, o, i);
            let data = if dtype == Dtype::F32 {
                f32_bytes(&w)
            } else {
                bf16_bytes(&w)
            };
            out.push(Tensor {
                name: t.name.clone(),
                dtype,
                shape: vec![o, i],
                data,
            });
        } else {
            out.push(t);
        }
    }
    write_tensors(&path, &out);
    let mode = mode.to_string();
    edit_config(dir, move |v| {
        v["quantization_config"]["quantization_mode"] = mode.into();
    });
}
