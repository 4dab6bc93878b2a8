//! Modal dialogs: asking for a path (open, save as, export), offering to recover an autosave,
//! and asking what to do with unsaved changes.
//!
//! A path is typed rather than picked from a native file dialog: that keeps the workbench free of
//! the desktop toolkits those dialogs need. Relative paths are taken from the working directory,
//! which is the open workbook's folder.

use std::path::PathBuf;

use eframe::egui::{Id, Key, Modal, RichText, TextEdit, Ui};

use crate::app::Action;
use crate::view::error_colour;

/// What a path is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPurpose {
    Open,
    SaveAs,
    Export,
}

impl PathPurpose {
    fn title(self) -> &'static str {
        match self {
            PathPurpose::Open => "Open a workbook",
            PathPurpose::SaveAs => "Save the workbook as",
            PathPurpose::Export => "Export the workbook",
        }
    }

    fn help(self) -> &'static str {
        match self {
            PathPurpose::Open => "A workbook file (.md).",
            PathPurpose::SaveAs => "A Markdown file; its images go to NAME.assets/ beside it.",
            PathPurpose::Export => {
                "The extension picks the format: .html (one self-contained page), .ipynb (Jupyter) or .md (plain Markdown with an asset folder)."
            }
        }
    }

    fn button(self) -> &'static str {
        match self {
            PathPurpose::Open => "Open",
            PathPurpose::SaveAs => "Save",
            PathPurpose::Export => "Export",
        }
    }
}

/// What to do once unsaved changes are dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Close,
    Open(PathBuf),
    New,
}

/// The open dialog, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Path {
        purpose: PathPurpose,
        text: String,
        error: Option<String>,
    },
    /// An autosave of `book` is newer than the file.
    Recover { book: PathBuf, autosave: PathBuf },
    /// The book has unsaved changes and something is about to replace or close it.
    Unsaved { then: Then },
}

impl Dialog {
    pub fn path(purpose: PathPurpose, initial: String) -> Self {
        Dialog::Path {
            purpose,
            text: initial,
            error: None,
        }
    }
}

/// Shows `dialog`; clears it when it is answered or dismissed.
pub fn show(ui: &Ui, dialog: &mut Option<Dialog>, actions: &mut Vec<Action>) {
    let Some(current) = dialog.as_mut() else {
        return;
    };
    let mut close = false;
    let response = Modal::new(Id::unique("tritlab-dialog")).show(ui.ctx(), |ui| {
        ui.set_width(460.0);
        match current {
            Dialog::Path {
                purpose,
                text,
                error,
            } => {
                ui.heading(purpose.title());
                ui.label(RichText::new(purpose.help()).small());
                ui.add_space(6.0);
                let edit = ui.add(
                    TextEdit::singleline(text)
                        .id(Id::unique("tritlab-dialog-path"))
                        .desired_width(f32::INFINITY)
                        .hint_text("path/to/file.md"),
                );
                // Type straight away: the path takes the focus when nothing else holds it.
                if ui.memory(|m| m.focused().is_none()) {
                    edit.request_focus();
                }
                if let Some(message) = error {
                    ui.label(RichText::new(message.as_str()).color(error_colour(ui.visuals())));
                }
                let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                ui.add_space(6.0);
                ui.horizontal(|ui| {
                    let ok = ui.button(purpose.button()).clicked() || entered;
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                    if ok {
                        match check_path(*purpose, text) {
                            Ok(path) => {
                                actions.push(match purpose {
                                    PathPurpose::Open => Action::Open(path),
                                    PathPurpose::SaveAs => Action::SaveAs(path),
                                    PathPurpose::Export => Action::Export(path),
                                });
                                close = true;
                            }
                            Err(message) => *error = Some(message),
                        }
                    }
                });
            }
            Dialog::Recover { book, autosave } => {
                ui.heading("Recover unsaved changes?");
                ui.label(format!(
                    "{} has an autosave that is newer than the file itself: the workbench stopped \
                     before those changes were saved.",
                    book.display()
                ));
                ui.label(RichText::new(autosave.display().to_string()).small().weak());
                ui.add_space(6.0);
                ui.horizontal(|ui| {
                    if ui.button("Recover the autosave").clicked() {
                        actions.push(Action::Recover(book.clone()));
                        close = true;
                    }
                    if ui.button("Keep the file, delete the autosave").clicked() {
                        actions.push(Action::DiscardAutosave(book.clone()));
                        close = true;
                    }
                    if ui.button("Decide later").clicked() {
                        close = true;
                    }
                });
            }
            Dialog::Unsaved { then } => {
                ui.heading("Save changes?");
                ui.label("The workbook has changes that are not saved.");
                ui.add_space(6.0);
                ui.horizontal(|ui| {
                    if ui.button("Save").clicked() {
                        actions.push(Action::SaveThen(then.clone()));
                        close = true;
                    }
                    if ui.button("Don't save").clicked() {
                        actions.push(Action::Proceed(then.clone()));
                        close = true;
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            }
        }
    });
    if close || response.should_close() {
        *dialog = None;
    }
}

/// The path typed, if it can be used for `purpose`.
fn check_path(purpose: PathPurpose, text: &str) -> Result<PathBuf, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Type a path.".into());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = tritlab_session::lang::expand_tilde(std::path::Path::new(text), home.as_deref());
    match purpose {
        PathPurpose::Open if !path.is_file() => {
            Err(format!("There is no file {}.", path.display()))
        }
        PathPurpose::Export if tritlab_workbook::ExportFormat::from_path(&path).is_none() => {
            Err("Give the file an extension: .html, .ipynb or .md.".into())
        }
        PathPurpose::SaveAs | PathPurpose::Export
            if path
                .parent()
                .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()) =>
        {
            Err(format!(
                "There is no folder {}.",
                path.parent().unwrap_or(&path).display()
            ))
        }
        _ => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_for_their_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let book = dir.path().join("b.md");
        std::fs::write(&book, "x").unwrap();
        let text = |p: &std::path::Path| p.display().to_string();
        assert_eq!(
            check_path(PathPurpose::Open, &text(&book)),
            Ok(book.clone())
        );
        assert!(check_path(PathPurpose::Open, &text(&dir.path().join("none.md"))).is_err());
        assert!(check_path(PathPurpose::Export, &text(&dir.path().join("b.pdf"))).is_err());
        assert!(check_path(PathPurpose::Export, &text(&dir.path().join("b.html"))).is_ok());
        assert!(check_path(PathPurpose::SaveAs, &text(&dir.path().join("no/b.md"))).is_err());
        assert!(check_path(PathPurpose::SaveAs, "  ").is_err());
    }
}
