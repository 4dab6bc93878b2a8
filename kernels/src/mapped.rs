//! Read-only memory-mapped files: how checkpoints (safetensors, GGUF) are opened without reading
//! them whole.
//!
//! The mapping is made here, in the crate that holds tritlab's other `unsafe` code, so that the
//! readers above it stay free of `unsafe`.
//!
//! A mapping is only as stable as the file under it. If another process truncates or rewrites
//! the file *in place* while it is mapped, the pages that disappeared raise SIGBUS on the next
//! access and the process dies; no check at open time can prevent that, because the kernel
//! resolves each page when it is touched. Replacing a file by renaming a new one over it (as
//! tritlab's own writers do) is safe: the mapping keeps the old inode alive. Every mmap-based
//! model reader shares this contract; readers check headers and lengths against the file before
//! they trust any offset in it.

use std::fs::File;
use std::ops::{Deref, Range};

/// A whole file mapped read-only, and the file itself for [`MappedFile::copy_out`].
pub struct MappedFile {
    map: memmap2::Mmap,
    file: File,
}

impl MappedFile {
    /// Maps all of `file` read-only (and keeps a handle of it).
    pub fn map(file: &File) -> std::io::Result<MappedFile> {
        // SAFETY: the mapping is read-only and private to this value; Rust code only ever sees it
        // as `&[u8]`. The remaining hazard, another process truncating the file in place, is the
        // documented contract of this module (it ends the process with SIGBUS; it cannot make
        // safe code observe a torn value of a Rust type, since the bytes are plain `u8`).
        let map = unsafe { memmap2::Mmap::map(file) }?;
        Ok(MappedFile {
            map,
            file: file.try_clone()?,
        })
    }

    /// Copies the bytes at `offset` into `out` with a positional read of the file, not through
    /// the mapping: for data read a little at a time and rarely (an embedding row per token),
    /// which through the mapping would stay resident — and Linux maps a whole page-cache folio,
    /// up to 2 MiB, around each faulting page, so a few hundred lookups would hold hundreds of
    /// megabytes. The bytes are the mapping's. Where the read fails (or there are no positional
    /// reads), they are copied from the mapping. Panics if the range is not inside the file.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) {
        let end = offset
            .checked_add(out.len())
            .filter(|&e| e <= self.map.len())
            .expect("copy_out: range outside the mapped file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            if self.file.read_exact_at(out, offset as u64).is_ok() {
                return;
            }
        }
        #[cfg(not(unix))]
        let _ = &self.file;
        out.copy_from_slice(&self.map[offset..end]);
    }

    /// Drops the resident pages of `range` (they are read again from the file if touched): used
    /// after converting packed weights once, so they do not stay resident twice. Out-of-range
    /// parts are ignored; errors are ignored too, since releasing is only an optimisation.
    pub fn release(&self, range: Range<usize>) {
        let end = range.end.min(self.map.len());
        if range.start >= end {
            return;
        }
        // SAFETY: MADV_DONTNEED on a read-only, file-backed, private mapping only discards
        // resident pages; the kernel reloads them from the file on the next access, so no byte
        // any slice of this mapping shows can change. The range lies inside the mapping.
        let _ = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start,
                end - range.start,
            )
        };
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_a_file_and_releasing_pages_keeps_their_bytes() {
        let mut file = tempfile_in_target();
        let bytes: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i * 7 % 251) as u8).collect();
        file.0.write_all(&bytes).unwrap();
        let mapped = MappedFile::map(&File::open(&file.1).unwrap()).unwrap();
        assert_eq!(&mapped[..], &bytes[..]);
        mapped.release(4096..2 * 4096);
        mapped.release(0..usize::MAX);
        #[allow(clippy::reversed_empty_ranges)]
        mapped.release(10..5);
        assert_eq!(&mapped[..], &bytes[..]);
        let mut out = vec![0u8; 300];
        mapped.copy_out(4000, &mut out);
        assert_eq!(out, &bytes[4000..4300]);
        mapped.copy_out(bytes.len() - 300, &mut out);
        assert_eq!(out, &bytes[bytes.len() - 300..]);
        std::fs::remove_file(&file.1).unwrap();
    }

    /// A file in the system's temporary folder, without a dev-dependency for it.
    fn tempfile_in_target() -> (File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "tritlab-kernels-mapped-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        (File::create(&path).unwrap(), path)
    }
}
