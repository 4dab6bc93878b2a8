//! Writing a workbook and reading it back gives the same workbook, for random workbooks; and the
//! reader never panics, whatever the text.

use proptest::prelude::*;
use tritlab_workbook::{
    Cell, CellId, CellKind, Image, MemoryAssets, Output, Plot, Rgb, Series, Table, Trace,
    TraceToken, Trit, Workbook, VERSION_LINE,
};

/// Text built from pieces that stress the writer: fences of both kinds and lengths, backslashes,
/// quotes, newlines, any printable Unicode. Never a carriage return (a CR before a line end is
/// dropped on reading, as the spec says).
fn awkward_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ]{0,6}",
        Just("\n".to_owned()),
        Just("```".to_owned()),
        Just("````".to_owned()),
        Just("~~~".to_owned()),
        Just("`".to_owned()),
        Just("\t".to_owned()),
        Just("\\".to_owned()),
        Just("\"".to_owned()),
        Just("   ".to_owned()),
        Just("```output text".to_owned()),
        Just("<!-- tritlab-workbook v1 -->".to_owned()),
        Just("![](a.assets/0123456789abcdef0123456789abcdef.png \"output image\")".to_owned()),
        "\\PC{0,3}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

fn prose() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        4 => "[A-Za-z#*>-][A-Za-z0-9 ,.*_`#|<>-]{0,24}",
        1 => Just(String::new()),
        1 => Just("  ".to_owned()),
        1 => Just("```sh\nls -l\n\n```".to_owned()),
        1 => Just("~~~markdown\n```tritlab\nnot a cell\n```\n~~~".to_owned()),
        1 => Just("    ```output text".to_owned()),
    ];
    prop::collection::vec(line, 1..6).prop_map(|lines| lines.join("\n"))
}

fn title() -> impl Strategy<Value = Option<String>> {
    prop::option::of(awkward_text())
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        -1e3..1e3f64,
        Just(0.0),
        Just(-0.0),
    ]
}

fn token() -> impl Strategy<Value = TraceToken> {
    (
        awkward_text(),
        prop::option::of(any::<[u8; 3]>().prop_map(Rgb)),
        prop::option::of(prop_oneof![
            Just(Trit::Negative),
            Just(Trit::Zero),
            Just(Trit::Positive)
        ]),
        prop::option::of(awkward_text()),
    )
        .prop_map(|(text, rgb, trit, note)| TraceToken {
            text,
            rgb,
            trit,
            note,
        })
}

fn image() -> impl Strategy<Value = Image> {
    (1u32..4, 1u32..4, title()).prop_flat_map(|(w, h, title)| {
        prop::collection::vec(any::<u8>(), (w * h * 4) as usize).prop_map(move |rgba| {
            let image = Image::new(w, h, rgba).unwrap();
            match &title {
                Some(t) => image.with_title(t.clone()),
                None => image,
            }
        })
    })
}

fn output() -> impl Strategy<Value = Output> {
    let strings = || prop::collection::vec(awkward_text(), 0..4);
    prop_oneof![
        awkward_text().prop_map(Output::Text),
        awkward_text().prop_map(Output::Error),
        (title(), prop::collection::vec(token(), 0..5))
            .prop_map(|(title, tokens)| Output::Trace(Trace { title, tokens })),
        (title(), strings(), prop::collection::vec(strings(), 0..4)).prop_map(
            |(title, columns, rows)| Output::Table(Table {
                title,
                columns,
                rows
            })
        ),
        (
            title(),
            awkward_text(),
            awkward_text(),
            prop::collection::vec(
                (
                    awkward_text(),
                    prop::collection::vec([finite(), finite()], 0..5)
                )
                    .prop_map(|(name, points)| Series { name, points }),
                0..3
            )
        )
            .prop_map(|(title, x_label, y_label, series)| Output::Plot(Plot {
                title,
                x_label,
                y_label,
                series
            })),
        image().prop_map(Output::Image),
    ]
}

fn cell() -> impl Strategy<Value = Cell> {
    (
        prop_oneof![Just(CellKind::Command), Just(CellKind::Rust)],
        awkward_text(),
        prop::option::of("[A-Za-z0-9_-]{1,10}"),
        prop::collection::vec(output(), 0..4),
    )
        .prop_map(|(kind, source, id, outputs)| {
            let mut cell = Cell::new(kind, source).with_outputs(outputs);
            cell.id = id.map(|id| CellId::new(id).unwrap());
            cell
        })
}

#[derive(Debug)]
enum Item {
    Prose(String),
    Cell(Cell),
}

fn book() -> impl Strategy<Value = Workbook> {
    let item = prop_oneof![prose().prop_map(Item::Prose), cell().prop_map(Item::Cell)];
    prop::collection::vec(item, 0..6).prop_map(|items| {
        let mut book = Workbook::new();
        let mut ids = std::collections::HashSet::new();
        for item in items {
            match item {
                Item::Prose(text) => book.push_prose(&text),
                Item::Cell(mut cell) => {
                    // Ids are unique in a workbook.
                    if let Some(id) = &cell.id {
                        if !ids.insert(id.clone()) {
                            cell.id = None;
                        }
                    }
                    book.push_cell(cell);
                }
            }
        }
        book
    })
}

fn write_and_read(book: &Workbook, folder: &str) -> (String, Workbook) {
    let rendered = book.render(folder);
    let mut assets = MemoryAssets::new();
    for asset in &rendered.images {
        assets.insert(asset.path.clone(), asset.image.to_png().unwrap());
    }
    let back = Workbook::parse_with_assets(&rendered.text, &assets)
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", rendered.text));
    (rendered.text, back)
}

/// Text that looks like a workbook, assembled from the format's own lines, right and wrong.
fn workbookish_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("```tritlab"),
        Just("```rust id=a"),
        Just("```tritlab id=a"),
        Just("```output text"),
        Just("```output trace"),
        Just("```output table"),
        Just("```output plot"),
        Just("```output image"),
        Just("```output"),
        Just("```"),
        Just("````"),
        Just("~~~"),
        Just("  ```"),
        Just(""),
        Just("prose"),
        Just("{}"),
        Just("{\"title\":\"t\"}"),
        Just("{\"text\":\"a\",\"trit\":1}"),
        Just("{\"columns\":[\"a\"]}"),
        Just("[\"x\"]"),
        Just("{\"name\":\"s\",\"points\":[[0,null]]}"),
        Just("{bad json"),
        Just("![t](a.assets/0123456789abcdef0123456789abcdef.png \"output image\")"),
        Just("![t](nope \"output image\")"),
    ];
    (any::<bool>(), prop::collection::vec(line, 0..14)).prop_map(|(versioned, lines)| {
        let mut text = if versioned {
            format!("{VERSION_LINE}\n")
        } else {
            String::new()
        };
        text.push_str(&lines.join("\n"));
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn writing_then_reading_is_the_identity(book in book()) {
        prop_assert_eq!(book.check_writable(), Ok(()));
        let (text, back) = write_and_read(&book, "book.tritlab.assets");
        prop_assert_eq!(&back, &book, "{}", text);
        // And the text is a fixed point: what was read writes the same text again.
        let (again, _) = write_and_read(&back, "book.tritlab.assets");
        prop_assert_eq!(again, text);
    }

    #[test]
    fn the_reader_never_panics(text in prop_oneof![workbookish_text(), any::<String>()]) {
        if let Ok(book) = Workbook::parse(&text) {
            // Whatever it read, it writes in canonical shape, which reads back to the same text.
            let canonical = book.render("a.assets").text;
            let again = Workbook::parse(&canonical).unwrap_or_else(|e| panic!("{e}\n{canonical}"));
            prop_assert_eq!(again.render("a.assets").text, canonical);
        }
    }
}
