//! Speed of one training step, by phase, for a preset; with the f32 (full-precision twin) step
//! of the same shape as the baseline in the same run.
//!
//! `cargo bench -p tritlab-train --bench train_step` (env: TRITLAB_BENCH_PRESET=tiny|small,
//! TRITLAB_BENCH_VOCAB, TRITLAB_BENCH_SEQ, TRITLAB_BENCH_BATCH, TRITLAB_BENCH_STEPS, and
//! TRITLAB_BENCH_LAYERS / _HIDDEN / _INTERMEDIATE / _HEADS / _KV_HEADS to change the preset).

use std::time::Instant;
use tritlab_train::export::ternary_layers;
use tritlab_train::model::{param_specs, Network, Precision, World};
use tritlab_train::{optim, Preset, TrainOptions, WeightQuant};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let preset = Preset::parse(&env("TRITLAB_BENCH_PRESET", "small".to_string())).expect("preset");
    let vocab: usize = env("TRITLAB_BENCH_VOCAB", 50257);
    let seq: usize = env("TRITLAB_BENCH_SEQ", 128);
    let batch: usize = env("TRITLAB_BENCH_BATCH", 16);
    let steps: usize = env("TRITLAB_BENCH_STEPS", 3);
    let mut config = preset.config(vocab, seq);
    tritlab_train::ShapeOverrides {
        layers: std::env::var("TRITLAB_BENCH_LAYERS")
            .ok()
            .and_then(|v| v.parse().ok()),
        hidden: std::env::var("TRITLAB_BENCH_HIDDEN")
            .ok()
            .and_then(|v| v.parse().ok()),
        intermediate: std::env::var("TRITLAB_BENCH_INTERMEDIATE")
            .ok()
            .and_then(|v| v.parse().ok()),
        heads: std::env::var("TRITLAB_BENCH_HEADS")
            .ok()
            .and_then(|v| v.parse().ok()),
        kv_heads: std::env::var("TRITLAB_BENCH_KV_HEADS")
            .ok()
            .and_then(|v| v.parse().ok()),
    }
    .apply(&mut config);
    let net = Network::new(config.clone()).expect("network");
    let mut world = World::init(&param_specs(&config), 1);
    let opts = TrainOptions::new(preset);
    let tokens: Vec<u32> = (0..batch * seq + 1)
        .map(|i| ((i * 7919) % vocab) as u32)
        .collect();
    let (inputs, targets) = (&tokens[..batch * seq], &tokens[1..]);
    // One untimed step first: the allocator and the thread pool warm up.
    let _ = net.gradients(&world, inputs, targets, batch, seq, Precision::Full);
    println!(
        "{} preset ({} layers, d_model {}), vocab {vocab}, batch {batch} × seq {seq} = {} tokens/step, {:.1} M parameters, {} threads",
        preset.name(),
        config.num_hidden_layers,
        config.hidden_size,
        batch * seq,
        world.numel() as f64 / 1e6,
        rayon::current_num_threads()
    );
    for (label, precision) in [
        (
            "ternary (QAT)",
            Precision::Ternary(WeightQuant::Tensor.granularity()),
        ),
        ("f32 baseline", Precision::Full),
    ] {
        let mut best = [f64::INFINITY; 3];
        for _ in 0..steps {
            let t0 = Instant::now();
            let (_, grads) = net
                .gradients(&world, inputs, targets, batch, seq, precision)
                .expect("gradients");
            let t1 = Instant::now();
            let norm = optim::grad_norm(&grads);
            optim::adamw_step(
                &mut world,
                &grads,
                1e-3,
                optim::clip_factor(norm, 1.0),
                &opts,
            );
            let t2 = Instant::now();
            if matches!(precision, Precision::Ternary(_)) {
                let _ = ternary_layers(&world, WeightQuant::Tensor).expect("ternary");
                let _ = world.hash();
            }
            let t3 = Instant::now();
            for (b, d) in best.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                *b = b.min(d.as_secs_f64());
            }
        }
        let total: f64 = best.iter().sum();
        println!(
            "{label:>14}: {:.3} s/step ({:.2} steps/s, {:.0} tokens/s): forward+backward {:.3} s, AdamW {:.3} s, trits+hash {:.3} s",
            total,
            1.0 / total,
            (batch * seq) as f64 / total,
            best[0],
            best[1],
            best[2]
        );
    }
}
