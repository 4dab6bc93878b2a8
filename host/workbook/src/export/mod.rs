//! Exporters: a self-contained HTML page, a Jupyter notebook, a clean Markdown document.

mod escape;
mod html;
mod ipynb;
mod markdown;
mod svg;

use std::path::Path;

pub use html::{output_html, to_html};
pub use ipynb::to_ipynb;
pub use markdown::{to_markdown, ExportFile, MarkdownExport};
pub use svg::plot_svg;

use crate::atomic::write_atomic;
use crate::book::Workbook;
use crate::error::WorkbookError;
use crate::file::{asset_folder, parent_dir, save_with_sidecars, Sidecar};

/// The formats [`export`] writes, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `.html`, `.htm`
    Html,
    /// `.ipynb`
    Ipynb,
    /// `.md`, `.markdown`
    Markdown,
}

impl ExportFormat {
    /// The format for `path`'s extension (case-insensitive), if it names one.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "html" | "htm" => Some(ExportFormat::Html),
            "ipynb" => Some(ExportFormat::Ipynb),
            "md" | "markdown" => Some(ExportFormat::Markdown),
            _ => None,
        }
    }
}

/// Exports `book` to `path` in the format its extension names, replacing the file atomically. A
/// Markdown export also writes its images and plots to the folder `<name>.assets/` beside it.
pub fn export(book: &Workbook, path: impl AsRef<Path>) -> Result<(), WorkbookError> {
    let path = path.as_ref();
    let format =
        ExportFormat::from_path(path).ok_or_else(|| WorkbookError::UnknownExportFormat {
            path: path.to_path_buf(),
        })?;
    match format {
        ExportFormat::Html => write_atomic(path, to_html(book).as_bytes()),
        ExportFormat::Ipynb => write_atomic(path, to_ipynb(book).as_bytes()),
        ExportFormat::Markdown => {
            let folder = asset_folder(path)?;
            let export = to_markdown(book, &folder).map_err(|source| WorkbookError::Image {
                path: path.to_path_buf(),
                source,
            })?;
            let sidecars: Vec<Sidecar> = export
                .files
                .into_iter()
                .map(|file| Sidecar::Bytes {
                    file_name: file.file_name,
                    bytes: file.bytes,
                })
                .collect();
            let dir = parent_dir(path).join(&folder);
            save_with_sidecars(path, export.text.as_bytes(), &dir, &sidecars)
        }
    }
}
