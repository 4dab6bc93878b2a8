//! GGUF: files written by the `gguf` package from PyPI (tests/fixtures/gguf/make.py) load with
//! the same trits, scales and logits as the checkpoint they came from; tritlab's own export
//! round-trips HF → GGUF → HF; bad files are errors naming file, tensor and offset.

use std::path::{Path, PathBuf};
use tritlab_engine::{GgmlType, Model, Tokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids() -> Vec<u32> {
    vec![3, 17, 1, 42, 5, 9, 33, 2]
}

fn logits(m: &Model, ids: &[u32]) -> Vec<f32> {
    m.forward(ids, &mut m.new_cache()).unwrap()
}

/// Every layer's trits and scales agree.
fn same_weights(a: &Model, b: &Model) {
    assert_eq!(a.layers().len(), b.layers().len());
    for (la, lb) in a.layers().iter().zip(b.layers()) {
        for (x, y) in la.projections().iter().zip(lb.projections()) {
            assert_eq!(x.matrix().to_trits(), y.matrix().to_trits(), "{}", x.name());
            assert_eq!(x.matrix().scale(), y.matrix().scale(), "{}", x.name());
        }
    }
}

#[test]
fn gguf_package_tq_files_match_their_hf_checkpoint_exactly() {
    let dir = root().join("tests/fixtures/gguf");
    let hf = Model::load(dir.join("tiny256")).unwrap();
    let ids: Vec<u32> = ids().into_iter().map(|i| i % 64).collect();
    let want = logits(&hf, &ids);
    for f in ["tiny256-tq2_0.gguf", "tiny256-tq1_0.gguf"] {
        let g = Model::load(dir.join(f)).unwrap();
        same_weights(&hf, &g);
        // Same trits, same scales, same kernels: the same bits.
        assert_eq!(logits(&g, &ids), want, "{f}");
    }
}

#[test]
fn hf_gguf_hf_keeps_every_trit_and_scale() {
    let tmp = tempfile::tempdir().unwrap();
    for fixture in ["tiny-offline", "tiny-offline-bitlinear"] {
        let src = root().join("tests/fixtures/bitnet").join(fixture);
        let hf = Model::load(&src).unwrap();
        let tok = Tokenizer::for_model(&src).unwrap();
        let want = logits(&hf, &ids());
        for ty in [GgmlType::TQ2_0, GgmlType::TQ1_0, GgmlType::I2S] {
            let out = tmp.path().join(format!("{fixture}-{ty}.gguf"));
            let r = hf
                .export_gguf(&out, ty, GgmlType::BF16, Some(&tok), Some("{{ x }}"))
                .unwrap();
            assert_eq!(
                r.architecture, "bitnet-b1.58",
                "relu² models use bitnet.cpp's name"
            );
            let g = Model::load(&out).unwrap();
            same_weights(&hf, &g);
            assert_eq!(logits(&g, &ids()), want, "{fixture} {ty}");
            // The tokenizer comes back from tokenizer.ggml.*.
            let gt = Tokenizer::for_model(&out).unwrap();
            let text = "What dreams may come to Rome?";
            assert_eq!(
                gt.encode(text, true).unwrap(),
                tok.encode(text, true).unwrap()
            );
            assert_eq!(
                tritlab_engine::chat_template_for(&out).as_deref(),
                Some("{{ x }}")
            );
            let back = tmp.path().join(format!("{fixture}-{ty}-hf"));
            g.export_hf(&back, Some(&gt), None).unwrap();
            let h2 = Model::load(&back).unwrap();
            same_weights(&hf, &h2);
            assert_eq!(logits(&h2, &ids()), want, "{fixture} {ty} back to HF");
        }
    }
}

#[test]
fn tq_blocks_and_i2s_from_tritlabs_writer() {
    let dir = root().join("tests/fixtures/gguf");
    let hf = Model::load(dir.join("tiny256")).unwrap();
    let ids: Vec<u32> = ids().into_iter().map(|i| i % 64).collect();
    let want = logits(&hf, &ids);
    let tmp = tempfile::tempdir().unwrap();
    for ty in [GgmlType::TQ2_0, GgmlType::TQ1_0, GgmlType::I2S] {
        let out = tmp.path().join(format!("t-{ty}.gguf"));
        let r = hf
            .export_gguf(&out, ty, GgmlType::BF16, None, None)
            .unwrap();
        assert_eq!(r.architecture, "bitnet");
        assert!(
            r.tensors.iter().all(|t| t.note.is_none()),
            "256-wide rows fit every block: {:?}",
            r.tensors
        );
        let g = Model::load(&out).unwrap();
        same_weights(&hf, &g);
        assert_eq!(logits(&g, &ids), want, "{ty}");
        // Without a tokenizer the file says so in the key llama.cpp requires, and reading a
        // tokenizer from it is an error that says what is missing.
        let e = match Tokenizer::for_model(&out) {
            Ok(_) => panic!("{ty}: a tokenizer from a file that has none"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("has no tokenizer"), "{e}");
    }
}

#[test]
fn default_model_tokenizer_survives_gguf() {
    let src = root().join("assets/default-model");
    let m = Model::load(&src).unwrap();
    let tok = Tokenizer::for_model(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("default.gguf");
    m.export_gguf(&out, GgmlType::TQ2_0, GgmlType::F32, Some(&tok), None)
        .unwrap();
    let gt = Tokenizer::for_model(&out).unwrap();
    let text = "ROMEO:\nBut soft, what light through yonder window breaks?";
    let a = tok.encode(text, true).unwrap();
    assert_eq!(gt.encode(text, true).unwrap(), a);
    assert_eq!(gt.decode(&a, false).unwrap(), text);
    let g = Model::load(&out).unwrap();
    assert_eq!(logits(&g, &a), logits(&m, &a));
}

#[test]
fn bad_files_name_file_tensor_and_offset() {
    let dir = root().join("tests/fixtures/gguf");
    let bytes = std::fs::read(dir.join("tiny256-tq2_0.gguf")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Truncated: the last tensor's data runs past the end.
    let p = tmp.path().join("cut.gguf");
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = Model::load(&p).err().unwrap().to_string();
    assert!(
        e.contains("cut.gguf") && e.contains("tensor `") && e.contains("byte"),
        "{e}"
    );
    assert!(e.contains("past the end"), "{e}");
    // Unknown tensor type: patch the type id of the first tensor record.
    let g = tritlab_gguf::GgufFile::open(dir.join("tiny256-tq2_0.gguf")).unwrap();
    let first = &g.tensors()[0];
    let name = first.name.as_bytes();
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    let type_at = at + name.len() + 4 + 8 * first.dims.len();
    let mut bad = bytes.clone();
    bad[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let p = tmp.path().join("type.gguf");
    std::fs::write(&p, &bad).unwrap();
    let e = Model::load(&p).err().unwrap().to_string();
    assert!(
        e.contains("unknown ggml type 99") && e.contains(&first.name),
        "{e}"
    );
    // Architecture tritlab does not run.
    let mut bad = bytes.clone();
    let at = bad.windows(6).position(|w| w == b"bitnet").unwrap();
    bad[at..at + 6].copy_from_slice(b"llama!");
    let p = tmp.path().join("arch.gguf");
    std::fs::write(&p, &bad).unwrap();
    let e = Model::load(&p).err().unwrap().to_string();
    assert!(e.contains("unsupported GGUF architecture"), "{e}");
    // Not GGUF at all.
    let p = tmp.path().join("junk.gguf");
    std::fs::write(&p, b"GGUFjunk").unwrap();
    let e = Model::load(&p).err().unwrap().to_string();
    assert!(e.contains("junk.gguf") && e.contains("byte"), "{e}");
}

/// `verify` on a GGUF file says that it reads safetensors, instead of a parse error about a
/// safetensors header that is not one.
#[test]
fn verify_names_gguf_as_unsupported() {
    let path = root().join("tests/fixtures/gguf/tiny256-tq2_0.gguf");
    let err = tritlab_engine::verify(&path).unwrap_err().to_string();
    assert!(err.contains("not GGUF files yet"), "{err}");
}
