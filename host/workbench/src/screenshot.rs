//! Taking one screenshot of the window for smoke tests: after a delay (and once no cell is
//! running, within limits) ask the renderer for the frame's pixels, write them as a PNG, and
//! close the window.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eframe::egui::{ColorImage, Context};
use tritlab_workbook::Image;

/// How long past the delay a screenshot waits for running cells.
const MAX_WAIT_FOR_IDLE: Duration = Duration::from_secs(60);

/// Where a screenshot stands.
enum Stage {
    Waiting,
    Requested(Receiver<Arc<ColorImage>>),
    Done,
}

/// The result of the screenshot, shared with whoever started the window.
pub type Outcome = Arc<Mutex<Option<Result<PathBuf, String>>>>;

pub struct Screenshot {
    after: Duration,
    path: PathBuf,
    stage: Stage,
    outcome: Outcome,
}

impl Screenshot {
    pub fn new(after: Duration, path: PathBuf, outcome: Outcome) -> Self {
        Screenshot {
            after,
            path,
            stage: Stage::Waiting,
            outcome,
        }
    }

    /// Where the result will be written.
    pub fn outcome(&self) -> Outcome {
        self.outcome.clone()
    }

    /// Advances the screenshot; returns true once it is written (or failed) and the window
    /// should close.
    pub fn tick(&mut self, ctx: &Context, since_launch: Duration, idle: bool) -> bool {
        match &self.stage {
            Stage::Waiting => {
                let due = since_launch >= self.after
                    && (idle || since_launch >= self.after + MAX_WAIT_FOR_IDLE);
                if due {
                    let (tx, rx) = mpsc::channel();
                    let waker = ctx.clone();
                    ctx.request_screenshot(move |image| {
                        let _ = tx.send(image);
                        waker.request_repaint();
                    });
                    self.stage = Stage::Requested(rx);
                }
                ctx.request_repaint_after(Duration::from_millis(100));
                false
            }
            Stage::Requested(rx) => match rx.try_recv() {
                Ok(image) => {
                    let result = self.write(&image);
                    match &result {
                        Ok(path) => {
                            eprintln!("tritlab-workbench: screenshot saved to {}", path.display())
                        }
                        Err(message) => {
                            eprintln!("tritlab-workbench: screenshot failed: {message}")
                        }
                    }
                    *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    self.stage = Stage::Done;
                    true
                }
                Err(TryRecvError::Empty) => {
                    ctx.request_repaint_after(Duration::from_millis(50));
                    false
                }
                Err(TryRecvError::Disconnected) => {
                    *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Err("the renderer dropped the screenshot request".into()));
                    self.stage = Stage::Done;
                    true
                }
            },
            Stage::Done => false,
        }
    }

    fn write(&self, image: &ColorImage) -> Result<PathBuf, String> {
        let [width, height] = image.size;
        let rgba: Vec<u8> = image
            .pixels
            .iter()
            .flat_map(|pixel| pixel.to_srgba_unmultiplied())
            .collect();
        let png = Image::new(width as u32, height as u32, rgba)
            .and_then(|image| image.to_png())
            .map_err(|e| e.to_string())?;
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&self.path, png)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        Ok(self.path.clone())
    }
}
