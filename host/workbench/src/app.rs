//! The workbench application: the state of one window and the one place where it changes.
//!
//! Each frame, [`WorkbenchApp::show`] reads what the session worker and the file thread have
//! reported, draws the panels (which only collect [`Action`]s), then applies the actions. Long
//! work never runs here: cells go to the session worker, files to the file thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui::{
    self, Align, CentralPanel, Context, Key, KeyboardShortcut, Layout, Modifiers, Panel, RichText,
    Ui, ViewportCommand,
};
use serde::{Deserialize, Serialize};
use tritlab_session::SessionWorker;
use tritlab_workbook::CellKind;

use crate::document::{cell_script, BlockKey, Document};
use crate::engine::{Backend, EngineLink, Update};
use crate::files::{self, FileEvent, FileRequest, FileWorker, AUTOSAVE_EVERY};
use crate::repl::{self, Repl};
use crate::screenshot::{Outcome, Screenshot};
use crate::stats::{resident_memory, FrameStats};
use crate::textures::Textures;
use crate::view::dialogs::{self, Dialog};
use crate::view::error_colour;
use crate::view::inspector::{self, InspectorState};
use crate::view::notebook::{self, NotebookState};
use crate::view::timeline::{self, TimelineState};
use crate::WorkbenchOptions;

pub use crate::view::dialogs::{PathPurpose, Then};

/// Something a person asked for. Views return these; [`WorkbenchApp::apply`] carries them out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run one cell (its outputs are replaced).
    RunCell(BlockKey),
    /// Run every cell in order, stopping at the first failure.
    RunAll,
    /// Cancel the running job and everything queued.
    Cancel,
    /// Append a command cell holding this line and run it (the REPL line, inspector links).
    RunLine(String),
    EditSource(BlockKey, String),
    EditProse(BlockKey, String),
    InsertCell {
        after: Option<BlockKey>,
        kind: CellKind,
    },
    InsertProse {
        after: Option<BlockKey>,
    },
    Remove(BlockKey),
    /// Move a block up (−1) or down (+1).
    Shift(BlockKey, isize),
    /// Clear one cell's outputs, or every cell's.
    ClearOutputs(Option<BlockKey>),
    /// Move the open run's timeline to a step.
    Seek(u64),
    /// A `plugin …` command (enable, disable, set).
    PluginCommand(tritlab_session::lang::Plugin),
    New,
    Open(PathBuf),
    Save,
    SaveAs(PathBuf),
    Export(PathBuf),
    /// Replace the open book by its autosave.
    Recover(PathBuf),
    DiscardAutosave(PathBuf),
    /// Ask for a path in a dialog.
    AskPath(PathPurpose),
    /// Save, then carry on with what unsaved changes held up.
    SaveThen(Then),
    /// Carry on without saving.
    Proceed(Then),
    /// Close the window (asking about unsaved changes).
    Close,
}

/// A message in the status bar.
#[derive(Debug, Clone)]
struct Notice {
    text: String,
    error: bool,
    shown: Instant,
}

impl Notice {
    fn lifetime(&self) -> Duration {
        if self.error {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(6)
        }
    }
}

/// What is kept between runs in eframe's storage.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Persisted {
    recent: Vec<PathBuf>,
    history: Vec<String>,
    hide_inspector: bool,
    hide_timeline: bool,
}

const STORAGE_KEY: &str = "tritlab-workbench";

/// The workbench window's state.
pub struct WorkbenchApp {
    doc: Document,
    engine: EngineLink,
    files: FileWorker,
    repl: Repl,
    notebook: NotebookState,
    inspector: InspectorState,
    timeline: TimelineState,
    textures: Textures,
    dialog: Option<Dialog>,
    notices: Vec<Notice>,
    recent: Vec<PathBuf>,
    show_inspector: bool,
    show_timeline: bool,
    /// The book being opened, while the file thread reads it.
    opening: Option<PathBuf>,
    /// Run every cell once the book being opened arrives.
    run_when_open: bool,
    /// What to do after the save in flight succeeds.
    after_save: Option<Then>,
    last_autosave: Instant,
    /// The revision the autosave holds (or is writing).
    autosaved_revision: u64,
    /// A close was confirmed (or needs no confirmation): let it happen.
    closing: bool,
    launched: Instant,
    first_frame: Option<Duration>,
    frame_stats: FrameStats,
    ui_stats: FrameStats,
    screenshot: Option<Screenshot>,
    /// The window title last sent (sending one asks for a repaint, so only changes are sent).
    title: String,
    /// Keep recent files, history and layout in eframe's storage.
    persist: bool,
}

impl WorkbenchApp {
    /// A workbench running commands in a new session worker.
    pub fn new(
        options: WorkbenchOptions,
        storage: Option<&dyn eframe::Storage>,
        launched: Instant,
    ) -> Self {
        let WorkbenchOptions {
            book,
            session,
            run_on_open,
            screenshot_after,
            rust,
            persist: _,
        } = options;
        let worker = SessionWorker::spawn(session, rust);
        let mut app = Self::with_backend(Box::new(worker), storage, launched);
        if let Some((after, path)) = screenshot_after {
            app.screenshot = Some(Screenshot::new(after, path, Arc::new(Mutex::new(None))));
        }
        app.start(book, run_on_open);
        app
    }

    /// Lets the session worker wake the window when it has news, instead of the window redrawing
    /// on a timer while a command runs.
    pub fn wake_with(&mut self, waker: tritlab_session::Waker) {
        self.engine.set_waker(waker);
    }

    /// A workbench running commands through `backend` (a session worker, or a stand-in in
    /// tests). It starts with an empty book; [`WorkbenchApp::open`] opens one.
    pub fn with_backend(
        backend: Box<dyn Backend>,
        storage: Option<&dyn eframe::Storage>,
        launched: Instant,
    ) -> Self {
        let persisted: Persisted = storage
            .and_then(|s| eframe::get_value(s, STORAGE_KEY))
            .unwrap_or_default();
        WorkbenchApp {
            doc: Document::new(),
            engine: EngineLink::new(backend),
            files: FileWorker::spawn(),
            repl: Repl::new(persisted.history),
            notebook: NotebookState::default(),
            inspector: InspectorState::default(),
            timeline: TimelineState::default(),
            textures: Textures::default(),
            dialog: None,
            notices: Vec::new(),
            recent: persisted.recent,
            show_inspector: !persisted.hide_inspector,
            show_timeline: !persisted.hide_timeline,
            opening: None,
            run_when_open: false,
            after_save: None,
            last_autosave: Instant::now(),
            autosaved_revision: 0,
            closing: false,
            launched,
            first_frame: None,
            frame_stats: FrameStats::default(),
            ui_stats: FrameStats::default(),
            screenshot: None,
            title: String::new(),
            persist: storage.is_some(),
        }
    }

    fn start(&mut self, book: Option<PathBuf>, run_on_open: bool) {
        match book {
            Some(path) => {
                self.open(path);
                self.run_when_open = run_on_open;
            }
            None if run_on_open => self.apply(Action::RunAll),
            None => {}
        }
    }

    /// Starts reading the workbook at `path`; it replaces the open one when it arrives.
    pub fn open(&mut self, path: PathBuf) {
        self.opening = Some(path.clone());
        self.files.send(FileRequest::Open(path));
    }

    /// Shares where the screenshot's result will be written (for [`crate::run_workbench`]).
    pub(crate) fn screenshot_outcome(&self) -> Option<Outcome> {
        self.screenshot.as_ref().map(Screenshot::outcome)
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn engine(&self) -> &EngineLink {
        &self.engine
    }

    pub fn repl_mut(&mut self) -> &mut Repl {
        &mut self.repl
    }

    /// Whether a book is being read.
    pub fn is_opening(&self) -> bool {
        self.opening.is_some()
    }

    /// Whether work is in flight: a job running or queued, a file being read or written.
    pub fn is_busy(&self) -> bool {
        self.engine.is_busy() || self.files.is_busy() || self.opening.is_some()
    }

    /// Whole-frame CPU time (UI, tessellation and painting) as eframe measures it.
    pub fn frame_stats(&self) -> &FrameStats {
        &self.frame_stats
    }

    /// Time spent in the workbench's own UI code per frame.
    pub fn ui_stats(&self) -> &FrameStats {
        &self.ui_stats
    }

    /// How long the first frame took to be built after launch.
    pub fn first_frame(&self) -> Option<Duration> {
        self.first_frame
    }

    /// Status-bar messages, newest last.
    pub fn notices(&self) -> Vec<(String, bool)> {
        self.notices
            .iter()
            .map(|n| (n.text.clone(), n.error))
            .collect()
    }

    /// Draws one frame into `ui` (the whole window) and applies what happened.
    pub fn show(&mut self, ui: &mut Ui) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.poll(&ctx);

        let mut actions = Vec::new();
        self.shortcuts(&ctx, &mut actions);
        self.menu_bar(ui, &mut actions);
        self.status_bar(ui, &mut actions);
        self.repl_panel(ui, &mut actions);
        if self.show_timeline {
            if let Some(run) = &self.engine.snapshot().run {
                Panel::bottom("timeline")
                    .resizable(true)
                    .default_size(340.0)
                    .min_size(120.0)
                    .max_size((ui.available_height() * 0.75).max(120.0))
                    .show(ui, |ui| {
                        timeline::show(
                            ui,
                            run,
                            self.engine.snapshot_serial(),
                            &mut self.timeline,
                            &mut self.textures,
                            &mut actions,
                        );
                    });
            }
        }
        if self.show_inspector {
            Panel::right("inspector")
                .resizable(true)
                .default_size(400.0)
                .min_size(220.0)
                .show(ui, |ui| {
                    inspector::show(
                        ui,
                        self.engine.snapshot(),
                        self.engine.snapshot_serial(),
                        self.engine.is_ready(),
                        &mut self.inspector,
                        &mut self.textures,
                        &mut actions,
                    );
                });
        }
        CentralPanel::default().show(ui, |ui| {
            notebook::show(
                ui,
                &self.doc,
                &self.engine,
                &mut self.notebook,
                &mut self.textures,
                &mut actions,
            );
        });
        dialogs::show(ui, &mut self.dialog, &mut actions);

        for action in actions {
            self.apply(action);
        }
        self.handle_close(&ctx);
        self.schedule(&ctx);
        self.textures.end_frame();

        let built = started.elapsed();
        self.ui_stats.record(built);
        if self.first_frame.is_none() {
            let first = self.launched.elapsed();
            self.first_frame = Some(first);
            eprintln!(
                "tritlab-workbench: first frame {:.0} ms after launch",
                first.as_secs_f64() * 1e3
            );
        }
    }

    /// Reads the session worker's and the file thread's reports.
    fn poll(&mut self, ctx: &Context) {
        for update in self.engine.poll() {
            self.update(ctx, update);
        }
        self.timeline.settle(
            self.engine.snapshot().run.as_deref(),
            self.engine.timeline_busy(),
        );
        if let Some(run) = &self.engine.snapshot().run {
            if let Some(step) = self
                .timeline
                .next_play_step(run, self.engine.timeline_busy())
            {
                self.engine.move_timeline(&seek(step));
            }
        }
        while let Some(event) = self.files.try_recv() {
            self.file_event(event);
        }
        self.autosave();
        let now = Instant::now();
        self.notices
            .retain(|n| now.duration_since(n.shown) < n.lifetime());
    }

    fn update(&mut self, ctx: &Context, update: Update) {
        match update {
            Update::Ready => {
                if let Some(model) = &self.engine.snapshot().model {
                    let text = format!("Session ready: {} loaded.", model.name);
                    self.notify(text, false);
                }
            }
            Update::CellStarted(key) => {
                self.doc.set_outputs(key, Vec::new());
            }
            Update::CellFinished { key, outputs, .. } => {
                self.doc.set_outputs(key, outputs);
            }
            Update::CellsDropped(keys) => {
                if !keys.is_empty() {
                    let text = format!("{} queued cell(s) not run.", keys.len());
                    self.notify(text, false);
                }
            }
            Update::ControlFailed { source, message } => {
                self.notify(format!("`{source}`: {message}"), true);
            }
            Update::Clear => self.doc.clear_outputs(),
            Update::Quit => ctx.send_viewport_cmd(ViewportCommand::Close),
            Update::Snapshot => {}
        }
    }

    fn file_event(&mut self, event: FileEvent) {
        match event {
            FileEvent::Opened {
                path,
                book,
                newer_autosave,
            } => {
                if self.opening.as_deref() != Some(path.as_path()) {
                    return;
                }
                self.opening = None;
                self.replace_document(Document::from_workbook(book, Some(path.clone())));
                files::remember_recent(&mut self.recent, &path);
                if let Some(autosave) = newer_autosave {
                    self.dialog = Some(Dialog::Recover {
                        book: path,
                        autosave,
                    });
                } else if std::mem::take(&mut self.run_when_open) {
                    self.apply(Action::RunAll);
                }
            }
            FileEvent::Recovered { path, book } => {
                let mut doc = Document::from_workbook(book, Some(path.clone()));
                doc.mark_dirty();
                self.replace_document(doc);
                self.notify(
                    format!("Recovered the autosave of {}.", path.display()),
                    false,
                );
            }
            FileEvent::Saved { path, revision } => {
                let moved = self.doc.path().and_then(std::path::Path::parent) != path.parent();
                self.doc.mark_saved(path.clone(), revision);
                if moved {
                    self.enter_book_folder();
                }
                files::remember_recent(&mut self.recent, &path);
                self.notify(format!("Saved {}.", path.display()), false);
                if let Some(then) = self.after_save.take() {
                    self.proceed(then);
                }
            }
            FileEvent::Exported { path } => {
                self.notify(format!("Exported {}.", path.display()), false);
            }
            FileEvent::Autosaved { .. } | FileEvent::AutosaveDiscarded { .. } => {}
            FileEvent::Failed {
                what,
                path,
                message,
            } => {
                if what == "open" && self.opening.as_deref() == Some(path.as_path()) {
                    self.opening = None;
                    self.run_when_open = false;
                }
                if what == "save" {
                    self.after_save = None;
                }
                self.notify(
                    format!("Could not {what} {}: {message}", path.display()),
                    true,
                );
            }
        }
    }

    fn replace_document(&mut self, doc: Document) {
        // Jobs of the old book have nowhere to put their outputs.
        self.engine.cancel_all();
        self.doc = doc;
        self.notebook = NotebookState::default();
        self.autosaved_revision = self.doc.revision();
        self.last_autosave = Instant::now();
        self.enter_book_folder();
    }

    /// Makes the open book's folder the working directory, so that relative paths in its cells
    /// (data, run directories, models) mean what they mean to `tritlab run`: relative to the
    /// book. Typed paths in the file dialogs follow along.
    fn enter_book_folder(&mut self) {
        let Some(folder) = self.doc.path().and_then(std::path::Path::parent) else {
            return;
        };
        if folder.as_os_str().is_empty() {
            return;
        }
        if let Err(error) = std::env::set_current_dir(folder) {
            let text = format!(
                "Relative paths in cells stay relative to {}: cannot change to {}: {error}",
                std::env::current_dir().unwrap_or_default().display(),
                folder.display()
            );
            self.notify(text, true);
        }
    }

    /// Writes the autosave when the book has changed and the interval has passed.
    fn autosave(&mut self) {
        let Some(path) = self.doc.path() else {
            return;
        };
        if !self.doc.is_dirty()
            || self.doc.revision() == self.autosaved_revision
            || self.last_autosave.elapsed() < AUTOSAVE_EVERY
        {
            return;
        }
        self.files.send(FileRequest::Autosave {
            book: self.doc.to_workbook(),
            path: path.to_path_buf(),
            revision: self.doc.revision(),
        });
        self.autosaved_revision = self.doc.revision();
        self.last_autosave = Instant::now();
    }

    fn notify(&mut self, text: String, error: bool) {
        if error {
            eprintln!("tritlab-workbench: {text}");
        }
        self.notices.push(Notice {
            text,
            error,
            shown: Instant::now(),
        });
        if self.notices.len() > 8 {
            self.notices.remove(0);
        }
    }

    /// Carries out one action.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::RunCell(key) => {
                if let Some(cell) = self.doc.cell(key) {
                    let script = cell_script(cell);
                    self.engine.run_cell(key, script);
                }
            }
            Action::RunAll => {
                let cells: Vec<(BlockKey, String)> = self
                    .doc
                    .cell_keys()
                    .into_iter()
                    .filter_map(|key| Some((key, cell_script(self.doc.cell(key)?))))
                    .collect();
                self.engine.run_cells(cells);
            }
            Action::Cancel => {
                if let Some(Update::CellsDropped(keys)) = self.engine.cancel_all() {
                    self.notify(
                        format!("Cancelled; {} queued cell(s) dropped.", keys.len()),
                        false,
                    );
                }
                self.timeline.playing = false;
            }
            Action::RunLine(line) => {
                let last = self.doc.entries().last().map(|e| e.key);
                let key = self.doc.insert_cell(last, CellKind::Command, &line);
                self.notebook.scroll_to = Some(key);
                self.apply(Action::RunCell(key));
            }
            Action::EditSource(key, source) => {
                self.doc.set_source(key, source);
            }
            Action::EditProse(key, text) => {
                self.doc.set_prose(key, text);
            }
            Action::InsertCell { after, kind } => {
                let key = self.doc.insert_cell(after, kind, "");
                self.notebook.focus = Some(key);
                self.notebook.scroll_to = Some(key);
            }
            Action::InsertProse { after } => {
                let key = self.doc.insert_prose(after, "");
                self.notebook.editing_prose.insert(key);
                self.notebook.focus = Some(key);
                self.notebook.scroll_to = Some(key);
            }
            Action::Remove(key) => {
                self.engine.forget_cell(key);
                self.doc.remove(key);
                self.notebook.editing_prose.remove(&key);
            }
            Action::Shift(key, by) => {
                self.doc.shift(key, by);
                self.notebook.scroll_to = Some(key);
            }
            Action::ClearOutputs(Some(key)) => {
                self.doc.set_outputs(key, Vec::new());
            }
            Action::ClearOutputs(None) => self.doc.clear_outputs(),
            Action::Seek(step) => self.engine.move_timeline(&seek(step)),
            Action::PluginCommand(command) => self.engine.plugin_command(command),
            Action::New => self.unless_unsaved(Then::New),
            Action::Open(path) => self.unless_unsaved(Then::Open(path)),
            Action::Save => match self.doc.path() {
                Some(path) => {
                    let path = path.to_path_buf();
                    self.save(path);
                }
                None => self.apply(Action::AskPath(PathPurpose::SaveAs)),
            },
            Action::SaveAs(path) => self.save(path),
            Action::Export(path) => self.files.send(FileRequest::Export {
                book: self.doc.to_workbook(),
                path,
            }),
            Action::Recover(book) => self.files.send(FileRequest::Recover { book }),
            Action::DiscardAutosave(path) => {
                self.files.send(FileRequest::DiscardAutosave { path });
                if std::mem::take(&mut self.run_when_open) {
                    self.apply(Action::RunAll);
                }
            }
            Action::AskPath(purpose) => {
                let initial = match purpose {
                    PathPurpose::Open => String::new(),
                    PathPurpose::SaveAs => self
                        .doc
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "untitled.md".into()),
                    PathPurpose::Export => self
                        .doc
                        .path()
                        .map(|p| p.with_extension("html").display().to_string())
                        .unwrap_or_else(|| "workbook.html".into()),
                };
                self.dialog = Some(Dialog::path(purpose, initial));
            }
            Action::SaveThen(then) => {
                self.after_save = Some(then);
                self.apply(Action::Save);
            }
            Action::Proceed(then) => self.proceed(then),
            Action::Close => self.unless_unsaved(Then::Close),
        }
    }

    fn save(&mut self, path: PathBuf) {
        self.files.send(FileRequest::Save {
            book: self.doc.to_workbook(),
            path,
            revision: self.doc.revision(),
        });
    }

    /// Goes on with `then`, first asking what to do with unsaved changes if there are any.
    fn unless_unsaved(&mut self, then: Then) {
        if self.doc.is_dirty() && self.screenshot.is_none() {
            self.dialog = Some(Dialog::Unsaved { then });
        } else {
            self.proceed(then);
        }
    }

    fn proceed(&mut self, then: Then) {
        match then {
            Then::Close => {
                self.closing = true;
            }
            Then::Open(path) => self.open(path),
            Then::New => self.replace_document(Document::new()),
        }
    }

    /// Lets a close through once unsaved changes are dealt with.
    fn handle_close(&mut self, ctx: &Context) {
        if self.closing {
            ctx.send_viewport_cmd(ViewportCommand::Close);
            return;
        }
        if ctx.input(|i| i.viewport().close_requested()) {
            if self.doc.is_dirty() && self.screenshot.is_none() {
                ctx.send_viewport_cmd(ViewportCommand::CancelClose);
                if self.dialog.is_none() {
                    self.dialog = Some(Dialog::Unsaved { then: Then::Close });
                }
            } else {
                self.closing = true;
            }
        }
    }

    /// Asks for the next frame when something is in flight; an idle workbench draws nothing.
    fn schedule(&mut self, ctx: &Context) {
        if let Some(screenshot) = &mut self.screenshot {
            let idle = !self.engine.is_busy() && self.opening.is_none() && self.engine.is_ready();
            if screenshot.tick(ctx, self.launched.elapsed(), idle) {
                self.closing = true;
                ctx.send_viewport_cmd(ViewportCommand::Close);
            }
        }
        if self.engine.needs_polling() || self.files.is_busy() || self.opening.is_some() {
            ctx.request_repaint_after(Duration::from_millis(33));
        }
        if self.timeline.playing {
            ctx.request_repaint_after(timeline::PLAY_INTERVAL);
        }
        if let Some(first) = self.notices.first() {
            ctx.request_repaint_after(first.lifetime().saturating_sub(first.shown.elapsed()));
        }
        let autosave_pending = self.doc.is_dirty()
            && self.doc.path().is_some()
            && self.doc.revision() != self.autosaved_revision;
        if autosave_pending {
            let due = AUTOSAVE_EVERY.saturating_sub(self.last_autosave.elapsed());
            ctx.request_repaint_after(due.max(Duration::from_millis(100)));
        }
    }

    fn shortcuts(&mut self, ctx: &Context, actions: &mut Vec<Action>) {
        let shortcut = |modifiers, key| KeyboardShortcut::new(modifiers, key);
        let save_as = shortcut(Modifiers::COMMAND | Modifiers::SHIFT, Key::S);
        let save = shortcut(Modifiers::COMMAND, Key::S);
        let open = shortcut(Modifiers::COMMAND, Key::O);
        ctx.input_mut(|input| {
            if input.consume_shortcut(&save_as) {
                actions.push(Action::AskPath(PathPurpose::SaveAs));
            }
            if input.consume_shortcut(&save) {
                actions.push(Action::Save);
            }
            if input.consume_shortcut(&open) {
                actions.push(Action::AskPath(PathPurpose::Open));
            }
        });
    }

    fn menu_bar(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| {
                ui.menu_button("File", |ui| {
                    if ui.button("New").clicked() {
                        actions.push(Action::New);
                    }
                    if ui.button("Open…").clicked() {
                        actions.push(Action::AskPath(PathPurpose::Open));
                    }
                    ui.menu_button("Open recent", |ui| {
                        if self.recent.is_empty() {
                            ui.weak("nothing yet");
                        }
                        for path in &self.recent {
                            if ui.button(path.display().to_string()).clicked() {
                                actions.push(Action::Open(path.clone()));
                            }
                        }
                    });
                    ui.separator();
                    if ui.button("Save").clicked() {
                        actions.push(Action::Save);
                    }
                    if ui.button("Save as…").clicked() {
                        actions.push(Action::AskPath(PathPurpose::SaveAs));
                    }
                    if ui.button("Export…").clicked() {
                        actions.push(Action::AskPath(PathPurpose::Export));
                    }
                    ui.separator();
                    if ui.button("Quit").clicked() {
                        actions.push(Action::Close);
                    }
                });
                ui.menu_button("Run", |ui| {
                    if ui.button("Run all cells").clicked() {
                        actions.push(Action::RunAll);
                    }
                    let busy = self.engine.is_busy();
                    if ui.add_enabled(busy, egui::Button::new("Cancel")).clicked() {
                        actions.push(Action::Cancel);
                    }
                    ui.separator();
                    if ui.button("Clear all outputs").clicked() {
                        actions.push(Action::ClearOutputs(None));
                    }
                });
                ui.menu_button("View", |ui| {
                    ui.checkbox(&mut self.show_inspector, "Inspector");
                    ui.checkbox(&mut self.show_timeline, "Timeline");
                    ui.separator();
                    egui::global_theme_preference_buttons(ui);
                });
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    let dirty = if self.doc.is_dirty() { " •" } else { "" };
                    let title = RichText::new(format!("{}{dirty}", self.doc.title())).strong();
                    let label = ui.label(title);
                    if let Some(path) = self.doc.path() {
                        label.on_hover_text(path.display().to_string());
                    }
                });
            });
        });
        let title = format!(
            "{}{} — {}",
            self.doc.title(),
            if self.doc.is_dirty() { " •" } else { "" },
            crate::APP_NAME
        );
        if title != self.title {
            self.title = title.clone();
            ui.ctx().send_viewport_cmd(ViewportCommand::Title(title));
        }
    }

    fn status_bar(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if !self.engine.is_ready() {
                    ui.spinner();
                    ui.label("starting the session…");
                }
                if let Some(running) = self.engine.running() {
                    if ui
                        .button("Cancel")
                        .on_hover_text("Stop the running job and drop the queue")
                        .clicked()
                    {
                        actions.push(Action::Cancel);
                    }
                    let label = running
                        .progress
                        .as_ref()
                        .map(|p| match p.total {
                            Some(total) => format!("{} {}/{}", p.label, p.done, total),
                            None => format!("{} {}", p.label, p.done),
                        })
                        .unwrap_or_else(|| first_line(&running.source));
                    let fraction = running.progress.as_ref().and_then(|p| p.fraction());
                    let text = format!("{label} · {:.1} s", running.elapsed().as_secs_f32());
                    let bar = egui::ProgressBar::new(fraction.unwrap_or(0.0))
                        .desired_width(260.0)
                        .text(text)
                        .animate(fraction.is_none());
                    ui.add(bar);
                    if running.cancelling {
                        ui.label("cancelling…");
                    }
                    let queued = self.engine.queued();
                    if queued > 0 {
                        ui.label(format!("+{queued} queued"));
                    }
                }
                if let Some(notice) = self.notices.last() {
                    let colour = if notice.error {
                        error_colour(ui.visuals())
                    } else {
                        ui.visuals().text_color()
                    };
                    ui.label(RichText::new(&notice.text).color(colour));
                    if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                        self.notices.pop();
                    }
                }
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if let Some(last) = self.frame_stats.last().or(self.ui_stats.last()) {
                        let summary = self.frame_stats.summary().or(self.ui_stats.summary());
                        let label = ui.label(
                            RichText::new(format!("frame {:.1} ms", last.as_secs_f64() * 1e3))
                                .small()
                                .weak(),
                        );
                        if let Some(summary) = summary {
                            label.on_hover_text(summary.to_string());
                        }
                    }
                });
            });
        });
    }

    fn repl_panel(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        Panel::bottom("repl").show(ui, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new("tritlab ›")
                        .monospace()
                        .color(repl::prompt_colour(ui.visuals())),
                );
                if self.first_frame.is_none() {
                    // Typing starts in the REPL line.
                    Repl::focus(ui);
                }
                if let Some(line) = self.repl.show(ui, &self.engine) {
                    actions.push(Action::RunLine(line));
                }
            });
            ui.add_space(4.0);
        });
    }

    /// Prints frame statistics and memory to stderr.
    pub fn report(&self) {
        if let Some(summary) = self.frame_stats.summary() {
            eprintln!("tritlab-workbench: frame CPU time (UI and painting): {summary}");
        }
        if let Some(summary) = self.ui_stats.summary() {
            eprintln!("tritlab-workbench: UI build time: {summary}");
        }
        if let Some((rss, peak)) = resident_memory() {
            eprintln!(
                "tritlab-workbench: resident memory {:.1} MiB (peak {:.1} MiB)",
                rss as f64 / (1 << 20) as f64,
                peak as f64 / (1 << 20) as f64
            );
        }
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            recent: self.recent.clone(),
            history: self.repl.history().to_vec(),
            hide_inspector: !self.show_inspector,
            hide_timeline: !self.show_timeline,
        }
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    if text.lines().nth(1).is_some() {
        format!("{line} …")
    } else {
        line.to_owned()
    }
}

impl eframe::App for WorkbenchApp {
    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        if let Some(cpu) = frame.info().cpu_usage {
            self.frame_stats.record(Duration::from_secs_f32(cpu));
        }
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, STORAGE_KEY, &self.persisted());
        }
    }

    fn persist_egui_memory(&self) -> bool {
        self.persist
    }

    fn on_exit(&mut self) {
        self.report();
    }
}

/// `seek STEP`, as a command value.
fn seek(step: u64) -> tritlab_session::Command {
    tritlab_session::Command::Seek(tritlab_session::lang::Seek { step })
}
