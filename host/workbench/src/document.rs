//! The open workbook as the workbench edits it: its blocks, each with a key that stays the same
//! while cells are added, removed, moved and run, plus where it lives on disk and whether it has
//! changed since it was saved.
//!
//! The key is what a running job and the view's per-cell state refer to, so a cell can be
//! removed or moved while its job runs without the output landing in the wrong place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tritlab_workbook::{Block, Cell, CellKind, Output, Workbook};

/// Names one block for as long as it exists. Keys are unique across every document the
/// process opens, so nothing keyed by an old document's block can be mistaken for a new one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey(u64);

/// One block and its key.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: BlockKey,
    pub block: Block,
    /// The document revision at which this block's outputs last changed: with the key, it names
    /// the outputs' current contents (textures are cached by it).
    pub outputs_revision: u64,
}

/// The open workbook.
#[derive(Debug, Clone, Default)]
pub struct Document {
    entries: Vec<Entry>,
    path: Option<PathBuf>,
    /// Bumped by every change; saving records the revision it saved.
    revision: u64,
    saved_revision: u64,
}

impl Document {
    /// An empty, untitled document.
    pub fn new() -> Self {
        Document::default()
    }

    /// A document holding `book`, read from (or to be saved to) `path`.
    pub fn from_workbook(book: Workbook, path: Option<PathBuf>) -> Self {
        let mut doc = Document {
            path,
            ..Document::default()
        };
        for block in book.blocks {
            let key = fresh_key();
            doc.entries.push(Entry {
                key,
                block,
                outputs_revision: 0,
            });
        }
        doc
    }

    /// The workbook as it would be saved now.
    pub fn to_workbook(&self) -> Workbook {
        Workbook {
            blocks: self.entries.iter().map(|e| e.block.clone()).collect(),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file name to show in the title bar.
    pub fn title(&self) -> String {
        self.path
            .as_deref()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "untitled".to_owned())
    }

    /// Changed since it was last saved (or since it was opened).
    pub fn is_dirty(&self) -> bool {
        self.revision != self.saved_revision
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Records that the document as it was at `revision` is now in the file at `path`.
    pub fn mark_saved(&mut self, path: PathBuf, revision: u64) {
        self.path = Some(path);
        self.saved_revision = revision;
    }

    /// Marks the document as changed, e.g. after it was recovered from an autosave.
    pub fn mark_dirty(&mut self) {
        self.touch();
    }

    pub fn position(&self, key: BlockKey) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    pub fn block(&self, key: BlockKey) -> Option<&Block> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.block)
    }

    pub fn cell(&self, key: BlockKey) -> Option<&Cell> {
        match self.block(key)? {
            Block::Cell(cell) => Some(cell),
            Block::Prose(_) => None,
        }
    }

    /// The keys of every cell, in order.
    pub fn cell_keys(&self) -> Vec<BlockKey> {
        self.entries
            .iter()
            .filter(|e| matches!(e.block, Block::Cell(_)))
            .map(|e| e.key)
            .collect()
    }

    /// The 1-based number of the cell, as the workbook format counts cells (prose not counted).
    pub fn cell_number(&self, key: BlockKey) -> Option<usize> {
        self.cell_keys()
            .iter()
            .position(|&k| k == key)
            .map(|i| i + 1)
    }

    /// Replaces a cell's source; returns whether there was such a cell.
    pub fn set_source(&mut self, key: BlockKey, source: String) -> bool {
        let changed = match self.block_mut(key) {
            Some(Block::Cell(cell)) if cell.source != source => {
                cell.source = source;
                true
            }
            _ => false,
        };
        if changed {
            self.touch();
        }
        changed
    }

    /// Replaces a prose block's text.
    pub fn set_prose(&mut self, key: BlockKey, text: String) -> bool {
        let changed = match self.block_mut(key) {
            Some(Block::Prose(prose)) if *prose != text => {
                *prose = text;
                true
            }
            _ => false,
        };
        if changed {
            self.touch();
        }
        changed
    }

    /// Replaces a cell's outputs (a run's results).
    pub fn set_outputs(&mut self, key: BlockKey, outputs: Vec<Output>) -> bool {
        let revision = self.revision + 1;
        let Some(entry) = self.entries.iter_mut().find(|e| e.key == key) else {
            return false;
        };
        let Block::Cell(cell) = &mut entry.block else {
            return false;
        };
        if cell.outputs != outputs {
            cell.outputs = outputs;
            entry.outputs_revision = revision;
            self.touch();
        }
        true
    }

    /// Removes every cell's outputs.
    pub fn clear_outputs(&mut self) {
        let revision = self.revision + 1;
        let mut changed = false;
        for entry in &mut self.entries {
            if let Block::Cell(cell) = &mut entry.block {
                if !cell.outputs.is_empty() {
                    cell.outputs.clear();
                    entry.outputs_revision = revision;
                    changed = true;
                }
            }
        }
        if changed {
            self.touch();
        }
    }

    /// Inserts a new cell after `after` (at the end when `None` or not found); returns its key.
    pub fn insert_cell(
        &mut self,
        after: Option<BlockKey>,
        kind: CellKind,
        source: &str,
    ) -> BlockKey {
        self.insert(after, Block::Cell(Cell::new(kind, source)))
    }

    /// Inserts new prose after `after` (at the end when `None` or not found).
    pub fn insert_prose(&mut self, after: Option<BlockKey>, text: &str) -> BlockKey {
        self.insert(after, Block::Prose(text.to_owned()))
    }

    /// Removes a block; returns it if it existed.
    pub fn remove(&mut self, key: BlockKey) -> Option<Block> {
        let index = self.position(key)?;
        let entry = self.entries.remove(index);
        self.touch();
        Some(entry.block)
    }

    /// Moves a block one place up (`-1`) or down (`+1`); returns whether it moved.
    pub fn shift(&mut self, key: BlockKey, by: isize) -> bool {
        let Some(index) = self.position(key) else {
            return false;
        };
        let Some(target) = index.checked_add_signed(by) else {
            return false;
        };
        if target >= self.entries.len() {
            return false;
        }
        self.entries.swap(index, target);
        self.touch();
        true
    }

    fn insert(&mut self, after: Option<BlockKey>, block: Block) -> BlockKey {
        let key = fresh_key();
        let index = after
            .and_then(|after| self.position(after))
            .map_or(self.entries.len(), |i| i + 1);
        self.entries.insert(
            index,
            Entry {
                key,
                block,
                outputs_revision: self.revision,
            },
        );
        self.touch();
        key
    }

    fn block_mut(&mut self, key: BlockKey) -> Option<&mut Block> {
        self.entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.block)
    }

    fn touch(&mut self) {
        self.revision += 1;
    }
}

fn fresh_key() -> BlockKey {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    BlockKey(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The text a cell hands to the session: command cells as they are, Rust cells as a `:rust`
/// block of the command language.
pub fn cell_script(cell: &Cell) -> String {
    match cell.kind {
        CellKind::Command => cell.source.clone(),
        CellKind::Rust => format!(":rust\n{}\n:end", cell.source.trim_end_matches('\n')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Document {
        let book = Workbook::parse(
            "<!-- tritlab-workbook v1 -->\n\n# Title\n\n```tritlab\ninfo\n```\n\n```output text\nold\n```\n\n```rust\nlet x = 1;\n```\n",
        )
        .unwrap();
        Document::from_workbook(book, Some(PathBuf::from("/tmp/t.md")))
    }

    #[test]
    fn round_trips_and_tracks_changes() {
        let mut doc = sample();
        assert_eq!(doc.entries().len(), 3);
        assert!(!doc.is_dirty());
        assert_eq!(
            doc.to_workbook(),
            Workbook::parse(&doc.to_workbook().render("t.assets").text).unwrap()
        );

        let cells = doc.cell_keys();
        assert_eq!(cells.len(), 2);
        assert_eq!(doc.cell_number(cells[1]), Some(2));
        assert!(doc.set_outputs(cells[0], vec![Output::Text("new".into())]));
        assert!(doc.is_dirty());
        let revision = doc.revision();
        doc.mark_saved(PathBuf::from("/tmp/t.md"), revision);
        assert!(!doc.is_dirty());
        assert_eq!(doc.title(), "t.md");
    }

    #[test]
    fn keys_survive_inserts_moves_and_removals() {
        let mut doc = sample();
        let cells = doc.cell_keys();
        let added = doc.insert_cell(Some(cells[0]), CellKind::Command, "layers");
        assert_eq!(doc.position(added), Some(2));
        assert!(doc.shift(added, 1));
        assert_eq!(doc.position(added), Some(3));
        assert!(!doc.shift(added, 1));
        doc.remove(cells[0]);
        assert_eq!(doc.cell(added).unwrap().source, "layers");
        assert_eq!(doc.cell_number(added), Some(2));
        assert!(doc.cell(cells[0]).is_none());
        assert!(!doc.set_outputs(cells[0], Vec::new()));
    }

    #[test]
    fn rust_cells_become_rust_blocks() {
        let doc = sample();
        let rust = doc.cell(doc.cell_keys()[1]).unwrap();
        assert_eq!(cell_script(rust), ":rust\nlet x = 1;\n:end");
        assert!(tritlab_session::parse_script(&cell_script(rust)).is_ok());
    }
}
