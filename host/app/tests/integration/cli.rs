//! The `tritlab` binary end to end.

use std::path::Path;
use std::process::{Command, Output};

fn tritlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .args(args)
        .output()
        .expect("run tritlab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn synth_tiny(dir: &Path) -> String {
    let d = dir.join("tiny");
    let out = tritlab(&[
        "synth",
        "--shape",
        "tiny",
        "--seed",
        "9",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("not the real model's"));
    d.to_str().unwrap().to_string()
}

#[test]
fn help_lists_every_command() {
    let out = tritlab(&["--help"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for cmd in ["logits", "generate", "verify", "synth", "info", "tour"] {
        assert!(s.contains(cmd), "{s}");
    }
}

/// `tritlab` alone runs the tour on the default model: kernels checked against the reference,
/// the layer table, verify's verdict and a generation traced by the bundled plugins.
#[test]
fn no_arguments_runs_the_tour() {
    let out = Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run tritlab");
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
    for section in [
        "1. Kernels",
        "2. Model",
        "3. Verify",
        "4. Generate",
        "5. Training steps",
    ] {
        assert!(s.contains(section), "{s}");
    }
    assert!(
        s.contains("avx2") || s.contains("neon") || s.contains("scalar"),
        "{s}"
    );
    assert!(!s.contains("DIFFERS"), "{s}");
    // The shipped model's last logged steps, undone and applied again.
    assert!(
        s.contains("tritlab> back 3") && s.contains("step 800:"),
        "{s}"
    );
    assert!(s.contains("stores ternary weights"), "{s}");
    assert!(s.contains("24 tokens"), "{s}");
    // With the plugins built (scripts/test.sh builds them first), tokens carry tracer colours
    // and the trace is checked.
    if Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/plugins/gay-tracer.wasm")
        .is_file()
    {
        assert!(s.contains("|#"), "{s}");
        assert!(
            s.contains("triad-checker: ") && s.contains("gf3-trace"),
            "{s}"
        );
    }
}

#[test]
fn synth_verify_info_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = synth_tiny(tmp.path());
    let out = tritlab(&["verify", &d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("stores ternary weights"));
    let out = tritlab(&["verify", &d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["kind"], "table", "{v}");
    assert_eq!(v[0]["value"]["rows"].as_array().map(Vec::len), Some(14));
    assert_eq!(v[1]["kind"], "text", "{v}");
    assert!(v[1]["value"]
        .as_str()
        .unwrap()
        .contains("stores ternary weights"));

    // `info` shows words, not a Rust value, and names the model as it was given.
    let out = tritlab(&["info", "--model", &d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = text(&out.stdout);
    assert!(
        info.contains("Σ mod 3") && info.contains("packed trits"),
        "{info}"
    );
    assert!(
        !info.contains("Packed {") && !info.contains("linear_class"),
        "{info}"
    );

    let run = |seed: &str| {
        let out = tritlab(&[
            "generate",
            "Once upon a time",
            "--model",
            &d,
            "--max-tokens",
            "12",
            "--temperature",
            "0.9",
            "--seed",
            seed,
            "--threads",
            "2",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        // The prompt, the trace, then a line with timings; the trace is what must repeat.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[1]["kind"], "trace", "{v}");
        v[1].clone()
    };
    let a = run("5");
    assert_eq!(a, run("5"));
    assert!(
        a["value"]["tokens"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{a}"
    );
}

/// Exit codes follow the error's kind: 2 for a command that does not parse or cannot be carried
/// out as asked, 1 for a failure of the engine or a file.
#[test]
fn exit_codes_follow_the_kind_of_error() {
    let out = tritlab(&["generate", "x", "--max-tokenz", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `--max-tokens`?"));
    let out = tritlab(&["generate", "x", "--greedy", "--temperature", "0.5"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tritlab(&["info", "--model", "/no/such/model", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["kind"], "error", "{v}");
    let out = tritlab(&["help", "generate"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--max-tokens"));
}

/// `tritlab logits` is the session's command: the top logits as a table (or `--json`), and
/// with `--out` every position's logits in a file, in the format its extension names.
#[test]
fn logits_to_file_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let d = synth_tiny(tmp.path());
    // The exact head, on ids 1,17,300, with every position written to `file`.
    let logits = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "logits",
            "--model",
            &d,
            "--head-precision",
            "exact",
            "--ids",
            "1,17,300",
            "--out",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = tritlab(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        out
    };
    let f = tmp.path().join("logits.safetensors");
    let out = logits(&f, &[]);
    assert!(
        text(&out.stdout).contains("probability"),
        "{}",
        text(&out.stdout)
    );
    let bytes = std::fs::read(&f).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(t.shape(), &[3, 512]);

    let j = tmp.path().join("logits.json");
    let out = logits(&j, &["--json"]);
    // --json prints the typed outputs: the table of the highest logits
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outputs[0]["kind"], "table", "{outputs}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(v["shape"], serde_json::json!([3, 512]));
    // the JSON and the safetensors file hold the same numbers
    let first = t.data()[..4].try_into().map(f32::from_le_bytes).unwrap();
    assert_eq!(v["logits"][0][0].as_f64().unwrap() as f32, first);
}

/// `tritlab convert` (`export`'s other name) writes GGUF that loads back with the same logits.
#[test]
fn convert_to_gguf_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = synth_tiny(tmp.path());
    let g = tmp.path().join("m.gguf");
    let out = tritlab(&[
        "convert",
        g.to_str().unwrap(),
        "--model",
        &d,
        "--to",
        "gguf-tq1_0",
        "--embed-type",
        "f32",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("TQ1_0"), "{}", text(&out.stdout));
    let logits = |model: &str, file: &str| {
        let f = tmp.path().join(file);
        let out = tritlab(&[
            "logits",
            "--model",
            model,
            "--ids",
            "3,4,5",
            "--out",
            f.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read(f).unwrap()
    };
    assert_eq!(
        logits(&d, "a.safetensors"),
        logits(g.to_str().unwrap(), "b.safetensors")
    );
    // The old form, `convert SRC OUT`, is a usage error that says what the command takes.
    let out = tritlab(&["convert", &d, g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("OUT"), "{}", text(&out.stderr));
}

#[test]
fn verify_fails_for_a_non_ternary_bitnet() {
    let tmp = tempfile::tempdir().unwrap();
    let d = synth_tiny(tmp.path());
    let dir = Path::new(&d);
    // Replace every linear weight with f32 noise, keep the BitNet claim.
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut seed = 1u32;
    for (name, v) in st.tensors() {
        if name.ends_with("weight_scale") {
            continue;
        }
        if name.ends_with("_proj.weight") {
            let shape = vec![v.shape()[0] * 4, v.shape()[1]];
            let n = shape[0] * shape[1];
            let data: Vec<u8> = (0..n)
                .flat_map(|i| {
                    seed = seed
                        .wrapping_mul(1_664_525)
                        .wrapping_add(1_013_904_223 + i as u32);
                    ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5).to_le_bytes()
                })
                .collect();
            owned.push((name, safetensors::Dtype::F32, shape, data));
        } else {
            owned.push((name, v.dtype(), v.shape().to_vec(), v.data().to_vec()));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, dt, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let out = tritlab(&["verify", &d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not ternary"),
        "{}",
        text(&out.stderr)
    );
    // and loading it says why
    let out = tritlab(&["logits", "--model", &d, "--ids", "1", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("model.safetensors"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = synth_tiny(tmp.path());
    let p = Path::new(&d).join("model.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    for args in [
        vec!["info", "--model", d.as_str()],
        vec!["verify", d.as_str()],
        vec!["generate", "x", "--model", d.as_str()],
    ] {
        let out = tritlab(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains("model.safetensors") && e.contains("truncated") && !e.contains("panicked"),
            "{e}"
        );
    }
    let out = tritlab(&["synth", "--shape", "huge", "--out", d.as_str()]);
    assert!(!out.status.success());
}

/// `tritlab chat` is one turn through the session: the reply and its turn table as JSON, and a
/// usage error (exit 2) naming `--template` for a model without a chat template.
#[test]
fn chat_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("plain.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}\
         {% if add_generation_prompt %}assistant:{% endif %}",
    )
    .unwrap();
    let out = tritlab(&[
        "chat",
        "Good morrow.",
        "--template",
        template.to_str().unwrap(),
        "--greedy",
        "--max-tokens",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "trace", "table"], "{v}");
    assert_eq!(v[2]["value"]["title"], "chat turn 1", "{v}");
    let rows = v[2]["value"]["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r[0] == "stopped"), "{v}");

    let out = tritlab(&["chat", "Good morrow."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--template FILE"),
        "{}",
        text(&out.stderr)
    );
}

/// `bench` through the CLI: the global `--threads` sizes the pool it reports, and `--json`
/// carries its table with exact numbers.
#[test]
fn bench_as_json_with_threads() {
    let dir = tempfile::tempdir().unwrap();
    let d = synth_tiny(dir.path());
    let out = tritlab(&[
        "--threads",
        "1",
        "bench",
        "--model",
        &d,
        "--prompt",
        "8",
        "--tokens",
        "4",
        "--repeat",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["kind"], "table", "{v}");
    let rows = v[0]["value"]["rows"].as_array().expect("rows");
    let value = |name: &str| -> String {
        rows.iter()
            .find(|r| r[0] == name)
            .and_then(|r| r[1].as_str())
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .to_string()
    };
    assert_eq!(value("threads"), "1");
    assert_eq!(value("runs"), "2");
    assert!(value("decode").parse::<f64>().unwrap() > 0.0);
    assert!(value("peak resident memory").parse::<u64>().unwrap() > 0);

    let out = tritlab(&["bench", "--model", &d, "--prompt", "100000", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
