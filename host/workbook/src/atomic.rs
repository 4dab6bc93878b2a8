//! Replacing a file so that a reader — or a crash — sees either the old contents or the new,
//! never a mix and never nothing.
//!
//! The new contents go to a fresh temporary file in the target's own directory (a rename is
//! atomic only within one file system), are flushed to disk, and the temporary file is renamed
//! over the target. Finally the directory itself is synced so the rename survives a power loss.
//! Until the rename nothing touches the target; if any step before it fails, the temporary file
//! is removed and the old file is exactly as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::WorkbookError;

/// Atomically replaces (or creates) `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WorkbookError> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Atomically replaces `path` with whatever `fill` writes to the temporary file.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), WorkbookError> {
    let fail = |action: &'static str| {
        move |source: io::Error| WorkbookError::Write {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let name = path.file_name().ok_or_else(|| WorkbookError::BadPath {
        path: path.to_path_buf(),
        reason: "not a file name",
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let (temp_path, mut file) = create_temp(&dir, name).map_err(fail("create a temporary file"))?;
    let temp = TempGuard(Some(temp_path.clone()));
    // Keep an existing file's permissions; a new file gets the defaults of `create_new`.
    if let Ok(metadata) = fs::metadata(path) {
        if metadata.is_file() {
            file.set_permissions(metadata.permissions())
                .map_err(fail("copy permissions"))?;
        }
    }
    fill(&mut file).map_err(fail("write"))?;
    file.sync_all().map_err(fail("sync"))?;
    drop(file);
    fs::rename(&temp_path, path).map_err(fail("rename the temporary file over it"))?;
    temp.disarm();
    sync_dir(&dir).map_err(fail("sync its directory"))
}

/// Creates a new, uniquely named hidden file next to the target.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last_error = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let temp_path = dir.join(temp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Removes the temporary file unless it was renamed into place.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Other systems cannot open a directory as a file; their renames are as durable as they get.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn creates_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.md");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(leftovers(dir.path()), ["book.md"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.md");
        fs::write(&path, "old").unwrap();
        let error = write_atomic_with(&path, |file| {
            file.write_all(b"half of the ne")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(error.to_string().contains("(write): disk full"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(leftovers(dir.path()), ["book.md"]);
    }

    #[test]
    fn a_directory_in_the_way_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.md");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "kept").unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(fs::read_to_string(path.join("inside")).unwrap(), "kept");
        assert_eq!(leftovers(dir.path()), ["book.md"]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = write_atomic(&dir.path().join("no/such/book.md"), b"x").unwrap_err();
        assert!(error.to_string().contains("temporary file"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn keeps_the_permissions_of_the_file_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.md");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
