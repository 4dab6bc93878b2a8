//! The Rust cell runner's engine: cells compiled and run by [evcxr](https://github.com/evcxr/evcxr).
//!
//! This module is built only with the `runner` feature, into the `tritlab-rust-cells` binary;
//! tritlab itself talks to that binary (see the crate documentation) and never links evcxr.
//!
//! [`EvcxrEvaluator`] starts nothing until the first cell: then it checks for a toolchain, starts
//! evcxr (which compiles a first, empty crate and starts the process that runs cells) and keeps
//! that context, so variables, functions and `use` items carry from one cell to the next.
//!
//! Cells can use the engine and the kernels: a cell that names `tritlab_engine` or
//! `tritlab_kernels` gets that crate as a dependency, from `$TRITLAB_SOURCE` or else the checkout
//! the runner was built from. Crates are added on first mention rather than up front because
//! compiling the engine and its dependencies for the cells' own build takes minutes; a cell that
//! needs only `std` never pays for it.
//!
//! evcxr runs cells in a child process that is the current executable started again with an
//! environment variable set, and may use the executable as a `rustc` wrapper too, so the runner
//! binary calls [`runtime_hook`] as the very first thing in `main`.
//!
//! What a cell prints to stdout, the value of its final expression (if it has one) and what it
//! prints to stderr come back as one text, in that order. A cell fails on a compile error
//! (returned as `error[CODE]: message` with the offending line of the cell), when the cell panics,
//! and when it is cancelled.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tritlab_session::RustEvaluator;

use crate::{toolchain_in, NO_TOOLCHAIN};

/// Call first thing in `main` (see the crate documentation): when this process was started by
/// evcxr as a cell runner or a compiler wrapper, this does that job and never returns.
pub use evcxr::runtime_hook;

/// How often a waiting cell checks its cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// The size of evcxr's cache of compiled registry crates (in `~/.cache/evcxr`), which spares a
/// new session recompiling the dependencies of the engine and kernels; the least recently used
/// entries go first.
const CACHE_BYTES: u64 = 1 << 30;

/// A crate that cells may use, added to their build the first time a cell names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellDependency {
    /// The crate's name as code writes it (`tritlab_engine`).
    pub name: String,
    /// The package's name, the key of its `[dependencies]` entry (`tritlab-engine`).
    pub package: String,
    /// The TOML value of that entry (`{ path = "/abs/host/engine" }`).
    pub config: String,
}

impl CellDependency {
    /// The package `package` in the local directory `dir`; code names it with `-` written `_`.
    pub fn path(package: &str, dir: &Path) -> CellDependency {
        let dir = dir.to_string_lossy();
        CellDependency {
            name: package.replace('-', "_"),
            package: package.to_string(),
            config: format!("{{ path = \"{}\" }}", toml_escape(&dir)),
        }
    }

    /// Whether `code` names this crate (as a whole identifier, so `tritlab_engineer` does not).
    fn is_named_in(&self, code: &str) -> bool {
        let name = self.name.as_str();
        code.match_indices(name).any(|(at, _)| {
            let before = code[..at].chars().next_back();
            let after = code[at + name.len()..].chars().next();
            !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
        })
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The engine and kernel crates: from `$TRITLAB_SOURCE` (a tritlab checkout), else from the
/// checkout this runner was built from. evcxr compiles cells' dependencies from source, so the
/// runner needs one; without it a cell that names these crates fails to compile, saying so.
pub fn tritlab_dependencies() -> Vec<CellDependency> {
    let host = match std::env::var_os("TRITLAB_SOURCE").filter(|s| !s.is_empty()) {
        Some(root) => PathBuf::from(root).join("host"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let resolve = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    vec![
        CellDependency::path("tritlab-engine", &resolve(host.join("engine"))),
        CellDependency::path("tritlab-kernels", &resolve(host.join("../kernels"))),
    ]
}

/// Runs Rust cells through evcxr. See the crate documentation.
pub struct EvcxrEvaluator {
    dependencies: Vec<CellDependency>,
    /// Where to look for the toolchain; `$PATH` when `None`.
    search_path: Option<OsString>,
    context: Option<Context>,
    /// Print how long each cell took to stderr (`TRITLAB_TIMINGS=1`).
    timings: bool,
    cells: u64,
}

impl Default for EvcxrEvaluator {
    fn default() -> Self {
        EvcxrEvaluator::new()
    }
}

impl EvcxrEvaluator {
    /// An evaluator offering the engine and kernel crates to cells. Starts nothing yet.
    pub fn new() -> EvcxrEvaluator {
        EvcxrEvaluator::with_dependencies(tritlab_dependencies())
    }

    /// An evaluator offering `dependencies` to cells. Starts nothing yet.
    pub fn with_dependencies(dependencies: Vec<CellDependency>) -> EvcxrEvaluator {
        EvcxrEvaluator {
            dependencies,
            search_path: None,
            context: None,
            timings: std::env::var_os("TRITLAB_TIMINGS").is_some_and(|v| v == "1"),
            cells: 0,
        }
    }

    /// Whether the evcxr context is running (a cell has run, or tried to).
    pub fn is_started(&self) -> bool {
        self.context.is_some()
    }

    fn timing(&self, what: std::fmt::Arguments<'_>) {
        if self.timings {
            eprintln!("[timings] {what}");
        }
    }
}

impl RustEvaluator for EvcxrEvaluator {
    fn eval(&mut self, code: &str, cancel: &AtomicBool) -> Result<String, String> {
        let started = Instant::now();
        if self.context.is_none() {
            let path = match &self.search_path {
                Some(path) => path.clone(),
                None => std::env::var_os("PATH").unwrap_or_default(),
            };
            if !toolchain_in(&path) {
                return Err(NO_TOOLCHAIN.to_string());
            }
            let context = Context::start()?;
            self.timing(format_args!(
                "evcxr context started in {:.2} s",
                started.elapsed().as_secs_f64()
            ));
            self.context = Some(context);
            // Starting compiles a first crate and cannot be interrupted; a cancel meanwhile
            // stops the cell before it runs, and the context stays for the next one.
            if cancel.load(Ordering::Relaxed) {
                return Err("cancelled".into());
            }
        }
        let context = self.context.as_mut().expect("started above");
        let deps: Vec<CellDependency> = self
            .dependencies
            .iter()
            .filter(|d| d.is_named_in(code))
            .cloned()
            .collect();
        let ran = Instant::now();
        let result = context.eval(code, deps, cancel);
        self.cells += 1;
        self.timing(format_args!(
            "rust cell {}: {:.2} s ({:.2} s compiling and running{})",
            self.cells,
            started.elapsed().as_secs_f64(),
            ran.elapsed().as_secs_f64(),
            if self.cells == 1 {
                ", the rest starting evcxr"
            } else {
                ""
            }
        ));
        result
    }
}

/// A request to the thread that owns the evcxr context.
struct Request {
    code: String,
    deps: Vec<CellDependency>,
}

/// What evaluating a cell gave: the text of its final value, or the error.
type Reply = Result<String, String>;

/// The evcxr context, owned by a thread of its own: evcxr's context is not `Send`, and owning it
/// elsewhere lets the caller drain the cell's output while it runs (evcxr waits for that before it
/// returns) and watch the cancel flag.
struct Context {
    requests: Option<mpsc::Sender<Request>>,
    replies: Receiver<Reply>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// The process that runs the cells; killed to cancel a running cell.
    runner: Arc<Mutex<std::process::Child>>,
    thread: Option<JoinHandle<()>>,
    /// Every later cell is refused once the context thread is gone.
    dead: Option<String>,
}

/// What the context thread sends back once evcxr is up.
struct Started {
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    runner: Arc<Mutex<std::process::Child>>,
}

impl Context {
    fn start() -> Result<Context, String> {
        let (request_tx, request_rx) = mpsc::channel::<Request>();
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded::<Reply>();
        let (started_tx, started_rx) = crossbeam_channel::bounded::<Result<Started, String>>(1);
        let thread = std::thread::Builder::new()
            .name("tritlab-rust-cells".into())
            .spawn(move || context_thread(request_rx, reply_tx, started_tx))
            .map_err(|e| format!("cannot start the Rust cell thread: {e}"))?;
        let started = match started_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err("the Rust cell thread stopped while starting evcxr".into());
            }
        };
        Ok(Context {
            requests: Some(request_tx),
            replies: reply_rx,
            stdout: started.stdout,
            stderr: started.stderr,
            runner: started.runner,
            thread: Some(thread),
            dead: None,
        })
    }

    fn eval(
        &mut self,
        code: &str,
        deps: Vec<CellDependency>,
        cancel: &AtomicBool,
    ) -> Result<String, String> {
        if let Some(why) = &self.dead {
            return Err(why.clone());
        }
        // Lines left over from an earlier cell (stderr is not synchronised with the end of a
        // cell) are not this cell's.
        while self.stdout.try_recv().is_ok() {}
        while self.stderr.try_recv().is_ok() {}
        let sent = self.requests.as_ref().is_some_and(|r| {
            r.send(Request {
                code: code.to_string(),
                deps,
            })
            .is_ok()
        });
        if !sent {
            return Err(self.die("the Rust cell thread has stopped"));
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut cancelled = false;
        let reply = loop {
            if !cancelled && cancel.load(Ordering::Relaxed) {
                cancelled = true;
                // Stops a running cell; a cell still compiling stops when the build is done.
                if let Ok(mut child) = self.runner.lock() {
                    let _ = child.kill();
                }
            }
            crossbeam_channel::select! {
                recv(self.stdout) -> line => { if let Ok(line) = line { stdout.push(line) } }
                recv(self.stderr) -> line => { if let Ok(line) = line { stderr.push(line) } }
                recv(self.replies) -> reply => break reply.ok(),
                default(POLL) => {}
            }
        };
        let Some(reply) = reply else {
            return Err(self.die("the Rust cell thread has stopped"));
        };
        // evcxr hands over all of stdout before it returns; stderr comes from another thread in
        // evcxr and may trail by a moment.
        while let Ok(line) = self.stdout.try_recv() {
            stdout.push(line);
        }
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(20)) {
            stderr.push(line);
        }
        if cancelled {
            return Err("cancelled".into());
        }
        let stderr = without_backtraces(stderr);
        let value = reply?;
        let mut text = stdout.join("\n");
        for part in [value, stderr.join("\n")] {
            if !part.is_empty() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&part);
            }
        }
        let text = text.trim_matches('\n').to_string();
        if stderr.iter().any(|line| is_panic_line(line)) {
            return Err(text);
        }
        Ok(text)
    }

    fn die(&mut self, why: &str) -> String {
        self.dead = Some(why.to_string());
        why.to_string()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // Closing the request channel ends the thread, which drops evcxr's context: that stops
        // the runner process and removes the build directory.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            // A cell may still be running; it is killed so the thread can finish.
            if let Ok(mut child) = self.runner.lock() {
                let _ = child.kill();
            }
            // evcxr waits until its output is read before it returns from a cell.
            while !thread.is_finished() {
                while self.stdout.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = thread.join();
        }
    }
}

/// Rust's panic message: `thread 'NAME' panicked at FILE:LINE:COL:`, with the thread's id
/// after its name in newer releases (`thread 'NAME' (ID) panicked at …`).
fn is_panic_line(line: &str) -> bool {
    line.starts_with("thread '") && line.contains(" panicked at ")
}

/// `stderr` without the stack backtraces that evcxr asks of panics (their frames are evcxr's
/// runtime, not the cell); the panic message stays.
fn without_backtraces(stderr: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(stderr.len());
    let mut in_backtrace = false;
    for line in stderr {
        if line == "stack backtrace:" {
            in_backtrace = true;
            continue;
        }
        if in_backtrace {
            if line.starts_with(' ') {
                continue;
            }
            in_backtrace = false;
            if line.starts_with("note: Some details are omitted")
                || line.starts_with("note: run with `RUST_BACKTRACE=")
            {
                continue;
            }
        }
        out.push(line);
    }
    out
}

fn context_thread(
    requests: mpsc::Receiver<Request>,
    replies: crossbeam_channel::Sender<Reply>,
    started: crossbeam_channel::Sender<Result<Started, String>>,
) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            let _ = started.send(Err(format!(
                "Rust cells: cannot find the running executable to start the cell runner: {e}"
            )));
            return;
        }
    };
    let mut runner = std::process::Command::new(exe);
    // The runner gets a process group of its own, so Ctrl-C in a terminal (which signals the
    // whole foreground group) cancels the command that is running instead of killing the runner
    // and with it every variable the cells defined.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut runner, 0);
    let (mut context, outputs) = match evcxr::EvalContext::with_subprocess_command(runner) {
        Ok(pair) => pair,
        Err(e) => {
            let _ = started.send(Err(format!("Rust cells: evcxr did not start: {e}")));
            return;
        }
    };
    let _ = started.send(Ok(Started {
        stdout: outputs.stdout,
        stderr: outputs.stderr,
        runner: context.process_handle(),
    }));
    // Dependencies are resolved from the local registry cache first (they are the workspace's
    // own, fetched when tritlab was built), which needs no network; online if that fails.
    let mut offline = true;
    while let Ok(Request { code, deps }) = requests.recv() {
        let reply = eval_in(&mut context, &code, &deps, &mut offline);
        if replies.send(reply).is_err() {
            break;
        }
    }
}

fn eval_in(
    context: &mut evcxr::EvalContext,
    code: &str,
    deps: &[CellDependency],
    offline: &mut bool,
) -> Reply {
    let mut state = context.state();
    state.set_offline_mode(*offline);
    state.set_cache_bytes(CACHE_BYTES);
    for dep in deps {
        let cannot = |e: &dyn std::fmt::Display| {
            format!("cannot add the crate `{}` for Rust cells: {e}", dep.name)
        };
        if let Err(first) = state.add_dep(&dep.package, &dep.config) {
            if !*offline {
                return Err(cannot(&first));
            }
            state.set_offline_mode(false);
            if let Err(again) = state.add_dep(&dep.package, &dep.config) {
                let (first, again) = (first.to_string(), again.to_string());
                return Err(if first == again {
                    cannot(&again)
                } else {
                    cannot(&format!("{again}\n(offline, it failed with: {first})"))
                });
            }
            *offline = false;
        }
    }
    match context.eval_with_state(code, state) {
        // A cell that ends in a statement such as a `for` loop has the value `()`: not shown.
        Ok(outputs) => Ok(match outputs.get("text/plain") {
            Some("()") | None => String::new(),
            Some(value) => value.to_string(),
        }),
        Err(error) => Err(describe_error(&error, code)),
    }
}

/// A readable account of an evcxr error: for compile errors, each error with its code, the line
/// of the cell it points at, the label and rustc's help.
fn describe_error(error: &evcxr::Error, code: &str) -> String {
    let evcxr::Error::CompilationErrors(errors) = error else {
        return error.to_string();
    };
    let lines: Vec<&str> = code.lines().collect();
    let mut out = String::new();
    for e in errors {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = match e.code() {
            Some(c) => writeln!(out, "{}[{c}]: {}", e.level(), e.message()),
            None => writeln!(out, "{}: {}", e.level(), e.message()),
        };
        let mut shown_lines = HashSet::new();
        for message in e.spanned_messages() {
            let Some(span) = &message.span else {
                if !message.label.is_empty() {
                    let _ = writeln!(out, "  = {}", message.label);
                }
                continue;
            };
            let Some(text) = span
                .start_line
                .checked_sub(1)
                .and_then(|index| lines.get(index))
            else {
                continue;
            };
            let gutter = format!("{:>3} | ", span.start_line);
            if shown_lines.insert(span.start_line) {
                let _ = writeln!(out, "{gutter}{text}");
            }
            let start = span.start_column.saturating_sub(1);
            let end = if span.end_line == span.start_line {
                span.end_column.saturating_sub(1).max(start + 1)
            } else {
                text.chars().count().max(start + 1)
            };
            let mark = if message.is_primary { '^' } else { '-' };
            let _ = writeln!(
                out,
                "{}{} {}",
                " ".repeat(gutter.chars().count() + start),
                mark.to_string().repeat(end - start),
                message.label
            );
        }
        for help in e.help() {
            let _ = writeln!(out, "  = help: {help}");
        }
    }
    let out = out.trim_end().to_string();
    if out.is_empty() {
        error.to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_is_named_as_a_whole_identifier() {
        let dep = CellDependency::path("tritlab-kernels", Path::new("/x"));
        assert_eq!(
            (dep.name.as_str(), dep.package.as_str()),
            ("tritlab_kernels", "tritlab-kernels")
        );
        assert!(dep.is_named_in("use tritlab_kernels::pack;"));
        assert!(dep.is_named_in("let m = tritlab_kernels::I2Matrix::new();"));
        assert!(dep.is_named_in("tritlab_kernels"));
        assert!(!dep.is_named_in("use tritlab_kernels_extra::x;"));
        assert!(!dep.is_named_in("my_tritlab_kernels()"));
        assert!(!dep.is_named_in("println!(\"{}\", 1 + 1);"));
    }

    #[test]
    fn dependency_paths_are_toml_strings() {
        let dep = CellDependency::path("a", Path::new("/tmp/we\"ird\\dir"));
        assert_eq!(dep.config, r#"{ path = "/tmp/we\"ird\\dir" }"#);
    }

    #[test]
    fn the_checkout_crates_are_offered() {
        let deps = tritlab_dependencies();
        let names: Vec<&str> = deps.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["tritlab_engine", "tritlab_kernels"]);
        for dep in &deps {
            let path = dep
                .config
                .strip_prefix("{ path = \"")
                .and_then(|p| p.strip_suffix("\" }"))
                .expect("a path dependency");
            assert!(Path::new(path).join("Cargo.toml").is_file(), "{path}");
        }
    }

    #[test]
    fn panics_are_recognised() {
        assert!(is_panic_line(
            "thread '<unnamed>' panicked at src/lib.rs:3:1:"
        ));
        assert!(is_panic_line(
            "thread '<unnamed>' (32413) panicked at src/lib.rs:6:1:"
        ));
        assert!(!is_panic_line("the thread panicked"));
    }

    #[test]
    fn backtraces_are_dropped_and_the_message_kept() {
        let stderr: Vec<String> = [
            "before",
            "thread '<unnamed>' (7) panicked at src/lib.rs:6:1:",
            "boom",
            "stack backtrace:",
            "   0: __rustc::rust_begin_unwind",
            "             at /rustc/library/std/src/panicking.rs:689:5",
            "   1: run_user_code_1",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
            "after",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            without_backtraces(stderr),
            [
                "before",
                "thread '<unnamed>' (7) panicked at src/lib.rs:6:1:",
                "boom",
                "after"
            ]
        );
    }

    #[test]
    fn without_a_toolchain_a_cell_fails_clearly_and_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut eval = EvcxrEvaluator::new();
        eval.search_path = Some(std::env::join_paths([dir.path()]).unwrap());
        let cancel = AtomicBool::new(false);
        assert_eq!(
            eval.eval("println!(\"hi\");", &cancel),
            Err(NO_TOOLCHAIN.to_string())
        );
        assert!(!eval.is_started());
    }
}
