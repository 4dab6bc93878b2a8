//! Parity with the reference implementation, transformers' `BitNetForCausalLM`, on the fixtures
//! in tests/fixtures/bitnet (made by make_fixtures.py there): logits within 1e-3 at every
//! position, and greedy generation reproducing the reference tokens.

use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;
use tritlab_engine::{generate_ids, GenerateOptions, Model, StepControl, Tokenizer};

const TOLERANCE: f32 = 1e-3;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/bitnet")
        .join(name)
}

struct Reference {
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    shape: Vec<usize>,
    greedy_ids: Vec<u32>,
}

fn read_reference(dir: &std::path::Path) -> Reference {
    let path = dir.join("reference.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the fixtures are made by tests/fixtures/bitnet/make_fixtures.py)",
            path.display()
        )
    });
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids = |name: &str| -> Vec<u32> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    let l = st.tensor("logits").unwrap();
    assert_eq!(l.dtype(), Dtype::F32);
    Reference {
        input_ids: ids("input_ids"),
        logits: l
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        shape: l.shape().to_vec(),
        greedy_ids: ids("greedy_ids"),
    }
}

fn check(name: &str) {
    let dir = fixture(name);
    let r = read_reference(&dir);
    let model = Model::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let logits = model.forward(&r.input_ids, &mut model.new_cache()).unwrap();
    assert_eq!(vec![r.input_ids.len(), model.vocab_size()], r.shape);
    let vocab = model.vocab_size();
    let mut worst = 0.0f32;
    for (pos, (ours, theirs)) in logits
        .chunks_exact(vocab)
        .zip(r.logits.chunks_exact(vocab))
        .enumerate()
    {
        let d = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d <= TOLERANCE,
            "{name}: position {pos}: max |tritlab - transformers| = {d}"
        );
        worst = worst.max(d);
    }
    println!(
        "{name}: max |tritlab - transformers| over {} positions = {worst:.3e}",
        r.input_ids.len()
    );

    // Greedy generation with the KV cache reproduces transformers' generate().
    let opts = GenerateOptions {
        max_tokens: r.greedy_ids.len(),
        ..Default::default()
    };
    let tok = Tokenizer::for_model(&dir).unwrap();
    let g = generate_ids(&model, Some(&tok), &r.input_ids, &opts, |_| {
        StepControl::Continue
    })
    .unwrap();
    assert_eq!(g.tokens, r.greedy_ids, "{name}: greedy continuation");

    // The tokenizer turns the fixture's prompt into the same ids.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let prompt = json["prompt"].as_str().unwrap();
    assert_eq!(
        tok.encode(prompt, true).unwrap(),
        r.input_ids,
        "{name}: tokenizer"
    );
}

#[test]
fn tiny_online_matches_transformers() {
    check("tiny-online");
}

#[test]
fn tiny_offline_matches_transformers() {
    check("tiny-offline");
}

#[test]
fn tiny_offline_bitlinear_matches_transformers() {
    check("tiny-offline-bitlinear");
}
