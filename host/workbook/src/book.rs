//! The in-memory workbook: prose and cells in order, each cell with its outputs.

use std::fmt;
use std::str::FromStr;

use crate::output::Output;

/// A workbook: Markdown prose interleaved with cells.
///
/// `blocks` is public so faces can edit freely. The text format has one canonical shape, which
/// [`Workbook::push_prose`] and [`Workbook::push_cell`] keep: prose blocks have no leading or
/// trailing blank lines and two prose blocks never follow each other (the format cannot tell them
/// apart from one block with a blank line inside). A book built otherwise is still written, and
/// reads back in that canonical shape. What the text cannot hold at all (a repeated cell id,
/// prose with an unclosed fence) is caught by [`Workbook::check_writable`] before saving.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workbook {
    pub blocks: Vec<Block>,
}

/// One block of a workbook.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Markdown, kept verbatim (never executed).
    Prose(String),
    Cell(Cell),
}

impl Workbook {
    pub fn new() -> Self {
        Workbook::default()
    }

    /// Appends Markdown prose, trimmed of blank lines at either end and merged into a preceding
    /// prose block (separated by one blank line). Prose that is only blank adds nothing.
    pub fn push_prose(&mut self, text: &str) {
        let text = trim_blank_lines(text);
        if text.is_empty() {
            return;
        }
        match self.blocks.last_mut() {
            Some(Block::Prose(previous)) => {
                previous.push_str("\n\n");
                previous.push_str(text);
            }
            _ => self.blocks.push(Block::Prose(text.to_owned())),
        }
    }

    pub fn push_cell(&mut self, cell: Cell) {
        self.blocks.push(Block::Cell(cell));
    }

    /// The cells, in order; cell number `n` (1-based, as reports print it) is the `n - 1`-th.
    pub fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.blocks.iter().filter_map(|block| match block {
            Block::Cell(cell) => Some(cell),
            Block::Prose(_) => None,
        })
    }

    pub fn cells_mut(&mut self) -> impl Iterator<Item = &mut Cell> {
        self.blocks.iter_mut().filter_map(|block| match block {
            Block::Cell(cell) => Some(cell),
            Block::Prose(_) => None,
        })
    }

    /// Removes every cell's outputs.
    pub fn clear_outputs(&mut self) {
        for cell in self.cells_mut() {
            cell.outputs.clear();
        }
    }
}

/// What executes a cell: the tritlab command language or Rust (evaluated by another crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// One or more lines of the tritlab command language; info string `tritlab`.
    Command,
    /// Rust source; info string `rust`.
    Rust,
}

impl CellKind {
    /// The fenced block's info string word, which is also the language name in exports.
    pub fn info_word(self) -> &'static str {
        match self {
            CellKind::Command => "tritlab",
            CellKind::Rust => "rust",
        }
    }

    pub(crate) fn from_info_word(word: &str) -> Option<Self> {
        match word {
            "tritlab" => Some(CellKind::Command),
            "rust" => Some(CellKind::Rust),
            _ => None,
        }
    }
}

/// A cell: source to execute and the outputs of its last run.
#[derive(Debug, Clone)]
pub struct Cell {
    /// A name that stays the same across runs and edits, for faces and exports to refer to.
    pub id: Option<CellId>,
    pub kind: CellKind,
    /// The source, without the fences. No trailing newline unless the cell ends with a blank line.
    pub source: String,
    pub outputs: Vec<Output>,
    /// The 1-based line of the opening fence in the text this cell was read from.
    source_line: Option<usize>,
}

/// Cells compare by content; where a cell was read from is not part of it.
impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.source == other.source
            && self.outputs == other.outputs
    }
}

impl Cell {
    pub fn new(kind: CellKind, source: impl Into<String>) -> Self {
        Cell {
            id: None,
            kind,
            source: source.into(),
            outputs: Vec::new(),
            source_line: None,
        }
    }

    /// A tritlab command cell.
    pub fn command(source: impl Into<String>) -> Self {
        Cell::new(CellKind::Command, source)
    }

    /// A Rust cell.
    pub fn rust(source: impl Into<String>) -> Self {
        Cell::new(CellKind::Rust, source)
    }

    pub fn with_id(mut self, id: CellId) -> Self {
        self.id = Some(id);
        self
    }

    pub fn with_outputs(mut self, outputs: Vec<Output>) -> Self {
        self.outputs = outputs;
        self
    }

    /// The 1-based line of the cell's opening fence in the text it was parsed from; `None` for a
    /// cell built in memory.
    pub fn source_line(&self) -> Option<usize> {
        self.source_line
    }

    pub(crate) fn set_source_line(&mut self, line: usize) {
        self.source_line = Some(line);
    }
}

/// A cell id: 1 to 64 ASCII letters, digits, `-` or `_`.
///
/// The alphabet and length are Jupyter's (nbformat 4.5), so an id passes into an `.ipynb` export
/// unchanged, and they need no quoting in a fenced block's info string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellId(String);

/// Why a string is not a [`CellId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cell id: use 1 to 64 ASCII letters, digits, `-` or `_`")]
pub struct BadCellId(pub String);

impl CellId {
    pub const MAX_LEN: usize = 64;

    pub fn new(id: impl Into<String>) -> Result<Self, BadCellId> {
        let id = id.into();
        if is_valid_id(&id) {
            Ok(CellId(id))
        } else {
            Err(BadCellId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn is_valid_id(id: &str) -> bool {
    (1..=CellId::MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FromStr for CellId {
    type Err = BadCellId;

    fn from_str(s: &str) -> Result<Self, BadCellId> {
        CellId::new(s)
    }
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A line that holds nothing but spaces and tabs (or nothing at all).
pub(crate) fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b == b' ' || b == b'\t')
}

/// `text` without blank lines at its start or end (the last line keeps no newline).
pub(crate) fn trim_blank_lines(text: &str) -> &str {
    let mut offset = 0;
    let mut non_blank = text
        .split('\n')
        .map(|line| {
            let span = (offset, offset + line.len());
            offset += line.len() + 1;
            span
        })
        .filter(|&(start, end)| !is_blank(&text[start..end]));
    match non_blank.next() {
        Some((start, first_end)) => {
            let end = non_blank.last().map_or(first_end, |(_, end)| end);
            &text[start..end]
        }
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_ids_follow_the_jupyter_alphabet() {
        for good in ["a", "cell-1", "A_b-9", &"x".repeat(64)] {
            assert!(CellId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "caf\u{e9}", "a.b", &"x".repeat(65)] {
            assert!(CellId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trim_blank_lines_keeps_interior_blanks() {
        assert_eq!(trim_blank_lines("\n  \nA\n\n\tB  \n \t\n"), "A\n\n\tB  ");
        assert_eq!(trim_blank_lines(" \n\t\n"), "");
        assert_eq!(trim_blank_lines(""), "");
        assert_eq!(trim_blank_lines("  x"), "  x");
    }

    #[test]
    fn push_prose_merges_and_skips_blank() {
        let mut book = Workbook::new();
        book.push_prose("\n# Title\n");
        book.push_prose("  \n");
        book.push_prose("More.");
        book.push_cell(Cell::command("info default"));
        book.push_prose("After.");
        assert_eq!(
            book.blocks,
            [
                Block::Prose("# Title\n\nMore.".into()),
                Block::Cell(Cell::command("info default")),
                Block::Prose("After.".into()),
            ]
        );
    }

    #[test]
    fn equality_ignores_where_a_cell_was_read() {
        let mut read = Cell::rust("1 + 1");
        read.set_source_line(7);
        assert_eq!(read, Cell::rust("1 + 1"));
        assert_eq!(read.source_line(), Some(7));
    }
}
