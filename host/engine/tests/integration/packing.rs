//! The ternary layers' packings: T1 (1.6 bits per trit) gives the same model as I2, bit for bit.

use crate::common;

use common::*;
use safetensors::tensor::Dtype;
use tritlab_engine::{Logits, Model, Packing};

fn ids() -> Vec<u32> {
    vec![5, 99, 300, 17, 42, 260, 8, 500, 3, 77, 12, 401, 9]
}

#[test]
fn t1_model_equals_i2_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 5);
    let i2 = Model::load(&dir).unwrap();
    assert_eq!(i2.packing(), Packing::I2);
    let mut t1 = Model::load(&dir).unwrap();
    t1.set_packing(Packing::T1).unwrap();
    assert_eq!(t1.packing(), Packing::T1);
    // The same trits, in fewer bytes.
    assert_eq!(t1.total_trits(), i2.total_trits());
    assert!(
        t1.ternary_bytes() < i2.ternary_bytes(),
        "{} vs {}",
        t1.ternary_bytes(),
        i2.ternary_bytes()
    );
    // A prompt in one pass (several tokens per product) ...
    let ids = ids();
    let want = i2
        .forward_with(&ids, &mut i2.new_cache(), Logits::All, None)
        .unwrap();
    let got = t1
        .forward_with(&ids, &mut t1.new_cache(), Logits::All, None)
        .unwrap();
    assert_eq!(got, want);
    // ... and one token at a time (the batch-1 products, q/k/v and gate/up in shared passes).
    let mut cache = t1.new_cache();
    for (pos, &id) in ids.iter().enumerate() {
        let step = t1
            .forward_with(&[id], &mut cache, Logits::Last, None)
            .unwrap();
        let vocab = step.len();
        assert_eq!(step, want[pos * vocab..(pos + 1) * vocab], "position {pos}");
    }
    // And back: repacking is lossless.
    t1.set_packing(Packing::I2).unwrap();
    let back = t1
        .forward_with(&ids, &mut t1.new_cache(), Logits::All, None)
        .unwrap();
    assert_eq!(back, want);
}

#[test]
fn t1_refuses_per_group_scales_and_names_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 6);
    to_float_model(&dir, "online", Dtype::F32, |name, o, i| {
        noise(o * i, name.len() as u64)
    });
    edit_config(&dir, |v| {
        v["quantization_config"]["weight_group_size"] = 128.into()
    });
    let mut model = Model::load(&dir).unwrap();
    let e = model.set_packing(Packing::T1).unwrap_err().to_string();
    assert!(
        e.contains("q_proj") && e.contains("per-group") && e.contains("i2"),
        "{e}"
    );
    // Nothing was half-converted into a broken model: it still runs as it was.
    assert_eq!(model.packing(), Packing::I2);
    model.forward(&ids(), &mut model.new_cache()).unwrap();
}
