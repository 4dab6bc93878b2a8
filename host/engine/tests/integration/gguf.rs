//! GGUF: files written by the `gguf` package from PyPI (tests/fixtures/gguf/make.py) load with
//! the same trits, scales and logits as the checkpoint they came from; tritlab's own export
//! round-trips HF → GGUF → HF; bad files are errors naming file, tensor and offset.

use std::path::{Path, PathBuf};
use tritlab_engine::{GgmlType, Model, Tokenizer, Verdict};
use tritlab_kernels::WeightScale;

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

/// A copy of a GGUF file with some tensors replaced: `(name, type, data)`.
fn rewrite_gguf(src: &Path, out: &Path, replace: &[(&str, GgmlType, Vec<u8>)]) {
    let g = tritlab_gguf::GgufFile::open(src).unwrap();
    let mut w = tritlab_gguf::GgufWriter::new();
    for (k, v) in g.metadata() {
        w.set(k, v.clone());
    }
    for t in g.tensors() {
        match replace.iter().find(|(n, _, _)| *n == t.name) {
            Some((_, ty, data)) => w.add_tensor(&t.name, &t.dims, *ty, data.clone()),
            None => w.add_tensor(&t.name, &t.dims, t.ty, g.data(t).to_vec()),
        }
        .unwrap();
    }
    w.write(out).unwrap();
}

/// `verify` reports a GGUF file like a checkpoint: the TQ2_0 fixture's projections are trits,
/// each with its 256-weight blocks' scales, and the counts are those the loaded model runs.
#[test]
fn verify_reports_tq_blocks_and_their_scales() {
    let dir = root().join("tests/fixtures/gguf");
    for (file, ty) in [
        ("tiny256-tq2_0.gguf", "TQ2_0"),
        ("tiny256-tq1_0.gguf", "TQ1_0"),
    ] {
        let path = dir.join(file);
        let r = tritlab_engine::verify(&path).unwrap();
        assert_eq!(r.verdict, Verdict::StoresTernary, "{}", r.summary);
        assert!(r.ok && r.claims_bitnet, "{}", r.summary);
        assert_eq!(r.file_format, "gguf");
        assert_eq!(r.model_type.as_deref(), Some("bitnet"));
        assert!(
            r.summary
                .contains(&format!("7 {ty} (scales per 256-weight block)")),
            "{}",
            r.summary
        );
        // GGUF names, in the layout's order.
        let names: Vec<&str> = r.linear.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names[0], "blk.0.attn_q.weight");
        assert_eq!(names[6], "blk.0.ffn_down.weight");
        let g = tritlab_gguf::GgufFile::open(&path).unwrap();
        for t in &r.linear {
            assert_eq!((t.dtype.as_str(), t.storage), (ty, "packed"));
            assert_eq!(t.scale_granularity, "block256");
            assert!(t.ternary && t.ternary_values == t.values);
            let b = t.block_scales.as_ref().unwrap();
            assert_eq!((b.block, b.count), (256, t.rows * t.cols / 256));
            // The stored f16 scales, read independently of the loader.
            let info = g.tensor(&t.name).unwrap();
            let data = g.data(info);
            let size = if ty == "TQ2_0" { 66 } else { 54 };
            let d: Vec<f32> = data
                .chunks_exact(size)
                .map(|blk| half::f16::from_le_bytes([blk[size - 2], blk[size - 1]]).to_f32())
                .collect();
            let min = d.iter().copied().fold(f32::INFINITY, f32::min);
            let max = d.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!((b.min, b.max), (min, max), "{}", t.name);
            assert_eq!(b.all_equal, d.iter().all(|&v| v == d[0]), "{}", t.name);
            assert_eq!(
                b.zero,
                d.iter().filter(|&&v| v == 0.0).count(),
                "{}",
                t.name
            );
            assert_eq!(
                b.negative,
                d.iter().filter(|&&v| v < 0.0).count(),
                "{}",
                t.name
            );
            // One scale is in effect when the blocks that are not zero share it.
            let live: Vec<f32> = d.iter().map(|v| v.abs()).filter(|&v| v > 0.0).collect();
            let one = live.iter().all(|&v| v == live[0]);
            assert_eq!(t.scale, one.then_some(live[0]), "{}", t.name);
        }
        let model = Model::load(&path).unwrap();
        assert_eq!(r.total.trits, model.total_trits());
        // Everything else is listed as kept in full precision, with its GGUF type.
        assert!(r
            .full_precision
            .iter()
            .any(|t| t.name == "token_embd.weight" && t.shape == vec![64, 256]));
    }
}

/// tritlab's own writer: TQ blocks all hold scale 1 and the tensor's scale is in `.scale`;
/// I2_S has one scale per tensor. Both report the loaded model's scales.
#[test]
fn verify_reports_tensor_scales_of_tritlabs_writer() {
    let dir = root().join("tests/fixtures/gguf");
    let hf = Model::load(dir.join("tiny256")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for ty in [GgmlType::TQ2_0, GgmlType::I2S] {
        let out = tmp.path().join(format!("w-{ty}.gguf"));
        hf.export_gguf(&out, ty, GgmlType::F16, None, None).unwrap();
        let r = tritlab_engine::verify(&out).unwrap();
        assert_eq!(r.verdict, Verdict::StoresTernary, "{}", r.summary);
        let how = match ty {
            GgmlType::I2S => "7 I2_S (a scale per tensor)",
            _ => "7 TQ2_0 (scales per 256-weight block, all equal within each tensor)",
        };
        assert!(r.summary.contains(how), "{}", r.summary);
        for (t, lin) in r
            .linear
            .iter()
            .zip(hf.layers().iter().flat_map(|l| l.projections()))
        {
            let want = match lin.matrix().scale() {
                WeightScale::PerTensor(s) => *s,
                other => panic!("{other:?}"),
            };
            assert_eq!(t.scale, Some(want), "{}", t.name);
            match ty {
                GgmlType::I2S => {
                    assert_eq!(t.scale_granularity, "tensor");
                    assert!(t.block_scales.is_none());
                }
                _ => {
                    let b = t.block_scales.as_ref().unwrap();
                    assert!(b.all_equal && b.min == 1.0 && b.max == 1.0, "{b:?}");
                    assert_eq!(t.tensor_scale, Some(want));
                }
            }
        }
    }
}

/// A linear weight stored as F16: in {−s, 0, +s} it is ternary with scale `s`; noise is not,
/// and the verdict names the tensor and its first offending value.
#[test]
fn verify_holds_float_gguf_weights_to_minus_s_zero_s() {
    let src = root().join("tests/fixtures/gguf/tiny256-tq2_0.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let name = "blk.0.ffn_up.weight";
    let n = 256 * 256;
    let s = half::f16::from_f32(0.0371).to_f32();
    let ternary: Vec<f32> = (0..n).map(|i| [-s, 0.0, s][(i * 7 + i / 5) % 3]).collect();
    let f16 = |v: &[f32]| tritlab_gguf::quantize(GgmlType::F16, v).unwrap();
    let good = tmp.path().join("f16-ternary.gguf");
    rewrite_gguf(&src, &good, &[(name, GgmlType::F16, f16(&ternary))]);
    let r = tritlab_engine::verify(&good).unwrap();
    assert_eq!(r.verdict, Verdict::StoresTernary, "{}", r.summary);
    assert!(
        r.summary.contains("6 TQ2_0") && r.summary.contains("1 F16 (in {-s, 0, +s})"),
        "{}",
        r.summary
    );
    let t = r.linear.iter().find(|t| t.name == name).unwrap();
    assert_eq!(
        (t.dtype.as_str(), t.storage, t.scale_granularity),
        ("F16", "float", "tensor")
    );
    assert_eq!(t.scale, Some(s));

    let mut noisy = ternary.clone();
    noisy[3 * 256 + 17] = 0.5 * s;
    let bad = tmp.path().join("f16-noise.gguf");
    rewrite_gguf(&src, &bad, &[(name, GgmlType::F16, f16(&noisy))]);
    let r = tritlab_engine::verify(&bad).unwrap();
    assert_eq!(r.verdict, Verdict::NotTernary, "{}", r.summary);
    assert!(!r.ok, "a BitNet architecture that is not ternary fails");
    let t = r.linear.iter().find(|t| t.name == name).unwrap();
    assert!(!t.ternary);
    assert_eq!(t.values - t.ternary_values, 1);
    let o = t.offender.as_ref().unwrap();
    assert_eq!(
        (o.row, o.col, o.value),
        (3, 17, half::f16::from_f32(0.5 * s).to_f32())
    );
    assert!(
        r.summary.contains(name) && r.summary.contains("at [3, 17]"),
        "{}",
        r.summary
    );
    // The loader still runs it (ternarised by absmean, as the verdict says).
    assert!(r.summary.contains("absmean"), "{}", r.summary);
    Model::load(&bad).unwrap();
}

/// A corrupt trit code is an error that names the file, the tensor and the byte.
#[test]
fn verify_errors_name_file_tensor_and_byte() {
    let src = root().join("tests/fixtures/gguf/tiny256-tq2_0.gguf");
    let g = tritlab_gguf::GgufFile::open(&src).unwrap();
    let t = g.tensor("blk.0.attn_v.weight").unwrap();
    let mut data = g.data(t).to_vec();
    data[5] = 0xff; // 2-bit code 3 is not a trit
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad-code.gguf");
    rewrite_gguf(
        &src,
        &bad,
        &[("blk.0.attn_v.weight", GgmlType::TQ2_0, data)],
    );
    let e = tritlab_engine::verify(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad-code.gguf") && e.contains("blk.0.attn_v.weight") && e.contains("byte 5"),
        "{e}"
    );
}

/// An exact F16 head (the GGUF embedding, tied) gives the logits of its f32 widening, bit for
/// bit, in prefill (many tokens) and in decode (one at a time).
#[test]
fn exact_f16_head_equals_its_f32_widening() {
    let dir = root().join("tests/fixtures/gguf");
    let hf = Model::load(dir.join("tiny256")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let f16 = tmp.path().join("f16.gguf");
    hf.export_gguf(&f16, GgmlType::TQ2_0, GgmlType::F16, None, None)
        .unwrap();
    let a = Model::load(&f16).unwrap();
    assert_eq!(
        a.lm_head().dtype(),
        tritlab_engine::weights::FloatDtype::F16
    );
    // F16 → F32 is exact, so this file holds the same embedding widened.
    let f32 = tmp.path().join("f32.gguf");
    a.export_gguf(&f32, GgmlType::TQ2_0, GgmlType::F32, None, None)
        .unwrap();
    let b = Model::load(&f32).unwrap();
    assert_eq!(
        b.lm_head().dtype(),
        tritlab_engine::weights::FloatDtype::F32
    );
    let ids: Vec<u32> = ids().into_iter().map(|i| i % 64).collect();
    assert_eq!(logits(&a, &ids), logits(&b, &ids));
    let (mut ca, mut cb) = (a.new_cache(), b.new_cache());
    for &id in &ids {
        let la = a.forward(&[id], &mut ca).unwrap();
        let lb = b.forward(&[id], &mut cb).unwrap();
        assert_eq!(la, lb);
    }
}
