//! One list of commands through every face: the `tritlab` subcommands (`--json`), `tritlab repl`
//! reading stdin, a workbook run headless, and the session worker the workbench drives. They
//! share one executor, so they must give the same outputs for the same commands (timings
//! aside).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tritlab_session::{SessionConfig, SessionWorker};
use tritlab_workbook::{Output, Workbook};

const COMMANDS: &[&[&str]] = &[
    &["info"],
    &["layers"],
    &["verify"],
    &[
        "generate",
        "To be, or not",
        "--max-tokens",
        "6",
        "--seed",
        "3",
    ],
    &["generate", "The", "--greedy", "--max-tokens", "4"],
    &["logits", "--ids", "1,17,300", "--top", "3"],
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The faces run with the bundled plugins only (no user plugin folder), in a scratch data home.
fn tritlab(scratch: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tritlab"));
    c.env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", scratch.join("data"))
        .env("TRITLAB_PLUGIN_DIR", root().join("target/plugins"))
        .env_remove("TRITLAB_PLUGIN_HOME")
        .env_remove("TRITLAB_DEFAULT_MODEL");
    c
}

fn line(words: &[&str]) -> String {
    tritlab_session::lang::line_from_words(words)
}

/// Outputs with the timings of a generation taken out.
fn normalise(outputs: Vec<Output>) -> Vec<Output> {
    outputs
        .into_iter()
        .map(|o| match o {
            Output::Text(t) if t.contains("; prefill ") => {
                let head = t.split("; prefill ").next().unwrap_or_default();
                let tail = t.split("; stopped").nth(1).unwrap_or_default();
                Output::Text(format!("{head}; stopped{tail}"))
            }
            other => other,
        })
        .collect()
}

fn by_subcommands(scratch: &Path) -> Vec<Vec<Output>> {
    COMMANDS
        .iter()
        .map(|words| {
            let out = tritlab(scratch)
                .args(*words)
                .arg("--json")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{words:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            normalise(serde_json::from_slice(&out.stdout).unwrap())
        })
        .collect()
}

fn by_worker() -> Vec<Vec<Output>> {
    let config = SessionConfig {
        default_model: Some(root().join("assets/default-model")),
        plugin_dirs: vec![root().join("target/plugins")],
        plugin_cache: None,
        load_default_model: true,
        ..SessionConfig::default()
    };
    let worker = SessionWorker::spawn(config, None);
    COMMANDS
        .iter()
        .map(|words| {
            let exec = worker.run_blocking(&line(words), |_| {});
            assert!(
                exec.error.is_none(),
                "{words:?}: {:?}",
                exec.error_message()
            );
            normalise(exec.outputs)
        })
        .collect()
}

fn by_workbook(scratch: &Path) -> Vec<Vec<Output>> {
    let mut body = String::from("<!-- tritlab-workbook v1 -->\n\n# Faces\n\n");
    for words in COMMANDS {
        body.push_str(&format!("```tritlab\n{}\n```\n\n", line(words)));
    }
    let path = scratch.join("faces.md");
    std::fs::write(&path, body).unwrap();
    let out = tritlab(scratch)
        .args(["run", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Workbook::load(&path)
        .unwrap()
        .cells()
        .map(|c| normalise(c.outputs.clone()))
        .collect()
}

fn by_repl(scratch: &Path) -> String {
    let mut child = tritlab(scratch)
        .arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for words in COMMANDS {
        writeln!(stdin, "{}", line(words)).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_face_gives_the_same_outputs() {
    let scratch = tempfile::tempdir().unwrap();
    let reference = by_worker();
    assert_eq!(reference.len(), COMMANDS.len());
    assert_eq!(by_subcommands(scratch.path()), reference, "subcommands");
    assert_eq!(by_workbook(scratch.path()), reference, "workbook");
    // The REPL prints text: every table's title and every text (timings aside) is in it.
    let repl = by_repl(scratch.path());
    for output in reference.iter().flatten() {
        let expected = match output {
            Output::Table(t) => t.title.clone().unwrap_or_default(),
            Output::Text(t) => t.split("; stopped").next().unwrap_or_default().to_string(),
            _ => continue,
        };
        assert!(repl.contains(&expected), "{expected:?} not in:\n{repl}");
    }
}
