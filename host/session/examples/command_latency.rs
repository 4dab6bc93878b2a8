//! How long a command that does not touch the weights (`help`, `info`) keeps a face waiting,
//! measured through the session worker exactly as the REPL (which waits for the command to
//! finish) and the workbench (which also waits for the snapshot that follows) see it.
//!
//! ```sh
//! cargo run --release -p tritlab-session --example command_latency -- MODEL_DIR [RUNS]
//! ```
//! `scripts/measure-latency.sh` makes the synthetic 2B-4T model and runs this on it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tritlab_session::{SessionConfig, SessionWorker, WorkerEvent};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(model) = args.next().map(PathBuf::from) else {
        eprintln!("usage: command_latency MODEL_DIR [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let started = Instant::now();
    let worker = SessionWorker::spawn(
        SessionConfig {
            default_model: Some(model.clone()),
            load_default_model: true,
            ..SessionConfig::default()
        },
        None,
    );
    let snapshot = loop {
        match worker.recv_timeout(Duration::from_secs(3600)) {
            Some(WorkerEvent::Ready(snapshot)) => break snapshot,
            Some(_) => {}
            None => {
                eprintln!("the session did not start");
                std::process::exit(1);
            }
        }
    };
    let Some(summary) = &snapshot.model else {
        eprintln!("{} did not load: {:?}", model.display(), snapshot.notes);
        std::process::exit(1);
    };
    println!(
        "{}: {} layers, {} ternary tensors; session ready in {:.2} s",
        model.display(),
        summary.layers,
        summary.tensors.len(),
        started.elapsed().as_secs_f64()
    );
    // First while the worker draws the new model's thumbnails (between commands, a few pixel
    // rows at a time), then once a snapshot carries all of them.
    measure(&worker, runs, "while thumbnails are drawn");
    let drawn = Instant::now();
    loop {
        match worker.recv_timeout(Duration::from_secs(600)) {
            Some(WorkerEvent::Snapshot(s))
                if s.model
                    .as_ref()
                    .is_some_and(|m| m.tensors.iter().all(|t| t.thumbnail.is_some())) =>
            {
                break
            }
            Some(_) => {}
            None => {
                eprintln!("the thumbnails never came");
                std::process::exit(1);
            }
        }
    }
    println!(
        "all {} thumbnails drawn {:.2} s after the first measurement ended",
        summary.tensors.len(),
        drawn.elapsed().as_secs_f64()
    );
    measure(&worker, runs, "after");
}

fn measure(worker: &SessionWorker, runs: usize, phase: &str) {
    for command in ["help", "info"] {
        let mut finished = Vec::with_capacity(runs);
        let mut with_snapshot = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let id = worker.submit(command);
            let mut done = None;
            loop {
                match worker.recv_timeout(Duration::from_secs(600)) {
                    Some(WorkerEvent::Finished(j, exec)) if j == id => {
                        if let Some(e) = exec.error {
                            eprintln!("`{command}` failed: {e}");
                            std::process::exit(1);
                        }
                        done = Some(t.elapsed());
                    }
                    Some(WorkerEvent::Snapshot(_)) if done.is_some() => break,
                    Some(_) => {}
                    None => {
                        eprintln!("no answer to `{command}`");
                        std::process::exit(1);
                    }
                }
            }
            finished.push(done.expect("finished before its snapshot"));
            with_snapshot.push(t.elapsed());
        }
        let ms = |mut v: Vec<Duration>| {
            v.sort();
            let f = |d: Duration| d.as_secs_f64() * 1e3;
            format!(
                "min {:.2} / median {:.2} / max {:.2} ms",
                f(v[0]),
                f(v[v.len() / 2]),
                f(v[v.len() - 1])
            )
        };
        println!(
            "{phase}: {command:<5} ×{runs}: to the prompt (REPL) {}; with the snapshot (workbench) {}",
            ms(finished),
            ms(with_snapshot)
        );
    }
}
