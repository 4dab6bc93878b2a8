//! tritlab-workbench: the desktop face of tritlab, drawn with egui.
//!
//! A window with a workbook of cells in the middle, a REPL line at the bottom, an inspector of
//! the loaded model and plugins on the right and, once a training run is open, its timeline
//! beside it. Everything the engine does happens on the session's worker thread
//! ([`tritlab_session::SessionWorker`]); the workbench only submits command text, reads the
//! events and snapshots that come back, and draws them. It holds no engine logic: moving the
//! timeline or toggling a plugin is the same command a person could type.
//!
//! The code keeps three kinds of state apart:
//! - the *document* ([`document`]): the workbook's blocks with stable keys, what gets saved;
//! - the *engine link* ([`engine`]): jobs in flight, live output streaming into cells, the last
//!   [`tritlab_session::Snapshot`];
//! - the *view state*: what is open, selected, scrolled or being typed; it lives in the
//!   [`app::WorkbenchApp`] and in egui's memory and never reaches the engine.
//!
//! Views never change the document or the engine directly: they return [`app::Action`]s that the
//! app applies after drawing, so every change goes through one place.
//!
//! As with `tritlab run`, the open workbook's folder becomes the process's working directory, so
//! relative paths in cells are relative to the book.
//!
//! ```no_run
//! use tritlab_workbench::{run_workbench, WorkbenchOptions};
//!
//! run_workbench(WorkbenchOptions::default()).unwrap();
//! ```

pub mod app;
pub mod document;
pub mod engine;
pub mod files;
pub mod repl;
mod screenshot;
pub mod stats;
mod textures;
mod view;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tritlab_session::{RustEvaluator, SessionConfig};

pub use app::{Action, WorkbenchApp};
pub use stats::{FrameStats, FrameSummary};

/// The name the window, eframe's storage folder and messages go by.
pub const APP_NAME: &str = "tritlab workbench";

/// How the workbench starts.
pub struct WorkbenchOptions {
    /// The workbook to open; `None` starts with an empty, untitled one.
    /// [`WorkbenchOptions::default`] opens the shipped tour, [`tour_path`], when it exists.
    pub book: Option<PathBuf>,
    /// The session the workbench runs commands in: default model, plugin folders.
    pub session: SessionConfig,
    /// Runs every cell of the book once it is open.
    pub run_on_open: bool,
    /// For smoke tests: after this long (and once no cell is running, waiting at most a minute
    /// more), save a screenshot of the window to this PNG file and close.
    pub screenshot_after: Option<(Duration, PathBuf)>,
    /// Evaluates `rust` cells; without one they report that Rust is not available.
    pub rust: Option<Box<dyn RustEvaluator>>,
    /// Persist recent files, REPL history and window layout between runs (eframe's storage).
    pub persist: bool,
}

impl Default for WorkbenchOptions {
    fn default() -> Self {
        WorkbenchOptions {
            book: tour_path().filter(|tour| tour.is_file()),
            session: SessionConfig::standard(),
            run_on_open: false,
            screenshot_after: None,
            rust: None,
            persist: true,
        }
    }
}

impl std::fmt::Debug for WorkbenchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkbenchOptions")
            .field("book", &self.book)
            .field("session", &self.session)
            .field("run_on_open", &self.run_on_open)
            .field("screenshot_after", &self.screenshot_after)
            .field("rust", &self.rust.as_ref().map(|_| "RustEvaluator"))
            .field("persist", &self.persist)
            .finish()
    }
}

/// The tour workbook shipped with tritlab (unpacked into the user's data folder, see
/// `tritlab_assets`); `TRITLAB_TOUR` overrides it. `None` when there is nowhere to unpack it.
pub fn tour_path() -> Option<PathBuf> {
    tritlab_assets::tour().ok()
}

/// Opens the workbench window and runs until it is closed.
///
/// Prints to stderr how long the window took to show its first frame, and frame-time
/// statistics when it closes.
pub fn run_workbench(options: WorkbenchOptions) -> anyhow::Result<()> {
    let launched = Instant::now();
    let persist = options.persist;
    let native = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title(APP_NAME)
            .with_app_id("tritlab-workbench")
            .with_inner_size([1360.0, 860.0])
            .with_min_inner_size([640.0, 400.0]),
        persist_window: persist,
        ..eframe::NativeOptions::default()
    };
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(None));
    let shared = outcome.clone();
    eframe::run_native(
        APP_NAME,
        native,
        Box::new(move |cc| {
            let storage = if persist { cc.storage } else { None };
            let mut app = WorkbenchApp::new(options, storage, launched);
            let ctx = cc.egui_ctx.clone();
            app.wake_with(std::sync::Arc::new(move || ctx.request_repaint()));
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = app.screenshot_outcome();
            Ok(Box::new(app))
        }),
    )
    .map_err(|error| anyhow::anyhow!("the workbench window could not run: {error}"))?;

    // A smoke test asked for a screenshot: say whether it was written.
    let screenshot = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(screenshot) = screenshot {
        let result = screenshot.lock().unwrap_or_else(|e| e.into_inner()).take();
        match result {
            Some(Ok(_)) => {}
            Some(Err(message)) => anyhow::bail!("the screenshot failed: {message}"),
            None => anyhow::bail!("the window closed before the screenshot was taken"),
        }
    }
    Ok(())
}
