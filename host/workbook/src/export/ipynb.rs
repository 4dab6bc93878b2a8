//! The Jupyter exporter: nbformat 4.5, which every notebook viewer reads.
//!
//! Only keys the nbformat schema defines are written; tritlab's own facts (cell language, format
//! version) live under `metadata.tritlab`, where the schema allows anything. Cell ids follow the
//! schema's rule (unique, 1–64 of `[A-Za-z0-9_-]`): a cell's own id when it has one, otherwise a
//! generated `md-N` or `cell-N`, made unique against the ids already taken.

use std::collections::HashSet;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::book::{Block, Cell, Workbook};
use crate::export::html::output_html;
use crate::export::svg::plot_svg;
use crate::format::FORMAT_VERSION;
use crate::output::{Output, Table};

/// The workbook as an `.ipynb` document (pretty-printed JSON, ending with a newline).
pub fn to_ipynb(book: &Workbook) -> String {
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
            "kernelspec": {"name": "tritlab", "display_name": "tritlab", "language": "tritlab"},
            "language_info": {"name": "tritlab"},
            "tritlab": {"workbook_format": FORMAT_VERSION},
        },
        "cells": cells,
    });
    let mut text = serde_json::to_string_pretty(&notebook).unwrap_or_default();
    text.push('\n');
    text
}

fn code_cell(cell: &Cell, id: String, number: usize) -> Value {
    // A cell with outputs has run; its number stands in for Jupyter's execution counter.
    let execution_count = (!cell.outputs.is_empty()).then_some(number);
    json!({
        "cell_type": "code",
        "id": id,
        "metadata": {"tritlab": {"language": cell.kind.info_word()}},
        "execution_count": execution_count,
        "outputs": cell.outputs.iter().map(output_json).collect::<Vec<_>>(),
        "source": multiline(&cell.source),
    })
}

fn output_json(output: &Output) -> Value {
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
            Err(error) => output_json(&Output::Error(format!("cannot encode image: {error}"))),
        },
        Output::Trace(trace) => display_html(output_html(output), trace.text()),
        Output::Table(table) => display_html(output_html(output), table_text(table)),
        Output::Plot(plot) => display_html(
            plot_svg(plot),
            format!(
                "<plot{}: {} series>",
                plot.title
                    .as_deref()
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default(),
                plot.series.len()
            ),
        ),
    }
}

fn display_html(html: String, plain: String) -> Value {
    json!({
        "output_type": "display_data",
        "data": {"text/html": multiline(&html), "text/plain": multiline(&plain)},
        "metadata": {},
    })
}

/// A table as aligned plain text, for viewers that show only `text/plain`.
fn table_text(table: &Table) -> String {
    let width = table.width();
    let rows: Vec<&[String]> = std::iter::once(table.columns.as_slice())
        .chain(table.rows.iter().map(Vec::as_slice))
        .collect();
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            rows.iter()
                .map(|row| row.get(i).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut lines: Vec<String> = table.title.iter().cloned().collect();
    for row in rows {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| format!("{:<w$}", row.get(i).map_or("", String::as_str)))
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
    fn table_text_aligns_columns() {
        let table = Table {
            title: Some("T".into()),
            columns: vec!["name".into(), "n".into()],
            rows: vec![vec!["q".into(), "12".into()]],
        };
        assert_eq!(table_text(&table), "T\nname  n\nq     12");
    }
}
