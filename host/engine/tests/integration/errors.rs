//! Bad checkpoints give clear errors that name the file and the tensor, never a panic.

use crate::common;

use common::*;
use safetensors::Dtype;
use std::path::Path;
use tritlab_engine::{EngineError, Model};

fn load_err(dir: &Path) -> String {
    match Model::load(dir) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_tensors(dir: &Path, f: impl FnOnce(&mut Vec<Tensor>)) {
    let p = dir.join("model.safetensors");
    let mut t = read_tensors(&p);
    f(&mut t);
    write_tensors(&p, &t);
}

fn find<'a>(t: &'a mut [Tensor], name: &str) -> &'a mut Tensor {
    t.iter_mut().find(|x| x.name == name).unwrap()
}

#[test]
fn truncated_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    let p = dir.join("model.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    // cut inside the header
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(20)
        .unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    std::fs::write(&p, b"").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn corrupt_header() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[10] = b'#'; // inside the JSON header
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn missing_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_tensors(&dir, |t| {
        t.retain(|x| x.name != "model.layers.1.mlp.up_proj.weight")
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors")
            && e.contains("`model.layers.1.mlp.up_proj.weight` is missing"),
        "{e}"
    );
    edit_tensors(&dir, |t| {
        t.retain(|x| x.name != "model.layers.0.self_attn.k_proj.weight_scale")
    });
    assert!(load_err(&dir).contains("model.layers.0.self_attn.k_proj.weight_scale"));
}

#[test]
fn wrong_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_tensors(&dir, |t| {
        let x = find(t, "model.layers.0.self_attn.q_proj.weight");
        x.shape = vec![16, 256]; // same bytes, other shape
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors")
            && e.contains("model.layers.0.self_attn.q_proj.weight")
            && e.contains("[16, 256]"),
        "{e}"
    );
    let dir = tiny_model(&tmp.path().join("b"), 1);
    edit_tensors(&dir, |t| {
        let x = find(t, "model.layers.1.input_layernorm.weight");
        x.shape = vec![64];
        x.data.truncate(128);
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.1.input_layernorm.weight") && e.contains("expected [128]"),
        "{e}"
    );
}

#[test]
fn wrong_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_tensors(&dir, |t| {
        let x = find(t, "model.norm.weight");
        x.dtype = Dtype::I16;
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.norm.weight")
            && e.contains("dtype I16")
            && e.contains("model.safetensors"),
        "{e}"
    );
    // float weights where the config promises packed trits
    let dir = tiny_model(&tmp.path().join("b"), 1);
    edit_tensors(&dir, |t| {
        let x = find(t, "model.layers.0.mlp.gate_proj.weight");
        x.dtype = Dtype::F32;
        x.shape = vec![24, 128]; // 96*128 bytes / 4
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("offline"),
        "{e}"
    );
}

#[test]
fn invalid_trit_codes_and_scales() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_tensors(&dir, |t| {
        find(t, "model.layers.0.mlp.down_proj.weight").data[5] = 0xff
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.0.mlp.down_proj.weight") && e.contains("0xff"),
        "{e}"
    );
    let dir = tiny_model(&tmp.path().join("b"), 1);
    edit_tensors(&dir, |t| {
        find(t, "model.layers.1.self_attn.v_proj.weight_scale").data = bf16_bytes(&[f32::NAN])
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.1.self_attn.v_proj.weight_scale"),
        "{e}"
    );
}

#[test]
fn unknown_model_type() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_config(&dir, |v| v["model_type"] = "llama".into());
    let err = Model::load(&dir).err().unwrap();
    assert!(matches!(err, EngineError::UnknownModelType { .. }));
    let e = err.to_string();
    assert!(e.contains("config.json") && e.contains("\"llama\""), "{e}");
}

#[test]
fn config_contradicting_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_config(&dir, |v| v["num_hidden_layers"] = 1.into());
    let e = load_err(&dir);
    assert!(
        e.contains("contradicts") && e.contains("model.layers.1."),
        "{e}"
    );

    let dir = tiny_model(&tmp.path().join("b"), 1);
    edit_config(&dir, |v| v["hidden_size"] = 256.into());
    let e = load_err(&dir);
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("hidden_size"),
        "{e}"
    );

    let dir = tiny_model(&tmp.path().join("c"), 1);
    edit_config(&dir, |v| v["vocab_size"] = 1000.into());
    let e = load_err(&dir);
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("[1000, 128]"),
        "{e}"
    );

    let dir = tiny_model(&tmp.path().join("d"), 1);
    edit_config(&dir, |v| v["intermediate_size"] = 512.into());
    let e = load_err(&dir);
    assert!(e.contains("model.layers.0.") && e.contains("512"), "{e}");

    let dir = tiny_model(&tmp.path().join("e"), 1);
    edit_config(&dir, |v| v["tie_word_embeddings"] = false.into());
    let e = load_err(&dir);
    assert!(e.contains("lm_head.weight") && e.contains("missing"), "{e}");

    let dir = tiny_model(&tmp.path().join("f"), 1);
    edit_config(&dir, |v| {
        v["quantization_config"]["quantization_mode"] = "online".into()
    });
    let e = load_err(&dir);
    assert!(e.contains("contradicts") && e.contains("online"), "{e}");
}

#[test]
fn bad_config_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );
    let dir = tiny_model(&tmp.path().join("b"), 1);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(load_err(&dir).contains("config.json"));
    let dir = tiny_model(&tmp.path().join("c"), 1);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(load_err(&dir).contains("model.safetensors"));
    assert!(load_err(&tmp.path().join("nowhere")).contains("nowhere"));
}

#[test]
fn sharded_index_pointing_at_a_missing_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    // split into two shards with an index
    let all = read_tensors(&dir.join("model.safetensors"));
    let (a, b): (Vec<Tensor>, Vec<Tensor>) =
        all.into_iter().partition(|t| t.name.contains("layers.0"));
    write_tensors(&dir.join("model-00001-of-00002.safetensors"), &a);
    write_tensors(&dir.join("model-00002-of-00002.safetensors"), &b);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let mut map = serde_json::Map::new();
    for t in &a {
        map.insert(t.name.clone(), "model-00001-of-00002.safetensors".into());
    }
    for t in &b {
        map.insert(t.name.clone(), "model-00002-of-00002.safetensors".into());
    }
    let write_index = |map: &serde_json::Map<String, serde_json::Value>| {
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap()
    };
    write_index(&map);
    let sharded = Model::load(&dir).unwrap();
    assert_eq!(sharded.layers().len(), 2);
    map.insert(
        "model.layers.0.extra.weight".into(),
        "model-00001-of-00002.safetensors".into(),
    );
    write_index(&map);
    let e = load_err(&dir);
    assert!(
        e.contains("model-00001-of-00002.safetensors") && e.contains("model.layers.0.extra.weight"),
        "{e}"
    );
}

#[test]
fn bad_requests_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    let model = Model::load(&dir).unwrap();
    let mut cache = model.new_cache();
    assert!(model.forward(&[], &mut cache).is_err());
    assert!(model
        .forward(&[512], &mut cache)
        .unwrap_err()
        .to_string()
        .contains("512"));
    let long = vec![1u32; 257];
    assert!(model
        .forward(&long, &mut cache)
        .unwrap_err()
        .to_string()
        .contains("context"));
    assert!(cache.is_empty());
}

/// Loads `dir` under `catch_unwind`: a panic fails the test with its message, so a test can
/// tell "an error" from "a crash".
fn load_no_panic(dir: &Path) -> Result<Model, EngineError> {
    match std::panic::catch_unwind(|| Model::load(dir)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("loading {} panicked: {message}", dir.display())
        }
    }
}

#[test]
fn head_dim_whose_products_wrap_is_refused_before_anything_is_allocated() {
    // 4 × (2^63 + 32) and 2 × (2^63 + 32) wrap to 128 and 64, the tiny model's real query and
    // key/value widths: every tensor shape then "matches", and building the RoPE table of
    // head_dim / 2 frequencies used to panic with "capacity overflow".
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    let head_dim: u64 = (1 << 63) + 32;
    edit_config(&dir, |v| v["head_dim"] = head_dim.into());
    let err = load_no_panic(&dir)
        .err()
        .expect("a wrapping head_dim loaded");
    assert!(
        matches!(&err, EngineError::ConfigValue { key, value, .. } if key == "head_dim" && *value == head_dim.to_string()),
        "{err}"
    );
    let e = err.to_string();
    assert!(
        e.contains("config.json") && e.contains("head_dim") && e.contains(&head_dim.to_string()),
        "{e}"
    );
}

#[test]
fn hostile_hyper_parameters_are_typed_errors_naming_the_key() {
    let huge = serde_json::json!(u64::MAX);
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("num_attention_heads", 0.into()),
        ("num_key_value_heads", 0.into()),
        ("num_attention_heads", huge.clone()),
        ("num_key_value_heads", 3.into()),
        ("hidden_size", 0.into()),
        ("hidden_size", huge.clone()),
        ("intermediate_size", (1u64 << 40).into()),
        ("vocab_size", (1u64 << 40).into()),
        ("num_hidden_layers", 1_000_000_000u64.into()),
        ("max_position_embeddings", 0.into()),
        ("max_position_embeddings", huge.clone()),
        ("head_dim", 0.into()),
        ("head_dim", 7.into()),
        ("head_dim", 1_000_000.into()),
        ("eos_token_id", 512.into()),
        ("bos_token_id", 100_000.into()),
        ("rms_norm_eps", (-0.5).into()),
        ("rope_theta", 0.5.into()),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (key, value)) in cases.into_iter().enumerate() {
        let dir = tiny_model(&tmp.path().join(i.to_string()), 1);
        edit_config(&dir, |v| v[key] = value.clone());
        let err = load_no_panic(&dir)
            .err()
            .unwrap_or_else(|| panic!("{key} = {value} loaded"));
        let e = err.to_string();
        assert!(
            matches!(err, EngineError::ConfigValue { .. }),
            "{key} = {value}: {e}"
        );
        // The message names the file, the key and the value (a KV head count that does not
        // divide the heads is reported on num_attention_heads, naming both).
        assert!(
            e.contains("config.json")
                && (e.contains(key) || e.contains("num_attention_heads"))
                && e.contains(&value.to_string()),
            "{key} = {value}: {e}"
        );
    }
    let dir = tiny_model(&tmp.path().join("group"), 1);
    edit_config(&dir, |v| {
        v["quantization_config"]["weight_group_size"] = 0.into()
    });
    let e = load_err(&dir);
    assert!(e.contains("weight_group_size") && e.contains("= 0"), "{e}");
}

#[test]
fn tensor_shapes_are_checked_before_any_tensor_is_converted() {
    // A value problem in a tensor loaded early and a shape problem in the last layer: the shape
    // check runs over every tensor first, so the contradiction with the config is what is
    // reported, before any conversion or allocation.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    edit_tensors(&dir, |t| {
        let norm = find(t, "model.norm.weight");
        norm.data = match norm.dtype {
            Dtype::F32 => f32_bytes(&[f32::NAN; 128]),
            _ => bf16_bytes(&[f32::NAN; 128]),
        };
        let x = find(t, "model.layers.1.mlp.down_proj.weight");
        x.shape = vec![64, 192];
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.1.mlp.down_proj.weight") && e.contains("[64, 192]"),
        "{e}"
    );
}

#[test]
fn tensor_past_the_end_of_the_file_is_named_before_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model(tmp.path(), 1);
    let p = dir.join("model.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors")
            && e.contains(&format!("the file has {}", len - 100))
            && e.contains("tensor `")
            && e.contains("needs bytes"),
        "{e}"
    );
    // Trailing bytes the header does not describe.
    let dir = tiny_model(&tmp.path().join("b"), 1);
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(&[0; 3]);
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("3 bytes follow the last tensor"), "{e}");
    // A header length that is sane but runs past the end of a small file.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..8].copy_from_slice(&50_000_000u64.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("header length 50000000 runs past the end"),
        "{e}"
    );
}

/// `tokenizer.json` files on which the `tokenizers` crate panics (found by hand; kept as
/// regression fixtures): each must be an error naming the file, never a crash.
#[test]
fn tokenizer_files_that_make_the_library_panic_are_errors() {
    use tritlab_engine::Tokenizer;
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/panicking-tokenizers");

    // A Precompiled normaliser whose character map holds an empty trie: the first encode
    // indexes the trie's root and panics.
    let path = fixtures.join("precompiled-empty-trie.json");
    let tok = Tokenizer::from_file(&path).unwrap();
    let e = tok.encode("a", false).unwrap_err().to_string();
    assert!(
        e.contains("precompiled-empty-trie.json") && e.contains("panicked while encoding"),
        "{e}"
    );
    // It stays an error, not a crash, however often it is asked.
    assert!(tok.encode("aa", true).is_err());

    // A Strip decoder that strips one character from each side of a one-character token
    // slices out of range.
    let path = fixtures.join("strip-past-token.json");
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.encode("a", false).unwrap(), [1]);
    let e = tok.decode(&[0], false).unwrap_err().to_string();
    assert!(
        e.contains("strip-past-token.json") && e.contains("panicked while decoding"),
        "{e}"
    );
    let mut stream = tritlab_engine::TokenStream::new();
    assert!(stream.push(&tok, 0).is_err());
}
