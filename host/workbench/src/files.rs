//! Reading and writing workbooks off the UI thread: open, save, export and autosave go to one
//! file thread, in order, and their results come back as [`FileEvent`]s.
//!
//! Autosave writes the book every half minute, while it has unsaved changes, to a hidden file
//! beside it (`notes.md` → `.notes.md.autosave`, images in `.notes.md.autosave.assets/`). Saving
//! the book removes the autosave. Opening a book whose autosave is newer than the book offers to
//! recover it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tritlab_workbook::Workbook;

/// How often a changed book is autosaved.
pub const AUTOSAVE_EVERY: Duration = Duration::from_secs(30);

/// How many recent files the File menu lists.
pub const RECENT_FILES: usize = 10;

/// Work for the file thread.
#[derive(Debug)]
pub enum FileRequest {
    /// Read a workbook; also look for a newer autosave of it.
    Open(PathBuf),
    /// Read the autosave of the book at `book` (to recover it).
    Recover { book: PathBuf },
    /// Save the book at `revision` to `path`, then remove the path's autosave.
    Save {
        book: Workbook,
        path: PathBuf,
        revision: u64,
    },
    /// Export the book; the format is chosen by the extension.
    Export { book: Workbook, path: PathBuf },
    /// Write the autosave of the book that lives at `path`.
    Autosave {
        book: Workbook,
        path: PathBuf,
        revision: u64,
    },
    /// Remove the autosave of the book at `path` (the person chose not to recover it).
    DiscardAutosave { path: PathBuf },
}

/// What the file thread did.
#[derive(Debug)]
pub enum FileEvent {
    Opened {
        path: PathBuf,
        book: Workbook,
        /// An autosave of this book newer than the book itself.
        newer_autosave: Option<PathBuf>,
    },
    Recovered {
        path: PathBuf,
        book: Workbook,
    },
    Saved {
        path: PathBuf,
        revision: u64,
    },
    Exported {
        path: PathBuf,
    },
    Autosaved {
        revision: u64,
    },
    AutosaveDiscarded {
        path: PathBuf,
    },
    /// Something failed; `what` says what was being done ("open", "save", …).
    Failed {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// The file thread.
pub struct FileWorker {
    requests: Option<Sender<FileRequest>>,
    events: Receiver<FileEvent>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl FileWorker {
    pub fn spawn() -> Self {
        let (request_tx, request_rx) = mpsc::channel::<FileRequest>();
        let (event_tx, event_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tritlab-workbench-files".into())
            .spawn(move || {
                for request in request_rx {
                    if event_tx.send(handle(request)).is_err() {
                        break;
                    }
                }
            })
            .expect("starting the workbench's file thread");
        FileWorker {
            requests: Some(request_tx),
            events: event_rx,
            in_flight: 0,
            thread: Some(thread),
        }
    }

    pub fn send(&mut self, request: FileRequest) {
        if let Some(requests) = &self.requests {
            if requests.send(request).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    /// Whether requests are still being worked on.
    pub fn is_busy(&self) -> bool {
        self.in_flight > 0
    }

    pub fn try_recv(&mut self) -> Option<FileEvent> {
        let event = self.events.try_recv().ok()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(event)
    }
}

impl Drop for FileWorker {
    /// Finishes the requests already sent (a last autosave or save must not be cut short).
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(request: FileRequest) -> FileEvent {
    let failed = |what, path: &Path, error: &dyn std::fmt::Display| FileEvent::Failed {
        what,
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    match request {
        FileRequest::Open(path) => match Workbook::load(&path) {
            Ok(book) => FileEvent::Opened {
                newer_autosave: newer_autosave(&path),
                path,
                book,
            },
            Err(error) => failed("open", &path, &error),
        },
        FileRequest::Recover { book } => match Workbook::load(autosave_path(&book)) {
            Ok(recovered) => FileEvent::Recovered {
                path: book,
                book: recovered,
            },
            Err(error) => failed("recover", &book, &error),
        },
        FileRequest::Save {
            book,
            path,
            revision,
        } => match book.save(&path) {
            Ok(()) => {
                remove_autosave(&path);
                FileEvent::Saved { path, revision }
            }
            Err(error) => failed("save", &path, &error),
        },
        FileRequest::Export { book, path } => match tritlab_workbook::export(&book, &path) {
            Ok(()) => FileEvent::Exported { path },
            Err(error) => failed("export", &path, &error),
        },
        FileRequest::Autosave {
            book,
            path,
            revision,
        } => match book.save(autosave_path(&path)) {
            Ok(()) => FileEvent::Autosaved { revision },
            Err(error) => failed("autosave", &path, &error),
        },
        FileRequest::DiscardAutosave { path } => {
            remove_autosave(&path);
            FileEvent::AutosaveDiscarded { path }
        }
    }
}

/// Where the autosave of the book at `book` goes: a hidden file beside it.
pub fn autosave_path(book: &Path) -> PathBuf {
    let name = book
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "untitled.md".to_owned());
    book.with_file_name(format!(".{name}.autosave"))
}

/// The autosave of `book`, if there is one and it is newer than the book.
pub fn newer_autosave(book: &Path) -> Option<PathBuf> {
    let autosave = autosave_path(book);
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    let saved = modified(&autosave)?;
    let book_time = modified(book).unwrap_or(SystemTime::UNIX_EPOCH);
    (saved > book_time).then_some(autosave)
}

/// Removes the autosave of `book` and its image folder.
fn remove_autosave(book: &Path) {
    let autosave = autosave_path(book);
    let _ = fs::remove_file(&autosave);
    let mut assets = autosave.into_os_string();
    assets.push(".assets");
    let assets = PathBuf::from(assets);
    // The folder holds only content-named images written by autosave; remove them one by one so
    // anything else put there by hand survives (and keeps the folder).
    if let Ok(entries) = fs::read_dir(&assets) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".png") && name.len() == 36 {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir(&assets);
    }
}

/// Puts `path` first in the recent-files list, without duplicates, keeping at most
/// [`RECENT_FILES`].
pub fn remember_recent(recent: &mut Vec<PathBuf>, path: &Path) {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    recent.retain(|p| p != &path);
    recent.insert(0, path);
    recent.truncate(RECENT_FILES);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tritlab_workbook::{Cell, CellKind, Image, Output};

    fn wait(worker: &mut FileWorker) -> FileEvent {
        let start = Instant::now();
        loop {
            if let Some(event) = worker.try_recv() {
                return event;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the file thread is stuck"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn book() -> Workbook {
        let mut book = Workbook::new();
        book.push_prose("# Notes");
        let mut cell = Cell::new(CellKind::Command, "info");
        let image = Image::new(1, 1, vec![1, 2, 3, 255]).unwrap();
        cell.outputs = vec![Output::Text("ok".into()), Output::Image(image)];
        book.push_cell(cell);
        book
    }

    #[test]
    fn autosave_is_offered_when_newer_and_removed_by_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.md");
        let mut worker = FileWorker::spawn();

        worker.send(FileRequest::Save {
            book: book(),
            path: path.clone(),
            revision: 3,
        });
        assert!(matches!(
            wait(&mut worker),
            FileEvent::Saved { revision: 3, .. }
        ));

        // An autosave written after the save is newer than the book.
        std::thread::sleep(Duration::from_millis(20));
        let mut changed = book();
        changed.push_prose("more");
        worker.send(FileRequest::Autosave {
            book: changed.clone(),
            path: path.clone(),
            revision: 4,
        });
        assert!(matches!(
            wait(&mut worker),
            FileEvent::Autosaved { revision: 4 }
        ));
        assert_eq!(dir.path().join(".notes.md.autosave"), autosave_path(&path));

        worker.send(FileRequest::Open(path.clone()));
        match wait(&mut worker) {
            FileEvent::Opened {
                newer_autosave,
                book: opened,
                ..
            } => {
                assert_eq!(opened, book());
                assert_eq!(newer_autosave, Some(autosave_path(&path)));
            }
            other => panic!("{other:?}"),
        }
        worker.send(FileRequest::Recover { book: path.clone() });
        match wait(&mut worker) {
            FileEvent::Recovered {
                book: recovered, ..
            } => assert_eq!(recovered, changed),
            other => panic!("{other:?}"),
        }

        worker.send(FileRequest::Save {
            book: changed,
            path: path.clone(),
            revision: 5,
        });
        assert!(matches!(
            wait(&mut worker),
            FileEvent::Saved { revision: 5, .. }
        ));
        assert!(!autosave_path(&path).exists());
        assert!(!dir.path().join(".notes.md.autosave.assets").exists());
        assert!(newer_autosave(&path).is_none());
    }

    #[test]
    fn failures_name_the_file() {
        let mut worker = FileWorker::spawn();
        worker.send(FileRequest::Open(PathBuf::from("/nonexistent/book.md")));
        match wait(&mut worker) {
            FileEvent::Failed {
                what,
                path,
                message,
            } => {
                assert_eq!(what, "open");
                assert_eq!(path, PathBuf::from("/nonexistent/book.md"));
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(!worker.is_busy());
    }

    #[test]
    fn recent_files_are_unique_and_bounded() {
        let mut recent = Vec::new();
        for i in 0..(RECENT_FILES + 3) {
            remember_recent(&mut recent, Path::new(&format!("/no/such/{i}.md")));
        }
        remember_recent(&mut recent, Path::new("/no/such/5.md"));
        assert_eq!(recent.len(), RECENT_FILES);
        assert_eq!(recent[0], PathBuf::from("/no/such/5.md"));
        assert_eq!(recent.iter().filter(|p| p.ends_with("5.md")).count(), 1);
    }
}
