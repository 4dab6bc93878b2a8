//! Running commands against a session: outputs, errors, live events, cancellation, Rust cells
//! and the worker thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tritlab_session::{
    Context, ErrorKind, Execution, LiveEvent, RustEvaluator, Session, SessionConfig, SessionWorker,
    WorkerEvent,
};
use tritlab_workbook::Output;

fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/default-model")
}

/// A session with the default model and no plugins (the plugin host is tested on its own).
fn session(load_model: bool) -> Session {
    Session::new(SessionConfig {
        default_model: Some(default_model()),
        plugin_dirs: Vec::new(),
        plugin_cache: None,
        load_default_model: load_model,
        ..SessionConfig::default()
    })
}

/// Runs `source`, collecting the live events.
fn run(session: &mut Session, source: &str) -> (Execution, Vec<LiveEvent>) {
    let cancel = AtomicBool::new(false);
    run_with(session, source, &cancel)
}

fn run_with(
    session: &mut Session,
    source: &str,
    cancel: &AtomicBool,
) -> (Execution, Vec<LiveEvent>) {
    let mut events = Vec::new();
    let mut collect = |e: LiveEvent| events.push(e);
    let mut ctx = Context {
        cancel,
        events: &mut collect,
    };
    let exec = session.execute(source, &mut ctx);
    (exec, events)
}

fn texts(exec: &Execution) -> String {
    exec.outputs
        .iter()
        .filter_map(|o| match o {
            Output::Text(t) | Output::Error(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_parse_error_runs_nothing() {
    let mut s = session(true);
    let (exec, events) = run(&mut s, "info\ngenerte \"hi\"");
    assert!(events.is_empty());
    assert_eq!(exec.outputs.len(), 1, "{:?}", exec.outputs);
    let Some(Output::Error(message)) = exec.outputs.first() else {
        panic!("{:?}", exec.outputs)
    };
    assert!(message.contains("did you mean `generate`?"), "{message}");
    assert_eq!(exec.error_message().as_deref(), Some(message.as_str()));
    assert_eq!(exec.error.map(|e| e.kind()), Some(ErrorKind::Parse));
}

#[test]
fn a_failing_line_is_numbered_and_stops_the_cell() {
    let mut s = session(true);
    let (exec, _) = run(&mut s, "info\nverify /no/such/model\ninfo");
    // `info` ran, then the error; the third line did not run.
    assert!(matches!(exec.outputs[0], Output::Table(_)));
    assert_eq!(exec.outputs.len(), 2, "{:?}", exec.outputs);
    let error = exec.error_message().expect("an error");
    assert!(error.starts_with("line 2: "), "{error}");
    assert!(error.contains("/no/such/model"), "{error}");
    let error = exec.error.expect("an error");
    assert_eq!((error.line, error.kind()), (2, ErrorKind::Engine));
    // The engine's error is kept as the cause, not flattened into text.
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn without_a_model_commands_say_how_to_load_one() {
    let mut s = session(false);
    let (exec, _) = run(&mut s, "info");
    assert!(exec.error.is_none());
    let Some(Output::Table(t)) = exec.outputs.first() else {
        panic!("{:?}", exec.outputs)
    };
    assert!(t.rows.iter().any(|r| r[1] == "none loaded"), "{t:?}");

    for command in [
        "layers",
        "generate \"x\"",
        "logits \"x\"",
        "bench",
        "show layers.0.mlp.up_proj",
    ] {
        let (exec, _) = run(&mut s, command);
        let error = exec.error_message().unwrap_or_default();
        assert!(error.contains("load default"), "{command}: {error}");
        assert_eq!(exec.error.map(|e| e.kind()), Some(ErrorKind::NoModel));
    }
    let (exec, _) = run(&mut s, "load default");
    assert!(texts(&exec).starts_with("loaded "), "{}", texts(&exec));
    assert!(s.model().is_some());
}

#[test]
fn generation_streams_its_tokens_and_is_seeded() {
    let mut s = session(true);
    let source = "generate \"To be\" --max-tokens 6 --seed 11";
    let (first, events) = run(&mut s, source);
    assert!(first.error.is_none(), "{:?}", first.error);
    let streamed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::Token(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let trace = first
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::Trace(t) => Some(t),
            _ => None,
        })
        .expect("a trace");
    assert_eq!(trace.tokens, streamed);
    assert!(!streamed.is_empty() && streamed.len() <= 6);
    assert_eq!(first.outputs.first(), Some(&Output::Text("To be".into())));
    // No plugins: the tokens are not coloured, and the trace says so.
    assert_eq!(trace.title.as_deref(), Some("no tracer loaded"));
    assert!(trace.tokens.iter().all(|t| t.rgb.is_none()));

    let (second, _) = run(&mut s, source);
    let text = |e: &Execution| {
        e.outputs.iter().find_map(|o| match o {
            Output::Trace(t) => Some(t.text()),
            _ => None,
        })
    };
    assert_eq!(text(&first), text(&second));
}

#[test]
fn a_cancelled_cell_stops_before_its_next_command() {
    let mut s = session(true);
    let cancel = AtomicBool::new(true);
    let (exec, _) = run_with(&mut s, "info\nlayers", &cancel);
    assert_eq!(exec.error_message().as_deref(), Some("cancelled"));
    assert_eq!(
        exec.error.as_ref().map(|e| e.kind()),
        Some(ErrorKind::Cancelled)
    );
    assert!(exec.cancelled);
    assert_eq!(exec.outputs, vec![Output::Error("cancelled".into())]);
}

#[test]
fn quit_and_clear_are_flags_for_the_face() {
    let mut s = session(false);
    let (exec, _) = run(&mut s, "clear\nhelp quit\nquit\ninfo");
    assert!(exec.clear && exec.quit);
    // `help quit` ran, `info` after `quit` did not.
    assert_eq!(exec.outputs.len(), 1, "{:?}", exec.outputs);
}

#[test]
fn timeline_commands_need_an_open_run() {
    let mut s = session(true);
    for command in [
        "step",
        "back 2",
        "seek 0",
        "log show 1",
        "log plot loss",
        "replay verify",
    ] {
        let (exec, _) = run(&mut s, command);
        let error = exec.error_message().unwrap_or_default();
        assert!(error.contains("replay open"), "{command}: {error}");
    }
}

/// Answers every snippet with its length, or fails on `fail`.
struct Echo;

impl RustEvaluator for Echo {
    fn eval(&mut self, code: &str, _cancel: &AtomicBool) -> Result<String, String> {
        if code.contains("fail") {
            Err(format!("cannot run `{code}`"))
        } else {
            Ok(format!("{} bytes", code.len()))
        }
    }
}

#[test]
fn rust_snippets_go_to_the_evaluator() {
    let mut s = session(false);
    let (exec, _) = run(&mut s, ":rust 1 + 1");
    let error = exec.error_message().unwrap_or_default();
    assert!(error.contains("Rust cells are not available"), "{error}");

    s.set_rust_evaluator(Box::new(Echo));
    let (exec, events) = run(&mut s, ":rust\nlet x = 1;\nx + 1\n:end");
    assert!(exec.error.is_none(), "{:?}", exec.error);
    assert_eq!(exec.outputs, vec![Output::Text("16 bytes".into())]);
    assert!(events
        .iter()
        .any(|e| matches!(e, LiveEvent::Line(l) if l.starts_with("rust cell: "))));

    let (exec, _) = run(&mut s, ":rust fail()");
    assert_eq!(exec.error_message().as_deref(), Some("cannot run `fail()`"));
}

#[test]
fn the_worker_reports_ready_live_finished_and_a_snapshot() {
    let worker = SessionWorker::spawn(
        SessionConfig {
            default_model: Some(default_model()),
            plugin_dirs: Vec::new(),
            plugin_cache: None,
            load_default_model: true,
            ..SessionConfig::default()
        },
        None,
    );
    let ready = worker.recv_timeout(Duration::from_secs(120));
    let Some(WorkerEvent::Ready(snapshot)) = ready else {
        panic!("no Ready event")
    };
    let model = snapshot.model.expect("the default model is loaded");
    assert!(!model.tensors.is_empty());

    let mut tokens = 0;
    let exec = worker.run_blocking("generate \"a\" --max-tokens 3 --greedy", |e| {
        if matches!(e, LiveEvent::Token(_)) {
            tokens += 1;
        }
    });
    assert!(exec.error.is_none(), "{:?}", exec.error);
    assert!(tokens > 0);
    // The snapshot of the state after the job follows its result.
    let after = worker.recv_timeout(Duration::from_secs(60));
    assert!(matches!(after, Some(WorkerEvent::Snapshot(_))), "{after:?}");
}

#[test]
fn a_trained_run_opens_at_its_last_step_and_moves_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.txt");
    std::fs::write(
        &data,
        "To be, or not to be, that is the question. ".repeat(40),
    )
    .unwrap();
    let dir = tmp.path().join("run");
    let mut s = session(false);
    let (exec, events) = run(
        &mut s,
        &format!(
            "train --data \"{}\" --train-tokenizer 300 --steps 4 --seq 8 --batch 2 \
             --checkpoint-every 2 --out \"{}\"",
            data.display(),
            dir.display()
        ),
    );
    assert!(exec.error.is_none(), "{:?}", exec.error);
    let step_lines = events
        .iter()
        .filter(|e| matches!(e, LiveEvent::Line(l) if l.starts_with("step ")))
        .count();
    assert_eq!(step_lines, 4);
    assert!(matches!(exec.outputs.first(), Some(Output::Plot(_))));
    let position = |s: &Session| s.run().map(|r| r.timeline.position());
    assert_eq!(position(&s), Some(4));
    // The trained model is now the session's model.
    assert!(s.model().is_some());

    let (exec, _) = run(&mut s, "back 3");
    assert!(
        texts(&exec).starts_with("step 4 → 1 (of 0..=4)"),
        "{}",
        texts(&exec)
    );
    let (exec, _) = run(&mut s, "step 2\nlog show 3");
    assert!(exec.error.is_none(), "{:?}", exec.error);
    assert_eq!(position(&s), Some(3));

    // Opening it again starts at the last step; the log replays exactly.
    let (exec, _) = run(&mut s, &format!("replay open \"{}\"", dir.display()));
    assert!(texts(&exec).ends_with("at step 4"), "{}", texts(&exec));
    let (exec, _) = run(&mut s, "replay verify");
    assert!(
        texts(&exec).starts_with("verified steps 1..=4"),
        "{}",
        texts(&exec)
    );
    let (exec, _) = run(&mut s, "show layers.0.self_attn.q_proj --step 2");
    let error = exec.error_message().unwrap_or_default();
    assert!(error.contains("no visualiser plugin"), "{error}");
    assert_eq!(position(&s), Some(2), "--step moved the timeline");
}

/// `load --packing t1` keeps the ternary layers at 1.6 bits per trit; every output is the same as
/// with I2, and `info` and `bench` say which packing runs.
#[test]
fn t1_packing_changes_bytes_not_outputs() {
    let mut s = session(false);
    let logits = "logits --ids 1,17,300,42,7 --top 5";
    let mut outputs = Vec::new();
    for packing in ["i2", "t1"] {
        let (exec, _) = run(&mut s, &format!("load default --packing {packing}"));
        assert!(exec.error.is_none(), "{:?}", exec.error_message());
        let (exec, _) = run(&mut s, "info");
        let info = format!("{:?}", exec.outputs);
        assert!(info.contains(&format!("({packing} packing)")), "{info}");
        let (exec, _) = run(&mut s, "bench --prompt 8 --tokens 4 --repeat 1");
        let Some(Output::Table(t)) = exec.outputs.first() else {
            panic!("{:?}", exec.outputs)
        };
        let row = t
            .rows
            .iter()
            .find(|r| r[0] == "packing")
            .expect("packing row");
        assert_eq!(row[1], packing);
        let (exec, _) = run(&mut s, logits);
        assert!(exec.error.is_none(), "{:?}", exec.error_message());
        let shown = format!("{:?}", exec.outputs);
        outputs.push((shown, s.model().unwrap().model.ternary_bytes()));
    }
    assert_eq!(outputs[0].0, outputs[1].0, "T1 gave other logits");
    assert!(
        outputs[1].1 < outputs[0].1,
        "T1 is not smaller: {outputs:?}"
    );
    let (exec, _) = run(&mut s, "load default --packing i3");
    assert_eq!(exec.error.map(|e| e.kind()), Some(ErrorKind::Parse));
}

#[test]
fn bench_reports_speeds_threads_and_memory() {
    let mut s = session(true);
    let (exec, events) = run(&mut s, "bench --prompt 16 --tokens 8 --repeat 3");
    assert!(exec.error.is_none(), "{:?}", exec.error_message());
    let Some(Output::Table(t)) = exec.outputs.first() else {
        panic!("{:?}", exec.outputs)
    };
    assert_eq!(t.columns, ["measure", "value", "min", "max", "unit"]);
    let row = |name: &str| {
        t.rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row {name}: {t:?}"))
            .clone()
    };
    for phase in ["prefill", "decode"] {
        let r = row(phase);
        let [median, min, max]: [f64; 3] =
            [1, 2, 3].map(|i| r[i].parse().unwrap_or_else(|_| panic!("{r:?}")));
        assert!(min > 0.0 && min <= median && median <= max, "{r:?}");
        assert!(max.is_finite(), "{r:?}");
        assert_eq!(r[4], "tokens/s");
    }
    assert_eq!(row("prompt tokens")[1], "16");
    assert_eq!(row("decoded tokens")[1], "8");
    assert_eq!(row("runs")[1], "3");
    let threads: usize = row("threads")[1].parse().expect("threads");
    assert!(threads >= 1);
    let weights: u64 = row("weights")[1].parse().expect("weights");
    let model = s.model().expect("model");
    assert_eq!(row("output head")[1], model.model.output_head().to_string());
    let expected = model.model.ternary_bytes() + model.model.float_bytes();
    assert_eq!(weights, expected as u64);
    let read: u64 = row("read per decoded token")[1].parse().expect("bytes");
    let expected = model.model.ternary_bytes() + model.model.head_bytes();
    assert_eq!(read, expected as u64);
    // The kernels' choice for single-token products: measured, still measuring, or off.
    let single = &row("single-token products")[1];
    assert!(
        single.contains("prefetch") || single == "still measuring",
        "{single}"
    );
    let peak: u64 = row("peak resident memory")[1].parse().expect("VmHWM");
    assert!(
        peak >= weights / 2,
        "peak {peak} for {weights} bytes of weights"
    );
    // Progress after each timed run.
    let done: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::Progress { label, done, .. } if label == "bench" => Some(*done),
            _ => None,
        })
        .collect();
    assert_eq!(done, [1, 2, 3]);
}

#[test]
fn bench_refuses_more_positions_than_the_context() {
    let mut s = session(true);
    let context = s
        .model()
        .expect("model")
        .model
        .config()
        .max_position_embeddings;
    let (exec, _) = run(&mut s, &format!("bench --prompt {context} --tokens 1"));
    assert_eq!(
        exec.error.as_ref().map(|e| e.kind()),
        Some(ErrorKind::Usage)
    );
    let message = exec.error_message().unwrap_or_default();
    assert!(message.contains("context"), "{message}");
}
