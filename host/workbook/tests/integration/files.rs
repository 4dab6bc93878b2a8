//! Saving and loading workbooks with their asset folder; a failed save keeps the old file.

use crate::common;

use std::fs;
use std::path::Path;

use tritlab_workbook::{write_atomic, Cell, Image, Output, Workbook, WorkbookError};

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn save_then_load_gives_the_same_book() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tour.tritlab.md");
    let mut book = common::every_output_book();
    // Plot gaps are NaN, which never equals itself; compare a book without them.
    for cell in book.cells_mut() {
        cell.outputs.retain(|o| !matches!(o, Output::Plot(_)));
    }
    book.save(&path).unwrap();
    assert_eq!(Workbook::load(&path).unwrap(), book);
    assert_eq!(
        names_in(dir.path()),
        ["tour.tritlab.assets", "tour.tritlab.md"]
    );
    let png = format!("{}.png", common::image().content_hash());
    assert_eq!(
        names_in(&dir.path().join("tour.tritlab.assets")),
        std::slice::from_ref(&png)
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("](tour.tritlab.assets/{png} \"output image\")")));
}

#[test]
fn load_follows_the_links_after_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let book = common::every_output_book();
    book.save(dir.path().join("old.md")).unwrap();
    fs::rename(dir.path().join("old.md"), dir.path().join("new.md")).unwrap();
    let loaded = Workbook::load(dir.path().join("new.md")).unwrap();
    // The next save writes the folder that matches the new name.
    loaded.save(dir.path().join("new.md")).unwrap();
    assert_eq!(names_in(dir.path()), ["new.assets", "new.md", "old.assets"]);
    assert!(Workbook::load(dir.path().join("new.md")).is_ok());
}

#[test]
fn saving_removes_images_no_longer_used_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.md");
    let first = Image::new(1, 1, vec![1, 2, 3, 255]).unwrap();
    let second = Image::new(1, 1, vec![4, 5, 6, 255]).unwrap();
    let mut book = Workbook::new();
    book.push_cell(Cell::command("show").with_outputs(vec![Output::Image(first.clone())]));
    book.save(&path).unwrap();
    let assets = dir.path().join("b.assets");
    fs::write(assets.join("README.txt"), "mine").unwrap();

    book.cells_mut().next().unwrap().outputs = vec![Output::Image(second.clone())];
    book.save(&path).unwrap();
    assert_eq!(
        names_in(&assets),
        [
            format!("{}.png", second.content_hash()),
            "README.txt".to_owned()
        ]
    );

    // With no images left the folder goes, unless something else lives in it.
    book.clear_outputs();
    book.save(&path).unwrap();
    assert_eq!(names_in(&assets), ["README.txt"]);
    fs::remove_file(assets.join("README.txt")).unwrap();
    book.save(&path).unwrap();
    assert!(!assets.exists());
}

#[test]
fn a_save_that_cannot_write_its_assets_leaves_the_old_book() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.md");
    let mut book = Workbook::new();
    book.push_prose("Old.");
    book.save(&path).unwrap();
    let old = fs::read_to_string(&path).unwrap();

    // A file where the asset folder should be.
    fs::write(dir.path().join("b.assets"), "in the way").unwrap();
    book.push_cell(
        Cell::command("show")
            .with_outputs(vec![Output::Image(Image::new(1, 1, vec![0; 4]).unwrap())]),
    );
    let error = book.save(&path).unwrap_err();
    assert!(matches!(error, WorkbookError::Write { .. }), "{error}");
    assert!(
        error.to_string().contains("create the asset folder"),
        "{error}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), old);
}

#[test]
fn a_save_over_a_directory_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.md");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), "x").unwrap();
    let error = common::every_output_book().save(&path).unwrap_err();
    assert!(error.to_string().contains("rename"), "{error}");
    assert_eq!(names_in(&path), ["keep"]);
    // The images written for this save are gone again, and no temporary file remains.
    assert_eq!(names_in(dir.path()), ["b.md"]);
}

#[cfg(unix)]
#[test]
fn a_read_only_directory_keeps_the_old_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.md");
    write_atomic(&path, b"old").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = fs::write(dir.path().join("probe"), "").is_ok();
    let result = write_atomic(&path, b"new");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    if privileged {
        eprintln!("skipped the read-only check: this user may write to read-only directories");
        return;
    }
    let error = result.unwrap_err();
    assert!(error.to_string().contains("temporary file"), "{error}");
    assert_eq!(fs::read(&path).unwrap(), b"old");
}

#[test]
fn a_book_that_would_not_read_back_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.md");
    let id = tritlab_workbook::CellId::new("same").unwrap();

    let mut book = Workbook::new();
    book.push_cell(Cell::command("a").with_id(id.clone()));
    book.push_cell(Cell::command("b").with_id(id));
    let message = book.save(&path).unwrap_err().to_string();
    assert!(
        message.contains("cell 2 has the id `same` of cell 1"),
        "{message}"
    );

    let mut book = Workbook::new();
    book.push_prose("Fine.");
    book.push_cell(Cell::command("a"));
    book.push_prose("An example:\n\n```sh\nls");
    let message = book.save(&path).unwrap_err().to_string();
    assert!(message.contains("prose block 2"), "{message}");
    assert!(message.contains("its line 3: the fence"), "{message}");

    let mut book = Workbook::new();
    book.blocks.push(tritlab_workbook::Block::Prose(
        "Typed by hand:\n```tritlab\nx\n```".into(),
    ));
    let message = book.save(&path).unwrap_err().to_string();
    assert!(message.contains("holds a cell or an output"), "{message}");
    assert!(!path.exists());

    // Blank lines around prose only normalise; that is writable.
    let mut book = Workbook::new();
    book.blocks
        .push(tritlab_workbook::Block::Prose("\n\nText.\n\n".into()));
    book.blocks
        .push(tritlab_workbook::Block::Prose(String::new()));
    book.save(&path).unwrap();
}
