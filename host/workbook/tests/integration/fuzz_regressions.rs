//! Inputs the fuzz targets (fuzz/, docs/FUZZING.md) found to break a workbook property, kept
//! as tests.

use std::path::Path;

use tritlab_workbook::{Image, MemoryAssets, Workbook};

/// A workbook whose prose holds a line of bare carriage returns just before a fence. It parses,
/// and it must be writable and read back the same: the parser drops every trailing `\r` of a
/// line, so no line keeps one that the next read would drop.
#[test]
fn a_parsed_workbook_with_carriage_returns_is_writable() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions/prose-with-carriage-returns.md");
    let text = std::fs::read_to_string(path).unwrap();
    // The fuzz target's one asset, a 2×2 image.
    let image = Image::new(
        2,
        2,
        vec![0, 0, 0, 255, 255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 128],
    )
    .unwrap();
    let mut assets = MemoryAssets::new();
    assets.insert(
        format!("book.assets/{}.png", image.content_hash()),
        image.to_png().unwrap(),
    );
    let book = Workbook::parse_with_assets(&text, &assets).expect("the input parses");
    book.check_writable()
        .expect("a parsed workbook is writable");
    let rendered = book.render("book.assets");
    let again = Workbook::parse(&rendered.text).expect("rendered text parses");
    assert_eq!(again.blocks.len(), book.blocks.len());
}
