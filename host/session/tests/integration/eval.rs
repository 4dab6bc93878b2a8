//! `eval ppl` and `load --head-precision` through a session on the default model.

use crate::common;

use common::{session, tables};
use std::path::{Path, PathBuf};
use tritlab_session::lang::HeadPrecision;
use tritlab_session::{ErrorKind, Execution, Session, SessionConfig};
use tritlab_workbook::Table;

fn run(session: &mut Session, source: &str) -> Execution {
    common::run(session, source).0
}

/// Some English the default model's tokenizer (trained on Shakespeare) splits into many tokens.
fn text_file(dir: &Path) -> PathBuf {
    let line = "First Citizen: Before we proceed any further, hear me speak. \
                All: Speak, speak. You are all resolved rather to die than to famish?\n";
    let path = dir.join("text.txt");
    std::fs::write(&path, line.repeat(20)).unwrap();
    path
}

fn perplexity(table: &Table, row: usize) -> f64 {
    table.rows[row][2].parse().unwrap()
}

#[test]
fn perplexity_of_the_loaded_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = text_file(tmp.path());
    let mut s = session();
    let exec = run(
        &mut s,
        &format!("eval ppl --data {} --ctx 64 --windows 3", data.display()),
    );
    assert!(exec.error.is_none(), "{:?}", exec.outputs);
    let t = tables(&exec);
    assert_eq!(t.len(), 1);
    let title = t[0].title.as_deref().unwrap();
    assert!(title.contains("3 of"), "{title}");
    assert!(title.contains("llama-perplexity"), "{title}");
    assert_eq!(t[0].rows[0][1], HeadPrecision::DEFAULT.name());
    let ppl = perplexity(t[0], 0);
    // Trained on this kind of text: far better than guessing among 2048 tokens.
    assert!(ppl > 1.0 && ppl < 500.0, "{ppl}");

    // Sliding windows predict every token once.
    let exec = run(
        &mut s,
        &format!(
            "eval ppl --data {} --ctx 64 --stride 32 --windows 4",
            data.display()
        ),
    );
    assert!(exec.error.is_none(), "{:?}", exec.outputs);
    assert!(tables(&exec)[0]
        .title
        .as_deref()
        .unwrap()
        .contains("sliding"));
}

#[test]
fn a_quantized_head_compared_with_the_exact_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = text_file(tmp.path());
    let mut s = session();
    let exec = run(
        &mut s,
        &format!(
            "load default --head-precision q4\ninfo\neval ppl --data {} --ctx 64 --windows 2 --compare default",
            data.display()
        ),
    );
    assert!(exec.error.is_none(), "{:?}", exec.outputs);
    let t = tables(&exec);
    let info = t[0];
    assert!(
        info.rows
            .iter()
            .any(|r| r[0] == "output head" && r[1].starts_with("q4")),
        "{info:?}"
    );
    let (ppl, kl) = (t[1], t[2]);
    assert_eq!(ppl.rows.len(), 2);
    assert_eq!(ppl.rows[0][1], "q4");
    assert_eq!(ppl.rows[1][1], "exact");
    assert_ne!(perplexity(ppl, 0), perplexity(ppl, 1));
    let mean_kl: f64 = kl.rows[0][0].parse().unwrap();
    assert!(mean_kl > 0.0, "{kl:?}");
    let agreement: f64 = kl.rows[0][3].trim_end_matches('%').parse().unwrap();
    assert!((0.0..=100.0).contains(&agreement));
}

#[test]
fn bad_requests_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = text_file(tmp.path());
    let mut s = session();
    let missing = run(&mut s, "eval ppl --data /nonexistent/text.txt");
    assert_eq!(missing.error.map(|e| e.kind()), Some(ErrorKind::Io));
    let long = run(
        &mut s,
        &format!("eval ppl --data {} --ctx 100000", data.display()),
    );
    assert_eq!(long.error.map(|e| e.kind()), Some(ErrorKind::Usage));
    let short = run(
        &mut s,
        &format!("eval ppl --data {} --ctx 2048", data.display()),
    );
    let e = short.error.expect("fewer tokens than one window");
    assert_eq!(e.kind(), ErrorKind::Usage);
    let no_data = run(&mut s, "eval ppl");
    assert_eq!(no_data.error.map(|e| e.kind()), Some(ErrorKind::Parse));
    let bad_head = run(&mut s, "load default --head-precision q3");
    assert_eq!(bad_head.error.map(|e| e.kind()), Some(ErrorKind::Parse));
    let mut empty = Session::new(SessionConfig {
        load_default_model: false,
        plugin_dirs: Vec::new(),
        plugin_cache: None,
        ..SessionConfig::default()
    });
    let none = run(&mut empty, &format!("eval ppl --data {}", data.display()));
    assert_eq!(none.error.map(|e| e.kind()), Some(ErrorKind::NoModel));
}
