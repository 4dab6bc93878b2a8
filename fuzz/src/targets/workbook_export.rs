//! The workbook exporters (`host/workbook/src/export`).
//!
//! Input: workbook text, parsed as in `workbook_roundtrip`.
//!
//! Properties: the HTML page uses only allow-listed tags and attributes, no event handlers and
//! no link or image URL with an unsafe scheme; the notebook is valid JSON with the nbformat 4
//! shape; HTML, notebook and Markdown stay within a size linear in the input.

use crate::workbook::{assets_with_sample, check_html, size_bound};
use tritlab_workbook::{to_html, to_ipynb, to_markdown, Workbook};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(book) = Workbook::parse_with_assets(text, &assets_with_sample()) else {
        return;
    };
    let bound = size_bound(text);

    let html = to_html(&book);
    if let Err(problem) = check_html(&html) {
        panic!("HTML export: {problem}\n--- input ---\n{text}\n--- html ---\n{html}");
    }
    assert!(
        html.len() <= bound,
        "HTML is {} bytes for {} of input",
        html.len(),
        text.len()
    );

    let notebook = to_ipynb(&book);
    assert!(
        notebook.len() <= bound,
        "ipynb is {} bytes for {} of input",
        notebook.len(),
        text.len()
    );
    let json: serde_json::Value = serde_json::from_str(&notebook).expect("ipynb is JSON");
    assert_eq!(json["nbformat"], 4);
    let cells = json["cells"].as_array().expect("ipynb has a cell list");
    assert_eq!(cells.len(), book.blocks.len());
    let mut ids = std::collections::HashSet::new();
    for cell in cells {
        let id = cell["id"].as_str().expect("every cell has an id");
        assert!(ids.insert(id.to_owned()), "duplicate cell id {id}");
        // nbformat 4.5: 1-64 characters of [a-zA-Z0-9-_].
        assert!(
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "cell id {id:?} is not a valid nbformat id"
        );
    }

    let markdown = to_markdown(&book, "book.assets").expect("markdown export");
    assert!(markdown.text.len() <= bound);
}
