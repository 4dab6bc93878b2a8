//! `eval ppl` against perplexities computed by transformers on the same text, model and windows
//! (tests/fixtures/ppl/make.py wrote the references; its docstring says how).
//!
//! The data is WikiText-2 and Tiny Shakespeare from the `shared/` folder beside the checkout
//! (`$TRITLAB_SHARED` overrides it); without it the test says so and passes.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::Value;
use tritlab_session::{Context, Session, SessionConfig};
use tritlab_workbook::Output;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> PathBuf {
    std::env::var_os("TRITLAB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

/// The perplexity table's title and first row.
fn eval(session: &mut Session, line: &str) -> (String, Vec<String>) {
    let cancel = AtomicBool::new(false);
    let mut ignore = |_| {};
    let exec = session.execute(
        line,
        &mut Context {
            cancel: &cancel,
            events: &mut ignore,
        },
    );
    assert!(exec.error.is_none(), "{line}: {:?}", exec.outputs);
    match exec.outputs.first() {
        Some(Output::Table(t)) => (t.title.clone().unwrap_or_default(), t.rows[0].clone()),
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn perplexity_matches_transformers() {
    let data = shared().join("data");
    if !data.is_dir() {
        eprintln!("skip: no shared data at {}", data.display());
        return;
    }
    let mut session = Session::new(SessionConfig {
        default_model: Some(root().join("assets/default-model")),
        plugin_dirs: Vec::new(),
        plugin_cache: None,
        load_default_model: true,
        ..SessionConfig::default()
    });
    // transformers multiplies the checkpoint's own output projection.
    let cancel = AtomicBool::new(false);
    let mut ignore = |_| {};
    let load = session.execute(
        "load default --head-precision exact",
        &mut Context {
            cancel: &cancel,
            events: &mut ignore,
        },
    );
    assert!(load.error.is_none(), "{:?}", load.outputs);
    for (fixture, text) in [
        ("default-wiki.json", "wikitext-2/test.txt"),
        ("default-shakespeare.json", "tinyshakespeare.txt"),
    ] {
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("tests/fixtures/ppl").join(fixture)).unwrap(),
        )
        .unwrap();
        let path = data.join(text);
        for (key, options) in [("llama", ""), ("sliding", " --stride 256")] {
            let want = &reference[key];
            let windows = want["windows"].as_u64().unwrap();
            let (title, row) = eval(
                &mut session,
                &format!(
                    "eval ppl --data {} --ctx 512 --windows {windows}{options}",
                    path.display()
                ),
            );
            // Same tokenizer, same windows, same predictions scored.
            let tokens = reference["tokens"].as_u64().unwrap();
            assert!(title.contains(&format!("({tokens} tokens)")), "{title}");
            let scored = want["tokens"].as_u64().unwrap();
            assert!(title.contains(&format!("{scored} predictions")), "{title}");
            // The arithmetic differs only in float rounding (and the int8 activations' ties),
            // far inside the 0.5% the comparison allows.
            let got: f64 = row[2].parse().unwrap();
            let ppl = want["perplexity"].as_f64().unwrap();
            let rel = (got - ppl).abs() / ppl;
            eprintln!(
                "{fixture} {key}: tritlab {got:.4}, transformers {ppl:.4}, {:.4}%",
                100.0 * rel
            );
            assert!(rel < 0.005, "{fixture} {key}: {got} vs {ppl}");
        }
    }
}
