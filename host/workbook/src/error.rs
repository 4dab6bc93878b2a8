//! Errors: [`ParseError`] for workbook text (always with a line number), [`WorkbookError`] for
//! files (always with a path).

use std::io;
use std::path::PathBuf;

use crate::book::BadCellId;
use crate::format::VERSION_LINE;
use crate::image::ImageError;
use crate::output::OutputKind;

/// A workbook text that cannot be read, and the 1-based line where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(line: usize, kind: ParseErrorKind) -> Self {
        ParseError { line, kind }
    }
}

/// What is wrong at a [`ParseError`]'s line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error("not a tritlab workbook: the first line must be `{VERSION_LINE}`")]
    MissingVersion,
    #[error(
        "this workbook is format version {version}, but this tritlab reads only version 1; \
         open it with a newer tritlab"
    )]
    UnsupportedVersion { version: String },
    #[error("the fence `{fence}` opened here is never closed")]
    UnterminatedFence { fence: String },
    #[error("an output block needs a kind, e.g. `output text`")]
    MissingOutputKind,
    #[error(
        "unknown output kind `{kind}`: expected text, trace, plot, table or error \
         (images are image lines, not fenced blocks)"
    )]
    UnknownOutputKind { kind: String },
    #[error("image outputs are written as a line `![title](folder/HASH.png \"output image\")`, not as a fenced block")]
    FencedImage,
    #[error("unexpected `{word}` after `output {kind}`")]
    ExtraOutputWords { kind: OutputKind, word: String },
    #[error(
        "this {kind} output does not follow a cell: only blank lines and other outputs may stand \
         between a cell and its outputs"
    )]
    OutputWithoutCell { kind: OutputKind },
    #[error("unknown cell attribute `{attribute}`: the only attribute is `id=NAME`")]
    UnknownCellAttribute { attribute: String },
    #[error(transparent)]
    BadCellId(#[from] BadCellId),
    #[error("cell id `{id}` is already used by the cell on line {first_line}")]
    DuplicateCellId { id: String, first_line: usize },
    #[error("a {kind} output starts with a header line, a JSON object; this one is empty")]
    MissingHeader { kind: OutputKind },
    #[error("bad {kind} output: {message}")]
    BadOutput { kind: OutputKind, message: String },
    #[error("bad image line: {message}")]
    BadImageLine { message: String },
    #[error("image asset `{path}`: {message}")]
    Asset { path: String, message: String },
}

/// A workbook in memory that cannot be written as text that reads back the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unwritable {
    #[error("cell {number} has the id `{id}` of cell {first}; cell ids must be unique")]
    DuplicateId {
        id: String,
        first: usize,
        number: usize,
    },
    #[error("prose block {number} would read back as something else: {reason}")]
    Prose { number: usize, reason: String },
}

/// A workbook file, or an export, that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WorkbookError {
    #[error("cannot read workbook {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: ParseError },
    #[error("cannot write {} ({action}): {source}", path.display())]
    Write {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("cannot save {}: {source}", path.display())]
    Unwritable { path: PathBuf, source: Unwritable },
    #[error("cannot encode an image of {}: {source}", path.display())]
    Image { path: PathBuf, source: ImageError },
    #[error("{}: {reason}", path.display())]
    BadPath { path: PathBuf, reason: &'static str },
    #[error(
        "cannot export to {}: unknown extension; use .html, .ipynb or .md",
        path.display()
    )]
    UnknownExportFormat { path: PathBuf },
    #[error("cannot export to {}: {source}", path.display())]
    Export {
        path: PathBuf,
        source: crate::export::ExportError,
    },
}
