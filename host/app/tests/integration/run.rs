//! `tritlab run BOOK`: cells run headless, outputs saved into the book, exports written, and a
//! failing cell stops the run with its number.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tritlab_workbook::{CellKind, Output as CellOutput, Workbook};

fn tritlab_run(args: &[&str], cwd: &Path) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .arg("run")
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        .env_remove("TRITLAB_PLUGIN_HOME")
        .output()
        .expect("run tritlab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `body` after the version line as `NAME.md` in `dir`.
fn book(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("<!-- tritlab-workbook v1 -->\n\n{body}")).unwrap();
    path
}

fn fence(kind: &str, source: &str) -> String {
    format!("```{kind}\n{source}\n```\n\n")
}

#[test]
fn outputs_are_saved_and_exports_written() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "# A test book\n\nSome prose.\n\n{}{}",
        fence("tritlab id=info", "info"),
        fence("tritlab", "generate \"To be\" --max-tokens 3 --seed 7")
    );
    let path = book(tmp.path(), "test.md", &body);
    let out = tritlab_run(
        &[
            "test.md",
            "--export",
            "exports/test.html",
            "--export",
            "exports/test.ipynb",
            "--export",
            "exports/test.md",
        ],
        tmp.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // The export folder does not exist yet: writing an export creates what it needs, or the
    // run says why not.
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[1/2] line 7: info"), "{stdout}");
    assert!(stdout.contains("2 of 2 cells ran, 0 failed"), "{stdout}");

    let saved = Workbook::load(&path).unwrap();
    let cells: Vec<_> = saved.cells().collect();
    assert_eq!(cells.len(), 2);
    assert!(
        matches!(cells[0].outputs.as_slice(), [CellOutput::Table(_)]),
        "{:?}",
        cells[0].outputs
    );
    assert!(
        cells[1]
            .outputs
            .iter()
            .any(|o| matches!(o, CellOutput::Trace(t) if t.tokens.len() == 3)),
        "{:?}",
        cells[1].outputs
    );
    assert_eq!(cells[0].id.as_ref().map(|i| i.as_str()), Some("info"));

    let html = std::fs::read_to_string(tmp.path().join("exports/test.html")).unwrap();
    assert!(html.contains("A test book"), "{html}");
    let notebook: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("exports/test.ipynb")).unwrap(),
    )
    .unwrap();
    assert_eq!(notebook["nbformat"], 4);
    let markdown = std::fs::read_to_string(tmp.path().join("exports/test.md")).unwrap();
    assert!(markdown.contains("# A test book"), "{markdown}");
    assert!(!markdown.contains("tritlab-workbook v1"), "{markdown}");
    // Exported pages name the model, never by the absolute path it has on this machine.
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/default-model")
        .canonicalize()
        .unwrap();
    let model = model.to_str().unwrap();
    let notebook_text = notebook.to_string();
    for page in [&html, &notebook_text, &markdown] {
        assert!(!page.contains(model), "{model} in {page}");
    }
    assert!(markdown.contains("default (default-model)"), "{markdown}");

    // Running again replaces the outputs with the same trace (sampling is seeded; the timings
    // in the text differ).
    let again = tritlab_run(&["test.md"], tmp.path());
    assert!(again.status.success(), "{}", text(&again.stderr));
    let traces = |book: &Workbook| -> Vec<CellOutput> {
        book.cells()
            .flat_map(|c| c.outputs.iter())
            .filter(|o| matches!(o, CellOutput::Trace(_)))
            .cloned()
            .collect()
    };
    let rerun = Workbook::load(&path).unwrap();
    assert_eq!(traces(&rerun), traces(&saved));
    // The table of `info`; the prompt, the trace and the statistics of `generate`.
    assert_eq!(rerun.cells().map(|c| c.outputs.len()).sum::<usize>(), 4);
}

#[test]
fn a_failing_cell_stops_the_run_with_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}",
        fence("tritlab", "help quit"),
        fence("tritlab", "info\nverify no-such-model"),
        fence("tritlab", "help seek")
    );
    let path = book(tmp.path(), "fails.md", &body);
    let out = tritlab_run(&["fails.md"], tmp.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Cell 2 opens at line 7 of the file; the error is on its second line.
    assert!(
        stderr.contains("error in cell 2 (line 7): line 2: "),
        "{stderr}"
    );
    assert!(stderr.contains("no-such-model"), "{stderr}");
    assert!(stderr.contains("stopped at cell 2 of 3"), "{stderr}");

    let saved = Workbook::load(&path).unwrap();
    let cells: Vec<_> = saved.cells().collect();
    assert!(!cells[0].outputs.is_empty());
    // The failed cell keeps what it produced before the error, then the error.
    assert!(matches!(
        cells[1].outputs.first(),
        Some(CellOutput::Table(_))
    ));
    assert!(matches!(
        cells[1].outputs.last(),
        Some(CellOutput::Error(_))
    ));
    assert!(cells[2].outputs.is_empty(), "cell 3 did not run");

    // --keep-going runs the rest and still fails.
    let out = tritlab_run(&["fails.md", "--keep-going", "--no-save"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("3 of 3 cells ran, 1 failed"));
    // --no-save left the book as the first run wrote it.
    assert_eq!(Workbook::load(&path).unwrap(), saved);
}

#[test]
fn relative_paths_in_cells_are_relative_to_the_book() {
    let tmp = tempfile::tempdir().unwrap();
    let books = tmp.path().join("books");
    std::fs::create_dir(&books).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/default-model");
    let copy = books.join("model");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let path = book(&books, "paths.md", &fence("tritlab", "verify model"));
    // Started from the parent folder, where `model` does not exist.
    let out = tritlab_run(&["books/paths.md", "--no-save"], tmp.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(path.is_file());
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    book(tmp.path(), "b.md", &fence("tritlab", "info"));
    let out = tritlab_run(&["b.md", "--export", "b.pdf"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("must be .html, .ipynb or .md"));

    let out = tritlab_run(&["missing.md"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.md"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(tmp.path().join("not-a-book.md"), "# Just markdown\n").unwrap();
    let out = tritlab_run(&["not-a-book.md"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rust_cells_run_in_books() {
    // Only the wrapping is checked here (it fails fast, before evcxr starts); the REPL test
    // runs real Rust.
    let tmp = tempfile::tempdir().unwrap();
    let path = book(
        tmp.path(),
        "r.md",
        &fence("rust", "let a = 1;\n:end\nlet b = 2;"),
    );
    let out = tritlab_run(&["r.md"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2 of the Rust cell is `:end`"),
        "{}",
        text(&out.stderr)
    );
    let saved = Workbook::load(&path).unwrap();
    let cell = saved.cells().next().unwrap();
    assert_eq!(cell.kind, CellKind::Rust);
    assert!(matches!(cell.outputs.as_slice(), [CellOutput::Error(_)]));
}

#[test]
fn an_export_that_cannot_be_written_fails_the_run_but_not_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    book(tmp.path(), "b.md", &fence("tritlab", "help info"));
    // A file where the export's folder should be.
    std::fs::write(tmp.path().join("blocked"), "").unwrap();
    let out = tritlab_run(
        &[
            "b.md",
            "--no-save",
            "--export",
            "blocked/b.html",
            "--export",
            "ok/b.html",
        ],
        tmp.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("blocked"), "{stderr}");
    assert!(tmp.path().join("ok/b.html").is_file(), "{stdout}");
}

/// `chat` in a headless book: the conversation carries from one cell to the next. The default
/// model ships no chat template, so the book brings one; without it the cell fails and says how
/// to give one.
#[test]
fn chat_cells_continue_one_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("plain.jinja"),
        "{% for m in messages %}{{ m.role | upper }}: {{ m.content }}{{ eos_token }}{% endfor %}\
         {% if add_generation_prompt %}ASSISTANT:{% endif %}",
    )
    .unwrap();
    let body = format!(
        "{}{}",
        fence(
            "tritlab",
            "chat \"Good morrow.\" --template plain.jinja --greedy --max-tokens 4"
        ),
        fence("tritlab", "chat \"And thou?\" --greedy --max-tokens 4")
    );
    let path = book(tmp.path(), "chat.md", &body);
    let out = tritlab_run(&["chat.md"], tmp.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let saved = Workbook::load(&path).unwrap();
    let titles: Vec<String> = saved
        .cells()
        .flat_map(|c| c.outputs.iter())
        .filter_map(|o| match o {
            CellOutput::Table(t) => t.title.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(titles, ["chat turn 1", "chat turn 2"], "{stdout}");

    book(tmp.path(), "bare.md", &fence("tritlab", "chat \"Hello\""));
    let out = tritlab_run(&["bare.md"], tmp.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("has no chat template"), "{all}");
    assert!(all.contains("--template FILE"), "{all}");
}
