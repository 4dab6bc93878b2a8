//! Exporters: a self-contained HTML page, a Jupyter notebook, a clean Markdown document.
//!
//! Every export is bounded: it may be at most [`EXPORT_SIZE_FACTOR`] times the workbook's
//! content size ([`content_size`]) plus [`EXPORT_SLACK_BYTES`], and an exporter stops with
//! [`ExportError::TooLarge`] as soon as it would pass that, instead of filling memory and disk.
//! Each kind of content exports to a small constant multiple of its own size: tables close a
//! ragged row with one spanning cell rather than one cell per missing column, and align plain
//! text to a bounded width (pulldown-cmark bounds the expansion of prose: reference links and
//! autocompleted table cells). The check is the backstop for whatever that reasoning misses.

mod escape;
mod html;
mod ipynb;
mod markdown;
mod svg;

use std::fmt;
use std::io;
use std::path::Path;

pub use html::{output_html, to_html, try_to_html};
pub use ipynb::{notebook_output, to_ipynb, try_to_ipynb};
pub use markdown::{to_markdown, try_to_markdown, ExportFile, MarkdownExport};
pub use svg::plot_svg;

use crate::atomic::write_atomic;
use crate::book::Block;
use crate::book::Workbook;
use crate::error::WorkbookError;
use crate::file::{asset_folder, parent_dir, save_with_sidecars, Sidecar};
use crate::image::ImageError;
use crate::output::Output;

/// An export may be at most this many times [`content_size`] (plus [`EXPORT_SLACK_BYTES`]).
///
/// Markup costs a constant factor over the content: `'` becomes `&#39;`, an empty table cell
/// `<td></td>`, a line of a notebook cell an indented JSON string. The worst of these stays
/// well under 32; 64 leaves room without letting a megabyte become more than 64 MB.
pub const EXPORT_SIZE_FACTOR: u64 = 64;

/// The constant part of the export bound: the page's style sheet, the notebook's metadata and
/// the like, which an empty workbook needs too.
pub const EXPORT_SLACK_BYTES: u64 = 1 << 20;

/// Why a workbook cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error(
        "the {format} export would be larger than {limit} bytes \
         ({EXPORT_SIZE_FACTOR} × the workbook's {content} bytes of content + {EXPORT_SLACK_BYTES}); \
         something in it expands far more than exports should"
    )]
    TooLarge {
        format: ExportFormat,
        /// The workbook's [`content_size`].
        content: u64,
        /// The bound that was reached.
        limit: u64,
    },
    #[error("cannot encode an image: {0}")]
    Image(#[from] ImageError),
}

/// The size of a workbook's content, which bounds its exports: the bytes of its prose and cell
/// sources, and of each output as JSON (the form the workbook file stores it in, near enough;
/// images count their pixels as base64).
pub fn content_size(book: &crate::book::Workbook) -> u64 {
    book.blocks
        .iter()
        .map(|block| match block {
            Block::Prose(markdown) => markdown.len() as u64,
            Block::Cell(cell) => {
                // The fence lines.
                16 + cell.source.len() as u64 + cell.outputs.iter().map(output_size).sum::<u64>()
            }
        })
        .sum()
}

fn output_size(output: &Output) -> u64 {
    match output {
        // Counted directly: serialising would copy the pixels to base64 only to count them.
        Output::Image(image) => {
            64 + (image.rgba().len() as u64).div_ceil(3) * 4
                + image.title().map_or(0, |t| t.len() as u64)
        }
        _ => {
            let mut counter = ByteCounter(0);
            // Writing to a counter cannot fail, and outputs always serialise.
            let _ = serde_json::to_writer(&mut counter, output);
            counter.0
        }
    }
}

/// An `io::Write` that only counts.
struct ByteCounter(u64);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The export bound for one workbook and format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    format: ExportFormat,
    content: u64,
    limit: u64,
}

impl Budget {
    pub(crate) fn new(book: &crate::book::Workbook, format: ExportFormat) -> Self {
        let content = content_size(book);
        Budget {
            format,
            content,
            limit: content
                .saturating_mul(EXPORT_SIZE_FACTOR)
                .saturating_add(EXPORT_SLACK_BYTES),
        }
    }

    /// The bytes left after `used`.
    pub(crate) fn left(&self, used: usize) -> usize {
        usize::try_from(self.limit.saturating_sub(used as u64)).unwrap_or(usize::MAX)
    }

    /// Fails once `used` bytes are more than the bound.
    pub(crate) fn check(&self, used: usize) -> Result<(), ExportError> {
        if used as u64 > self.limit {
            Err(self.exceeded())
        } else {
            Ok(())
        }
    }

    pub(crate) fn exceeded(&self) -> ExportError {
        ExportError::TooLarge {
            format: self.format,
            content: self.content,
            limit: self.limit,
        }
    }
}

/// A `String` that refuses to grow past a bound: writes fail (and leave it unchanged) once it
/// would. For renderers that write through `fmt::Write` and may expand their input.
pub(crate) struct BoundedString<'a> {
    pub(crate) text: &'a mut String,
    pub(crate) limit: usize,
    pub(crate) overflowed: bool,
}

impl fmt::Write for BoundedString<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.text.len().saturating_add(s.len()) > self.limit {
            self.overflowed = true;
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// An `io::Write` into a byte vector that fails once it would pass a bound.
pub(crate) struct BoundedBytes {
    pub(crate) bytes: Vec<u8>,
    pub(crate) limit: usize,
    pub(crate) overflowed: bool,
}

impl io::Write for BoundedBytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("export size bound reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Html => "HTML",
            ExportFormat::Ipynb => "Jupyter notebook",
            ExportFormat::Markdown => "Markdown",
        })
    }
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
/// An export larger than its bound (see the module documentation) is refused and nothing is
/// written.
pub fn export(book: &Workbook, path: impl AsRef<Path>) -> Result<(), WorkbookError> {
    let path = path.as_ref();
    let format =
        ExportFormat::from_path(path).ok_or_else(|| WorkbookError::UnknownExportFormat {
            path: path.to_path_buf(),
        })?;
    let failed = |source| match source {
        ExportError::Image(source) => WorkbookError::Image {
            path: path.to_path_buf(),
            source,
        },
        source => WorkbookError::Export {
            path: path.to_path_buf(),
            source,
        },
    };
    match format {
        ExportFormat::Html => write_atomic(path, try_to_html(book).map_err(failed)?.as_bytes()),
        ExportFormat::Ipynb => write_atomic(path, try_to_ipynb(book).map_err(failed)?.as_bytes()),
        ExportFormat::Markdown => {
            let folder = asset_folder(path)?;
            let export = try_to_markdown(book, &folder).map_err(failed)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{Cell, Workbook};
    use crate::output::Table;
    use std::fmt::Write as _;
    use std::io::Write as _;

    #[test]
    fn content_size_counts_outputs_as_json() {
        let mut book = Workbook::new();
        book.push_prose("# T\n");
        book.push_cell(
            Cell::command("info").with_outputs(vec![Output::Table(Table {
                title: None,
                columns: vec![String::new(); 3],
                rows: vec![Vec::new(); 2],
            })]),
        );
        let table_json = r#"{"kind":"table","value":{"columns":["","",""],"rows":[[],[]]}}"#;
        let Block::Prose(prose) = &book.blocks[0] else {
            panic!("prose first")
        };
        assert_eq!(
            content_size(&book),
            prose.len() as u64 + 16 + 4 + table_json.len() as u64
        );
    }

    #[test]
    fn the_budget_names_format_content_and_limit() {
        let book = Workbook::new();
        let budget = Budget::new(&book, ExportFormat::Ipynb);
        assert!(budget.check(EXPORT_SLACK_BYTES as usize).is_ok());
        let error = budget.check(EXPORT_SLACK_BYTES as usize + 1).unwrap_err();
        assert_eq!(
            error,
            ExportError::TooLarge {
                format: ExportFormat::Ipynb,
                content: 0,
                limit: EXPORT_SLACK_BYTES
            }
        );
        assert!(error
            .to_string()
            .starts_with("the Jupyter notebook export would be larger than 1048576 bytes"));
    }

    #[test]
    fn bounded_writers_refuse_to_grow_past_their_limit() {
        let mut text = String::new();
        let mut out = BoundedString {
            text: &mut text,
            limit: 5,
            overflowed: false,
        };
        assert!(out.write_str("abc").is_ok());
        assert!(out.write_str("def").is_err());
        assert!(out.overflowed);
        assert_eq!(text, "abc");

        let mut out = BoundedBytes {
            bytes: Vec::new(),
            limit: 4,
            overflowed: false,
        };
        assert!(out.write_all(b"abcd").is_ok());
        assert!(out.write_all(b"e").is_err());
        assert!(out.overflowed);
    }
}
