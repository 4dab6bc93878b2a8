//! The workbook text format, version 1 (specified in `workbooks/README.md`).

use std::collections::HashMap;

use crate::assets::{AssetSource, NoAssets};
use crate::book::{trim_blank_lines, Block, Workbook};
use crate::error::{ParseError, Unwritable};

mod body;
mod fence;
mod parse;
mod write;

pub use write::{ImageAsset, Rendered};

pub(crate) use fence::backticks_for;
pub(crate) use parse::parse;
pub(crate) use write::render;

/// The version of the format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of every version-1 workbook.
pub const VERSION_LINE: &str = "<!-- tritlab-workbook v1 -->";

/// What the first line of a workbook of any version starts with.
pub(crate) const VERSION_PREFIX: &str = "<!-- tritlab-workbook ";

impl Workbook {
    /// Parses workbook text that has no asset folder: an image output is an error. Use
    /// [`Workbook::load`] for a file, or [`Workbook::parse_with_assets`].
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parse(text, &NoAssets)
    }

    /// Parses workbook text, reading image outputs through `assets`.
    pub fn parse_with_assets(text: &str, assets: &dyn AssetSource) -> Result<Self, ParseError> {
        parse(text, assets)
    }

    /// Renders the workbook's text, naming images as files in `asset_folder` (a folder beside the
    /// workbook; [`Workbook::save`] uses the book's name with `.assets`). Parsing the text with
    /// those images gives back an equal workbook, provided [`Workbook::check_writable`] passes.
    pub fn render(&self, asset_folder: &str) -> Rendered<'_> {
        render(self, asset_folder)
    }

    /// Checks what the types allow but the text cannot hold: two cells with one id, and prose
    /// that would read back as something else (an unclosed fence, a cell or output written into
    /// it). Blank lines around prose and adjacent prose blocks are fine: they only normalise.
    /// [`Workbook::save`] refuses a workbook that fails this, rather than write a file that reads
    /// back differently or not at all.
    pub fn check_writable(&self) -> Result<(), Unwritable> {
        let mut ids = HashMap::new();
        for (index, cell) in self.cells().enumerate() {
            if let Some(id) = &cell.id {
                if let Some(first) = ids.insert(id.as_str(), index + 1) {
                    return Err(Unwritable::DuplicateId {
                        id: id.to_string(),
                        first,
                        number: index + 1,
                    });
                }
            }
        }
        let proses = self.blocks.iter().filter_map(|block| match block {
            Block::Prose(prose) => Some(prose),
            Block::Cell(_) => None,
        });
        for (index, prose) in proses.enumerate() {
            let trimmed = trim_blank_lines(prose);
            let expected = if trimmed.is_empty() {
                Vec::new()
            } else {
                vec![Block::Prose(trimmed.to_owned())]
            };
            let reason = match parse(&format!("{VERSION_LINE}\n{prose}"), &NoAssets) {
                Ok(book) if book.blocks == expected => continue,
                Ok(_) => "it holds a cell or an output".to_owned(),
                // The version line shifts the prose down by one line.
                Err(error) => format!("its line {}: {}", error.line.saturating_sub(1), error.kind),
            };
            return Err(Unwritable::Prose {
                number: index + 1,
                reason,
            });
        }
        Ok(())
    }
}
