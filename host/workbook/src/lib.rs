//! tritlab-workbook: workbooks — Markdown documents whose fenced `tritlab` and `rust` blocks are
//! cells — with the typed outputs cells produce, a headless runner, and exporters.
//!
//! A workbook is a plain Markdown file that diffs well and reads well without tritlab. Prose is
//! Markdown; a cell is a fenced block with the info string `tritlab` (command language) or `rust`;
//! a cell's outputs follow it as fenced `output KIND` blocks, and images as Markdown image lines
//! pointing into an asset folder beside the book. The first line names the format version. The
//! format is specified in `workbooks/README.md`.
//!
//! ```
//! use tritlab_workbook::{run_book, Cell, CellResult, CellRunner, Output, RunOptions, Workbook};
//!
//! let text = "<!-- tritlab-workbook v1 -->\n\n# Tour\n\n```tritlab id=info\ninfo default\n```\n";
//! let mut book = Workbook::parse(text).unwrap();
//!
//! struct Echo;
//! impl CellRunner for Echo {
//!     fn run_cell(&mut self, cell: &Cell, _index: usize) -> CellResult {
//!         CellResult::ok(vec![Output::Text(format!("ran `{}`", cell.source))])
//!     }
//! }
//! let report = run_book(&mut book, &mut Echo, &RunOptions::default(), |_| {});
//! assert!(report.is_ok());
//!
//! let rendered = book.render("tour.assets");
//! assert!(rendered.text.ends_with("```output text\nran `info default`\n```\n"));
//! assert_eq!(Workbook::parse(&rendered.text).unwrap(), book);
//! ```
//!
//! Files: [`Workbook::load`] and [`Workbook::save`] (atomic, see [`write_atomic`]); exports:
//! [`export`] (`.html`, `.ipynb`, `.md` by extension).

mod assets;
mod atomic;
mod book;
mod error;
mod export;
mod file;
mod format;
mod image;
mod output;
mod run;

pub use assets::{AssetFileError, AssetSource, DirAssets, MemoryAssets, NoAssets, MAX_ASSET_BYTES};
pub use atomic::write_atomic;
pub use book::{BadCellId, Block, Cell, CellId, CellKind, Workbook};
pub use error::{ParseError, ParseErrorKind, Unwritable, WorkbookError};
pub use export::{
    content_size, export, notebook_output, output_html, plot_svg, to_html, to_ipynb, to_markdown,
    try_to_html, try_to_ipynb, try_to_markdown, ExportError, ExportFile, ExportFormat,
    MarkdownExport, EXPORT_SIZE_FACTOR, EXPORT_SLACK_BYTES,
};
pub use file::MAX_WORKBOOK_BYTES;
pub use format::{ImageAsset, Rendered, FORMAT_VERSION, VERSION_LINE};
pub use image::{Image, ImageError, MAX_IMAGE_PIXELS};
pub use output::{
    BadOutputKind, BadRgb, NotATrit, Output, OutputKind, Plot, Rgb, Series, Table, Trace,
    TraceToken, Trit,
};
pub use run::{run_book, CellFailure, CellResult, CellRunner, RunEvent, RunOptions, RunReport};
