//! The model against a literal f64 transcription of the reference forward pass (the pseudo-code
//! `manual_forward` in tests/fixtures/bitnet/make_fixtures.py), read straight from the files:
//! its own unpacking, no kernels, no KV cache, no parallelism.

use crate::common;

use common::*;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;
use tritlab_engine::Model;

struct Weights {
    t: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
}

impl Weights {
    fn read(dir: &Path) -> Self {
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
            .collect();
        Self { t }
    }

    fn float(&self, name: &str) -> Vec<f64> {
        let (dt, _, d) = &self.t[name];
        match dt {
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// uint8 [R, in] -> trits [4R, in]: output row r = i*R + p lives in bits 2i..2i+1 of row p.
    fn unpack(&self, name: &str) -> (Vec<f64>, usize) {
        let (_, shape, d) = &self.t[name];
        let (r, cols) = (shape[0], shape[1]);
        let mut out = Vec::with_capacity(4 * r * cols);
        for i in 0..4 {
            for p in 0..r {
                for c in 0..cols {
                    out.push(((d[p * cols + c] >> (2 * i)) & 3) as f64 - 1.0);
                }
            }
        }
        (out, cols)
    }
}

thread_local!(static MARGIN: std::cell::Cell<f64> = const { std::cell::Cell::new(1.0) });

fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let n = w.len();
    x.chunks(n)
        .flat_map(|r| {
            let ms = r.iter().map(|v| v * v).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            r.iter()
                .zip(w)
                .map(move |(v, w)| w * (v * inv))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// BitLinear: per-token absmax int8, times the (scaled) trits.
fn linear(x: &[f64], w: &Weights, prefix: &str, online: bool, auto: bool) -> Vec<f64> {
    let (wt, cols, scale_mul) = if online {
        let lat = w.float(&format!("{prefix}.weight"));
        let cols = w.t[&format!("{prefix}.weight")].1[1];
        let mean = (lat.iter().map(|v| v.abs()).sum::<f64>() / lat.len() as f64).max(1e-5);
        let s = 1.0 / mean;
        let t: Vec<f64> = lat
            .iter()
            .map(|v| round_half_even(v * s).clamp(-1.0, 1.0))
            .collect();
        (t, cols, 1.0 / s)
    } else {
        let (t, cols) = w.unpack(&format!("{prefix}.weight"));
        let ws = w.float(&format!("{prefix}.weight_scale"))[0];
        (t, cols, if auto { ws } else { 1.0 / ws })
    };
    let rows = wt.len() / cols;
    x.chunks(cols)
        .flat_map(|xr| {
            let amax = xr.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-5);
            let a = 127.0 / amax;
            for v in xr {
                let y = v * a;
                let m = (y - y.floor() - 0.5).abs();
                MARGIN.with(|c| c.set(c.get().min(m)));
            }
            let q: Vec<f64> = xr
                .iter()
                .map(|v| round_half_even(v * a).clamp(-128.0, 127.0))
                .collect();
            (0..rows)
                .map(|r| {
                    let dot: f64 = wt[r * cols..(r + 1) * cols]
                        .iter()
                        .zip(&q)
                        .map(|(t, q)| t * q)
                        .sum();
                    dot / a * scale_mul
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn manual_forward(dir: &Path, ids: &[u32]) -> Vec<f64> {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let w = Weights::read(dir);
    let qc = &cfg["quantization_config"];
    let online = qc["quantization_mode"] == "online";
    let auto = qc["linear_class"] == "autobitlinear";
    let theta = cfg["rope_parameters"]["rope_theta"]
        .as_f64()
        .or(cfg["rope_theta"].as_f64())
        .unwrap();
    let eps = cfg["rms_norm_eps"].as_f64().unwrap();
    let (nh, nkv) = (
        cfg["num_attention_heads"].as_u64().unwrap() as usize,
        cfg["num_key_value_heads"].as_u64().unwrap() as usize,
    );
    let hidden = cfg["hidden_size"].as_u64().unwrap() as usize;
    let hd = hidden / nh;
    let t_len = ids.len();
    let emb = w.float("model.embed_tokens.weight");
    let mut h: Vec<f64> = ids
        .iter()
        .flat_map(|&i| emb[i as usize * hidden..][..hidden].to_vec())
        .collect();
    let rope = |x: &mut [f64], pos: usize| {
        for head in x.chunks_mut(hd) {
            let half = hd / 2;
            let orig = head.to_vec();
            for i in 0..hd {
                let f = 1.0 / theta.powf((2 * (i % half)) as f64 / hd as f64);
                let (c, s) = ((pos as f64 * f).cos(), (pos as f64 * f).sin());
                let rot = if i < half {
                    -orig[i + half]
                } else {
                    orig[i - half]
                };
                head[i] = orig[i] * c + rot * s;
            }
        }
    };
    for l in 0..cfg["num_hidden_layers"].as_u64().unwrap() as usize {
        let p = format!("model.layers.{l}.");
        let x = rmsnorm(&h, &w.float(&format!("{p}input_layernorm.weight")), eps);
        let mut q = linear(&x, &w, &format!("{p}self_attn.q_proj"), online, auto);
        let mut k = linear(&x, &w, &format!("{p}self_attn.k_proj"), online, auto);
        let v = linear(&x, &w, &format!("{p}self_attn.v_proj"), online, auto);
        for t in 0..t_len {
            rope(&mut q[t * nh * hd..(t + 1) * nh * hd], t);
            rope(&mut k[t * nkv * hd..(t + 1) * nkv * hd], t);
        }
        let mut o = vec![0.0; t_len * nh * hd];
        for head in 0..nh {
            let kvh = head / (nh / nkv);
            for t in 0..t_len {
                let qv = &q[t * nh * hd + head * hd..][..hd];
                let scores: Vec<f64> = (0..=t)
                    .map(|j| {
                        let kj = &k[j * nkv * hd + kvh * hd..][..hd];
                        qv.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    let vj = &v[j * nkv * hd + kvh * hd..][..hd];
                    for d in 0..hd {
                        o[t * nh * hd + head * hd + d] += ej / z * vj[d];
                    }
                }
            }
        }
        let o = rmsnorm(
            &o,
            &w.float(&format!("{p}self_attn.attn_sub_norm.weight")),
            eps,
        );
        let a = linear(&o, &w, &format!("{p}self_attn.o_proj"), online, auto);
        h.iter_mut().zip(a).for_each(|(x, y)| *x += y);
        let x = rmsnorm(
            &h,
            &w.float(&format!("{p}post_attention_layernorm.weight")),
            eps,
        );
        let g = linear(&x, &w, &format!("{p}mlp.gate_proj"), online, auto);
        let u = linear(&x, &w, &format!("{p}mlp.up_proj"), online, auto);
        let m: Vec<f64> = g
            .iter()
            .zip(&u)
            .map(|(g, u)| g.max(0.0).powi(2) * u)
            .collect();
        let m = rmsnorm(&m, &w.float(&format!("{p}mlp.ffn_sub_norm.weight")), eps);
        let d = linear(&m, &w, &format!("{p}mlp.down_proj"), online, auto);
        h.iter_mut().zip(d).for_each(|(x, y)| *x += y);
    }
    let h = rmsnorm(&h, &w.float("model.norm.weight"), eps);
    let lm = if w.t.contains_key("lm_head.weight") {
        w.float("lm_head.weight")
    } else {
        emb
    };
    h.chunks(hidden)
        .flat_map(|r| {
            lm.chunks(hidden)
                .map(|row| row.iter().zip(r).map(|(a, b)| a * b).sum::<f64>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Activation quantisation is a step function: an activation within float noise of k+0.5
/// rounds either way in two correct implementations, and one flip moves logits by ~1e-2. Like
/// the fixtures, pick a prompt whose every activation is at least 1e-4 int8 steps from a tie in
/// f64 (checked on the literal forward), then require 1e-3 everywhere.
fn compare(dir: &Path) {
    jitter_norms(dir);
    let model = Model::load(dir).unwrap();
    for attempt in 0..20u64 {
        let ids: Vec<u32> = noise(9, 1000 + attempt)
            .iter()
            .map(|v| ((v + 1.0) * 250.0) as u32 % 510)
            .collect();
        MARGIN.with(|c| c.set(1.0));
        let theirs = manual_forward(dir, &ids);
        let margin = MARGIN.with(|c| c.get());
        if margin < 1e-4 {
            continue;
        }
        let ours = model.forward(&ids, &mut model.new_cache()).unwrap();
        let max = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{}: ids {ids:?}, rounding margin {margin:.2e}, max diff {max:.3e}",
            dir.display()
        );
        assert!(max <= 1e-3, "max |tritlab - literal f64 forward| = {max}");
        return;
    }
    panic!("no prompt without near-ties found");
}

/// Norm weights 1 + 0.1·noise: with all-ones norms, RMSNorm's scale cancels in the absmax
/// quantiser and bf16 embeddings land exactly on ties.
fn jitter_norms(dir: &Path) {
    let p = dir.join("model.safetensors");
    let mut t = read_tensors(&p);
    for (k, x) in t
        .iter_mut()
        .filter(|x| x.name.ends_with("norm.weight"))
        .enumerate()
    {
        let n = x.shape[0];
        let v: Vec<f32> = noise(n, 500 + k as u64)
            .iter()
            .map(|e| 1.0 + 0.1 * e)
            .collect();
        x.data = bf16_bytes(&v);
    }
    write_tensors(&p, &t);
}

#[test]
fn packed_autobitlinear_matches_the_literal_forward() {
    let tmp = tempfile::tempdir().unwrap();
    compare(&tiny_model(tmp.path(), 21));
}

#[test]
fn packed_bitlinear_matches_the_literal_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 22);
    // bitlinear divides by weight_scale: store the inverse
    let p = dir.join("model.safetensors");
    let mut t = read_tensors(&p);
    for x in t.iter_mut().filter(|x| x.name.ends_with("weight_scale")) {
        let v = half::bf16::from_le_bytes([x.data[0], x.data[1]]).to_f32();
        x.data = bf16_bytes(&[1.0 / v]);
    }
    write_tensors(&p, &t);
    edit_config(&dir, |v| {
        v["quantization_config"]["linear_class"] = "bitlinear".into();
        v.as_object_mut().unwrap().remove("rope_theta");
        v["rope_parameters"] = serde_json::json!({"rope_theta": 10000.0, "rope_type": "default"});
    });
    compare(&dir);
}

#[test]
fn online_latent_matches_the_literal_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 23);
    let mut k = 0;
    to_float_model(&dir, "online", Dtype::BF16, |_, o, i| {
        k += 1;
        noise(o * i, 40 + k).iter().map(|v| v * 0.03).collect()
    });
    compare(&dir);
}
