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
pub fn to_markdown(book: &Workbook, asset_folder: &str) -> Result<MarkdownExport, ImageError> {
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
            Block::Cell(cell) => write_cell(&mut export, cell, asset_folder)?,
        }
    }
    Ok(export)
}

fn write_cell(export: &mut MarkdownExport, cell: &Cell, folder: &str) -> Result<(), ImageError> {
    fenced(&mut export.text, cell.kind.info_word(), &cell.source);
    for output in &cell.outputs {
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

fn pipe_table(text: &mut String, table: &Table) {
    let width = table.width();
    if width == 0 {
        text.push_str("*(empty table)*\n");
        return;
    }
    let row = |cells: &[String]| {
        let cells: Vec<String> = (0..width)
            .map(|i| cells.get(i).map_or(String::new(), |c| markdown_inline(c)))
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    text.push_str(&row(&table.columns));
    text.push_str(&format!("|{}\n", " --- |".repeat(width)));
    for cells in &table.rows {
        text.push_str(&row(cells));
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
