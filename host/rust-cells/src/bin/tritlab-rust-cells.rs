//! The Rust cell runner: serves tritlab's Rust cells over stdin and stdout (see
//! `tritlab_rust_cells::protocol`), compiling and running them with evcxr.
//!
//! A process of its own, so that nothing a cell or the compiler does can take tritlab down with
//! it: if the runner dies, tritlab reports the cell as failed and starts a fresh runner.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use tritlab_rust_cells::protocol::{Reply, Request};
use tritlab_rust_cells::runner::{runtime_hook, EvcxrEvaluator};
use tritlab_session::RustEvaluator;

fn main() {
    // evcxr starts this executable again to run cells (and may use it to wrap rustc); in those
    // copies this does that job and never returns.
    runtime_hook();
    if std::env::args().nth(1).as_deref() != Some("--serve") {
        eprintln!(
            "tritlab-rust-cells runs tritlab's Rust cells; tritlab starts it (with --serve) when \
             a Rust cell runs. Install it beside tritlab: cargo install --path host/rust-cells"
        );
        std::process::exit(2);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let (cells_tx, cells) = mpsc::channel::<String>();
    let reader_cancel = cancel.clone();
    // Requests are read on their own thread so that a cancel arrives while a cell runs.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Request>(&line) {
                Ok(Request::Eval { code }) => {
                    // Reset here, in request order, so a cancel for the previous cell that
                    // arrives late cannot stop this one, nor a reset lose a cancel of this one.
                    reader_cancel.store(false, Ordering::Relaxed);
                    if cells_tx.send(code).is_err() {
                        break;
                    }
                }
                Ok(Request::Cancel) => reader_cancel.store(true, Ordering::Relaxed),
                Err(e) => eprintln!("tritlab-rust-cells: ignoring a request that is not one: {e}"),
            }
        }
        // stdin closed: tritlab has gone; dropping the sender ends the loop below.
    });
    let mut evaluator = EvcxrEvaluator::new();
    let stdout = std::io::stdout();
    for code in cells {
        let reply = match evaluator.eval(&code, &cancel) {
            Ok(text) => Reply::Ok { text },
            Err(text) => Reply::Err { text },
        };
        let mut out = stdout.lock();
        if writeln!(out, "{}", reply.to_line())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}
