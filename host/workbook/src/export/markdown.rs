//! The Markdown exporter: a clean document for reading, e.g. on GitHub, with no version line,
//! cell ids or machine data.
//!
//! Text is a fenced `text` block, an error a bold **Error** over one, a table a GFM pipe table, a
//! trace a line of inline HTML `<span>`s. Images and plots are files in an asset folder beside the
//! export (PNG and SVG, named by content hash) referenced as Markdown images: GitHub strips data
//! URLs and inline SVG, but shows relative image files. GitHub also strips inline styles, so
//! there a trace reads as plain text with its tooltips; other renderers show its colours.

use crate::book::{Block, Cell, Workbook};
use crate::export::escape::markdown_inline;
use crate::export::html::trace_html;
use crate::export::svg::plot_svg;
use crate::export::{Budget, ExportError, ExportFormat};
use crate::format::backticks_for;
use crate::image::{hex, ImageError};
use crate::output::{Output, Table};

/// A Markdown export: the document and the files its images refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkdownExport {
    pub text: String,
    /// Each distinct file once.
    pub files: Vec<ExportFile>,
}

/// A file an export refers to, stored in the asset folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// The name inside the asset folder, e.g. `0123….svg`.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// Renders `book` as Markdown whose images are files in `asset_folder`, beside the export.
///
/// A workbook whose export would pass the export bound (see [`crate::ExportError`]) gets a
/// document that says so instead; [`try_to_markdown`] returns the error.
pub fn to_markdown(book: &Workbook, asset_folder: &str) -> Result<MarkdownExport, ImageError> {
    match try_to_markdown(book, asset_folder) {
        Ok(export) => Ok(export),
        Err(ExportError::Image(error)) => Err(error),
        Err(error) => Ok(MarkdownExport {
            text: format!(
                "**Not exported:** {}\n",
                markdown_inline(&error.to_string())
            ),
            files: Vec::new(),
        }),
    }
}

/// Renders `book` as Markdown whose images are files in `asset_folder`, or fails with
/// [`ExportError::TooLarge`] as soon as the text and files would pass the export bound.
pub fn try_to_markdown(book: &Workbook, asset_folder: &str) -> Result<MarkdownExport, ExportError> {
    let budget = Budget::new(book, ExportFormat::Markdown);
    let mut export = MarkdownExport {
        text: String::new(),
        files: Vec::new(),
    };
    for block in &book.blocks {
        if !export.text.is_empty() {
            export.text.push('\n');
        }
        match block {
            Block::Prose(prose) => {
                export.text.push_str(prose);
                export.text.push('\n');
            }
            Block::Cell(cell) => write_cell(&mut export, cell, asset_folder, &budget)?,
        }
        budget.check(export.size())?;
    }
    Ok(export)
}

fn write_cell(
    export: &mut MarkdownExport,
    cell: &Cell,
    folder: &str,
    budget: &Budget,
) -> Result<(), ExportError> {
    fenced(&mut export.text, cell.kind.info_word(), &cell.source);
    for output in &cell.outputs {
        // Each output is a constant multiple of its own size, so a check per output keeps the
        // export within the bound plus one output.
        budget.check(export.size())?;
        export.text.push('\n');
        match output {
            Output::Text(text) => fenced(&mut export.text, "text", text),
            Output::Error(message) => {
                export.text.push_str("**Error**\n\n");
                fenced(&mut export.text, "text", message);
            }
            Output::Trace(trace) => {
                title_line(&mut export.text, trace.title.as_deref());
                export.text.push_str(&trace_html(trace));
                export.text.push('\n');
            }
            Output::Table(table) => {
                title_line(&mut export.text, table.title.as_deref());
                pipe_table(&mut export.text, table);
            }
            Output::Image(image) => {
                let file_name = format!("{}.png", image.content_hash());
                export.add_file(&file_name, || image.to_png())?;
                image_line(&mut export.text, image.title(), folder, &file_name);
            }
            Output::Plot(plot) => {
                let svg = plot_svg(plot);
                let digest = blake3::hash(svg.as_bytes());
                let file_name = format!("{}.svg", hex(&digest.as_bytes()[..16]));
                export.add_file(&file_name, || Ok(svg.into_bytes()))?;
                image_line(&mut export.text, plot.title.as_deref(), folder, &file_name);
            }
        }
    }
    Ok(())
}

impl MarkdownExport {
    /// The bytes of the text and the files together.
    fn size(&self) -> usize {
        self.files
            .iter()
            .map(|file| file.bytes.len())
            .fold(self.text.len(), usize::saturating_add)
    }

    fn add_file(
        &mut self,
        file_name: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>, ImageError>,
    ) -> Result<(), ImageError> {
        if !self.files.iter().any(|file| file.file_name == file_name) {
            self.files.push(ExportFile {
                file_name: file_name.to_owned(),
                bytes: bytes()?,
            });
        }
        Ok(())
    }
}

fn fenced(text: &mut String, info: &str, body: &str) {
    let fence = backticks_for(body);
    text.push_str(&format!("{fence}{info}\n"));
    if !body.is_empty() {
        text.push_str(body);
        text.push('\n');
    }
    text.push_str(&fence);
    text.push('\n');
}

fn title_line(text: &mut String, title: Option<&str>) {
    // Trimmed: `** x**` would not be bold.
    if let Some(title) = title.map(str::trim).filter(|t| !t.is_empty()) {
        text.push_str(&format!("**{}**\n\n", markdown_inline(title)));
    }
}

fn image_line(text: &mut String, title: Option<&str>, folder: &str, file_name: &str) {
    let alt = markdown_inline(title.unwrap_or("")).replace("<br>", " ");
    text.push_str(&format!("![{alt}]({}/{file_name})\n", url_path(folder)));
}

/// Percent-encodes what a Markdown link destination cannot hold as is.
fn url_path(folder: &str) -> String {
    folder
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A short body row is padded with empty cells only when it lacks at most this many; a row
/// lacking more is left short, which GFM readers fill in themselves.
const MAX_PADDED_CELLS: usize = 16;

/// A GFM pipe table. The header row and delimiter row span the widest row. Body rows are padded
/// to it, for readable source, only when few cells are missing: padding every row to the widest
/// would make one wide row and many short ones quadratic (100 000 empty rows under a
/// 100 000-column header, 1 MB of workbook, would be 30 GB of pipes).
fn pipe_table(text: &mut String, table: &Table) {
    let width = table.width();
    if width == 0 {
        text.push_str("*(empty table)*\n");
        return;
    }
    let row = |text: &mut String, cells: &[String]| {
        let missing = width - cells.len();
        let pad_to = if missing <= MAX_PADDED_CELLS {
            width
        } else {
            cells.len().max(1)
        };
        text.push('|');
        for cell in cells {
            text.push(' ');
            text.push_str(&markdown_inline(cell));
            text.push_str(" |");
        }
        for _ in cells.len()..pad_to {
            text.push_str("  |");
        }
        text.push('\n');
    };
    // The header always spans the table: GFM takes the column count from it.
    let mut header = table.columns.clone();
    header.resize(width, String::new());
    row(text, &header);
    text.push_str(&format!("|{}\n", " --- |".repeat(width)));
    for cells in &table.rows {
        row(text, cells);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::output::{Plot, Series};

    #[test]
    fn tables_escape_pipes_and_pad_rows() {
        let mut text = String::new();
        pipe_table(
            &mut text,
            &Table {
                title: None,
                columns: vec!["a|b".into(), "c".into()],
                rows: vec![vec!["*1*".into()]],
            },
        );
        assert_eq!(text, "| a\\|b | c |\n| --- | --- |\n| \\*1\\* |  |\n");
    }

    #[test]
    fn very_short_rows_are_not_padded_and_read_back_full_width() {
        let mut text = String::new();
        let width = MAX_PADDED_CELLS + 2;
        pipe_table(
            &mut text,
            &Table {
                title: None,
                columns: vec!["h".into()],
                rows: vec![vec!["1".into(); width], vec!["2".into()], vec![]],
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("| h |{}", "  |".repeat(width - 1)));
        assert_eq!(lines[3..], ["| 2 |", "|  |"]);
        // A GFM reader fills the short rows: every row has the header's cells.
        let mut html = String::new();
        let parser = pulldown_cmark::Parser::new_ext(&text, pulldown_cmark::Options::ENABLE_TABLES);
        pulldown_cmark::html::push_html(&mut html, parser);
        assert_eq!(html.matches("<tr>").count(), 4, "{html}");
        assert_eq!(html.matches("<td").count(), 3 * width, "{html}");
    }

    #[test]
    fn images_and_plots_become_files_once() {
        let image = Image::new(1, 1, vec![0, 0, 0, 255])
            .unwrap()
            .with_title("dot");
        let plot = Plot {
            series: vec![Series {
                name: "s".into(),
                points: vec![[0.0, 0.0], [1.0, 1.0]],
            }],
            ..Plot::default()
        };
        let mut book = Workbook::new();
        book.push_cell(Cell::command("x").with_outputs(vec![
            Output::Image(image.clone()),
            Output::Image(image.clone()),
            Output::Plot(plot),
        ]));
        let export = to_markdown(&book, "my book.assets").unwrap();
        assert_eq!(export.files.len(), 2);
        let png = format!("![dot](my%20book.assets/{}.png)", image.content_hash());
        assert_eq!(export.text.matches(&png).count(), 2, "{}", export.text);
        assert!(export.text.contains(".svg)"), "{}", export.text);
        assert!(export.files[1].bytes.starts_with(b"<svg"));
    }
}
