//! A workbook with every kind of output, shared by the integration tests.
#![allow(dead_code)]

use tritlab_workbook::{
    Cell, CellId, Image, Output, Plot, Rgb, Series, Table, Trace, TraceToken, Trit, Workbook,
};

/// A 4×2 image with distinct pixels.
pub fn image() -> Image {
    let rgba = (0..8u8)
        .flat_map(|i| [i * 30, 255 - i * 30, 128, 255])
        .collect();
    Image::new(4, 2, rgba)
        .unwrap()
        .with_title("trit map <q_proj>")
}

pub fn trace() -> Trace {
    Trace {
        title: Some("gay-tracer".into()),
        tokens: vec![
            TraceToken {
                text: "<To>".into(),
                rgb: Some(Rgb([0xd6, 0x27, 0x28])),
                trit: Some(Trit::Negative),
                note: None,
            },
            TraceToken {
                text: " be & \"not\"".into(),
                rgb: Some(Rgb([0xf0, 0xf0, 0x60])),
                trit: Some(Trit::Positive),
                note: Some("hue 60°".into()),
            },
            TraceToken::plain("\n"),
        ],
    }
}

pub fn table() -> Table {
    Table {
        title: Some("Trit counts".into()),
        columns: vec!["layer".into(), "-1".into(), "0".into(), "+1".into()],
        rows: vec![
            vec!["q_proj".into(), "12".into(), "20".into(), "13".into()],
            vec!["k|proj <b>".into(), "6".into()],
        ],
    }
}

pub fn plot() -> Plot {
    Plot {
        title: Some("Loss".into()),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: vec![
            Series {
                name: "train".into(),
                points: vec![[0.0, 2.9], [1.0, 2.4], [2.0, 2.2]],
            },
            Series {
                name: "eval".into(),
                points: vec![[0.0, 3.1], [1.0, f64::NAN], [2.0, 2.5]],
            },
        ],
    }
}

/// Prose, a command cell with every output kind, an unrun Rust cell, and a failed cell.
pub fn every_output_book() -> Workbook {
    let mut book = Workbook::new();
    book.push_prose("# Every output\n\nProse with <b>raw</b> HTML and `code`.");
    book.push_cell(
        Cell::command("generate default --prompt \"To be\"")
            .with_id(CellId::new("gen").unwrap())
            .with_outputs(vec![
                Output::Text("3 tokens\n<done>".into()),
                Output::Trace(trace()),
                Output::Image(image()),
                Output::Table(table()),
                Output::Plot(plot()),
            ]),
    );
    book.push_prose("A Rust cell that has not run:");
    book.push_cell(Cell::rust("let x = 1;\nprintln!(\"{x}\");"));
    book.push_cell(
        Cell::command("verify missing").with_outputs(vec![Output::Error(
            "cannot open missing\n  caused by: no such file".into(),
        )]),
    );
    book
}
