//! Weight storage on 2 MiB pages.
//!
//! A decode step streams every weight once. On 4 KiB pages that stream crosses a page boundary
//! every 4 KiB: the hardware prefetcher stops at each one (it works within a page) and each new
//! page costs a TLB miss and a page walk. Large weight buffers therefore live in anonymous
//! memory aligned to 2 MiB and marked `MADV_HUGEPAGE`, so that with transparent huge pages in
//! `always` or `madvise` mode (see `/sys/kernel/mm/transparent_hugepage/enabled`) the kernel
//! backs them with 2 MiB pages. Where that is unavailable (other systems, THP `never`, a failed
//! `mmap`) the bytes simply live on the heap: huge pages are a speed-up, never a requirement.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Buffers at least this large go on huge pages. The 640×2560 k/v projections of 2B-4T (400 KB
/// of I2) are included: on 4 KiB pages each cold call of theirs starts with a hundred page walks
/// whose page-table entries are themselves cold, and they measured slower (45–46 µs on huge
/// pages against 53–80 µs). The price is the rest of the 2 MiB page, ~1.6 MB per such matrix
/// (about 8% of 2B-4T); an engine that wants it back can place its matrices in one arena.
pub const HUGE_MIN_BYTES: usize = 256 << 10;

/// Environment variable that turns huge pages off (`0`, `off` or `no`), to measure what they bring.
pub const HUGE_PAGES_ENV: &str = "TRITLAB_HUGE_PAGES";

/// Whether large buffers go on huge pages: yes unless [`HUGE_PAGES_ENV`] says no. Read once.
pub fn huge_pages_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        !matches!(
            std::env::var(HUGE_PAGES_ENV).as_deref().map(str::trim),
            Ok("0" | "off" | "no")
        )
    })
}

/// The huge-page size the buffers are aligned to.
pub const HUGE_PAGE: usize = 2 << 20;

/// A fixed-size, zero-initialised byte buffer that is placed on 2 MiB pages when large.
pub struct WeightBytes {
    storage: Storage,
}

enum Storage {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped {
        ptr: std::ptr::NonNull<u8>,
        len: usize,
        /// The mapping's length: `len` rounded up to whole huge pages.
        mapped: usize,
    },
}

// SAFETY: `Mapped` owns its mapping exclusively (nothing else holds the pointer), exactly like a
// `Vec<u8>`; shared access only reads, and mutation needs `&mut self`.
unsafe impl Send for WeightBytes {}
// SAFETY: as above.
unsafe impl Sync for WeightBytes {}

impl WeightBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= HUGE_MIN_BYTES && huge_pages_enabled() {
            if let Some(storage) = map_huge(len) {
                return Self { storage };
            }
        }
        Self {
            storage: Storage::Heap(vec![0; len]),
        }
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.copy_from_slice(bytes);
        out
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: u8) -> Self {
        let mut out = Self::zeroed(len);
        out.fill(value);
        out
    }

    /// Whether the buffer was mapped with the huge-page advice (whether the kernel granted huge
    /// pages shows in `/proc/self/smaps` as `AnonHugePages`).
    pub fn huge_page_advised(&self) -> bool {
        match self.storage {
            Storage::Heap(_) => false,
            #[cfg(target_os = "linux")]
            Storage::Mapped { .. } => true,
        }
    }
}

/// Maps `len` bytes (rounded up to huge pages) at a 2 MiB boundary and advises huge pages.
#[cfg(target_os = "linux")]
fn map_huge(len: usize) -> Option<Storage> {
    let mapped = len.checked_next_multiple_of(HUGE_PAGE)?;
    let reserve = mapped.checked_add(HUGE_PAGE)?;
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    let start = (base as usize).next_multiple_of(HUGE_PAGE);
    let head = start - base as usize;
    let tail = reserve - head - mapped;
    // SAFETY: both ranges lie inside the reservation just made and are unmapped only here; the
    // part kept, `start .. start + mapped`, is untouched. munmap failing would only leak the
    // slack, so its result is not needed.
    unsafe {
        if head > 0 {
            libc::munmap(base, head);
        }
        if tail > 0 {
            libc::munmap((start + mapped) as *mut libc::c_void, tail);
        }
        // Advice before the first touch, so the first faults already take 2 MiB pages. A kernel
        // without THP refuses it, and the mapping still works on 4 KiB pages.
        libc::madvise(start as *mut libc::c_void, mapped, libc::MADV_HUGEPAGE);
    }
    Some(Storage::Mapped {
        ptr: std::ptr::NonNull::new(start as *mut u8)?,
        len,
        mapped,
    })
}

/// Advises huge pages for the 2 MiB-aligned part of `len` bytes at `ptr` (fresh, untouched
/// memory, e.g. a `Vec`'s capacity), for buffers that cannot be a [`WeightBytes`]. Advice only:
/// it changes no contents and failures are ignored.
pub fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if huge_pages_enabled() {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: madvise(MADV_HUGEPAGE) on a range inside the caller's allocation changes
            // how its pages are backed, never their contents or validity.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

impl Drop for WeightBytes {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Storage::Mapped { ptr, mapped, .. } = self.storage {
            // SAFETY: the mapping was created by `map_huge` with this address and length and is
            // released exactly once, here.
            unsafe {
                libc::munmap(ptr.as_ptr() as *mut libc::c_void, mapped);
            }
        }
    }
}

impl Deref for WeightBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.storage {
            Storage::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: the mapping is readable for `len` bytes, anonymous mappings start zeroed,
            // and it lives as long as `self`.
            Storage::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl DerefMut for WeightBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
            Storage::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

impl Clone for WeightBytes {
    fn clone(&self) -> Self {
        Self::from_slice(self)
    }
}

impl PartialEq for WeightBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightBytes")
            .field("len", &self.len())
            .field("huge_page_advised", &self.huge_page_advised())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_buffers_hold_their_bytes() {
        for len in [0, 1, 4096, HUGE_MIN_BYTES, HUGE_PAGE + 3] {
            let mut b = WeightBytes::filled(len, 7);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 7));
            if len > 0 {
                b[len - 1] = 9;
            }
            let c = b.clone();
            assert_eq!(b, c);
            #[cfg(target_os = "linux")]
            if len >= HUGE_MIN_BYTES {
                assert_eq!(c.as_ptr() as usize % HUGE_PAGE, 0);
            }
        }
    }
}
