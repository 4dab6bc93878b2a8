//! Workbooks from elsewhere whose files try to make the reader allocate or read without end: a
//! tiny PNG claiming a huge size, an asset that is a link to `/dev/zero`, an asset that is a FIFO.
//! Each must fail quickly with an error that names the file.
#![cfg(unix)]

use std::path::Path;
use std::time::{Duration, Instant};

use tritlab_workbook::{AssetFileError, Workbook, WorkbookError, MAX_ASSET_BYTES};

const HASH: &str = "0123456789abcdef0123456789abcdef";

/// Writes `book.tritlab.md` with one cell whose output is the image `book.tritlab.assets/HASH.png`
/// and returns the book's path and the asset's.
fn book_with_image(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let book = dir.join("book.tritlab.md");
    std::fs::write(
        &book,
        format!(
            "<!-- tritlab-workbook v1 -->\n\n```tritlab\ninfo\n```\n\n\
             ![map](book.tritlab.assets/{HASH}.png \"output image\")\n"
        ),
    )
    .unwrap();
    let assets = dir.join("book.tritlab.assets");
    std::fs::create_dir(&assets).unwrap();
    (book, assets.join(format!("{HASH}.png")))
}

/// Loads `book`, which must fail within a few seconds, and returns the error's text.
fn load_fails_quickly(book: &Path) -> String {
    let started = Instant::now();
    let error = Workbook::load(book).expect_err("the workbook must not load");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, WorkbookError::Parse { .. }), "{error:?}");
    error.to_string()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 77-byte PNG whose header claims `width × height` RGBA pixels.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (&b"IHDR"[..], {
            let mut header = width.to_be_bytes().to_vec();
            header.extend_from_slice(&height.to_be_bytes());
            header.extend_from_slice(&[8, 6, 0, 0, 0]);
            header
        }),
        // An empty zlib stream: the decoder reads the header and reaches the pixel data.
        (
            b"IDAT",
            vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ),
        (b"IEND", Vec::new()),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(&data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_png_claiming_100000_by_100000_pixels_is_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let (book, asset) = book_with_image(dir.path());
    let png = png_claiming(100_000, 100_000);
    assert!(png.len() < 100);
    std::fs::write(&asset, png).unwrap();
    let before = peak_resident_bytes();
    let message = load_fails_quickly(&book);
    let grown = peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "peak resident memory grew by {grown} bytes"
    );
    assert!(message.contains(&format!("{HASH}.png")), "{message}");
    assert!(message.contains("100000×100000"), "{message}");
}

#[test]
fn an_asset_linked_to_dev_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (book, asset) = book_with_image(dir.path());
    std::os::unix::fs::symlink("/dev/zero", &asset).unwrap();
    let message = load_fails_quickly(&book);
    assert!(
        message.contains("symbolic link, not a regular file"),
        "{message}"
    );
    assert!(message.contains(&format!("{HASH}.png")), "{message}");
}

#[test]
fn an_asset_reached_through_a_linked_folder_is_still_checked() {
    // The file name is fixed (`HASH.png`), but the folder could be a link to anywhere; the file
    // found there is checked like any other.
    let dir = tempfile::tempdir().unwrap();
    let (book, asset) = book_with_image(dir.path());
    let folder = asset.parent().unwrap();
    std::fs::remove_dir(folder).unwrap();
    let real = dir.path().join("elsewhere");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, folder).unwrap();
    std::os::unix::fs::symlink("/dev/zero", real.join(format!("{HASH}.png"))).unwrap();
    let message = load_fails_quickly(&book);
    assert!(message.contains("not a regular file"), "{message}");
}

#[test]
fn a_fifo_asset_neither_blocks_nor_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (book, asset) = book_with_image(dir.path());
    let status = std::process::Command::new("mkfifo")
        .arg(&asset)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    // Nobody ever writes to the FIFO: a reader that opened it blocking would hang here.
    let message = load_fails_quickly(&book);
    assert!(message.contains("FIFO, not a regular file"), "{message}");
}

#[test]
fn the_asset_error_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    let assets = tritlab_workbook::DirAssets::new(dir.path());
    let error = tritlab_workbook::AssetSource::read(&assets, "pipe").unwrap_err();
    let typed = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<AssetFileError>());
    assert!(
        matches!(typed, Some(AssetFileError::NotAFile { kind: "FIFO", .. })),
        "{error:?}"
    );
}

#[test]
fn an_asset_over_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (book, asset) = book_with_image(dir.path());
    // Sparse: the length is stated, the bytes are never written or read.
    let file = std::fs::File::create(&asset).unwrap();
    file.set_len(MAX_ASSET_BYTES + 1).unwrap();
    let message = load_fails_quickly(&book);
    assert!(
        message.contains(&format!("({} bytes)", MAX_ASSET_BYTES + 1)),
        "{message}"
    );
}

#[test]
fn a_workbook_that_is_a_fifo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("book.tritlab.md");
    std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    let started = Instant::now();
    let error = Workbook::load(&fifo).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(error, WorkbookError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("FIFO"), "{error}");
}
