//! `verify` tells stored ternary weights, latent weights quantised at load, and non-ternary ones apart.

use crate::common;

use common::*;
use safetensors::Dtype;
use tritlab_engine::verify::{verify, Verdict};

#[test]
fn packed_checkpoint_stores_ternary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 4);
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::StoresTernary, "{}", r.summary);
    assert!(r.ok && r.claims_bitnet);
    assert_eq!(r.linear.len(), 14);
    assert_eq!(r.total.ternary_values, r.total.values);
    // the counts agree with the loaded model's
    let model = tritlab_engine::Model::load(&dir).unwrap();
    assert_eq!(r.total.trits, model.total_trits());
    // a single file works too
    let r = verify(dir.join("model.safetensors")).unwrap();
    assert_eq!(r.verdict, Verdict::StoresTernary);
}

#[test]
fn online_latent_checkpoint_is_quantised_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 4);
    let mut k = 0;
    to_float_model(&dir, "online", Dtype::BF16, |_, o, i| {
        k += 1;
        noise(o * i, k).iter().map(|v| v * 0.05).collect()
    });
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::LatentQuantizedAtLoad, "{}", r.summary);
    assert!(r.ok);
    assert!(
        r.total.ternary_values * 10 < r.total.values,
        "{} of {}",
        r.total.ternary_values,
        r.total.values
    );
    assert_eq!(r.total.trits.total(), r.total.values);
    // the absmean counts are those the loaded model runs with
    let model = tritlab_engine::Model::load(&dir).unwrap();
    assert_eq!(r.total.trits, model.total_trits());
}

#[test]
fn float_values_in_minus_s_zero_s_are_ternary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 4);
    let mut k = 0;
    to_float_model(&dir, "online", Dtype::BF16, |_, o, i| {
        k += 1;
        let s = 0.013 * k as f32;
        noise(o * i, k)
            .iter()
            .map(|v| (v * 1.5).round().clamp(-1.0, 1.0) * s)
            .collect()
    });
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::StoresTernary, "{}", r.summary);
    // one scale per tensor, far from 1: ternary means {-s, 0, +s}, not {-1, 0, +1}
    assert!(r.linear.iter().all(|t| t.scale_granularity == "tensor"));
}

#[test]
fn non_ternary_checkpoint_claiming_bitnet_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 4);
    let mut k = 0;
    to_float_model(&dir, "offline", Dtype::F32, |_, o, i| {
        k += 1;
        noise(o * i, 100 + k)
    });
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::NotTernary, "{}", r.summary);
    assert!(!r.ok);
    assert!(r.summary.contains("not ternary"));
    // the same weights without a BitNet claim: reported, not a failure
    edit_config(&dir, |v| {
        v["model_type"] = "llama".into();
        v.as_object_mut().unwrap().remove("quantization_config");
    });
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::NotTernary);
    assert!(r.ok && !r.claims_bitnet);
    // merely near ±1 is not ternary
    let dir = tiny_model(&tmp.path().join("near"), 4);
    to_float_model(&dir, "offline", Dtype::F32, |_, o, i| {
        noise(o * i, 5)
            .iter()
            .map(|v| (v * 1.5).round().clamp(-1.0, 1.0) * (1.0 + 0.05 * v))
            .collect()
    });
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::NotTernary, "{}", r.summary);
}

#[test]
fn corrupt_packed_codes_are_not_ternary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 4);
    let p = dir.join("model.safetensors");
    let mut t = read_tensors(&p);
    t.iter_mut()
        .find(|x| x.name == "model.layers.0.mlp.up_proj.weight")
        .unwrap()
        .data[0] = 0xff;
    write_tensors(&p, &t);
    let r = verify(&dir).unwrap();
    assert_eq!(r.verdict, Verdict::NotTernary);
    assert!(!r.ok);
    let bad = r
        .linear
        .iter()
        .find(|x| x.name == "model.layers.0.mlp.up_proj.weight")
        .unwrap();
    assert_eq!(bad.values - bad.ternary_values, 4);
}
