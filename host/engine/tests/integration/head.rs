//! The output head's run-time formats and perplexity evaluation on real checkpoints.

use crate::common;

use common::*;
use std::ops::ControlFlow;
use tritlab_engine::eval::{self, Windows};
use tritlab_engine::{HeadPrecision, Logits, Model, OutputHead};

fn ids() -> Vec<u32> {
    vec![5, 99, 300, 17, 42, 260, 8, 500, 3, 77, 12, 401]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn quantized_heads_stay_close_to_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 3);
    let exact = Model::load(&dir).unwrap();
    assert_eq!(exact.output_head(), OutputHead::Exact);
    let want = exact.forward(&ids(), &mut exact.new_cache()).unwrap();
    let spread = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // Looser formats may move the logits further; each stays within its share of the spread.
    for (p, share) in [
        (HeadPrecision::Bf16, 0.01),
        (HeadPrecision::Int8, 0.02),
        (HeadPrecision::Q6, 0.05),
        (HeadPrecision::Q4, 0.25),
    ] {
        let model = Model::load_with(&dir, OutputHead::Quantized(p)).unwrap();
        assert_eq!(model.output_head(), OutputHead::Quantized(p));
        assert!(model.head_bytes() <= exact.head_bytes(), "{p}");
        let got = model.forward(&ids(), &mut model.new_cache()).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d > 0.0 || p == HeadPrecision::Bf16, "{p}: identical logits");
        assert!(d <= share * spread, "{p}: max |Δ| {d} vs spread {spread}");
    }
}

/// A prompt's logits (one product for all positions) equal those of decoding one token at a
/// time, bit for bit, with a converted head as with the exact one.
#[test]
fn prompt_and_decode_logits_agree_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 4);
    let ids = ids();
    for head in [
        OutputHead::Quantized(HeadPrecision::Q6),
        OutputHead::Quantized(HeadPrecision::Int8),
    ] {
        let model = Model::load_with(&dir, head).unwrap();
        let all = model
            .forward_with(&ids, &mut model.new_cache(), Logits::All, None)
            .unwrap();
        let mut cache = model.new_cache();
        let vocab = model.vocab_size();
        for (t, &id) in ids.iter().enumerate() {
            let one = model
                .forward_with(&[id], &mut cache, Logits::Last, None)
                .unwrap();
            // The hidden states of a prompt and of decoding differ only by float summation
            // order in attention; the head itself adds nothing: compare the last position of
            // a prefix run, which goes through the same one-token product.
            let prefix = model
                .forward_with(&ids[..=t], &mut model.new_cache(), Logits::Last, None)
                .unwrap();
            let row = &all[t * vocab..(t + 1) * vocab];
            assert!(max_abs_diff(&one, row) < 1e-3, "{head} token {t}");
            let same = prefix
                .iter()
                .zip(row)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{head} token {t}: the prompt product differs from the one-token one"
            );
        }
    }
}

#[test]
fn switching_back_to_exact_restores_the_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 5);
    let mut model = Model::load(&dir).unwrap();
    let want = model.forward(&ids(), &mut model.new_cache()).unwrap();
    model
        .set_output_head(OutputHead::Quantized(HeadPrecision::Q4))
        .unwrap();
    model.set_output_head(OutputHead::Exact).unwrap();
    assert_eq!(model.forward(&ids(), &mut model.new_cache()).unwrap(), want);
}

#[test]
fn perplexity_and_comparison_on_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 6);
    let exact = Model::load(&dir).unwrap();
    let q4 = Model::load_with(&dir, OutputHead::Quantized(HeadPrecision::Q4)).unwrap();
    let stream: Vec<u32> = (0..200u32).map(|i| (i * 37 + 11) % 500).collect();
    let plan = Windows::LlamaCpp { ctx: 32 }
        .plan(stream.len(), None)
        .unwrap();
    assert_eq!(plan.len(), 6);
    let p = eval::perplexity(&exact, &stream, &plan, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(p.windows, 6);
    assert_eq!(p.tokens, 6 * 15);
    assert!(p.perplexity.is_finite() && p.perplexity > 1.0);
    assert!((p.perplexity - p.mean_nll.exp()).abs() < 1e-9);

    // The model against itself: no divergence, full agreement, the same perplexity.
    let (a, same) = eval::compare(&exact, &exact, &stream, &plan, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(a, p);
    assert_eq!(same.other, p);
    assert!(same.mean_kl.abs() < 1e-12);
    assert_eq!(same.top1_agreement, 1.0);

    // Against the 4-bit head: some divergence, a perplexity of its own.
    let (_, c) = eval::compare(
        &exact,
        &q4,
        &stream,
        &plan,
        |_, _| ControlFlow::Continue(()),
    )
    .unwrap();
    assert!(c.mean_kl > 0.0 && c.mean_kl.is_finite());
    assert!(c.max_kl >= c.mean_kl);
    assert!((0.0..=1.0).contains(&c.top1_agreement));
    assert_ne!(c.other.perplexity, p.perplexity);

    // Stopping after the first window reports that window only.
    let first = eval::perplexity(&exact, &stream, &plan, |_, _| ControlFlow::Break(())).unwrap();
    assert_eq!(first.windows, 1);

    // Token ids outside the vocabulary are an error, not a panic.
    let bad = vec![exact.vocab_size() as u32; 64];
    assert!(eval::perplexity(&exact, &bad, &plan[..1], |_, _| ControlFlow::Continue(())).is_err());
}
