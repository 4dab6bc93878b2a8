//! The workbench driven through egui_kittest: clicking, typing and reading what is on screen
//! through the accessibility tree, the way a person (or a screen reader) would.
//!
//! One test runs a scripted stand-in for the session, so it can look at a job half-way (live
//! tokens, the progress bar, Cancel). The other runs the real session with the default model:
//! it opens a book, runs a cell with ▶, runs a line typed in the REPL, trains a tiny model and
//! moves through the run's timeline.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use tritlab_session::{
    Execution, ExecutionError, JobId, LiveEvent, SessionConfig, SessionError, WorkerEvent,
};
use tritlab_workbench::engine::Backend;
use tritlab_workbench::{WorkbenchApp, WorkbenchOptions};
use tritlab_workbook::{Output, Rgb, TraceToken, Trit};

type App = WorkbenchApp;

/// A harness around the whole window. The workbench's own text and icons must all draw with
/// egui's bundled fonts (a missing glyph fails the test); text from the engine and plugins (a
/// plugin's description may hold any symbol) is allowed to fall back to tofu with `lenient`.
fn harness(app: App, lenient: bool) -> Harness<'static, App> {
    let mut builder = Harness::builder().with_size(egui::vec2(1400.0, 900.0));
    if lenient {
        builder = builder.allow_missing_glyphs();
    }
    builder.build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// Runs frames until `done` holds, failing after `timeout`.
fn wait_for(
    harness: &mut Harness<'static, App>,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&Harness<'static, App>) -> bool,
) {
    let start = Instant::now();
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        if start.elapsed() > timeout {
            let app = harness.state();
            let last = app
                .document()
                .entries()
                .last()
                .map(|e| format!("{:?}", e.block));
            let running = app
                .engine()
                .running()
                .map(|r| (r.source.clone(), r.progress.clone()));
            panic!(
                "waited {timeout:?} for {what}\nnotices: {:?}\nrunning: {running:?}\nlast block: {}",
                app.notices(),
                last.unwrap_or_default().chars().take(3000).collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether some node's label contains `label`.
fn shows(harness: &Harness<'static, App>, label: &str) -> bool {
    harness.query_all_by_label_contains(label).next().is_some()
}

fn write_book(dir: &Path, cells: &[&str]) -> PathBuf {
    let mut text = String::from("<!-- tritlab-workbook v1 -->\n\n# A test book\n");
    for cell in cells {
        text.push_str(&format!("\n```tritlab\n{cell}\n```\n"));
    }
    let path = dir.join("book.md");
    std::fs::write(&path, text).unwrap();
    path
}

/// A session stand-in: jobs are recorded; the test pushes the events a worker would send.
#[derive(Clone, Default)]
struct Scripted {
    submitted: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<VecDeque<WorkerEvent>>>,
    cancelled: Arc<Mutex<bool>>,
}

impl Scripted {
    fn push(&self, event: WorkerEvent) {
        self.events.lock().unwrap().push_back(event);
    }
}

impl Backend for Scripted {
    fn submit(&mut self, source: &str) -> JobId {
        let mut submitted = self.submitted.lock().unwrap();
        submitted.push(source.to_owned());
        submitted.len() as JobId
    }

    fn cancel(&mut self) {
        *self.cancelled.lock().unwrap() = true;
    }

    fn poll(&mut self) -> Option<WorkerEvent> {
        self.events.lock().unwrap().pop_front()
    }
}

#[test]
fn live_tokens_progress_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let book = write_book(dir.path(), &["generate \"To be\" --max-tokens 3"]);
    let scripted = Scripted::default();
    scripted.push(WorkerEvent::Ready(Box::default()));
    let mut app = WorkbenchApp::with_backend(Box::new(scripted.clone()), None, Instant::now());
    app.open(book);
    let mut harness = harness(app, false);
    wait_for(&mut harness, "the book", Duration::from_secs(10), |h| {
        shows(h, "A test book")
    });

    harness.get_by_label("▶ Run").click();
    wait_for(
        &mut harness,
        "the job to be submitted",
        Duration::from_secs(5),
        |_| scripted.submitted.lock().unwrap().len() == 1,
    );
    assert_eq!(
        scripted.submitted.lock().unwrap()[0],
        "generate \"To be\" --max-tokens 3"
    );

    // Half-way: two tokens streamed, a progress report.
    scripted.push(WorkerEvent::Started(1));
    for (text, trit) in [("To", Trit::Negative), (" be", Trit::Positive)] {
        scripted.push(WorkerEvent::Live(
            1,
            LiveEvent::Token(TraceToken {
                text: text.into(),
                rgb: Some(Rgb([0xd6, 0x27, 0x28])),
                trit: Some(trit),
                note: None,
            }),
        ));
    }
    scripted.push(WorkerEvent::Live(
        1,
        LiveEvent::Progress {
            label: "generating".into(),
            done: 2,
            total: Some(3),
        },
    ));
    wait_for(
        &mut harness,
        "the live tokens",
        Duration::from_secs(5),
        |h| shows(h, "To be"),
    );
    assert!(
        shows(&harness, "generating 2/3"),
        "the progress bar shows the job's label"
    );

    // Cancel in the status bar reaches the session.
    harness.get_by_label("Cancel").click();
    wait_for(&mut harness, "the cancel", Duration::from_secs(5), |_| {
        *scripted.cancelled.lock().unwrap()
    });
    scripted.push(WorkerEvent::Finished(
        1,
        Execution {
            outputs: vec![Output::Error("cancelled".into())],
            error: Some(ExecutionError::new(1, SessionError::Cancelled)),
            cancelled: true,
            ..Execution::default()
        },
    ));
    wait_for(&mut harness, "the error", Duration::from_secs(5), |h| {
        shows(h, "cancelled")
    });
    assert!(!harness.state().is_busy());
    assert!(
        harness.state().ui_stats().summary().is_some(),
        "frame times are recorded"
    );

    // Idle, the workbench asks for no frames (only the autosave's, half a minute away).
    harness.step();
    harness.step();
    let repaint = harness.output().viewport_output[&egui::ViewportId::ROOT].repaint_delay;
    assert!(
        repaint >= Duration::from_secs(5),
        "an idle workbench repaints after {repaint:?}"
    );
}

const TRAINING_TEXT: &str = "To be, or not to be, that is the question: \
    Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous fortune, \
    or to take arms against a sea of troubles, and by opposing end them. To die: to sleep; \
    no more; and by a sleep to say we end the heart-ache and the thousand natural shocks \
    that flesh is heir to.\n";

#[test]
fn real_session_runs_cells_and_moves_the_timeline() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let book = write_book(dir.path(), &["info"]);
    let options = WorkbenchOptions {
        book: Some(book),
        session: SessionConfig::standard(),
        run_on_open: false,
        screenshot_after: None,
        rust: None,
        persist: false,
    };
    let mut harness = harness(WorkbenchApp::new(options, None, Instant::now()), true);
    // Once the session is up the inspector fills in and the layout settles.
    wait_for(
        &mut harness,
        "the book and the session",
        Duration::from_secs(60),
        |h| shows(h, "A test book") && h.state().engine().is_ready(),
    );
    harness.step();

    // ▶ on the `info` cell: its table names the architecture.
    harness.get_by_label("▶ Run").click();
    wait_for(
        &mut harness,
        "the info table",
        Duration::from_secs(60),
        |h| shows(h, "architecture"),
    );

    // A line typed in the REPL becomes a cell and runs.
    harness.state_mut().repl_mut().text = "layers".into();
    harness.step();
    harness
        .get_by(|node| {
            node.role() == egui::Role::TextInput && node.value().as_deref() == Some("layers")
        })
        .focus();
    harness.step();
    harness.key_press(egui::Key::Enter);
    wait_for(
        &mut harness,
        "the layers table",
        Duration::from_secs(30),
        |h| shows(h, "q_proj"),
    );
    assert_eq!(harness.state().document().cell_keys().len(), 2);

    // A plugin switched off in the inspector is off in the session.
    let enabled = harness
        .state()
        .engine()
        .snapshot()
        .plugins
        .iter()
        .find(|p| p.enabled);
    match enabled.map(|p| p.name.clone()) {
        Some(name) => {
            // The plugins are below the tensor table, out of view: act through accessibility.
            harness
                .get_by_role_and_label(egui::Role::CheckBox, &name)
                .click_accesskit();
            wait_for(
                &mut harness,
                "the plugin to be disabled",
                Duration::from_secs(30),
                |h| {
                    let plugins = &h.state().engine().snapshot().plugins;
                    plugins.iter().any(|p| p.name == name && !p.enabled)
                },
            );
        }
        None => eprintln!(
            "no plugins are loaded (scripts/build-plugins.sh builds them): not switching one off"
        ),
    }

    // Train a few steps on a tiny text: the run opens in the timeline.
    let text = dir.path().join("corpus.txt");
    std::fs::write(&text, TRAINING_TEXT.repeat(20)).unwrap();
    let run = dir.path().join("run");
    let line = format!(
        "train --data {} --steps 6 --seq 16 --batch 2 --checkpoint-every 3 --out {}",
        text.display(),
        run.display()
    );
    harness
        .state_mut()
        .apply(tritlab_workbench::Action::RunLine(line));
    wait_for(
        &mut harness,
        "the training run",
        Duration::from_secs(120),
        |h| h.state().engine().snapshot().run.is_some() && !h.state().is_busy(),
    );
    let (first, last) = {
        let run = harness.state().engine().snapshot().run.clone().unwrap();
        (run.first, run.last)
    };
    assert!(
        last >= first + 2,
        "a run of several steps: {first}..={last}"
    );
    let label = |step: u64| format!("step {step} of {first}–{last}");

    // ⏭ goes to the last step, ⏴ one step back, ⏮ to the first; the label follows each move.
    harness.get_by_label("⏭").click();
    wait_for(
        &mut harness,
        "the last step",
        Duration::from_secs(30),
        |h| shows(h, &label(last)),
    );
    harness.get_by_label("⏴").click();
    wait_for(
        &mut harness,
        "one step back",
        Duration::from_secs(30),
        |h| shows(h, &label(last - 1)),
    );
    harness.get_by_label("⏮").click();
    wait_for(
        &mut harness,
        "the first step",
        Duration::from_secs(30),
        |h| shows(h, &label(first)),
    );

    eprintln!(
        "the real-session test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_repl_completes_and_runs_a_line_as_a_new_cell() {
    let scripted = Scripted::default();
    let app = WorkbenchApp::with_backend(Box::new(scripted.clone()), None, Instant::now());
    let mut harness = harness(app, false);
    harness.step();

    // The REPL line has the keyboard focus from the start; Tab completes the command name.
    harness.step();
    harness
        .get_by(|node| node.is_focused() && node.role() == egui::Role::TextInput)
        .type_text("gener");
    harness.step();
    assert_eq!(harness.state_mut().repl_mut().text, "gener");
    harness.key_press(egui::Key::Tab);
    harness.step();
    assert_eq!(harness.state_mut().repl_mut().text, "generate ");

    // Enter runs the line: it becomes the book's last cell and goes to the session.
    harness.state_mut().repl_mut().text = "generate \"To be\" --max-tokens 4".into();
    harness.step();
    harness.key_press(egui::Key::Enter);
    wait_for(
        &mut harness,
        "the line to run",
        Duration::from_secs(5),
        |_| scripted.submitted.lock().unwrap().len() == 1,
    );
    let doc = harness.state().document();
    let last = doc.cell(*doc.cell_keys().last().unwrap()).unwrap();
    assert_eq!(last.source, "generate \"To be\" --max-tokens 4");
    assert_eq!(
        harness.state_mut().repl_mut().text,
        "",
        "the line is emptied"
    );
    assert_eq!(harness.state_mut().repl_mut().history().len(), 1);
}

#[test]
fn a_newer_autosave_is_offered_and_saving_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let book = write_book(dir.path(), &["info"]);
    let autosave = tritlab_workbench::files::autosave_path(&book);
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        &autosave,
        "<!-- tritlab-workbook v1 -->\n\n# Recovered notes\n\n```tritlab\nlayers\n```\n",
    )
    .unwrap();

    let scripted = Scripted::default();
    let mut app = WorkbenchApp::with_backend(Box::new(scripted), None, Instant::now());
    app.open(book.clone());
    let mut harness = harness(app, false);
    wait_for(&mut harness, "the offer", Duration::from_secs(10), |h| {
        shows(h, "Recover unsaved changes?")
    });
    harness.get_by_label("Recover the autosave").click();
    wait_for(
        &mut harness,
        "the recovered book",
        Duration::from_secs(10),
        |h| shows(h, "Recovered notes"),
    );
    assert!(
        harness.state().document().is_dirty(),
        "recovered changes are not saved yet"
    );

    harness.state_mut().apply(tritlab_workbench::Action::Save);
    wait_for(&mut harness, "the save", Duration::from_secs(10), |h| {
        !h.state().document().is_dirty()
    });
    let saved = std::fs::read_to_string(&book).unwrap();
    assert!(
        saved.contains("# Recovered notes") && saved.contains("layers"),
        "{saved}"
    );
    assert!(!autosave.exists(), "saving the book removes its autosave");
}

/// Panics on a snippet that mentions `panic`, echoes anything else.
struct Panicky;

impl tritlab_session::RustEvaluator for Panicky {
    fn eval(
        &mut self,
        code: &str,
        _cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<String, String> {
        if code.contains("panic") {
            panic!("evaluator exploded");
        }
        Ok(format!("ok: {code}"))
    }
}

#[test]
fn a_panicking_command_shows_an_error_and_the_workbench_carries_on() {
    let options = WorkbenchOptions {
        book: None,
        session: SessionConfig::default(),
        run_on_open: false,
        screenshot_after: None,
        rust: Some(Box::new(Panicky)),
        persist: false,
    };
    let mut harness = harness(WorkbenchApp::new(options, None, Instant::now()), true);
    wait_for(&mut harness, "the session", Duration::from_secs(60), |h| {
        h.state().engine().is_ready()
    });

    // The REPL line has the keyboard focus; Enter runs it as a new cell.
    fn run_line(harness: &mut Harness<'static, App>, line: &str) {
        harness.state_mut().repl_mut().text = line.into();
        harness.step();
        harness.key_press(egui::Key::Enter);
    }
    run_line(&mut harness, ":rust panic");
    wait_for(
        &mut harness,
        "the internal error",
        Duration::from_secs(30),
        |h| shows(h, "internal error in `:rust`: evaluator exploded") && !h.state().is_busy(),
    );

    // The session thread lives on: the next line runs and shows its output.
    run_line(&mut harness, ":rust 1 + 1");
    wait_for(
        &mut harness,
        "the next command's output",
        Duration::from_secs(30),
        |h| shows(h, "ok: 1 + 1") && !h.state().is_busy(),
    );
}
