//! `tritlab train`, `replay` and `log` end to end, including training killed with SIGKILL at
//! random moments and resumed: the final world must be the uninterrupted run's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tritlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tritlab"));
    c.args(["--threads", "2"]);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn corpus(dir: &Path) -> PathBuf {
    let lines = [
        "KING RICHARD II: Old John of Gaunt, time-honour'd Lancaster,",
        "Hast thou, according to thy oath and band,",
        "Brought hither Henry Hereford thy bold son,",
        "Here to make good the boisterous late appeal,",
        "Which then our leisure would not let us hear,",
        "Against the Duke of Norfolk, Thomas Mowbray?",
    ];
    let mut text = String::new();
    for i in 0..400 {
        text.push_str(lines[(i * 7) % lines.len()]);
        text.push('\n');
    }
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

const STEPS: &str = "60";

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--preset",
        "tiny",
        "--data",
        data.to_str().unwrap(),
        "--train-tokenizer",
        "300",
        "--steps",
        STEPS,
        "--seq",
        "32",
        "--batch",
        "4",
        "--checkpoint-every",
        "7",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tritlab");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn final_world(out: &Output) -> String {
    let s = text(&out.stdout);
    s.lines()
        .find_map(|l| l.strip_prefix("world "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no world line in:\n{s}"))
        .to_string()
}

/// A small deterministic generator for the kill times (the test must not depend on luck to
/// reproduce a failure: the seed is printed).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_random_moments_then_resume_reaches_the_same_world() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let t0 = Instant::now();
    let reference = run(tritlab().args(train_args(&data, &dir.path().join("whole"))));
    let whole = t0.elapsed();
    let want = final_world(&reference);

    let run_dir = dir.path().join("killed");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut rng = seed;
    let mut kills = 0;
    let mut last = None;
    for _attempt in 0..12 {
        let resume = run_dir.join("run.json").is_file();
        let mut cmd = tritlab();
        if resume {
            cmd.args(["train", "--resume", run_dir.to_str().unwrap()]);
        } else {
            cmd.args(train_args(&data, &run_dir));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Anywhere from process start-up to well into training (a resumed run first recomputes).
        let delay = whole.mul_f64(0.05 + (next(&mut rng) % 1000) as f64 / 1000.0 * 0.4);
        let started = Instant::now();
        let mut finished = false;
        while started.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !finished && kills < 4 {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            continue;
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        last = Some(out);
        break;
    }
    let out = last.expect("the run finished");
    assert!(kills >= 2, "the run was interrupted only {kills} times");
    assert_eq!(final_world(&out), want, "after {kills} kills");

    // The whole killed-and-resumed log replays bit for bit.
    let v = run(tritlab().args(["replay", "verify", "--run", run_dir.to_str().unwrap()]));
    assert!(
        text(&v.stdout).contains(&format!("verified steps 1..={STEPS}")),
        "{}",
        text(&v.stdout)
    );
}

#[test]
fn replay_export_and_log_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let run_dir = dir.path().join("run");
    let mut args = train_args(&data, &run_dir);
    let at = args.iter().position(|a| a == "--steps").unwrap();
    args[at + 1] = "10".into();
    run(tritlab().args(&args));

    let at = dir.path().join("at4");
    run(tritlab().args([
        "replay",
        "export",
        "4",
        at.to_str().unwrap(),
        "--run",
        run_dir.to_str().unwrap(),
    ]));
    let g = run(tritlab().args([
        "generate",
        "Hast thou",
        "--max-tokens",
        "5",
        "--model",
        at.to_str().unwrap(),
    ]));
    assert!(!text(&g.stdout).trim().is_empty(), "{}", text(&g.stdout));
    let v = run(tritlab().args(["verify", at.to_str().unwrap()]));
    assert!(
        text(&v.stdout).contains("packed trits"),
        "{}",
        text(&v.stdout)
    );

    let l = run(tritlab().args(["log", run_dir.to_str().unwrap(), "--json"]));
    let outputs: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(outputs[0]["kind"], "table", "{outputs}");
    assert_eq!(
        outputs[0]["value"]["rows"].as_array().map(Vec::len),
        Some(10),
        "{outputs}"
    );
    let s = run(tritlab().args(["log", "show", "3", "--run", run_dir.to_str().unwrap()]));
    assert!(
        text(&s.stdout).contains("layers.1.mlp.down_proj"),
        "{}",
        text(&s.stdout)
    );

    // A different thread count is refused rather than silently diverging.
    let out = Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .args([
            "--threads",
            "1",
            "replay",
            "verify",
            "--run",
            run_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    // A request that cannot be carried out as asked: a usage error, exit code 2.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--threads 2"),
        "{}",
        text(&out.stderr)
    );

    // A foreign log is a clear error.
    std::fs::write(run_dir.join("morphisms.tml"), b"TRITMLOG\x09\0\0\0\0\0\0\0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .args(["log", run_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("version"),
        "{}",
        text(&out.stderr)
    );
}

/// Polls `done` every 10 ms for up to a minute.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_resume_of_a_run_being_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let run_dir = dir.path().join("shared");
    let mut args = train_args(&data, &run_dir);
    let steps = args.iter().position(|a| a == "--steps").unwrap() + 1;
    args[steps] = "1000000".into();
    // Start the run and kill it once it has logged a step, so there is a run to resume.
    let mut first = tritlab()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = run_dir.join("morphisms.tml");
    wait_until("the first step", || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    first.kill().unwrap();
    first.wait().unwrap();

    let resume = || {
        let mut c = tritlab();
        c.args(["train", "--resume", run_dir.to_str().unwrap()]);
        c
    };
    let mut writer = resume()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = writer.id().to_string();
    // The writer records its process id in the lock file once it holds the lock.
    wait_until("the resumed writer to take the lock", || {
        std::fs::read_to_string(run_dir.join(".lock")).is_ok_and(|s| s.trim() == pid)
    });
    let second = resume().output().unwrap();
    let still_running = writer.try_wait().unwrap().is_none();
    writer.kill().unwrap();
    writer.wait().unwrap();
    let err = text(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(still_running, "the first writer stopped early");
    assert!(
        err.contains(run_dir.to_str().unwrap())
            && err.contains("another tritlab process")
            && err.contains(&format!("process {pid}")),
        "{err}"
    );
}
