//! A model without a tokenizer (a GGUF file without `tokenizer.ggml.*`, a checkpoint without
//! `tokenizer.json`) loads with a warning; the commands that run on token ids work, those that
//! read or write text are usage errors that say why. `verify` reports GGUF files.

use crate::common;

use common::*;
use tritlab_session::{ErrorKind, Execution, LiveEvent, Session, SessionConfig};
use tritlab_workbook::{Output, Table};

/// A session with nothing loaded and no plugins.
fn bare() -> Session {
    Session::new(SessionConfig {
        default_model: Some(default_model()),
        load_default_model: false,
        ..SessionConfig::default()
    })
}

fn gguf(name: &str) -> String {
    root()
        .join("tests/fixtures/gguf")
        .join(name)
        .display()
        .to_string()
}

fn ok(exec: &Execution) {
    assert!(exec.error.is_none(), "{:?}", exec.error_message());
    assert!(exec.internal_error.is_none());
}

/// A command that needs text fails as a usage error naming what is missing, never a panic.
fn needs_tokenizer(s: &mut Session, command: &str, word: &str) {
    let (exec, _) = run(s, command);
    assert!(exec.internal_error.is_none(), "{command}");
    let e = exec
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("{command} ran"));
    assert_eq!(e.kind(), ErrorKind::Usage, "{command}: {e}");
    let message = e.to_string();
    assert!(
        message.contains(&format!("`{word}` needs a tokenizer")) && message.contains("--ids"),
        "{message}"
    );
}

fn table<'a>(exec: &'a Execution, title: &str) -> &'a Table {
    tables(exec)
        .into_iter()
        .find(|t| t.title.as_deref().is_some_and(|t| t.starts_with(title)))
        .unwrap_or_else(|| panic!("no table {title:?} in {:?}", exec.outputs))
}

/// Loads `model` and checks that everything that runs on token ids works, with a warning.
fn works_without_tokenizer(model: &str, why: &str) {
    let mut s = bare();
    let (exec, events) = run(&mut s, &format!("load {model}"));
    ok(&exec);
    let warning = events
        .iter()
        .find_map(|e| match e {
            LiveEvent::Line(l) if l.starts_with("warning:") => Some(l.clone()),
            _ => None,
        })
        .expect("a warning");
    assert!(
        warning.contains("has no tokenizer") && warning.contains(why),
        "{warning}"
    );
    assert!(
        matches!(&exec.outputs[0], Output::Text(t) if t.ends_with("; no tokenizer")),
        "{:?}",
        exec.outputs
    );
    assert!(s.model().unwrap().tokenizer.is_none());

    let (exec, _) = run(&mut s, "info");
    ok(&exec);
    let info = table(&exec, "session");
    let row = info.rows.iter().find(|r| r[0] == "tokenizer").unwrap();
    assert!(
        row[1].starts_with("none (") && row[1].contains(why),
        "{row:?}"
    );

    for command in ["layers", "verify", "bench --prompt 4 --tokens 4 --repeat 1"] {
        let (exec, _) = run(&mut s, command);
        ok(&exec);
    }
    let (exec, _) = run(&mut s, "logits --ids 1,2,3");
    ok(&exec);
    let t = table(&exec, "next-token logits");
    assert_eq!(t.columns, ["rank", "id", "logit", "probability"]);
    assert_eq!(t.rows.len(), 10);

    needs_tokenizer(&mut s, "generate \"Once upon\" --max-tokens 2", "generate");
    needs_tokenizer(&mut s, "chat \"hello\"", "chat");
    needs_tokenizer(&mut s, "logits \"hello\"", "logits TEXT");
    needs_tokenizer(&mut s, "eval ppl --data no-such-file.txt --ctx 16", "eval");
    // The model is still loaded and usable after the refusals.
    let (exec, _) = run(&mut s, "logits --ids 5");
    ok(&exec);
}

#[test]
fn gguf_without_tokenizer_runs_on_token_ids() {
    works_without_tokenizer(
        &gguf("tiny256-tq1_0.gguf"),
        "no `tokenizer.ggml.model` key in the GGUF file",
    );
}

#[test]
fn checkpoint_without_tokenizer_json_runs_on_token_ids() {
    let dir = root().join("tests/fixtures/gguf/tiny256");
    assert!(!dir.join("tokenizer.json").exists());
    works_without_tokenizer(
        &dir.display().to_string(),
        "no tokenizer.json beside the weights",
    );
}

/// A tokenizer that is there but unreadable is still an error: the model does not load.
#[test]
fn a_broken_tokenizer_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/gguf/tiny256");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::write(tmp.path().join("tokenizer.json"), "{ not json").unwrap();
    let mut s = bare();
    let (exec, _) = run(&mut s, &format!("load {}", tmp.path().display()));
    let e = exec.error.expect("an error");
    assert_eq!(e.kind(), ErrorKind::Engine);
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    assert!(s.model().is_none());
}

/// `verify` on a GGUF file: the table shows each projection's GGUF type and its block scales.
#[test]
fn verify_shows_gguf_types_and_block_scales() {
    let mut s = bare();
    let (exec, _) = run(&mut s, &format!("verify {}", gguf("tiny256-tq2_0.gguf")));
    ok(&exec);
    let t = table(&exec, "verify");
    assert_eq!(
        t.columns,
        ["tensor", "dtype", "ternary", "scale", "−1", "0", "+1", "Σ mod 3"]
    );
    assert_eq!(t.rows.len(), 7);
    assert_eq!(t.rows[0][0], "blk.0.attn_q.weight");
    for row in &t.rows {
        assert_eq!(row[1], "TQ2_0");
        assert_eq!(row[2], "100.00%");
        assert!(
            row[3].starts_with("256 blocks of 256, ") || row[3].starts_with("128 blocks of 256, "),
            "{row:?}"
        );
    }
    assert!(exec
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Text(v) if v.starts_with("verdict: stores ternary weights"))));
}
