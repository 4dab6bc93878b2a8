//! The `.ipynb` export passes the nbformat schema, checked by scripts/validate-ipynb.py.
//!
//! Needs Python's nbformat (Debian: python3-nbformat). Without it the test says it was skipped,
//! unless TRITLAB_REQUIRE_NBFORMAT=1, which turns the skip into a failure (CI sets it).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tritlab_workbook::export;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-ipynb.py")
}

/// The first Python that can import nbformat: $PYTHON, then `python3` on the PATH, then the
/// system's (a version manager's python3 may shadow the one apt installed nbformat for).
fn python_with_nbformat() -> Option<String> {
    let candidates = std::env::var("PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_owned(), "/usr/bin/python3".to_owned()]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import nbformat"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

fn validate(python: &str, files: &[&Path]) -> (bool, String) {
    let output = Command::new(python)
        .arg(script())
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn exported_notebooks_pass_nbformat_validation() {
    let Some(python) = python_with_nbformat() else {
        let message = "skipped: nbformat not installed (apt-get install python3-nbformat, or pip install nbformat)";
        if std::env::var("TRITLAB_REQUIRE_NBFORMAT").as_deref() == Ok("1") {
            panic!("{message}, but TRITLAB_REQUIRE_NBFORMAT=1");
        }
        eprintln!("{message}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("every-output.ipynb");
    export(&common::every_output_book(), &full).unwrap();
    let empty = dir.path().join("empty.ipynb");
    export(&tritlab_workbook::Workbook::new(), &empty).unwrap();

    let (ok, text) = validate(&python, &[&full, &empty]);
    assert!(ok, "{text}");
    assert_eq!(text.matches("OK ").count(), 2, "{text}");

    // The validator must be able to fail: a duplicate id and a key outside the schema.
    let mut notebook: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    notebook["cells"][1]["id"] = notebook["cells"][0]["id"].clone();
    let duplicate = dir.path().join("duplicate.ipynb");
    std::fs::write(&duplicate, notebook.to_string()).unwrap();
    let mut notebook: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    notebook["cells"][1]["language"] = "tritlab".into();
    let extra_key = dir.path().join("extra-key.ipynb");
    std::fs::write(&extra_key, notebook.to_string()).unwrap();
    let (ok, text) = validate(&python, &[&duplicate, &extra_key]);
    assert!(!ok, "{text}");
    assert_eq!(text.matches("FAIL ").count(), 2, "{text}");
}
