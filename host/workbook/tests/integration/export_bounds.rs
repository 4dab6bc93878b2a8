//! Exports stay linear in the workbook: a crafted 1 MB workbook must not turn into gigabytes of
//! HTML, notebook or Markdown. Ragged tables and long cells are exported compactly.

use std::time::{Duration, Instant};

use tritlab_workbook::{
    content_size, export, to_html, to_markdown, try_to_html, try_to_ipynb, try_to_markdown, Cell,
    Output, Table, Workbook, WorkbookError, EXPORT_SIZE_FACTOR, EXPORT_SLACK_BYTES,
};

fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A table whose header has 100 000 columns over 100 000 empty rows, read from its workbook text
/// (about 1 MB). Padding each row to the header's width was 10¹⁰ cells: some 90 GB of HTML.
fn ragged_book() -> (Workbook, usize) {
    const N: usize = 100_000;
    let mut book = Workbook::new();
    book.push_cell(
        Cell::command("info").with_outputs(vec![Output::Table(Table {
            title: Some("ragged".into()),
            columns: vec![String::new(); N],
            rows: vec![Vec::new(); N],
        })]),
    );
    let text = book.render("ragged.assets").text;
    let parsed = Workbook::parse(&text).expect("the workbook text reads back");
    (parsed, text.len())
}

#[test]
fn a_ragged_table_exports_quickly_in_linear_size() {
    let (book, text_len) = ragged_book();
    assert!(text_len < 1_100_000, "{text_len} bytes");
    let bound = content_size(&book) * EXPORT_SIZE_FACTOR + EXPORT_SLACK_BYTES;
    let before = peak_resident_bytes();
    let started = Instant::now();

    let html = try_to_html(&book).expect("HTML export");
    let notebook = try_to_ipynb(&book).expect("ipynb export");
    let markdown = try_to_markdown(&book, "ragged.assets").expect("Markdown export");
    let elapsed = started.elapsed();
    let grown = peak_resident_bytes().saturating_sub(before);
    println!(
        "workbook {text_len} B; html {} B, ipynb {} B, md {} B; {elapsed:?}; peak RSS +{} MiB",
        html.len(),
        notebook.len(),
        markdown.text.len(),
        grown >> 20
    );
    for (name, len) in [
        ("html", html.len()),
        ("ipynb", notebook.len()),
        ("md", markdown.text.len()),
    ] {
        // Far below the bound: the fix keeps ragged tables at a few bytes per cell.
        assert!((len as u64) < bound, "{name}: {len} bytes");
        assert!(len < 16 * text_len, "{name}: {len} bytes for {text_len}");
    }
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert!(
        grown < 512 << 20,
        "peak resident memory grew by {grown} bytes"
    );

    // Short rows are closed with one spanning cell, and the notebook is still valid JSON.
    assert!(html.contains("<tr><td colspan=\"100000\"></td></tr>"));
    let json: serde_json::Value = serde_json::from_str(&notebook).unwrap();
    assert_eq!(json["nbformat"], 4);
}

/// One 500 000-character cell over 50 000 two-cell rows (about 1 MB). The notebook's plain-text
/// form aligned every row to the longest cell: 25 GB of spaces.
#[test]
fn a_long_cell_does_not_pad_every_row() {
    let mut rows = vec![vec!["a".to_owned(), "b".to_owned()]; 50_000];
    rows[0][0] = "x".repeat(500_000);
    let mut book = Workbook::new();
    book.push_cell(
        Cell::command("info").with_outputs(vec![Output::Table(Table {
            title: None,
            columns: vec!["k".into(), "v".into()],
            rows,
        })]),
    );
    let text_len = book.render("long.assets").text.len();
    let before = peak_resident_bytes();
    let started = Instant::now();
    let notebook = try_to_ipynb(&book).expect("ipynb export");
    let html = to_html(&book);
    let markdown = to_markdown(&book, "long.assets").unwrap();
    let elapsed = started.elapsed();
    let grown = peak_resident_bytes().saturating_sub(before);
    println!(
        "workbook {text_len} B; ipynb {} B, html {} B, md {} B; {elapsed:?}; peak RSS +{} MiB",
        notebook.len(),
        html.len(),
        markdown.text.len(),
        grown >> 20
    );
    assert!(notebook.len() < 16 * text_len, "{} bytes", notebook.len());
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert!(
        grown < 512 << 20,
        "peak resident memory grew by {grown} bytes"
    );
}

/// Through `export`, a workbook within bounds is written whole, in each format.
#[test]
fn export_writes_the_ragged_workbook_in_every_format() {
    let (book, _) = ragged_book();
    let dir = tempfile::tempdir().unwrap();
    for name in ["r.html", "r.ipynb", "r.md"] {
        let path = dir.path().join(name);
        export(&book, &path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 100_000, "{name}");
    }
    let error = export(&book, dir.path().join("r.pdf")).unwrap_err();
    assert!(matches!(error, WorkbookError::UnknownExportFormat { .. }));
}
