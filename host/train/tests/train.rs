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
        .vars(t.world())
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
    assert!(
        max_diff < 2e-2,
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
