//! Malformed workbooks are refused with the line at fault, in text and in files.

use tritlab_workbook::{ParseErrorKind, Workbook, WorkbookError, VERSION_LINE};

/// Parses `VERSION_LINE` + `body` and returns the error's line and message.
fn error_in(body: &str) -> (usize, String) {
    let text = format!("{VERSION_LINE}\n{body}");
    let error = Workbook::parse(&text).expect_err(body);
    (error.line, error.to_string())
}

#[test]
fn unterminated_fences_are_reported_where_they_open() {
    let (line, message) = error_in("# T\n\n```tritlab\ninfo\n\n```output text\n");
    // A closing fence carries no info string, so "```output text" does not close the cell.
    assert_eq!(line, 4, "{message}");
    assert!(message.contains("never closed"), "{message}");

    let (line, message) = error_in("Prose.\n\n~~~\nexample\n");
    assert_eq!((line, message.contains("`~~~`")), (4, true), "{message}");
}

#[test]
fn bad_json_names_the_json_line() {
    let body = "```tritlab\ngenerate\n```\n\n```output trace\n{}\n{\"text\":\"a\"}\n{\"text\":\"b\",\n```\n";
    let (line, message) = error_in(body);
    assert_eq!(line, 9, "{message}");
    assert!(
        message.starts_with("line 9: bad trace output: line is not valid"),
        "{message}"
    );

    let body = "```rust\n```\n```output table\n{\"title\":\"t\"}\n```\n";
    let (line, message) = error_in(body);
    assert_eq!(line, 5);
    assert!(message.contains("missing field `columns`"), "{message}");

    let body = "```rust\n```\n```output plot\n{}\n{\"name\":\"s\",\"points\":[[1]]}\n```\n";
    assert_eq!(error_in(body).0, 6);

    let body = "```rust\n```\n```output trace\n{}\n{\"text\":\"a\",\"rgb\":\"red\"}\n```\n";
    let (line, message) = error_in(body);
    assert_eq!(line, 6);
    assert!(message.contains("#rrggbb"), "{message}");
}

#[test]
fn unknown_output_kinds_and_versions_are_refused() {
    let (line, message) = error_in("```tritlab\nx\n```\n\n```output video\n```\n");
    assert_eq!(line, 6);
    assert!(message.contains("unknown output kind `video`"), "{message}");

    let error = Workbook::parse("<!-- tritlab-workbook v7 -->\n# Future\n").unwrap_err();
    assert_eq!(error.line, 1);
    assert_eq!(
        error.kind,
        ParseErrorKind::UnsupportedVersion {
            version: "7".into()
        }
    );
    assert!(error.to_string().contains("reads only version 1"));

    let error = Workbook::parse("# Just Markdown\n").unwrap_err();
    assert_eq!(error.kind, ParseErrorKind::MissingVersion);
    assert!(error.to_string().contains(VERSION_LINE));
}

#[test]
fn outputs_detached_from_their_cell_are_refused() {
    let body = "```tritlab\nx\n```\n\nA note squeezed in.\n\n```output text\nhi\n```\n";
    let (line, message) = error_in(body);
    assert_eq!(line, 8);
    assert!(message.contains("does not follow a cell"), "{message}");
}

#[test]
fn editing_prose_and_sources_keeps_the_outputs() {
    let original = format!(
        "{VERSION_LINE}\n\nIntro.\n\n```tritlab id=a\ninfo\n```\n\n```output text\n30 layers\n```\n\n\
         ```rust\n1\n```\n\n```output error\nboom\n```\n"
    );
    let book = Workbook::parse(&original).unwrap();
    let edited = original
        .replace("Intro.", "A longer\n\nintroduction, by hand.\n\n\n")
        .replace("```tritlab id=a\ninfo", "```tritlab id=a\ninfo\ninfo again")
        .replace("```\n\n```output error", "```\n```output error");
    let edited = Workbook::parse(&edited).unwrap();
    let outputs = |b: &Workbook| b.cells().map(|c| c.outputs.clone()).collect::<Vec<_>>();
    assert_eq!(outputs(&edited), outputs(&book));
    assert_eq!(edited.cells().next().unwrap().source, "info\ninfo again");
}

#[test]
fn file_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.tritlab.md");
    std::fs::write(&path, format!("{VERSION_LINE}\n\n```tritlab\ninfo\n")).unwrap();
    let error = Workbook::load(&path).unwrap_err();
    assert!(matches!(error, WorkbookError::Parse { .. }));
    let message = error.to_string();
    assert!(message.contains("broken.tritlab.md: line 3:"), "{message}");

    std::fs::write(&path, b"<!-- tritlab-workbook v1 -->\nok\n\xff\n").unwrap();
    let message = Workbook::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("line 3: the file is not UTF-8"),
        "{message}"
    );

    let message = Workbook::load(dir.path().join("absent.md"))
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("cannot read workbook"), "{message}");
}

#[test]
fn missing_or_tampered_images_are_reported_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pics.md");
    let mut book = Workbook::new();
    let image = tritlab_workbook::Image::new(1, 1, vec![9, 9, 9, 255]).unwrap();
    book.push_cell(
        tritlab_workbook::Cell::command("show")
            .with_outputs(vec![tritlab_workbook::Output::Image(image.clone())]),
    );
    book.save(&path).unwrap();
    let asset = dir
        .path()
        .join("pics.assets")
        .join(format!("{}.png", image.content_hash()));

    let other = tritlab_workbook::Image::new(1, 1, vec![0, 0, 0, 255]).unwrap();
    std::fs::write(&asset, other.to_png().unwrap()).unwrap();
    let message = Workbook::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("line 7: image asset `pics.assets/"),
        "{message}"
    );
    assert!(message.contains("changed or replaced"), "{message}");

    std::fs::remove_file(&asset).unwrap();
    let message = Workbook::load(&path).unwrap_err().to_string();
    assert!(message.contains("line 7: image asset"), "{message}");
}
