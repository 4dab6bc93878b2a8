//! Writing models and logits through the session: `synth`, `logits --out`, and `export` to every
//! format from a checkpoint, from a GGUF file and from a replay step. Trits and scales are
//! copied, never quantised again, so every round trip gives the same logits bit for bit.

use crate::common;

use std::path::{Path, PathBuf};

use common::root;
use tritlab_session::{ErrorKind, Execution, Session, SessionConfig};

fn data() -> PathBuf {
    root().join("workbooks/data/sonnets.txt")
}

/// Runs `source`; the live events are not looked at here.
fn run(session: &mut Session, source: &str) -> Execution {
    common::run(session, source).0
}

fn ok(session: &mut Session, source: &str) -> Execution {
    let exec = run(session, source);
    assert!(exec.error.is_none(), "{source}: {:?}", exec.error_message());
    exec
}

/// The logits `logits --ids IDS --out FILE` wrote, as [positions][vocab].
fn logits_of(session: &mut Session, model: &Path, ids: &str, file: &Path) -> Vec<Vec<f32>> {
    ok(
        session,
        &format!(
            "load \"{}\" --head-precision exact\nlogits --ids {ids} --out \"{}\"",
            model.display(),
            file.display()
        ),
    );
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    let vocab = t.shape()[1];
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    values.chunks_exact(vocab).map(<[f32]>::to_vec).collect()
}

#[test]
fn synth_logits_and_export_keep_every_logit() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut s = Session::new(SessionConfig::default());
    let tiny = t.join("tiny");
    let exec = ok(
        &mut s,
        &format!("synth --shape tiny --seed 3 --out \"{}\"", tiny.display()),
    );
    assert!(
        exec.outputs
            .iter()
            .any(|o| format!("{o:?}").contains("gibberish")),
        "{:?}",
        exec.outputs
    );
    let ids = "1,17,300,5";
    let want = logits_of(&mut s, &tiny, ids, &t.join("hf.safetensors"));
    assert_eq!((want.len(), want[0].len()), (4, 512));

    // The JSON file holds the same numbers.
    ok(
        &mut s,
        &format!(
            "logits --ids {ids} --out \"{}\"",
            t.join("hf.json").display()
        ),
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("hf.json")).unwrap()).unwrap();
    assert_eq!(json["shape"], serde_json::json!([4, 512]));
    assert_eq!(json["logits"][3][7].as_f64().unwrap() as f32, want[3][7]);

    for format in ["gguf-tq2_0", "gguf-tq1_0", "gguf-i2_s"] {
        let gguf = t.join(format!("{format}.gguf"));
        ok(
            &mut s,
            &format!(
                "load \"{}\"\nexport \"{}\" --to {format} --embed-type f32",
                tiny.display(),
                gguf.display()
            ),
        );
        let got = logits_of(&mut s, &gguf, ids, &t.join(format!("{format}.safetensors")));
        assert_eq!(got, want, "{format}");
        // and back to a checkpoint, from the GGUF file
        let back = t.join(format!("{format}-hf"));
        ok(&mut s, &format!("export \"{}\"", back.display()));
        let got = logits_of(
            &mut s,
            &back,
            ids,
            &t.join(format!("{format}-hf.safetensors")),
        );
        assert_eq!(got, want, "{format} → hf");
    }

    // Bad requests fail before anything is written.
    let npy = t.join("l.npy");
    let exec = run(
        &mut s,
        &format!("logits --ids 1 --out \"{}\"", npy.display()),
    );
    assert_eq!(exec.error.map(|e| e.kind()), Some(ErrorKind::Usage));
    assert!(!npy.exists());
    let exec = run(&mut s, "export x --embed-type q8_0");
    assert_eq!(exec.error.map(|e| e.kind()), Some(ErrorKind::Parse));
}

#[test]
fn a_replay_step_exports_to_gguf_and_a_run_loads_as_its_model() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run_dir = t.join("run");
    let mut s = Session::new(SessionConfig::default());
    ok(
        &mut s,
        &format!(
            "train --data \"{}\" --train-tokenizer 300 --steps 2 --seq 16 --batch 2 \
             --checkpoint-every 1 --out \"{}\"",
            data().display(),
            run_dir.display()
        ),
    );
    // A run's folder loads as the model it wrote.
    ok(&mut s, &format!("load \"{}\"", run_dir.display()));

    let step_hf = t.join("step1");
    let step_gguf = t.join("step1.gguf");
    ok(
        &mut s,
        &format!(
            "replay open \"{r}\"\nseek 1\nexport \"{hf}\"\nexport \"{g}\" --to gguf-tq2_0 --embed-type f32",
            r = run_dir.display(),
            hf = step_hf.display(),
            g = step_gguf.display()
        ),
    );
    let ids = "1,2,3";
    let want = logits_of(&mut s, &step_hf, ids, &t.join("a.safetensors"));
    let got = logits_of(&mut s, &step_gguf, ids, &t.join("b.safetensors"));
    assert_eq!(got, want);
    // Step 1 is not the final model: the export really is of the step.
    let last = logits_of(&mut s, &run_dir, ids, &t.join("c.safetensors"));
    assert_ne!(last, want);
}
