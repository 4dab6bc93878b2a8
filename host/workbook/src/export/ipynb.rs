//! The Jupyter exporter: nbformat 4.5, which every notebook viewer reads.
//!
//! Only keys the nbformat schema defines are written; tritlab's own facts (cell language, format
//! version) live under `metadata.tritlab`, where the schema allows anything. Cell ids follow the
//! schema's rule (unique, 1–64 of `[A-Za-z0-9_-]`): a cell's own id when it has one, otherwise a
//! generated `md-N` or `cell-N`, made unique against the ids already taken.

use std::collections::HashSet;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::book::{Block, Cell, CellKind, Workbook};
use crate::export::html::output_html;
use crate::export::svg::plot_svg;
use crate::export::{BoundedBytes, Budget, ExportError, ExportFormat};
use crate::format::FORMAT_VERSION;
use crate::output::{Output, Table};

/// The workbook as an `.ipynb` document (pretty-printed JSON, ending with a newline).
///
/// A workbook whose notebook would pass the export bound (see [`crate::ExportError`]) gets a
/// notebook of one Markdown cell that says so instead; [`try_to_ipynb`] returns the error.
pub fn to_ipynb(book: &Workbook) -> String {
    try_to_ipynb(book).unwrap_or_else(|error| {
        let notebook = json!({
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"tritlab": {"workbook_format": FORMAT_VERSION}},
            "cells": [{
                "cell_type": "markdown",
                "id": "md-1",
                "metadata": {},
                "source": format!("**Not exported:** {error}"),
            }],
        });
        let mut text = serde_json::to_string_pretty(&notebook).unwrap_or_default();
        text.push('\n');
        text
    })
}

/// The workbook as an `.ipynb` document, or [`ExportError::TooLarge`] as soon as the notebook
/// would pass the export bound.
pub fn try_to_ipynb(book: &Workbook) -> Result<String, ExportError> {
    let budget = Budget::new(book, ExportFormat::Ipynb);
    let mut ids = IdAllocator::new(book);
    let mut cells = Vec::new();
    let (mut number, mut prose_number) = (0, 0);
    for block in &book.blocks {
        match block {
            Block::Prose(markdown) => {
                prose_number += 1;
                cells.push(json!({
                    "cell_type": "markdown",
                    "id": ids.generated("md", prose_number),
                    "metadata": {},
                    "source": multiline(markdown),
                }));
            }
            Block::Cell(cell) => {
                number += 1;
                let id = match &cell.id {
                    Some(id) => ids.owned(id.as_str(), number),
                    None => ids.generated("cell", number),
                };
                cells.push(code_cell(cell, id, number));
            }
        }
    }
    let notebook = json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            // The kernelspec `tritlab kernel install` writes, so Jupyter runs the notebook with
            // the tritlab kernel.
            "kernelspec": {"name": "tritlab", "display_name": "tritlab", "language": "tritlab"},
            "language_info": {
                "name": "tritlab",
                "version": env!("CARGO_PKG_VERSION"),
                "mimetype": "text/x-tritlab",
                "file_extension": ".tritlab",
            },
            "tritlab": {"workbook_format": FORMAT_VERSION},
        },
        "cells": cells,
    });
    // Every cell's JSON is a constant multiple of its content; the bound is enforced as the
    // text is written.
    let mut out = BoundedBytes {
        bytes: Vec::new(),
        limit: budget.left(1),
        overflowed: false,
    };
    if serde_json::to_writer_pretty(&mut out, &notebook).is_err() || out.overflowed {
        return Err(budget.exceeded());
    }
    // serde_json writes UTF-8.
    let mut text = String::from_utf8(out.bytes).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

fn code_cell(cell: &Cell, id: String, number: usize) -> Value {
    // A cell with outputs has run; its number stands in for Jupyter's execution counter.
    let execution_count = (!cell.outputs.is_empty()).then_some(number);
    json!({
        "cell_type": "code",
        "id": id,
        "metadata": {"tritlab": {"language": cell.kind.info_word()}},
        "execution_count": execution_count,
        "outputs": cell.outputs.iter().map(notebook_output).collect::<Vec<_>>(),
        "source": multiline(&kernel_source(cell)),
    })
}

/// The cell's source as the tritlab kernel runs it: a Rust cell opens with a `:rust` line (the
/// kernel closes the block), so the notebook runs as it reads in any Jupyter front end.
fn kernel_source(cell: &Cell) -> String {
    match cell.kind {
        CellKind::Command => cell.source.clone(),
        CellKind::Rust => format!(":rust\n{}", cell.source),
    }
}

/// One typed output as an nbformat output (`stream`, `display_data` or `error`, with its MIME
/// bundle). The tritlab kernel publishes the same dictionaries on IOPub, so a notebook run live
/// and one exported from a workbook show the same MIME types.
pub fn notebook_output(output: &Output) -> Value {
    match output {
        Output::Text(text) => json!({
            "output_type": "stream",
            "name": "stdout",
            "text": multiline(text),
        }),
        Output::Error(message) => json!({
            "output_type": "error",
            "ename": "Error",
            "evalue": message,
            "traceback": message.split('\n').collect::<Vec<_>>(),
        }),
        Output::Image(image) => match image.to_png() {
            Ok(png) => json!({
                "output_type": "display_data",
                "data": {
                    "image/png": base64::engine::general_purpose::STANDARD.encode(png),
                    "text/plain": format!(
                        "<image {}×{}{}>",
                        image.width(),
                        image.height(),
                        image.title().map(|t| format!(": {t}")).unwrap_or_default()
                    ),
                },
                "metadata": {"image/png": {"width": image.width(), "height": image.height()}},
            }),
            Err(error) => notebook_output(&Output::Error(format!("cannot encode image: {error}"))),
        },
        Output::Trace(trace) => display_html(output_html(output), trace.text()),
        Output::Table(table) => display_html(output_html(output), table_text(table)),
        Output::Plot(plot) => {
            let svg = plot_svg(plot);
            let mut bundle = display_html(
                svg.clone(),
                format!(
                    "<plot{}: {} series>",
                    plot.title
                        .as_deref()
                        .map(|t| format!(" {t}"))
                        .unwrap_or_default(),
                    plot.series.len()
                ),
            );
            // The picture as SVG too, for front ends and converters that take images only.
            bundle["data"]["image/svg+xml"] = json!(multiline(&svg));
            bundle
        }
    }
}

fn display_html(html: String, plain: String) -> Value {
    json!({
        "output_type": "display_data",
        "data": {"text/html": multiline(&html), "text/plain": multiline(&plain)},
        "metadata": {},
    })
}

/// Columns wider than this are not padded further: one long cell must not pad every row.
const MAX_ALIGNED_WIDTH: usize = 40;

/// A table as aligned plain text, for viewers that show only `text/plain`.
///
/// Each row writes only its own cells (missing trailing cells are blank anyway) and pads each to
/// its column's width, at most [`MAX_ALIGNED_WIDTH`] characters: so the text is linear in the
/// table, where padding every row to the widest row and the longest cell was quadratic.
fn table_text(table: &Table) -> String {
    let rows: Vec<&[String]> = std::iter::once(table.columns.as_slice())
        .chain(table.rows.iter().map(Vec::as_slice))
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        if widths.len() < row.len() {
            widths.resize(row.len(), 0);
        }
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(cell.chars().count().min(MAX_ALIGNED_WIDTH));
        }
    }
    let mut lines: Vec<String> = table.title.iter().cloned().collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        lines.push(cells.join("  ").trim_end().to_owned());
    }
    lines.join("\n")
}

/// Jupyter's multiline string: a list of lines, each but the last keeping its `\n`.
fn multiline(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Hands out cell ids that are unique in the notebook, never taking one a cell owns.
struct IdAllocator {
    /// Every id a cell owns, and every id handed out.
    taken: HashSet<String>,
    /// Owned ids already handed out: a workbook built in memory may repeat one, and a notebook
    /// may not.
    used_owned: HashSet<String>,
}

impl IdAllocator {
    fn new(book: &Workbook) -> Self {
        IdAllocator {
            taken: book
                .cells()
                .filter_map(|cell| cell.id.as_ref().map(ToString::to_string))
                .collect(),
            used_owned: HashSet::new(),
        }
    }

    /// A cell's own id, or a generated one if an earlier cell already used it.
    fn owned(&mut self, id: &str, n: usize) -> String {
        if self.used_owned.insert(id.to_owned()) {
            id.to_owned()
        } else {
            self.generated("cell", n)
        }
    }

    fn generated(&mut self, prefix: &str, n: usize) -> String {
        let base = format!("{prefix}-{n}");
        let mut candidate = base.clone();
        let mut suffix = 1;
        while !self.taken.insert(candidate.clone()) {
            suffix += 1;
            candidate = format!("{base}-{suffix}");
        }
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::CellId;

    #[test]
    fn generated_ids_avoid_owned_ones() {
        let mut book = Workbook::new();
        book.push_cell(Cell::command("a").with_id(CellId::new("cell-2").unwrap()));
        book.push_cell(Cell::command("b"));
        book.push_cell(Cell::command("c").with_id(CellId::new("cell-2").unwrap()));
        let notebook: Value = serde_json::from_str(&to_ipynb(&book)).unwrap();
        let ids: Vec<&str> = notebook["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cell| cell["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["cell-2", "cell-2-2", "cell-3"]);
    }

    #[test]
    fn multiline_keeps_newlines_but_the_last() {
        assert_eq!(multiline("a\nb\n"), ["a\n", "b\n"]);
        assert_eq!(multiline("a\nb"), ["a\n", "b"]);
        assert!(multiline("").is_empty());
    }

    #[test]
    fn table_text_pads_only_to_a_bounded_width_and_only_present_cells() {
        let long = "x".repeat(1000);
        let table = Table {
            title: None,
            columns: vec![long.clone(), "b".into()],
            rows: vec![vec!["1".into(), "2".into()], vec![], vec!["3".into()]],
        };
        let text = table_text(&table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{long}  b"));
        assert_eq!(
            lines[1],
            format!("1{}  2", " ".repeat(MAX_ALIGNED_WIDTH - 1))
        );
        assert_eq!(lines[2..], ["", "3"]);
    }

    #[test]
    fn table_text_aligns_columns() {
        let table = Table {
            title: Some("T".into()),
            columns: vec!["name".into(), "n".into()],
            rows: vec![vec!["q".into(), "12".into()]],
        };
        assert_eq!(table_text(&table), "T\nname  n\nq     12");
    }
}
