//! `tritlab repl` driven through stdin (not a terminal): plain outputs, errors on stderr, and an
//! exit status that says whether every command succeeded.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `tritlab repl` with `input` on stdin, with scratch state and data folders so no history
/// or user plugins leak in. (`HOME` stays: the Rust toolchain lives there.)
fn repl(input: &str, extra_args: &[&str]) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .arg("repl")
        .args(extra_args)
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", scratch.path().join("state"))
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        .env_remove("TRITLAB_PLUGIN_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tritlab repl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for tritlab repl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn plugins_built() -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/plugins/gay-tracer.wasm")
        .is_file()
}

#[test]
fn info_and_generate() {
    let out = repl("info\ngenerate \"To be\" --max-tokens 5 --seed 7\n", &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // `info`'s table names the default model and its architecture.
    assert!(stdout.contains("default-model"), "{stdout}");
    assert!(stdout.contains("architecture"), "{stdout}");
    // The prompt comes first, then the streamed tokens, then the statistics.
    let prompt = stdout.find("To be").expect("the prompt is printed");
    let stats = stdout.find("5 tokens; prefill").expect("the statistics");
    assert!(prompt < stats, "{stdout}");
    if plugins_built() {
        // Without colour, every token the tracer coloured is written [text|#rrggbb].
        assert!(stdout.contains("|#"), "{stdout}");
        assert!(stdout.contains("[coloured by gay-tracer]"), "{stdout}");
    }
}

#[test]
fn a_typo_fails_with_a_suggestion_and_later_commands_still_run() {
    let out = repl("generte \"hi\"\nhelp generate\n", &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("unknown command `generte`; did you mean `generate`?"),
        "{stderr}"
    );
    // The caret line points at the word.
    assert!(stderr.contains("^^^^^^^"), "{stderr}");
    assert!(
        stdout.contains("continue a prompt with the loaded model"),
        "{stdout}"
    );
}

#[test]
fn entries_continue_over_lines_and_quit_ends_the_input() {
    // A string that spans two lines is one entry; `quit` stops before the failing command.
    let input = "generate \"To\nbe\" --max-tokens 2 --greedy\nquit\ngenerte\n";
    let out = repl(input, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 tokens; prefill"), "{stdout}");
    assert!(!stderr.contains("generte"), "{stderr}");
}

#[test]
fn an_unfinished_entry_at_the_end_is_an_error() {
    let out = repl("info\ngenerate \"never closed\n", &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("string"), "{stderr}");
}

#[test]
fn without_the_default_model_commands_say_how_to_load_one() {
    let out = repl(
        "logits \"To be\"\nload default\nlogits \"To be\" --top 3\n",
        &["--no-default-model"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no model is loaded: `load default`"),
        "{stderr}"
    );
    assert!(stdout.contains("loaded "), "{stdout}");
    assert!(stdout.contains("next-token logits"), "{stdout}");
}

/// A Rust cell through evcxr: compiles a crate for the cell (a minute or two the first time),
/// so it is the one slow test here. Skipped without a toolchain on PATH.
#[test]
fn rust_cells_print_and_report_compile_errors() {
    if !on_path("cargo") || !on_path("rustc") {
        eprintln!("skipped: Rust cells need cargo and rustc on PATH");
        return;
    }
    let input = ":rust println!(\"{}\", 1 + 1);\n\
                 :rust\nlet word = \"ternary\";\nprintln!(\"{} {}\", word, word.len());\n:end\n\
                 :rust let n: u8 = \"three\";\n\
                 :rust panic!(\"boom\");\n\
                 :rust std::process::abort();\n\
                 :rust println!(\"after {}\", 6 * 7);\n\
                 info\n";
    let out = repl(input, &["--no-default-model"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if stderr.contains("Rust cells are not available") {
        eprintln!("skipped: tritlab was built without Rust cells");
        return;
    }
    // The type error makes the run fail; the first two cells printed.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "2"), "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l == "ternary 7"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("error[E0308]"), "{stderr}");
    assert!(stderr.contains("let n: u8 = \"three\";"), "{stderr}");
    // A panic fails its cell with the message, without evcxr's backtrace.
    assert!(stderr.contains("panicked at"), "{stderr}");
    assert!(stderr.lines().any(|l| l == "boom"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    // A cell that takes its process down is an error in that cell; the next cell and the
    // session go on.
    assert!(
        stdout.lines().any(|l| l == "after 42"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("none loaded"),
        "`info` ran after the crash: {stdout}"
    );
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Ctrl-C (SIGINT) while a command runs cancels that command; the REPL reads on.
#[cfg(unix)]
#[test]
fn ctrl_c_cancels_the_running_command_not_the_repl() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.txt");
    std::fs::write(&data, "Shall I compare thee to a summer's day? ".repeat(60)).unwrap();
    let run_dir = tmp.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .arg("repl")
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", tmp.path().join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tritlab repl");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "train --data \"{}\" --train-tokenizer 300 --steps 100000 --seq 16 --batch 2 --out \"{}\"",
        data.display(),
        run_dir.display()
    )
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !seen.iter().any(|l: &String| l.starts_with("step 3/")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("training did not start: {seen:?}"),
        }
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    writeln!(stdin, "info").unwrap();
    drop(stdin);
    let out = child.wait_with_output().expect("wait for tritlab repl");
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    let stdout = text(&out.stdout);
    let stderr = seen.join("\n");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("cancelling…"), "{stderr}");
    assert!(stdout.contains("cancelled at step"), "{stdout}");
    assert!(!stdout.contains("100000 steps in"), "{stdout}");
    // `info` ran afterwards and shows the cancelled run, still open.
    assert!(stdout.contains("training run"), "{stdout}");
}
