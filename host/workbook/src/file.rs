//! Workbooks on disk: the text file and its asset folder, loaded and saved together.
//!
//! Saving writes new asset files first (content-named, so an existing file is never rewritten),
//! then replaces the text atomically, then removes asset files the new text no longer names. A
//! crash at any point leaves a readable workbook: the old text with its old assets, or the new
//! text with its new ones, plus at worst a few unreferenced files.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::assets::{self, DirAssets};
use crate::atomic::write_atomic;
use crate::book::Workbook;
use crate::error::{ParseError, ParseErrorKind, WorkbookError};
use crate::image::Image;

/// The largest workbook file [`Workbook::load`] reads: 64 MiB of text. Images live in the asset
/// folder, so even a long workbook with many traces and plots is a few megabytes; the bound keeps
/// a FIFO, a device or a runaway file from being read without end.
pub const MAX_WORKBOOK_BYTES: u64 = 64 << 20;

impl Workbook {
    /// Reads the workbook at `path`, with images from the asset folder its image lines name.
    ///
    /// `path` must be a plain file (or a link to one) of at most [`MAX_WORKBOOK_BYTES`]; image
    /// assets must be plain files, not links, of at most [`crate::MAX_ASSET_BYTES`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WorkbookError> {
        let path = path.as_ref();
        let bytes =
            assets::read_regular_file(path, MAX_WORKBOOK_BYTES, true).map_err(|source| {
                WorkbookError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let parse_error = |source| WorkbookError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            parse_error(ParseError::new(line, ParseErrorKind::NotUtf8))
        })?;
        Workbook::parse_with_assets(text, &DirAssets::new(parent_dir(path))).map_err(parse_error)
    }

    /// Saves the workbook to `path` and its images to the folder beside it named after the file
    /// (`intro.tritlab.md` → `intro.tritlab.assets/`). The old file survives any failure. A
    /// workbook that fails [`Workbook::check_writable`] is refused.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), WorkbookError> {
        let path = path.as_ref();
        self.check_writable()
            .map_err(|source| WorkbookError::Unwritable {
                path: path.to_path_buf(),
                source,
            })?;
        let folder = asset_folder(path)?;
        let rendered = self.render(&folder);
        let sidecars: Vec<Sidecar> = rendered
            .images
            .iter()
            .map(|asset| Sidecar::Png {
                file_name: asset.file_name.clone(),
                image: asset.image,
            })
            .collect();
        let dir = parent_dir(path).join(&folder);
        save_with_sidecars(path, rendered.text.as_bytes(), &dir, &sidecars)
    }
}

/// Writes `sidecars` into `dir`, then `text` to `path` atomically, then sweeps `dir`. If anything
/// fails, the sidecar files this call created are removed again (and `dir`, if this call created
/// it), so a failed save leaves the directory as it found it.
pub(crate) fn save_with_sidecars(
    path: &Path,
    text: &[u8],
    dir: &Path,
    sidecars: &[Sidecar],
) -> Result<(), WorkbookError> {
    let dir_existed = dir.exists();
    let mut created = Vec::new();
    let written =
        write_sidecars(dir, sidecars, &mut created).and_then(|()| write_atomic(path, text));
    if let Err(error) = written {
        for file in created {
            let _ = fs::remove_file(file);
        }
        if !dir_existed {
            let _ = fs::remove_dir(dir);
        }
        return Err(error);
    }
    sweep_sidecars(dir, sidecars);
    Ok(())
}

/// The asset folder's name for a book or export at `path`.
pub(crate) fn asset_folder(path: &Path) -> Result<String, WorkbookError> {
    assets::folder_for(path).ok_or_else(|| WorkbookError::BadPath {
        path: path.to_path_buf(),
        reason: "needs a file name in UTF-8",
    })
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A file stored beside a book or export, named by its content hash.
pub(crate) enum Sidecar<'a> {
    /// An image, encoded only if its file does not exist yet.
    Png { file_name: String, image: &'a Image },
    /// Ready-made contents, e.g. a plot's SVG.
    Bytes { file_name: String, bytes: Vec<u8> },
}

impl Sidecar<'_> {
    fn file_name(&self) -> &str {
        match self {
            Sidecar::Png { file_name, .. } | Sidecar::Bytes { file_name, .. } => file_name,
        }
    }
}

/// Writes each sidecar that `dir` lacks, creating `dir` if there is anything to write, and adds
/// the files it creates to `created`. Files are named by content, so one that exists already
/// holds these bytes and is left alone.
fn write_sidecars(
    dir: &Path,
    sidecars: &[Sidecar],
    created: &mut Vec<PathBuf>,
) -> Result<(), WorkbookError> {
    if sidecars.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|source| WorkbookError::Write {
        path: dir.to_path_buf(),
        action: "create the asset folder",
        source,
    })?;
    for sidecar in sidecars {
        let target = dir.join(sidecar.file_name());
        if target.is_file() {
            continue;
        }
        match sidecar {
            Sidecar::Png { image, .. } => {
                let png = image.to_png().map_err(|source| WorkbookError::Image {
                    path: target.clone(),
                    source,
                })?;
                write_atomic(&target, &png)?;
            }
            Sidecar::Bytes { bytes, .. } => write_atomic(&target, bytes)?,
        }
        created.push(target);
    }
    Ok(())
}

/// Removes from `dir` the files tritlab named (a content hash with `.png` or `.svg`) that
/// `keep` does not list, then `dir` itself if that empties it. Anything else in the folder is
/// left alone. Best effort: a file that cannot be removed is only clutter, never a wrong book.
fn sweep_sidecars(dir: &Path, keep: &[Sidecar]) {
    let keep: HashSet<&str> = keep.iter().map(Sidecar::file_name).collect();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name
            .strip_suffix(".png")
            .or_else(|| name.strip_suffix(".svg"))
            .is_some_and(assets::is_hash);
        if ours && !keep.contains(name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    // Fails, harmlessly, unless the folder is now empty.
    let _ = fs::remove_dir(dir);
}
