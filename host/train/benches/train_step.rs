//! Speed of one training step, by phase, for a preset; with the f32 (full-precision twin) step
//! of the same shape as the baseline in the same run.
//!
//! `cargo bench -p tritlab-train --bench train_step` (env: TRITLAB_BENCH_PRESET=tiny|small,
//! TRITLAB_BENCH_VOCAB, TRITLAB_BENCH_SEQ, TRITLAB_BENCH_BATCH, TRITLAB_BENCH_STEPS, and
//! TRITLAB_BENCH_LAYERS / _HIDDEN / _INTERMEDIATE / _HEADS / _KV_HEADS to change the preset;
//! TRITLAB_BENCH_DEVICE=cpu|cuda:N, with the `cuda` feature, TRITLAB_BENCH_MATMUL=f32|tf32|bf16
//! for the GPU's products (`train --matmul`), TRITLAB_BENCH_HOST_WORLD=0 to time only the step
//! with the world on the GPU, and TRITLAB_BENCH_PEAK_TFLOPS, the device's peak, to print the model
//! FLOPs utilisation).
//!
//! The QAT step runs on several paths in the same run, taking turns step by step so that a
//! drifting machine load meets them alike, and each one's tokens/s is printed as a ratio to the
//! `f32` path's. `TRITLAB_BENCH_PATHS` picks them (default `f32,f32-fused,ternary,baseline`):
//! `f32` is candle's f32 products with the layers in candle's operations (the step before the
//! fused graph, as runs recorded then replay it); `f32-fused` the same products with the fused
//! graph (`tritlab_train::Graph::Fused`, what a new f32 run computes); `ternary` the ternary
//! kernels' products with the fused graph (CPUs with AMX) and `ternary-ops` with candle's
//! operations; `baseline` the full-precision step.
//!
//! Model FLOPs per token are PaLM's count: 6 per parameter (forward and backward, the tied
//! embedding counted once, as the output projection) plus 12 · layers · d_model · seq for the
//! attention scores and values.

use std::time::Instant;
#[cfg(feature = "cuda")]
use tritlab_train::device_world::DeviceWorld;
use tritlab_train::export::ternary_layers;
#[cfg(feature = "cuda")]
use tritlab_train::model::QuantOps;
use tritlab_train::model::{param_specs, Network, Precision, World};
use tritlab_train::{optim, Graph, Kernels, Preset, TrainOptions, WeightQuant};

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
    let device: tritlab_train::DeviceSpec = match std::env::var("TRITLAB_BENCH_DEVICE") {
        Ok(name) => name
            .parse()
            .unwrap_or_else(|e| panic!("TRITLAB_BENCH_DEVICE: {e}")),
        Err(_) => tritlab_train::DeviceSpec::Cpu,
    };
    let opened = device.open().expect("device");
    // The GPU's products (`train --matmul`); the CPU multiplies in f32.
    let matmul = std::env::var("TRITLAB_BENCH_MATMUL")
        .ok()
        .map(|m| {
            tritlab_train::Matmul::from_name(&m).expect("TRITLAB_BENCH_MATMUL: f32, tf32 or bf16")
        })
        .unwrap_or_default();
    tritlab_train::device::set_tf32(matmul == tritlab_train::Matmul::Tf32);
    let record = tritlab_train::DeviceRecord::of(device, &opened);
    let network = |graph: Graph| {
        Network::on(config.clone(), opened.clone())
            .expect("network")
            .with_matmul(matmul)
            .with_graph(graph)
    };
    let net = network(Graph::Ops);
    let fused_net = network(Graph::Fused);
    let ternary = |graph: Graph| network(graph).with_kernels(Kernels::Ternary);
    let (ternary_ops, ternary_fused) = (ternary(Graph::Ops), ternary(Graph::Fused));
    let world = World::init(&param_specs(&config), 1);
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
    println!("device: {}, {} products", record.describe(), matmul.name());
    println!(
        "allocator: {}",
        if tritlab_kernels::mem::retain_freed_memory() {
            "freed memory kept for the next step (TRITLAB_RETAIN_FREED=0 hands it back)"
        } else {
            "the C allocator's defaults"
        }
    );
    let flops_per_token = 6.0 * world.numel() as f64
        + 12.0 * (config.num_hidden_layers * config.hidden_size * seq) as f64;
    let peak: Option<f64> = std::env::var("TRITLAB_BENCH_PEAK_TFLOPS")
        .ok()
        .and_then(|v| v.parse().ok());
    #[cfg(feature = "cuda")]
    if !device.is_cpu() {
        device_world_rows(
            &config,
            &world,
            &opts,
            (inputs, targets),
            (batch, seq, steps),
            flops_per_token,
            peak,
            matmul,
        );
        if std::env::var("TRITLAB_BENCH_HOST_WORLD").is_ok_and(|v| v == "0") {
            return;
        }
    }
    let qat = Precision::Ternary(WeightQuant::Tensor.granularity());
    let paths = std::env::var("TRITLAB_BENCH_PATHS")
        .unwrap_or_else(|_| "f32,f32-fused,ternary,baseline".into());
    let mut runs: Vec<(&str, &Network, Precision)> = Vec::new();
    for path in paths.split(',') {
        match path {
            "f32" => runs.push(("QAT, f32 path", &net, qat)),
            "f32-fused" => runs.push(("QAT, f32, fused", &fused_net, qat)),
            "ternary" | "ternary-ops" => {
                let (label, n) = if path == "ternary" {
                    ("QAT, ternary", &ternary_fused)
                } else {
                    ("QAT, ternary, ops", &ternary_ops)
                };
                match n {
                    Ok(n) => runs.push((label, n, qat)),
                    Err(e) => println!("{label}: not run ({e})"),
                }
            }
            "baseline" => runs.push(("f32 baseline", &net, Precision::Full)),
            other => panic!(
                "TRITLAB_BENCH_PATHS: unknown path {other:?} (f32, f32-fused, ternary, ternary-ops, baseline)"
            ),
        }
    }
    // The paths take turns, step by step, each on its own copy of the world: on a shared
    // machine whose load drifts, every path then sees the same conditions.
    let mut worlds: Vec<World> = runs.iter().map(|_| world.clone()).collect();
    let mut bests = vec![[f64::INFINITY; 3]; runs.len()];
    for _ in 0..steps {
        for (((_, net, precision), world), best) in runs.iter().zip(&mut worlds).zip(&mut bests) {
            let t0 = Instant::now();
            let (_, grads) = net
                .gradients(world, inputs, targets, batch, seq, *precision)
                .expect("gradients");
            let t1 = Instant::now();
            let norm = optim::grad_norm(&grads);
            optim::adamw_step(world, &grads, 1e-3, optim::clip_factor(norm, 1.0), &opts);
            let t2 = Instant::now();
            if matches!(precision, Precision::Ternary(_)) {
                let _ = ternary_layers(world, WeightQuant::Tensor).expect("ternary");
                let _ = world.hash();
            }
            let t3 = Instant::now();
            for (b, d) in best.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                *b = b.min(d.as_secs_f64());
            }
        }
    }
    let mut qat_tokens_per_s: Vec<(&str, f64)> = Vec::new();
    for (((label, net, precision), world), best) in runs.into_iter().zip(&worlds).zip(&bests) {
        let split = split_gradients(net, world, inputs, targets, batch, seq, precision);
        let total: f64 = best.iter().sum();
        if matches!(precision, Precision::Ternary(_)) {
            qat_tokens_per_s.push((label, (batch * seq) as f64 / total));
        }
        println!(
            "{label:>14}: {:.3} s/step ({:.2} steps/s, {:.0} tokens/s): forward+backward {:.3} s, AdamW {:.3} s, trits+hash {:.3} s",
            total,
            1.0 / total,
            (batch * seq) as f64 / total,
            best[0],
            best[1],
            best[2]
        );
        let achieved = flops_per_token * (batch * seq) as f64;
        let line = |what: &str, secs: f64| {
            let tflops = achieved / secs / 1e12;
            match peak {
                Some(p) => format!(
                    "{what} {tflops:.2} TFLOP/s = {:.1}% of {p} TFLOP/s",
                    100.0 * tflops / p
                ),
                None => format!("{what} {tflops:.2} TFLOP/s"),
            }
        };
        println!(
            "{:>14}  forward+backward, once more by part: weights to the device {:.3} s, forward {:.3} s, backward {:.3} s, gradients to the host {:.3} s",
            "", split[0], split[1], split[2], split[3]
        );
        println!(
            "{:>14}  model FLOPs: {}; {}",
            "",
            line("whole step", total),
            line("forward+backward alone", best[0])
        );
    }
    // Every other QAT step against the f32 path with candle's operations (the step as it was
    // before the fused graph and the ternary kernels).
    if let Some(&(_, base)) = qat_tokens_per_s
        .iter()
        .find(|(label, _)| *label == "QAT, f32 path")
    {
        for &(label, tps) in qat_tokens_per_s
            .iter()
            .filter(|(l, _)| *l != "QAT, f32 path")
        {
            println!(
                "{label} / f32 path: {:.2}× the tokens/s of the QAT step",
                tps / base
            );
        }
    }
}

/// One gradient computation timed by part: the world's upload, the forward pass (with the loss),
/// the backward pass, and the gradients' download. The device is synchronised after each part.
fn split_gradients(
    net: &Network,
    world: &World,
    inputs: &[u32],
    targets: &[u32],
    batch: usize,
    seq: usize,
    precision: Precision,
) -> [f64; 4] {
    let sync = || net.device().synchronize().expect("synchronize");
    let t0 = Instant::now();
    let vars = net.vars(world).expect("vars");
    sync();
    let t1 = Instant::now();
    let tensors: Vec<_> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = net
        .loss(&tensors, inputs, targets, batch, seq, precision)
        .expect("loss");
    sync();
    let t2 = Instant::now();
    let grads = loss.backward().expect("backward");
    sync();
    let t3 = Instant::now();
    for v in &vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let _ = g
                .flatten_all()
                .and_then(|g| g.to_vec1::<f32>())
                .expect("download");
        }
    }
    let t4 = Instant::now();
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3].map(|d| d.as_secs_f64())
}

/// The fused kernels (`tritlab_train::fused`, the graph of a world on the GPU) against candle's
/// operations (the graph of a host world on the GPU), in full precision so that both see the same
/// weights: the loss, and every gradient's largest difference relative to its tensor's largest
/// value. Formulas that differ show up as differences of order 1, rounding as about 1e-6.
#[cfg(feature = "cuda")]
fn fused_check(
    device: &tritlab_train::DeviceSpec,
    config: &tritlab_engine::BitNetConfig,
    world: &World,
    (inputs, targets): (&[u32], &[u32]),
    (batch, seq): (usize, usize),
) {
    let dev = device.open().expect("device");
    let fused = Network::on(config.clone(), dev.clone())
        .and_then(|n| n.with_quant_ops(QuantOps::Prequantized))
        .expect("network");
    let plain = Network::on(config.clone(), dev).expect("network");
    let (lf, gf) = fused
        .gradients(world, inputs, targets, batch, seq, Precision::Full)
        .expect("fused gradients");
    let (lp, gp) = plain
        .gradients(world, inputs, targets, batch, seq, Precision::Full)
        .expect("gradients");
    let (mut worst, mut at) = (0.0f64, String::new());
    for ((a, b), spec) in gf.iter().zip(&gp).zip(&plain.specs) {
        let largest = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v.abs())));
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (&x, &y)| m.max(f64::from((x - y).abs())));
        let rel = if largest > 0.0 { diff / largest } else { diff };
        if rel >= worst {
            (worst, at) = (rel, spec.name.clone());
        }
    }
    println!(
        "fused kernels against candle's operations (full precision): loss {lf:.6} against {lp:.6}, \
         largest gradient difference {worst:.2e} of its tensor's largest (`{at}`)"
    );
}

/// The step with the world kept on the GPU (what `train --device cuda` runs): forward, backward,
/// AdamW with the gradient norm, and the log's view (trits and world hash), each timed to a
/// device synchronisation.
#[cfg(feature = "cuda")]
#[allow(clippy::too_many_arguments)]
fn device_world_rows(
    config: &tritlab_engine::BitNetConfig,
    world: &World,
    opts: &TrainOptions,
    (inputs, targets): (&[u32], &[u32]),
    (batch, seq, steps): (usize, usize, usize),
    flops_per_token: f64,
    peak: Option<f64>,
    matmul: tritlab_train::Matmul,
) {
    let device: tritlab_train::DeviceSpec = std::env::var("TRITLAB_BENCH_DEVICE")
        .expect("device")
        .parse()
        .expect("device");
    let net = Network::on(config.clone(), device.open().expect("device"))
        .and_then(|n| n.with_quant_ops(QuantOps::Prequantized))
        .expect("network")
        .with_matmul(matmul);
    let precision = Precision::Ternary(WeightQuant::Tensor.granularity());
    fused_check(&device, config, world, (inputs, targets), (batch, seq));
    // Determinism: the same steps twice from the same world, every loss, gradient norm and world
    // hash compared bit for bit.
    let run = || {
        let mut dw = DeviceWorld::upload(world, &net, WeightQuant::Tensor).expect("upload");
        let mut out = vec![dw.view().expect("view").1];
        let mut scalars = Vec::new();
        for _ in 0..3 {
            let (loss, grads) = dw
                .gradients(&net, inputs, targets, batch, seq, precision)
                .expect("gradients");
            let norm = dw.grad_norm(&grads).expect("norm");
            dw.adamw(&grads, 1e-3, optim::clip_factor(norm, 1.0), opts)
                .expect("adamw");
            out.push(dw.view().expect("view").1);
            scalars.push((loss.to_bits(), norm.to_bits()));
        }
        (out, scalars)
    };
    let (a, b) = (run(), run());
    println!(
        "determinism: the same 3 steps twice from one world: {} (last loss {:.6}, norm {:.6})",
        if a == b {
            "identical losses, gradient norms and world hashes"
        } else {
            "they DIFFER"
        },
        f32::from_bits(a.1[2].0),
        f64::from_bits(a.1[2].1),
    );
    let mut dw = DeviceWorld::upload(world, &net, WeightQuant::Tensor).expect("upload");
    let sync = || net.device().synchronize().expect("synchronize");
    // best of: forward, backward, norm + AdamW, view (trits + hash)
    let mut best = [f64::INFINITY; 4];
    for i in 0..=steps {
        sync();
        let t0 = Instant::now();
        let params = dw.forward_params().expect("params");
        drop(params);
        let (loss, grads) = dw
            .gradients(&net, inputs, targets, batch, seq, precision)
            .expect("gradients");
        sync();
        let t2 = Instant::now();
        let norm = dw.grad_norm(&grads).expect("norm");
        dw.adamw(&grads, 1e-3, optim::clip_factor(norm, 1.0), opts)
            .expect("adamw");
        drop(grads);
        sync();
        let t3 = Instant::now();
        let _ = dw.view().expect("view");
        let t4 = Instant::now();
        if i == 0 {
            println!("world on the GPU: first step's loss {loss:.5} (untimed)");
            continue;
        }
        // Forward and backward once more, apart (the loss alone, synchronised).
        let params = dw.forward_params().expect("params");
        let t5 = Instant::now();
        let _ = net
            .loss(&params, inputs, targets, batch, seq, precision)
            .expect("loss")
            .to_scalar::<f32>()
            .expect("loss");
        let t6 = Instant::now();
        let fwd = (t6 - t5).as_secs_f64();
        let fb = (t2 - t0).as_secs_f64();
        for (b, d) in best.iter_mut().zip([
            fwd,
            (fb - fwd).max(0.0),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
        ]) {
            *b = b.min(d);
        }
    }
    let total: f64 = best.iter().sum();
    let achieved = flops_per_token * (batch * seq) as f64;
    let tflops = achieved / total / 1e12;
    let mfu = peak.map_or(String::new(), |p| {
        format!(" = {:.1}% of {p} TFLOP/s", 100.0 * tflops / p)
    });
    println!(
        "{:>20}: {total:.4} s/step ({:.2} steps/s, {:.0} tokens/s): forward {:.4} s, backward {:.4} s, norm+AdamW {:.4} s, trits+hash {:.4} s; model FLOPs {tflops:.2} TFLOP/s{mfu}",
        format!("world on GPU, {}", matmul.name()),
        1.0 / total,
        (batch * seq) as f64 / total,
        best[0],
        best[1],
        best[2],
        best[3],
    );
}
