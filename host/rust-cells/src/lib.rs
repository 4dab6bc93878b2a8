//! tritlab-rust-cells: Rust cells (`:rust` lines and `rust` workbook cells) in a process of their
//! own.
//!
//! Cells are compiled and run by [evcxr](https://github.com/evcxr/evcxr) inside the
//! `tritlab-rust-cells` binary (the [`runner`] module, behind the `runner` feature). tritlab talks
//! to it through [`SidecarEvaluator`], which implements [`tritlab_session::RustEvaluator`] over
//! the line protocol in [`protocol`]. Two things follow:
//!
//! - **Isolation.** Whatever a cell or the compiler does (abort, overflow its stack, exhaust
//!   memory), it happens in the runner: the cell fails, says how the runner ended, and the next
//!   cell starts a fresh runner. The workbench, REPL or kernel lives on.
//! - **A fast first build.** evcxr and its rust-analyzer crates are most of tritlab's compile
//!   time; tritlab does not link them, so `cargo run` shows the workbench or the tour without
//!   building them. The runner is found next to the tritlab executable (`cargo build
//!   --workspace` and `cargo install --path host/rust-cells` put it there), through
//!   `$TRITLAB_RUST_CELLS`, or on `PATH`. When it is nowhere and tritlab's source checkout is at
//!   hand, the first Rust cell builds it in the background and says so until it is ready.

pub mod protocol;
#[cfg(feature = "runner")]
pub mod runner;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::{Reply, Request};
use tritlab_session::RustEvaluator;

/// The message for a machine with no toolchain.
pub const NO_TOOLCHAIN: &str = "Rust cells need a Rust toolchain (cargo) on PATH";

/// The runner's executable name.
pub const RUNNER: &str = "tritlab-rust-cells";

/// How often a waiting cell checks its cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// How long a cancelled cell may take to stop before the runner is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// What a Rust cell does while the runner is still being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    /// Waits for the build (headless workbooks, scripts): a notice goes to stderr once.
    Wait,
    /// Fails at once with a message saying the cells are being prepared, and how long the
    /// build has run (the workbench, an interactive REPL, Jupyter): run the cell again later.
    Report,
}

/// Where the runner comes from.
enum Runner {
    /// Not looked for yet.
    Unknown,
    /// Being built from the source checkout, since the instant.
    Building {
        since: Instant,
        build: JoinHandle<Result<PathBuf, String>>,
    },
    Found(PathBuf),
    /// Neither found nor buildable: why.
    Missing(String),
}

/// A running runner process.
struct Process {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<Reply>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs Rust cells in the `tritlab-rust-cells` runner. See the crate documentation.
pub struct SidecarEvaluator {
    preparation: Preparation,
    runner: Runner,
    process: Option<Process>,
    /// Where to look for the toolchain; `$PATH` when `None`.
    search_path: Option<std::ffi::OsString>,
    /// Where the runner's source is, to build it when it is missing.
    source: Option<PathBuf>,
}

impl SidecarEvaluator {
    /// An evaluator that starts nothing until the first cell.
    pub fn new(preparation: Preparation) -> SidecarEvaluator {
        SidecarEvaluator {
            preparation,
            runner: Runner::Unknown,
            process: None,
            search_path: None,
            source: source_checkout(),
        }
    }

    /// An evaluator that uses the runner at `path`.
    pub fn with_runner(path: PathBuf, preparation: Preparation) -> SidecarEvaluator {
        SidecarEvaluator {
            runner: Runner::Found(path),
            ..SidecarEvaluator::new(preparation)
        }
    }

    /// Whether a runner process is up (a cell has run and the runner has not died since).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The runner's path once it is known, building it first if it must (and `Wait` says so).
    fn runner(&mut self, cancel: &AtomicBool) -> Result<PathBuf, String> {
        if matches!(self.runner, Runner::Unknown) {
            self.runner = match find_runner() {
                Some(path) => Runner::Found(path),
                None => match &self.source {
                    Some(root) => Runner::Building {
                        since: Instant::now(),
                        build: build_runner(root.clone())?,
                    },
                    None => Runner::Missing(format!(
                        "Rust cells need the {RUNNER} program beside tritlab (or set \
                         TRITLAB_RUST_CELLS): install it from tritlab's source with `cargo \
                         install --path host/rust-cells`"
                    )),
                },
            };
            if let (Runner::Building { .. }, Preparation::Wait) = (&self.runner, self.preparation) {
                eprintln!(
                    "Preparing Rust cells: building {RUNNER} (the first time only; several \
                     minutes on two cores)…"
                );
            }
        }
        if let Runner::Building { since, build } = &self.runner {
            if !build.is_finished() {
                match self.preparation {
                    Preparation::Report => {
                        return Err(format!(
                            "Rust cells are still being prepared: {RUNNER} has been building \
                             for {} s (the first build takes several minutes). Run the cell \
                             again when it is ready.",
                            since.elapsed().as_secs()
                        ))
                    }
                    Preparation::Wait => {
                        while !build.is_finished() {
                            if cancel.load(Ordering::Relaxed) {
                                // The build goes on; the next cell picks it up.
                                return Err("cancelled".into());
                            }
                            std::thread::sleep(POLL);
                        }
                    }
                }
            }
            let Runner::Building { build, .. } =
                std::mem::replace(&mut self.runner, Runner::Unknown)
            else {
                unreachable!("matched above")
            };
            self.runner = match build.join() {
                Ok(Ok(path)) => Runner::Found(path),
                Ok(Err(why)) => Runner::Missing(why),
                Err(_) => Runner::Missing(format!("building {RUNNER} failed unexpectedly")),
            };
        }
        match &self.runner {
            Runner::Found(path) => Ok(path.clone()),
            Runner::Missing(why) => Err(why.clone()),
            Runner::Unknown | Runner::Building { .. } => unreachable!("resolved above"),
        }
    }

    fn start(&mut self, cancel: &AtomicBool) -> Result<&mut Process, String> {
        if self.process.is_none() {
            let path = match &self.search_path {
                Some(path) => path.clone(),
                None => std::env::var_os("PATH").unwrap_or_default(),
            };
            if !toolchain_in(&path) {
                return Err(NO_TOOLCHAIN.to_string());
            }
            let runner = self.runner(cancel)?;
            self.process = Some(spawn(&runner)?);
        }
        Ok(self.process.as_mut().expect("started above"))
    }

    /// The runner ended while a cell ran: forget it, and say how it ended.
    fn lost(&mut self) -> String {
        let status = self
            .process
            .take()
            .and_then(|mut p| p.child.wait().ok())
            .map(describe_exit)
            .unwrap_or_else(|| "ended".into());
        format!(
            "the Rust cell runner {status} while running this cell; the variables of earlier \
             cells are gone, and the next cell starts a fresh runner"
        )
    }
}

impl RustEvaluator for SidecarEvaluator {
    fn eval(&mut self, code: &str, cancel: &AtomicBool) -> Result<String, String> {
        let process = self.start(cancel)?;
        let request = serde_json::to_string(&Request::Eval {
            code: code.to_string(),
        })
        .expect("a request is plain data");
        if writeln!(process.stdin, "{request}")
            .and_then(|()| process.stdin.flush())
            .is_err()
        {
            return Err(self.lost());
        }
        let mut cancelled_at: Option<Instant> = None;
        loop {
            let process = self.process.as_mut().expect("started above");
            if cancelled_at.is_none() && cancel.load(Ordering::Relaxed) {
                cancelled_at = Some(Instant::now());
                let line = serde_json::to_string(&Request::Cancel).expect("plain data");
                let _ = writeln!(process.stdin, "{line}").and_then(|()| process.stdin.flush());
            }
            if cancelled_at.is_some_and(|at| at.elapsed() > CANCEL_GRACE) {
                // A cell still compiling cannot be interrupted inside evcxr; the runner goes.
                self.process = None;
                return Err(
                    "cancelled (the Rust cell runner was stopped, and the variables of \
                            earlier cells with it)"
                        .into(),
                );
            }
            match process.replies.recv_timeout(POLL) {
                Ok(Reply::Ok { text }) => return Ok(text),
                Ok(Reply::Err { text }) => return Err(text),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.lost()),
            }
        }
    }
}

/// Starts the runner at `path` and a thread that reads its replies.
fn spawn(path: &Path) -> Result<Process, String> {
    let mut command = Command::new(path);
    command
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TRITLAB_TIMINGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    // A process group of its own, so Ctrl-C in a terminal (which signals the whole foreground
    // group) cancels the running command instead of killing the runner and every variable the
    // cells defined.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    // A runner that was written a moment ago (built in the background, or copied into place)
    // can still be open for writing in a process forked meanwhile, and then `exec` fails with
    // "text file busy" until that process execs or exits: wait a little and try again.
    let mut attempts = 0;
    let mut child = loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => {
                break other.map_err(|e| {
                    format!("cannot start the Rust cell runner {}: {e}", path.display())
                })?
            }
        }
    };
    let stdin = child.stdin.take().expect("piped above");
    let stdout = child.stdout.take().expect("piped above");
    let (tx, replies) = mpsc::channel();
    std::thread::Builder::new()
        .name("tritlab-rust-cells-replies".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(reply) = Reply::from_line(&line) {
                    if tx.send(reply).is_err() {
                        break;
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the Rust cell reader thread: {e}"))?;
    Ok(Process {
        child,
        stdin,
        replies,
    })
}

#[cfg(unix)]
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".into(),
    }
}

#[cfg(not(unix))]
fn describe_exit(status: std::process::ExitStatus) -> String {
    format!("ended ({status})")
}

/// The runner: `$TRITLAB_RUST_CELLS`, else beside this executable (or beside the folder cargo
/// puts tests and examples in), else on `PATH`.
pub fn find_runner() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TRITLAB_RUST_CELLS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    let name = format!("{RUNNER}{}", std::env::consts::EXE_SUFFIX);
    if is_executable(&dir.join(&name)) {
        return Some(dir.join(&name));
    }
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
        if is_executable(&dir.join(&name)) {
            return Some(dir.join(&name));
        }
    }
    find_in_path(&std::env::var_os("PATH").unwrap_or_default(), RUNNER)
}

/// The source checkout this crate was built from, if it is still there: the runner can be built
/// from it.
fn source_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().ok()?;
    root.join("host/rust-cells/src/bin")
        .is_dir()
        .then_some(root)
}

/// Builds the runner from the checkout at `root` on a thread of its own; the thread's result is
/// the runner's path. cargo's output goes to `rust-cells-build.log` in tritlab's data folder
/// (or the temporary folder), which errors name.
fn build_runner(root: PathBuf) -> Result<JoinHandle<Result<PathBuf, String>>, String> {
    let log_dir = tritlab_assets::data_dir().unwrap_or_else(std::env::temp_dir);
    std::thread::Builder::new()
        .name("tritlab-rust-cells-build".into())
        .spawn(move || {
            std::fs::create_dir_all(&log_dir).map_err(|e| {
                format!("cannot build {RUNNER}: creating {}: {e}", log_dir.display())
            })?;
            let log_path = log_dir.join("rust-cells-build.log");
            let log = std::fs::File::create(&log_path)
                .map_err(|e| format!("cannot build {RUNNER}: {}: {e}", log_path.display()))?;
            let output = Command::new("cargo")
                .args(["build", "--release", "--locked", "-p", RUNNER])
                .args([
                    "--bin",
                    RUNNER,
                    "--message-format",
                    "json-render-diagnostics",
                ])
                .arg("--manifest-path")
                .arg(root.join("Cargo.toml"))
                .stdin(Stdio::null())
                .stderr(log)
                .output()
                .map_err(|e| format!("cannot run cargo to build {RUNNER}: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "building {RUNNER} failed ({}); cargo's output is in {}",
                    describe_exit(output.status),
                    log_path.display()
                ));
            }
            built_executable(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
                format!(
                    "cargo built {RUNNER} but did not say where; see {}",
                    log_path.display()
                )
            })
        })
        .map_err(|e| format!("cannot start building {RUNNER}: {e}"))
}

/// The runner's path in cargo's JSON messages.
fn built_executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == RUNNER)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// Whether `cargo` and `rustc` are executables on `PATH`.
pub fn toolchain_on_path() -> bool {
    toolchain_in(&std::env::var_os("PATH").unwrap_or_default())
}

/// Whether `cargo` and `rustc` are executables in the directories of `path` (a `PATH` value).
pub(crate) fn toolchain_in(path: &OsStr) -> bool {
    ["cargo", "rustc"]
        .iter()
        .all(|tool| find_in_path(path, tool).is_some())
}

fn find_in_path(path: &OsStr, tool: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_toolchain_is_looked_up_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert!(!toolchain_in(&path));
        assert!(!toolchain_in(OsStr::new("")));
        make_executable(&dir.path().join("cargo"), "");
        assert!(!toolchain_in(&path), "rustc is missing");
        make_executable(&dir.path().join("rustc"), "");
        assert!(toolchain_in(&path));
    }

    #[cfg(unix)]
    pub(crate) fn make_executable(file: &Path, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(file, format!("#!/bin/sh\n{script}")).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(not(unix))]
    pub(crate) fn make_executable(file: &Path, _script: &str) {
        std::fs::write(file.with_extension("exe"), "").unwrap();
    }

    #[test]
    fn cargo_messages_name_the_built_runner() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"tritlab-session"},"executable":null}"#,
            "not json",
            r#"{"reason":"compiler-artifact","target":{"name":"tritlab-rust-cells"},"executable":"/t/release/tritlab-rust-cells"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            built_executable(&messages),
            Some(PathBuf::from("/t/release/tritlab-rust-cells"))
        );
        assert_eq!(built_executable("{\"reason\":\"build-finished\"}"), None);
    }

    #[test]
    fn without_a_toolchain_a_cell_fails_clearly_and_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut eval = SidecarEvaluator::new(Preparation::Report);
        eval.search_path = Some(std::env::join_paths([dir.path()]).unwrap());
        let cancel = AtomicBool::new(false);
        assert_eq!(
            eval.eval("println!(\"hi\");", &cancel),
            Err(NO_TOOLCHAIN.to_string())
        );
        assert!(!eval.is_running());
    }

    /// A runner that crashes on the first cell: the cell fails saying so, and the next cell
    /// gets a fresh runner.
    #[cfg(unix)]
    #[test]
    fn a_crashing_runner_fails_the_cell_and_the_next_cell_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let runner = dir.path().join("runner");
        let marker = dir.path().join("crashed-once");
        // The first runner reads a request and kills itself; later ones answer every request.
        let ok = Reply::Ok {
            text: "fresh".into(),
        }
        .to_line();
        make_executable(
            &runner,
            &format!(
                "if [ ! -e '{m}' ]; then touch '{m}'; read line; kill -SEGV $$; fi\n\
                 while read line; do printf '%s\\n' '{ok}'; done\n",
                m = marker.display(),
            ),
        );
        let mut eval = SidecarEvaluator::with_runner(runner, Preparation::Report);
        let cancel = AtomicBool::new(false);
        let first = eval.eval("std::process::abort();", &cancel).unwrap_err();
        assert!(first.contains("killed by signal 11"), "{first}");
        assert!(first.contains("next cell starts a fresh runner"), "{first}");
        assert!(!eval.is_running());
        assert_eq!(eval.eval("1", &cancel), Ok("fresh".into()));
        assert!(eval.is_running());
    }

    /// A cancel reaches a runner that is busy; one that does not answer is stopped.
    #[cfg(unix)]
    #[test]
    fn a_cancel_is_sent_and_a_stuck_runner_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let runner = dir.path().join("runner");
        let cancelled = Reply::Err {
            text: "cancelled".into(),
        }
        .to_line();
        // Answers a cancel request (the second line) with `cancelled`.
        make_executable(
            &runner,
            &format!("read eval; read cancel; printf '%s\\n' '{cancelled}'; sleep 60\n"),
        );
        let mut eval = SidecarEvaluator::with_runner(runner, Preparation::Report);
        let cancel = AtomicBool::new(true);
        let started = Instant::now();
        assert_eq!(eval.eval("loop {}", &cancel), Err("cancelled".into()));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_runner_that_cannot_be_built_says_how_to_install_it() {
        let mut eval = SidecarEvaluator::new(Preparation::Report);
        eval.runner = Runner::Unknown;
        eval.source = None;
        // Only meaningful where no runner is installed beside the test binary or on PATH.
        if find_runner().is_some() {
            eprintln!("skipped: a runner is installed");
            return;
        }
        let cancel = AtomicBool::new(false);
        let error = eval.runner(&cancel).unwrap_err();
        assert!(
            error.contains("cargo install --path host/rust-cells"),
            "{error}"
        );
    }
}
