//! End-to-end training on a tiny model: determinism, resume, replay, export, timeline, and
//! what happens to damaged run files.

use std::path::{Path, PathBuf};
use tritlab_train::{
    export, replay, NewRun, Preset, Timeline, TokenizerSource, TrainOptions, Trainer,
};

const LINES: &[&str] = &[
    "First Citizen: Before we proceed any further, hear me speak.",
    "All: Speak, speak.",
    "First Citizen: You are all resolved rather to die than to famish?",
    "All: Resolved. resolved.",
    "First Citizen: First, you know Caius Marcius is chief enemy to the people.",
    "All: We know't, we know't.",
    "First Citizen: Let us kill him, and we'll have corn at our own price.",
    "Second Citizen: One word, good citizens.",
];

fn corpus(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(LINES[(i * 5) % LINES.len()]);
        text.push('\n');
    }
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn new_run(dir: &Path, name: &str, steps: u64, seed: u64) -> NewRun {
    let mut options = TrainOptions::new(Preset::Tiny);
    options.steps = steps;
    options.seq_len = 16;
    options.batch_size = 4;
    options.learning_rate = 3e-3;
    options.warmup_steps = 2;
    options.seed = seed;
    options.checkpoint_every = 3;
    NewRun {
        out: dir.join(name),
        data: corpus(dir),
        val: None,
        val_fraction: 0.2,
        tokenizer: TokenizerSource::Train(320),
        options,
        shape: Default::default(),
        threads: rayon::current_num_threads(),
        device: Default::default(),
        devices: Vec::new(),
    }
}

fn train(new: &NewRun) -> Trainer {
    let mut t = Trainer::create(new).unwrap();
    while !t.is_done() {
        t.step().unwrap();
    }
    t
}

#[test]
fn training_is_deterministic_and_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = train(&new_run(dir.path(), "a", 8, 7));
    let b = train(&new_run(dir.path(), "b", 8, 7));
    let c = train(&new_run(dir.path(), "c", 8, 8));
    assert_eq!(a.world_hash(), b.world_hash());
    assert_ne!(a.world_hash(), c.world_hash());

    let (records, _) = a.run().read_log().unwrap();
    assert_eq!(records.len(), 8);
    assert!(
        records[7].loss < records[0].loss - 0.5,
        "{:?}",
        records.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    assert!(records.iter().any(|r| r.flipped_trits() > 0));
    for r in &records {
        assert_eq!(r.layers.len(), 14, "2 layers × 7 ternary projections");
    }
    let e = a.evaluate(None).unwrap();
    assert!(e.loss.is_finite() && e.perplexity > 1.0);
}

#[test]
fn resume_after_interruption_reaches_the_same_world() {
    let dir = tempfile::tempdir().unwrap();
    let full = train(&new_run(dir.path(), "full", 8, 3));

    let new = new_run(dir.path(), "cut", 8, 3);
    let mut t = Trainer::create(&new).unwrap();
    for _ in 0..5 {
        t.step().unwrap();
    }
    drop(t);
    // A crash mid-append leaves a torn record at the end of the log.
    let log = new.out.join("morphisms.tml");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&log, bytes).unwrap();

    let (mut t, info) = Trainer::resume(&new.out).unwrap();
    assert_eq!(info.checkpoint_step, 3);
    assert_eq!(info.logged_steps, 5);
    assert_eq!(info.dropped_tail_bytes, 6);
    let mut verified = 0;
    while !t.is_done() {
        if t.step().unwrap().verified {
            verified += 1;
        }
    }
    assert_eq!(
        verified, 2,
        "steps 4 and 5 are recomputed and checked against the log"
    );
    assert_eq!(t.world_hash(), full.world_hash());
    // One writer at a time: the run resumes again once this trainer is gone.
    drop(t);
    assert!(Trainer::resume(&new.out).is_ok());
}

#[test]
fn replay_verifies_and_exports_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 7, 11);
    let t = train(&new);
    let mut ticks = 0;
    let report = replay::verify(&new.out, None, None, None, &mut |_, _| ticks += 1).unwrap();
    assert_eq!((report.from, report.to, report.verified), (1, 7, 7));
    assert_eq!((report.checkpoint, report.recomputed), (0, 7));
    assert_eq!(ticks, 7);
    let report = replay::verify(&new.out, Some(5), Some(6), None, &mut |_, _| {}).unwrap();
    assert_eq!(
        (report.checkpoint, report.recomputed, report.verified),
        (3, 3, 2)
    );

    // The model at step 5, rebuilt, loads in the engine with the trits the log says.
    let out = dir.path().join("at5");
    replay::export_at(&new.out, 5, &out, &mut |_, _| {}).unwrap();
    let model = tritlab_engine::Model::load(&out).unwrap();
    let mut timeline = Timeline::open_run(&new.out).unwrap();
    timeline.seek(5).unwrap();
    let q = &model.layers()[1].q_proj;
    let logged = timeline
        .layer("model.layers.1.self_attn.q_proj.weight")
        .unwrap();
    let counts = tritlab_kernels::count_trits(&logged.trits).unwrap();
    assert_eq!(q.trits().counts(), counts);
    assert!((q.scale() - logged.scale).abs() <= 1e-6 * logged.scale);

    // The final model exported by the trainer computes what training computed.
    let model_dir = t.export(None).unwrap();
    let model = tritlab_engine::Model::load(&model_dir).unwrap();
    let run = t.run();
    let batch = run.stream.batch(&run.train_tokens, 1).unwrap();
    let seq = run.options().seq_len;
    let inputs = &batch.inputs[..seq];
    let params: Vec<_> = run
        .network
        .vars(&t.world().unwrap())
        .unwrap()
        .into_iter()
        .map(|v| v.as_tensor().clone())
        .collect();
    let ours = run
        .network
        .logits(&params, inputs, 1, seq, run.precision())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let engine = model.forward(inputs, &mut model.new_cache()).unwrap();
    let max_diff = ours
        .iter()
        .zip(&engine)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // Both sides now read one layout and quantise with the kernels' own functions
    // (`quantize_absmean` for the weights, `quant::quantize_token` for each token's int8
    // activations), so they see the same trits, scales and activation codes. What is left is f32
    // summation order: candle's float matmuls, norms and softmax against the engine's exact i32
    // dot products times the two scales. Measured: 9.5e-7 on logits of magnitude up to 1.8 (a few
    // ulps). 1e-4 is about 100x that and above the worst-case reordering error at these widths
    // (in_features * 2^-24 * |logit| = 384 * 6e-8 * 1.8, about 4e-5), while one activation code
    // moving by one int8 step (a quantiser disagreement) moves the logits by ~1e-2, which the old
    // bound of 2e-2 let through and this one does not.
    assert!(
        max_diff < 1e-4,
        "trainer and engine logits differ by {max_diff}"
    );
}

#[test]
fn timeline_walks_forward_and_back_through_the_flips() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 6, 5);
    let t = train(&new);
    let mut tl = Timeline::open_run(&new.out).unwrap();
    assert_eq!((tl.first_step(), tl.position(), tl.last_step()), (0, 0, 6));
    let start: Vec<Vec<i8>> = tl.layers().iter().map(|l| l.trits.clone()).collect();
    tl.seek(6).unwrap();
    for (ours, layer) in t.ternary_layers().iter().zip(tl.layers()) {
        assert_eq!(ours.weights.trits, layer.trits, "{}", layer.name);
        assert_eq!(ours.scale(), layer.scale);
    }
    assert!(tl.step().unwrap().is_none());
    assert_eq!(tl.back().unwrap().unwrap().step, 6);
    tl.seek(0).unwrap();
    let back: Vec<Vec<i8>> = tl.layers().iter().map(|l| l.trits.clone()).collect();
    assert_eq!(start, back);
    assert!(tl.seek(7).is_err());

    // An exported model with its log: the model is the world after the last record.
    let model = t.export(None).unwrap();
    let mut tl = Timeline::open_model(&model, &new.out.join("morphisms.tml")).unwrap();
    assert_eq!(tl.position(), 6);
    tl.seek(0).unwrap();
    assert_eq!(
        tl.layers()
            .iter()
            .map(|l| l.trits.clone())
            .collect::<Vec<_>>(),
        start
    );
    let _ = export::ternary_layers;
}

#[test]
fn damaged_runs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 4, 9);
    train(&new);
    let log = new.out.join("morphisms.tml");
    let good = std::fs::read(&log).unwrap();

    // A flipped byte in the middle: corruption, named by record.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&log, &bad).unwrap();
    let err = replay::verify(&new.out, None, None, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("record"), "{err}");
    assert!(Trainer::resume(&new.out).is_err());

    // A foreign file.
    std::fs::write(&log, b"this is not a morphism log at all").unwrap();
    let err = Timeline::open_run(&new.out).err().unwrap().to_string();
    assert!(err.contains("morphisms.tml"), "{err}");

    // A damaged checkpoint is caught by its hash.
    std::fs::write(&log, &good).unwrap();
    let ck = new.out.join("checkpoints/step-00000003.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    std::fs::write(&ck, bytes).unwrap();
    let err = replay::verify(&new.out, Some(4), None, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("damaged"), "{err}");

    // Changed data is refused.
    std::fs::write(&new.data, "completely different text\n".repeat(40)).unwrap();
    let err = replay::verify(&new.out, None, None, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("no longer reads"), "{err}");

    // A second run into the same directory is refused.
    let err = Trainer::create(&new).err().unwrap().to_string();
    assert!(err.contains("--resume"), "{err}");
}

/// Edits `run.json` in place.
fn edit_run_json(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The error of `f`, failing the test if it succeeded or panicked.
fn error_of<T>(what: &str, f: impl FnOnce() -> tritlab_train::Result<T>) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_)) => panic!("{what}: succeeded"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("{what}: panicked"),
    }
}

#[test]
fn run_json_is_validated_when_a_run_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 2, 4);
    train(&new);
    let good = std::fs::read(new.out.join("run.json")).unwrap();
    // (what is wrong, how to make run.json so, what the error must name)
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "checkpoint_every 0",
            Box::new(|v| v["options"]["checkpoint_every"] = 0.into()),
            "--checkpoint-every",
        ),
        (
            "seq_len 0",
            Box::new(|v| v["options"]["seq_len"] = 0.into()),
            "--seq",
        ),
        (
            "batch_size 0",
            Box::new(|v| v["options"]["batch_size"] = 0.into()),
            "--batch",
        ),
        (
            "adam_eps 0",
            Box::new(|v| v["options"]["adam_eps"] = 0.0.into()),
            "epsilon",
        ),
        (
            "zero heads",
            Box::new(|v| v["model"]["num_attention_heads"] = 0.into()),
            "num_attention_heads = 0",
        ),
        (
            "zero KV heads",
            Box::new(|v| v["model"]["num_key_value_heads"] = 0.into()),
            "num_key_value_heads = 0",
        ),
        (
            "wrapping head_dim",
            Box::new(|v| v["model"]["head_dim"] = ((1u64 << 63) + 16).into()),
            "head_dim = 9223372036854775824",
        ),
        (
            "vocabulary smaller than the tokenizer's",
            Box::new(|v| v["model"]["vocab_size"] = 8.into()),
            "outside the model's vocabulary of 8",
        ),
        (
            "threads 0",
            Box::new(|v| v["threads"] = 0.into()),
            "threads 0",
        ),
        (
            "val_fraction NaN-like",
            Box::new(|v| v["data"]["val_fraction"] = 7.5.into()),
            "data.val_fraction 7.5",
        ),
        (
            "seq_len past the positions",
            Box::new(|v| v["options"]["seq_len"] = 100_000.into()),
            "max_position_embeddings",
        ),
    ];
    for (what, edit, expected) in cases {
        std::fs::write(new.out.join("run.json"), &good).unwrap();
        edit_run_json(&new.out, edit);
        let e = error_of(what, || Trainer::resume(&new.out));
        assert!(
            e.contains("run.json") || e.contains("tokenizer.json"),
            "{what}: {e}"
        );
        assert!(e.contains(expected), "{what}: {e}");
        let e = error_of(what, || {
            replay::verify(&new.out, None, None, None, &mut |_, _| {})
        });
        assert!(e.contains(expected), "{what}: {e}");
    }
    std::fs::write(new.out.join("run.json"), &good).unwrap();
    assert!(replay::verify(&new.out, None, None, None, &mut |_, _| {}).is_ok());
}

#[test]
fn a_checkpoint_whose_step_contradicts_its_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 4, 6);
    train(&new);
    let ck = |s: u64| new.out.join(format!("checkpoints/step-{s:08}.safetensors"));
    // The checkpoint of step 3 copied in as step 1: verifying step 2 would start from step 3,
    // recompute nothing and used to report step 2 as verified.
    std::fs::copy(ck(3), ck(1)).unwrap();
    let e = error_of("verify 2..=2", || {
        replay::verify(&new.out, Some(2), Some(2), None, &mut |_, _| {})
    });
    assert!(
        e.contains("step-00000001.safetensors")
            && e.contains("file name says step 1")
            && e.contains("metadata says step 3"),
        "{e}"
    );
    std::fs::remove_file(ck(1)).unwrap();
    let report = replay::verify(&new.out, Some(2), Some(2), None, &mut |_, _| {}).unwrap();
    assert_eq!((report.checkpoint, report.verified), (0, 1));
}

#[test]
fn a_second_writer_on_a_run_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 3, 8);
    let mut first = Trainer::create(&new).unwrap();
    first.step().unwrap();
    let log_before = std::fs::read(new.out.join("morphisms.tml")).unwrap();
    let e = error_of("second resume", || Trainer::resume(&new.out));
    assert!(
        e.contains(&new.out.display().to_string())
            && e.contains("another tritlab process")
            && e.contains(&format!("process {}", std::process::id())),
        "{e}"
    );
    assert!(matches!(
        Trainer::resume(&new.out).err().unwrap(),
        tritlab_train::TrainError::Locked { .. }
    ));
    // Creating a run over a locked directory is refused the same way.
    let e = error_of("second create", || Trainer::create(&new));
    assert!(e.contains("another tritlab process"), "{e}");
    // Nothing was written by the refused writers.
    assert_eq!(
        std::fs::read(new.out.join("morphisms.tml")).unwrap(),
        log_before
    );
    // The lock lives as long as the writer.
    while !first.is_done() {
        first.step().unwrap();
    }
    drop(first);
    let (resumed, _) = Trainer::resume(&new.out).unwrap();
    assert!(resumed.is_done());
    // RunLock itself, directly.
    drop(resumed);
    let lock = tritlab_train::RunLock::acquire(&new.out).unwrap();
    assert_eq!(lock.dir(), new.out.as_path());
    assert!(tritlab_train::RunLock::acquire(&new.out).is_err());
    drop(lock);
    assert!(tritlab_train::RunLock::acquire(&new.out).is_ok());
}

#[test]
fn export_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 3, 10);
    let mut t = Trainer::create(&new).unwrap();
    t.step().unwrap();
    let out = dir.path().join("exported");
    t.export(Some(&out)).unwrap();
    std::fs::write(out.join("NOTES.md"), "kept across exports\n").unwrap();
    let first = std::fs::read(out.join("model.safetensors")).unwrap();
    let names = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };

    // An export interrupted half-way (here: the tokenizer to copy is gone, after the weights
    // were written) leaves the previous export exactly as it was, and no temporary files.
    t.step().unwrap();
    let provenance = export::Provenance {
        run: None,
        step: t.step_count(),
        world_hash: t.world_hash().to_string(),
        weight_quant: t.run().options().weight_quant,
    };
    let err = export::export_model(
        &t.world().unwrap(),
        &t.run().config.model,
        t.run().options().weight_quant,
        &dir.path().join("no-such-tokenizer.json"),
        &provenance,
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no-such-tokenizer.json"), "{err}");
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), first);
    assert_eq!(names(dir.path()), ["corpus.txt", "exported", "run"]);

    // A finished export replaces the old one whole, carrying over files it did not write.
    t.export(Some(&out)).unwrap();
    assert_ne!(std::fs::read(out.join("model.safetensors")).unwrap(), first);
    assert_eq!(
        std::fs::read_to_string(out.join("NOTES.md")).unwrap(),
        "kept across exports\n"
    );
    assert_eq!(names(dir.path()), ["corpus.txt", "exported", "run"]);
    tritlab_engine::Model::load(&out).unwrap();

    // A directory that is not an export is never replaced.
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), "meow").unwrap();
    let err = t.export(Some(&foreign)).unwrap_err().to_string();
    assert!(err.contains("not a tritlab model export"), "{err}");
    assert_eq!(names(&foreign), ["cat.jpg"]);
}

#[test]
fn run_json_records_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 2, 3);
    train(&new);
    let config = tritlab_train::RunConfig::read(&new.out).unwrap();
    assert_eq!(config.device, tritlab_train::DeviceRecord::default());
    let json = std::fs::read_to_string(new.out.join("run.json")).unwrap();
    assert!(json.contains("\"device\": \"cpu\""), "{json}");
}

/// A run recorded as computed on a GPU (here: a CPU run relabelled, so every recomputed loss
/// must come out identical) is checked on the CPU by its trit chain and its losses, and is not
/// resumed on another kind of device.
#[test]
fn a_gpu_run_is_checked_on_the_cpu_by_its_trits_and_losses() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_run(dir.path(), "run", 7, 5);
    drop(train(&new));
    edit_run_json(&new.out, |v| {
        v["device"] = serde_json::json!({
            "device": "cuda:0",
            "name": "NVIDIA H200",
            "compute_capability": "9.0",
        });
    });
    let report = replay::verify_on(
        &new.out,
        tritlab_train::DeviceSpec::Cpu,
        Some(2),
        None,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let replay::Verification::CrossDevice(r) = report else {
        panic!("a GPU run checked on the CPU is not bit-exact: {report:?}");
    };
    // Checkpoints every 3 steps: 0, 3, 6 and the last, 7.
    assert_eq!(r.checkpoints, vec![0, 3, 6, 7]);
    assert_eq!(r.recomputed, 6);
    assert_eq!((r.max_loss_difference, r.mean_loss_difference), (0.0, 0.0));
    assert!(
        r.recorded.starts_with("NVIDIA H200 (cuda:0"),
        "{}",
        r.recorded
    );
    assert_eq!(r.here, "cpu");

    // A CPU run checked on the CPU is checked bit for bit.
    let other = new_run(dir.path(), "cpu-run", 3, 5);
    drop(train(&other));
    let exact = replay::verify_on(
        &other.out,
        tritlab_train::DeviceSpec::Cpu,
        None,
        None,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(matches!(exact, replay::Verification::Exact(_)), "{exact:?}");

    if !tritlab_train::DeviceSpec::cuda_available() {
        // A new run on a GPU is refused before anything is written.
        let mut gpu = new_run(dir.path(), "gpu-run", 2, 5);
        gpu.device = tritlab_train::DeviceSpec::Cuda(0);
        let e = error_of("create", || Trainer::create(&gpu).map(|_| ()));
        assert!(
            e.contains("built without CUDA") && e.contains("build-cuda.sh"),
            "{e}"
        );
        assert!(!gpu.out.exists(), "{} was created", gpu.out.display());
        // Resuming or verifying on the recorded GPU needs a CUDA build, and says so.
        for e in [
            error_of("resume", || Trainer::resume(&new.out).map(|_| ())),
            error_of("verify", || {
                replay::verify(&new.out, None, None, None, &mut |_, _| {}).map(|_| ())
            }),
        ] {
            assert!(e.contains("built without CUDA"), "{e}");
        }
    }

    // A damaged trit chain is found: a checkpoint whose weights were changed after the fact.
    let ck = tritlab_train::checkpoint::checkpoint_path(&new.out, 6);
    let specs =
        tritlab_train::model::param_specs(&tritlab_train::RunConfig::read(&new.out).unwrap().model);
    let mut loaded = tritlab_train::checkpoint::load(&ck, &specs, false).unwrap();
    let q = loaded
        .world
        .params
        .iter_mut()
        .find(|p| p.spec.name.ends_with("q_proj.weight"))
        .unwrap();
    for v in q.value.iter_mut() {
        *v = -*v;
    }
    tritlab_train::checkpoint::save(&ck, &loaded.world, None).unwrap();
    let e = error_of("tampered", || {
        replay::verify_on(
            &new.out,
            tritlab_train::DeviceSpec::Cpu,
            None,
            None,
            None,
            &mut |_, _| {},
        )
        .map(|_| ())
    });
    assert!(
        e.contains("differ from the step-0 trits plus the logged flips"),
        "{e}"
    );
}

/// The GPU's formulas (tensor operations) computed on the CPU against the kernels' custom ops:
/// the same loss and gradients up to float summation order.
#[test]
fn tensor_quantisers_train_like_the_kernels() {
    use tritlab_train::model::{param_specs, Network, Precision, QuantOps, World};
    let config = Preset::Tiny.config(96, 16);
    let world = World::init(&param_specs(&config), 9);
    let tokens: Vec<u32> = (0..2 * 16 + 1).map(|i| ((i * 37) % 96) as u32).collect();
    let (inputs, targets) = (&tokens[..32], &tokens[1..]);
    let precision = Precision::Ternary(tritlab_kernels::ScaleGranularity::PerTensor);
    let kernels = Network::new(config.clone()).unwrap();
    let tensors = Network::new(config)
        .unwrap()
        .with_quant_ops(QuantOps::Tensor)
        .unwrap();
    let (la, ga) = kernels
        .gradients(&world, inputs, targets, 2, 16, precision)
        .unwrap();
    let (lb, gb) = tensors
        .gradients(&world, inputs, targets, 2, 16, precision)
        .unwrap();
    assert!((la - lb).abs() <= 1e-5 * la.abs(), "loss {la} vs {lb}");
    for ((a, b), spec) in ga.iter().zip(&gb).zip(&kernels.specs) {
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let worst = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-3 * scale, "{}: {worst} of {scale}", spec.name);
    }
}

/// The ternary product path (the engine's integer product forward, AMX tiles backward and for
/// the head) against the f32 path: the same logits, loss and gradients up to summation order and
/// the int8 rounding ties it tips.
#[test]
fn the_ternary_path_computes_the_f32_paths_gradients() {
    use tritlab_train::model::{param_specs, Network, Precision, World};
    if !tritlab_kernels::amx::available() {
        eprintln!("skipped: this CPU has no AMX");
        return;
    }
    let config = Preset::Tiny.config(300, 16);
    let world = World::init(&param_specs(&config), 9);
    let tokens: Vec<u32> = (0..4 * 16 + 1).map(|i| ((i * 37) % 300) as u32).collect();
    let (inputs, targets) = (&tokens[..64], &tokens[1..]);
    let precision = Precision::Ternary(tritlab_kernels::ScaleGranularity::PerTensor);
    let f32_path = Network::new(config.clone()).unwrap();
    let ternary = Network::new(config)
        .unwrap()
        .with_kernels(tritlab_train::Kernels::Ternary)
        .unwrap();
    // The logits: every product agrees up to f32 summation order (and the head's bf16x3,
    // about 2⁻¹⁸ of each product), so most tokens' logits agree to a few 1e-6. But a hidden
    // state one ulp away lands an int8 activation code on the other side of a rounding tie now
    // and then, and from there on its sequence's later tokens move by ~1e-2. Measured on this
    // batch: 53 of 64 tokens within 5.4e-6, then one such flip (the last 11 tokens of the last
    // sequence, up to 1.3e-2).
    let params: Vec<_> = f32_path
        .vars(&world)
        .unwrap()
        .into_iter()
        .map(|v| v.as_tensor().clone())
        .collect();
    let logits = |net: &Network| {
        net.logits(&params, inputs, 4, 16, precision)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let (a, b) = (logits(&f32_path), logits(&ternary));
    let close = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.iter().zip(*y).all(|(p, q)| (p - q).abs() <= 2e-5))
        .count();
    assert!(close >= 48, "only {close} of 64 tokens' logits agree");

    // Loss and gradients: within what such a flip moves (measured: loss 9e-6 relative, each
    // tensor's gradient 2.6e-3 to 7.3e-3 in relative L2 norm).
    let (la, ga) = f32_path
        .gradients(&world, inputs, targets, 4, 16, precision)
        .unwrap();
    let (lb, gb) = ternary
        .gradients(&world, inputs, targets, 4, 16, precision)
        .unwrap();
    assert!((la - lb).abs() <= 1e-4 * la.abs(), "loss {la} vs {lb}");
    assert_gradients_close(&ga, &gb, &f32_path.specs, 2e-2, "");
}

/// Each parameter's gradients `a` and `b` differ by at most `tol` of `a`'s L2 norm.
fn assert_gradients_close(
    a: &[Vec<f32>],
    b: &[Vec<f32>],
    specs: &[tritlab_train::model::ParamSpec],
    tol: f64,
    what: &str,
) {
    for ((a, b), spec) in a.iter().zip(b).zip(specs) {
        let norm: f64 = a.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let diff: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            diff <= tol * norm.max(1e-30),
            "{what}{}: the gradients differ by {:.2e} of their norm",
            spec.name,
            diff / norm
        );
    }
}

/// A run on the ternary path follows the f32 path's losses, records its path, replays bit for
/// bit on it, and is refused as a run of the other path.
#[test]
fn a_ternary_run_follows_the_f32_run_and_replays_bit_for_bit() {
    use tritlab_train::Kernels;
    if !tritlab_kernels::amx::available() {
        eprintln!("skipped: this CPU has no AMX");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let steps = 12;
    let mut f = new_run(dir.path(), "f32", steps, 5);
    f.options.kernels = Kernels::F32;
    let mut t = new_run(dir.path(), "ternary", steps, 5);
    t.options.kernels = Kernels::Ternary;
    drop(train(&f));
    drop(train(&t));
    let (a, _) = tritlab_train::Run::open(&f.out)
        .unwrap()
        .read_log()
        .unwrap();
    let (b, _) = tritlab_train::Run::open(&t.out)
        .unwrap()
        .read_log()
        .unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x.loss - y.loss).abs())
        .fold(0.0f64, f64::max);
    eprintln!(
        "largest loss difference over {steps} steps: {worst:.3e} (losses {:.4} → {:.4})",
        a[0].loss,
        a[steps as usize - 1].loss
    );
    // Measured: 5.4e-3 at most over the 12 steps (losses 5.82 → 4.36), from int8 ties tipped the
    // other way and the trit flips that follow.
    assert!(worst < 1e-2, "the paths' losses differ by {worst}");

    let json = std::fs::read_to_string(t.out.join("run.json")).unwrap();
    assert!(json.contains("\"kernels\": \"ternary\""), "{json}");
    let report = replay::verify(&t.out, None, None, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.verified, steps);

    // Relabelled as an f32 run, its steps recompute on the f32 path, differ, and the error
    // names the path.
    edit_run_json(&t.out, |v| v["options"]["kernels"] = "f32".into());
    let e = error_of("relabelled", || {
        replay::verify(&t.out, Some(1), Some(1), None, &mut |_, _| {}).map(|_| ())
    });
    assert!(e.contains("on the f32 path"), "{e}");
    // A run.json from before the path was recorded is an f32 run.
    edit_run_json(&f.out, |v| {
        v["options"].as_object_mut().unwrap().remove("kernels");
    });
    let config = tritlab_train::RunConfig::read(&f.out).unwrap();
    assert_eq!(config.options.kernels, Kernels::F32);
    let report = replay::verify(&f.out, None, None, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.verified, steps);
}

/// The fused graph (one operation for each RMS norm, rotary embedding and attention softmax)
/// against candle's operations: the same formulas summed in other orders, so the same loss and
/// gradients to rounding in full precision, and, with int8 activations, up to the rounding ties
/// a last-bit difference tips.
#[test]
fn the_fused_graph_computes_the_ops_graphs_gradients() {
    use tritlab_train::model::{param_specs, Network, Precision, World};
    use tritlab_train::Graph;
    let config = Preset::Tiny.config(300, 16);
    let world = World::init(&param_specs(&config), 9);
    let tokens: Vec<u32> = (0..4 * 16 + 1).map(|i| ((i * 37) % 300) as u32).collect();
    let (inputs, targets) = (&tokens[..64], &tokens[1..]);
    let ops = Network::new(config.clone()).unwrap();
    let fused = Network::new(config).unwrap().with_graph(Graph::Fused);
    assert_eq!((ops.graph(), fused.graph()), (Graph::Ops, Graph::Fused));
    for (precision, loss_tol, grad_tol) in [
        (Precision::Full, 1e-6, 1e-4),
        (
            Precision::Ternary(tritlab_kernels::ScaleGranularity::PerTensor),
            1e-4,
            2e-2,
        ),
    ] {
        let (la, ga) = ops
            .gradients(&world, inputs, targets, 4, 16, precision)
            .unwrap();
        let (lb, gb) = fused
            .gradients(&world, inputs, targets, 4, 16, precision)
            .unwrap();
        assert!(
            (la - lb).abs() <= loss_tol * la.abs(),
            "{precision:?}: loss {la} vs {lb}"
        );
        assert_ne!(
            ga, gb,
            "{precision:?}: the graphs should sum in different orders"
        );
        assert_gradients_close(&ga, &gb, &ops.specs, grad_tol, &format!("{precision:?} "));
    }
}

/// A new run computes on the fused graph and says so in run.json; a run.json without the field
/// (every CPU run from before it) computes with candle's operations; each replays on its own
/// graph bit for bit, and a run relabelled to the other graph is caught at its first step.
#[test]
fn a_run_records_its_graph_and_replays_on_it() {
    use tritlab_train::Graph;
    let dir = tempfile::tempdir().unwrap();
    let steps = 6;
    let fused = new_run(dir.path(), "fused", steps, 5);
    assert_eq!(fused.options.graph, Graph::Fused);
    let mut ops = new_run(dir.path(), "ops", steps, 5);
    ops.options.graph = Graph::Ops;
    drop(train(&fused));
    drop(train(&ops));

    let json = std::fs::read_to_string(fused.out.join("run.json")).unwrap();
    assert!(json.contains("\"graph\": \"fused\""), "{json}");
    let json = std::fs::read_to_string(ops.out.join("run.json")).unwrap();
    assert!(!json.contains("\"graph\""), "{json}");
    let config = tritlab_train::RunConfig::read(&ops.out).unwrap();
    assert_eq!(config.options.graph, Graph::Ops);

    let (a, _) = tritlab_train::Run::open(&fused.out)
        .unwrap()
        .read_log()
        .unwrap();
    let (b, _) = tritlab_train::Run::open(&ops.out)
        .unwrap()
        .read_log()
        .unwrap();
    assert!(
        (a[0].loss - b[0].loss).abs() <= 1e-4 * a[0].loss.abs(),
        "first losses {} and {}",
        a[0].loss,
        b[0].loss
    );
    assert_ne!(a[0].world_after, b[0].world_after);
    for run in [&fused.out, &ops.out] {
        let report = replay::verify(run, None, None, None, &mut |_, _| {}).unwrap();
        assert_eq!(report.verified, steps);
    }

    edit_run_json(&fused.out, |v| {
        v["options"].as_object_mut().unwrap().remove("graph");
    });
    let e = error_of("relabelled", || {
        replay::verify(&fused.out, Some(1), Some(1), None, &mut |_, _| {}).map(|_| ())
    });
    assert!(e.contains("layers on the ops graph"), "{e}");
}

/// The logged steps of a finished run.
fn records(run: &Path) -> Vec<tritlab_morphism::StepRecord> {
    tritlab_train::Run::open(run).unwrap().read_log().unwrap().0
}

#[test]
fn micro_batches_sum_in_order_and_the_device_count_does_not_change_the_bits() {
    use tritlab_train::DeviceSpec::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let steps = 5;
    let whole = new_run(dir.path(), "whole", steps, 9);
    let mut micro = new_run(dir.path(), "micro", steps, 9);
    micro.options.micro_batches = 2;
    micro.options.twin = true;
    // Two replicas on the CPU, one thread each, exchanging gradients through shared memory:
    // the same order of sums as two GPUs through NCCL.
    let mut two = new_run(dir.path(), "two", steps, 9);
    two.options.micro_batches = 2;
    two.options.twin = true;
    two.devices = vec![Cpu, Cpu];
    let mut four = new_run(dir.path(), "four", steps, 9);
    four.options.micro_batches = 4;
    four.devices = vec![Cpu, Cpu];
    let mut four_alone = new_run(dir.path(), "four-alone", steps, 9);
    four_alone.options.micro_batches = 4;
    let trained: Vec<Trainer> = [&whole, &micro, &two, &four, &four_alone].map(train).into();

    let (w, m, t, f) = (
        records(&whole.out),
        records(&micro.out),
        records(&two.out),
        records(&four.out),
    );
    // Splitting the batch changes the order of the sums, hence the bits, but not the step:
    // the first losses agree closely.
    assert_ne!(w[0].world_after, m[0].world_after);
    assert!(
        (w[0].loss - m[0].loss).abs() <= 1e-5 * w[0].loss.abs(),
        "{} and {}",
        w[0].loss,
        m[0].loss
    );
    // Two devices sharing two (or four) micro-batches compute one device's steps bit for bit.
    let fa = records(&four_alone.out);
    for (a, b) in m.iter().zip(&t).chain(fa.iter().zip(&f)) {
        assert_eq!(a.world_after, b.world_after, "step {}", a.step);
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits());
        assert_eq!(a.layers, b.layers);
    }
    assert_eq!(trained[1].world_hash(), trained[2].world_hash());
    assert_eq!(
        trained[1].twin().map(|w| w.params[0].value.clone()),
        trained[2].twin().map(|w| w.params[0].value.clone()),
        "the twin splits its batches alike"
    );
    assert_ne!(
        f[0].world_after, t[0].world_after,
        "four micro-batches sum otherwise"
    );
    drop(trained);

    let json = std::fs::read_to_string(two.out.join("run.json")).unwrap();
    assert!(json.contains("\"micro_batches\": 2"), "{json}");
    assert!(
        json.contains("\"data_parallel\": [\n    \"cpu\",\n    \"cpu\"\n  ]"),
        "{json}"
    );
    let json = std::fs::read_to_string(whole.out.join("run.json")).unwrap();
    assert!(
        !json.contains("micro_batches") && !json.contains("data_parallel"),
        "{json}"
    );

    // The data-parallel run replays on one device, bit for bit, and so does the others.
    for run in [&micro.out, &two.out, &four.out] {
        let report = replay::verify(run, None, None, None, &mut |_, _| {}).unwrap();
        assert_eq!(report.verified, steps);
    }
    // Recorded with one micro-batch, it no longer replays: the split is part of the run.
    edit_run_json(&two.out, |v| {
        v["options"]
            .as_object_mut()
            .unwrap()
            .remove("micro_batches");
        v.as_object_mut().unwrap().remove("data_parallel");
    });
    let e = error_of("unsplit", || {
        replay::verify(&two.out, Some(1), Some(1), None, &mut |_, _| {}).map(|_| ())
    });
    assert!(e.contains("step 1"), "{e}");
}

#[test]
fn a_data_parallel_run_resumes_on_its_devices() {
    use tritlab_train::DeviceSpec::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let mut full = new_run(dir.path(), "full", 7, 4);
    full.options.micro_batches = 2;
    let full = train(&full);

    let mut cut = new_run(dir.path(), "cut", 7, 4);
    cut.options.micro_batches = 2;
    cut.devices = vec![Cpu, Cpu];
    let mut t = Trainer::create(&cut).unwrap();
    for _ in 0..5 {
        t.step().unwrap();
    }
    drop(t);
    let (mut t, info) = Trainer::resume(&cut.out).unwrap();
    assert_eq!(info.checkpoint_step, 3);
    let mut verified = 0;
    while !t.is_done() {
        verified += usize::from(t.step().unwrap().verified);
    }
    assert_eq!(verified, 2);
    assert_eq!(t.world_hash(), full.world_hash());
    drop(t);

    // Started alone, continued on two replicas, then alone again: the same world.
    let mut moved = new_run(dir.path(), "moved", 7, 4);
    moved.options.micro_batches = 2;
    let mut t = Trainer::create(&moved).unwrap();
    for _ in 0..3 {
        t.step().unwrap();
    }
    drop(t);
    let (mut t, _) = Trainer::resume_on(&moved.out, Some(&[Cpu, Cpu])).unwrap();
    for _ in 0..3 {
        t.step().unwrap();
    }
    drop(t);
    let (mut t, _) = Trainer::resume_on(&moved.out, Some(&[Cpu])).unwrap();
    while !t.is_done() {
        t.step().unwrap();
    }
    assert_eq!(t.world_hash(), full.world_hash());
    drop(t);
    let e = error_of("three", || {
        Trainer::resume_on(&moved.out, Some(&[Cpu, Cpu, Cpu])).map(|_| ())
    });
    assert!(e.contains("must be a multiple of the 3 devices"), "{e}");
}

#[test]
fn splits_that_do_not_divide_are_refused() {
    use tritlab_train::DeviceSpec::{Cpu, Cuda};
    let dir = tempfile::tempdir().unwrap();
    let mut bad = new_run(dir.path(), "a", 2, 1);
    bad.options.micro_batches = 3;
    let e = error_of("3 of 4", || Trainer::create(&bad).map(|_| ()));
    assert!(e.contains("--micro-batches 3 must divide --batch 4"), "{e}");

    let mut bad = new_run(dir.path(), "b", 2, 1);
    bad.options.batch_size = 6;
    bad.options.micro_batches = 3;
    bad.devices = vec![Cpu, Cpu];
    let e = error_of("3 over 2", || Trainer::create(&bad).map(|_| ()));
    assert!(e.contains("must be a multiple of the 2 devices"), "{e}");

    let mut bad = new_run(dir.path(), "c", 2, 1);
    bad.options.micro_batches = 2;
    bad.device = Cuda(1);
    bad.devices = vec![Cuda(0), Cuda(1)];
    let e = error_of("first", || Trainer::create(&bad).map(|_| ()));
    assert!(
        e.contains("must be the first of its devices (cuda:0, cuda:1)"),
        "{e}"
    );

    if !tritlab_train::DeviceSpec::cuda_available() {
        let mut gpu = new_run(dir.path(), "d", 2, 1);
        gpu.options.micro_batches = 2;
        gpu.device = Cuda(0);
        gpu.devices = vec![Cuda(0), Cuda(1)];
        let e = error_of("no cuda", || Trainer::create(&gpu).map(|_| ()));
        assert!(e.contains("built without CUDA"), "{e}");
    }
    for name in ["a", "b", "c", "d"] {
        assert!(!dir.path().join(name).join("run.json").exists(), "{name}");
    }
}
