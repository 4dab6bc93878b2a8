//! The workbook text format (`host/workbook/src/format`).
//!
//! Input: workbook text. One image asset exists (`book.assets/HASH.png`, see
//! `tritlab_fuzz::workbook`), so image outputs parse too.
//!
//! Properties: parsing never panics; a parsed workbook is writable; rendering it and parsing the
//! text (with the rendered images) gives an equal workbook, and rendering that gives the same text.

use crate::workbook::{assets_of, assets_with_sample, FOLDER};
use tritlab_workbook::Workbook;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(book) = Workbook::parse_with_assets(text, &assets_with_sample()) else {
        return;
    };
    book.check_writable()
        .unwrap_or_else(|e| panic!("a parsed workbook is not writable: {e}"));
    let rendered = book.render(FOLDER);
    let again = Workbook::parse_with_assets(&rendered.text, &assets_of(&rendered))
        .unwrap_or_else(|e| panic!("rendered text does not parse: {e}\n{}", rendered.text));
    // `==` ignores where a cell stood in its file; a plot point read from `null` is NaN, which is
    // not equal to itself, so such books compare by their Debug text without source lines.
    if again != book {
        assert_eq!(
            without_source_lines(&format!("{again:?}")),
            without_source_lines(&format!("{book:?}")),
            "parse → write → parse changed the workbook"
        );
    }
    assert_eq!(
        again.render(FOLDER).text,
        rendered.text,
        "rendering is not canonical"
    );
}

/// Debug text with every `source_line: …` value removed.
fn without_source_lines(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(at) = rest.find("source_line: ") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(['}', ',']).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
