//! Writing workbook text in its canonical shape: the version line, then blocks separated by one
//! blank line, each cell followed by its outputs.

use std::collections::HashSet;

use crate::assets;
use crate::book::{Block, Cell, Workbook};
use crate::format::{body, fence, VERSION_LINE};
use crate::image::Image;
use crate::output::Output;

/// A workbook rendered to text, with the images the text refers to.
#[derive(Debug, Clone)]
pub struct Rendered<'b> {
    /// The workbook file's contents, ending with a newline.
    pub text: String,
    /// Each distinct image once, with the path its image line names.
    pub images: Vec<ImageAsset<'b>>,
}

/// An image the rendered text refers to, to be stored at `path`.
#[derive(Debug, Clone)]
pub struct ImageAsset<'b> {
    /// `folder/hash.png`, relative to the workbook's directory.
    pub path: String,
    /// `hash.png`, the file's name inside the asset folder.
    pub file_name: String,
    pub image: &'b Image,
}

/// Renders `book`, with image files in the folder `asset_folder` beside the book.
pub(crate) fn render<'b>(book: &'b Workbook, asset_folder: &str) -> Rendered<'b> {
    let mut text = String::new();
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    text.push_str(VERSION_LINE);
    text.push('\n');
    for block in &book.blocks {
        text.push('\n');
        match block {
            Block::Prose(prose) => {
                text.push_str(prose);
                text.push('\n');
            }
            Block::Cell(cell) => write_cell(&mut text, cell, asset_folder, &mut |image| {
                let hash = image.content_hash();
                if seen.insert(hash.clone()) {
                    images.push(ImageAsset {
                        path: format!("{asset_folder}/{hash}.png"),
                        file_name: format!("{hash}.png"),
                        image,
                    });
                }
                hash
            }),
        }
    }
    Rendered { text, images }
}

/// Writes a cell and its outputs; `store` registers an image and returns its hash.
fn write_cell<'b>(
    text: &mut String,
    cell: &'b Cell,
    asset_folder: &str,
    store: &mut dyn FnMut(&'b Image) -> String,
) {
    let mut info = cell.kind.info_word().to_owned();
    if let Some(id) = &cell.id {
        info.push_str(" id=");
        info.push_str(id.as_str());
    }
    write_fenced(text, &info, &cell.source);
    for output in &cell.outputs {
        text.push('\n');
        match output {
            Output::Image(image) => {
                let hash = store(image);
                text.push_str(&assets::image_line(image.title(), asset_folder, &hash));
                text.push('\n');
            }
            other => {
                let body = body::encode(other).unwrap_or_default();
                write_fenced(text, &format!("output {}", other.kind()), &body);
            }
        }
    }
}

/// A fenced block whose fence no body line can close. An empty body has no lines at all, so the
/// body reads back exactly: `"x\n"` is two lines, `"x"` and an empty one.
fn write_fenced(text: &mut String, info: &str, body: &str) {
    let fence = fence::backticks_for(body);
    text.push_str(&fence);
    text.push_str(info);
    text.push('\n');
    if !body.is_empty() {
        text.push_str(body);
        text.push('\n');
    }
    text.push_str(&fence);
    text.push('\n');
}
