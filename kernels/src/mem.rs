//! Weight storage on 2 MiB pages.
//!
//! A decode step streams every weight once. On 4 KiB pages that stream crosses a page boundary
//! every 4 KiB: the hardware prefetcher stops at each one (it works within a page) and each new
//! page costs a TLB miss and a page walk. Large weight buffers therefore live in anonymous
//! memory aligned to 2 MiB and marked `MADV_HUGEPAGE`, so that with transparent huge pages in
//! `always` or `madvise` mode (see `/sys/kernel/mm/transparent_hugepage/enabled`) the kernel
//! backs them with 2 MiB pages. Where that is unavailable (other systems, THP `never`, a failed
//! `mmap`) the bytes simply live on the heap: huge pages are a speed-up, never a requirement.
//!
//! A huge page is resident as a whole once any byte of it is touched, so a buffer alone in its
//! mapping would cost the rest of its last 2 MiB page: for BitNet b1.58 2B-4T's 210 matrices
//! about 300 MB, a quarter of the checkpoint (each 0.4 MB k/v projection would hold a whole
//! page, each 4.4 MB feed-forward matrix three). Buffers are therefore carved one after another,
//! at page-aligned offsets, out of shared chunks of at least [`CHUNK_BYTES`]: the huge pages of
//! a chunk that no buffer reached yet are never touched, so they cost nothing, and a chunk
//! wastes at most the unused part of the one huge page where its last buffer ends. A buffer that
//! does not fit in the current chunk's remainder opens a new chunk (of its own size, rounded up
//! to 2 MiB, when it is larger than a chunk). A dropped buffer gives its pages back at once; a
//! chunk is unmapped when the last buffer carved from it is dropped.
//!
//! The module also sets how the C allocator treats freed memory for workloads that allocate the
//! same large buffers again and again ([`retain_freed_memory`], used by training).

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Buffers at least this large go on huge pages. The 640×2560 k/v projections of 2B-4T (400 KB
/// of I2) are included: on 4 KiB pages each cold call of theirs starts with a hundred page walks
/// whose page-table entries are themselves cold, and they measured slower (45–46 µs on huge
/// pages against 53–80 µs). Carved from shared chunks, they cost no more than their own bytes.
pub const HUGE_MIN_BYTES: usize = 256 << 10;

/// Environment variable that turns huge pages off (`0`, `off` or `no`), to measure what they bring.
pub const HUGE_PAGES_ENV: &str = "TRITLAB_HUGE_PAGES";

/// Whether large buffers go on huge pages: yes unless [`HUGE_PAGES_ENV`] says no. Read once.
pub fn huge_pages_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| !env_says_off(HUGE_PAGES_ENV))
}

/// Whether the environment variable `name` turns a memory setting off (`0`, `off` or `no`).
pub(crate) fn env_says_off(name: &str) -> bool {
    matches!(
        std::env::var(name).as_deref().map(str::trim),
        Ok("0" | "off" | "no")
    )
}

/// Environment variable that keeps the C allocator's defaults (`0`, `off` or `no`) where
/// [`retain_freed_memory`] would change them, to measure what the change brings.
pub const RETAIN_FREED_ENV: &str = "TRITLAB_RETAIN_FREED";

/// Allocations at least this large stay in the heap too (glibc would `mmap` them); larger ones,
/// beyond any training graph's tensors, are still mapped on their own.
const RETAIN_MMAP_THRESHOLD: i32 = 1 << 30;

/// Asks the C allocator to keep freed memory for the next allocations instead of handing it
/// back to the operating system, once per process; returns whether the allocator took the
/// setting (glibc on Linux does; elsewhere, or with [`RETAIN_FREED_ENV`] off, it returns false
/// and changes nothing).
///
/// Why: an autograd graph allocates a fresh buffer for every node's value and gradient and frees
/// them all at the end of the step, then does the same again. glibc serves buffers above its
/// `mmap` threshold (128 KiB at first, rising only after such a buffer is freed) with `mmap`
/// and gives them back with `munmap`, and it trims the top of the heap when more than its trim
/// threshold is free: so every step of a training run faulted in, and the kernel zeroed, most
/// of its memory again. A profile of the small preset's QAT step on two cores put 15% of its
/// samples in page-fault handling. With the threshold raised to 1 GiB and no trimming the second
/// step on reuses the first's pages. The cost is that the process keeps its peak footprint until
/// it exits, which a training run reaches every step anyway. Results are unaffected: only where
/// buffers live changes.
pub fn retain_freed_memory() -> bool {
    static RETAINED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RETAINED.get_or_init(|| retain_freed_enabled() && set_allocator_retention())
}

/// Whether [`retain_freed_memory`] may change the allocator: yes unless [`RETAIN_FREED_ENV`]
/// says no.
pub fn retain_freed_enabled() -> bool {
    !env_says_off(RETAIN_FREED_ENV)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_allocator_retention() -> bool {
    // SAFETY: `mallopt` only records allocator parameters (under the allocator's own lock); it
    // is sound to call at any time, from any thread, with any value, and rejects invalid ones.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, RETAIN_MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_allocator_retention() -> bool {
    false
}

/// The huge-page size the chunks are aligned to.
pub const HUGE_PAGE: usize = 2 << 20;

/// Where carved buffers start within a chunk: whole 4 KiB pages, as a buffer of its own would.
pub const CARVE_ALIGN: usize = 4096;

/// The smallest chunk buffers are carved from: sixteen huge pages. Only the address space is
/// reserved; pages become resident as buffers are written.
pub const CHUNK_BYTES: usize = 32 << 20;

/// A fixed-size, zero-initialised byte buffer that is placed on 2 MiB pages when large.
pub struct WeightBytes {
    storage: Storage,
}

enum Storage {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Carved {
        chunk: std::sync::Arc<chunk::Chunk>,
        /// Where the buffer starts in the chunk (a multiple of [`CARVE_ALIGN`]).
        offset: usize,
        len: usize,
    },
}

impl WeightBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= HUGE_MIN_BYTES && huge_pages_enabled() {
            if let Some((chunk, offset)) = chunk::carve(len) {
                return Self {
                    storage: Storage::Carved { chunk, offset, len },
                };
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

    /// Whether the buffer lies in memory advised huge pages (whether the kernel granted huge
    /// pages shows in `/proc/self/smaps` as `AnonHugePages`).
    pub fn huge_page_advised(&self) -> bool {
        match self.storage {
            Storage::Heap(_) => false,
            #[cfg(target_os = "linux")]
            Storage::Carved { .. } => true,
        }
    }
}

#[cfg(target_os = "linux")]
mod chunk {
    //! The shared huge-page chunks buffers are carved from.

    use super::{CARVE_ALIGN, CHUNK_BYTES, HUGE_PAGE};
    use std::ptr::NonNull;
    use std::sync::{Arc, Mutex, Weak};

    /// An anonymous mapping of `mapped` bytes (whole huge pages) at a 2 MiB boundary, advised
    /// huge pages. Buffers carved from it own disjoint ranges of it.
    pub(super) struct Chunk {
        ptr: NonNull<u8>,
        mapped: usize,
    }

    // SAFETY: a chunk is only an address range; each buffer carved from it reads and writes
    // only its own disjoint range (with `&mut` to the buffer for writes), so sharing the chunk
    // between threads shares no bytes. Unmapping happens once, when the last owner drops it.
    unsafe impl Send for Chunk {}
    // SAFETY: as above.
    unsafe impl Sync for Chunk {}

    impl Chunk {
        pub(super) fn ptr(&self) -> *mut u8 {
            self.ptr.as_ptr()
        }

        #[cfg(test)]
        pub(super) fn mapped(&self) -> usize {
            self.mapped
        }
    }

    impl Drop for Chunk {
        fn drop(&mut self) {
            // SAFETY: the mapping was created by `map_huge` with this address and length, every
            // buffer carved from it is gone (they hold the chunk), and it is released once.
            unsafe {
                libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.mapped);
            }
        }
    }

    /// The chunk whose remainder the next buffer is carved from, and where that remainder
    /// starts. Weak: a chunk lives as long as the buffers carved from it, not longer.
    static CURRENT: Mutex<Option<(Weak<Chunk>, usize)>> = Mutex::new(None);

    /// A zeroed range of `len` bytes on huge-page memory: the chunk and the range's offset.
    /// Offsets only grow within a chunk, so a range is never handed out twice and is as zero as
    /// the fresh mapping it came from.
    pub(super) fn carve(len: usize) -> Option<(Arc<Chunk>, usize)> {
        // A poisoned lock only means another thread panicked while holding it; the state it
        // guards (a weak pointer and an offset) is valid whatever that thread did.
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((weak, used)) = current.as_mut() {
            if let Some(chunk) = weak.upgrade() {
                let at = used.checked_next_multiple_of(CARVE_ALIGN)?;
                if at.checked_add(len).is_some_and(|end| end <= chunk.mapped) {
                    *used = at + len;
                    return Some((chunk, at));
                }
            }
        }
        let chunk = Arc::new(map_huge(len.max(CHUNK_BYTES))?);
        // The next buffers go into whichever remainder is larger: this chunk's or the old one's.
        let left = chunk.mapped - len;
        let old_left = current
            .as_ref()
            .and_then(|(weak, used)| Some(weak.upgrade()?.mapped.saturating_sub(*used)))
            .unwrap_or(0);
        if left >= old_left {
            *current = Some((Arc::downgrade(&chunk), len));
        }
        Some((chunk, 0))
    }

    /// Maps `len` bytes (rounded up to huge pages) at a 2 MiB boundary and advises huge pages.
    fn map_huge(len: usize) -> Option<Chunk> {
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
        // SAFETY: both ranges lie inside the reservation just made and are unmapped only here;
        // the part kept, `start .. start + mapped`, is untouched. munmap failing would only leak
        // the slack, so its result is not needed.
        unsafe {
            if head > 0 {
                libc::munmap(base, head);
            }
            if tail > 0 {
                libc::munmap((start + mapped) as *mut libc::c_void, tail);
            }
            // Advice before the first touch, so the first faults already take 2 MiB pages. A
            // kernel without THP refuses it, and the mapping still works on 4 KiB pages.
            libc::madvise(start as *mut libc::c_void, mapped, libc::MADV_HUGEPAGE);
        }
        Some(Chunk {
            ptr: NonNull::new(start as *mut u8)?,
            mapped,
        })
    }
}

/// Gives the heap memory that is free back to the system. glibc keeps what a thread freed in
/// that thread's arena for later use, and loading a model frees a lot on every rayon thread
/// (source tensors decoded to trits, a tokenizer's JSON): without this, tens of megabytes per
/// thread stay resident for the life of the process. Elsewhere a no-op.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system; it
    // never touches live allocations.
    unsafe {
        libc::malloc_trim(0);
    }
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
        if let Storage::Carved { chunk, offset, len } = &self.storage {
            // The chunk stays mapped while other buffers live in it; give this buffer's whole
            // pages back to the system now, so that a long-lived buffer sharing a chunk with a
            // dropped one (a model loaded while another was dropped) does not keep the dropped
            // one's memory resident. Its range is never carved again. The last buffer of a
            // chunk unmaps it instead (when the chunk itself drops).
            if std::sync::Arc::strong_count(chunk) > 1 {
                let end = (offset + len) / CARVE_ALIGN * CARVE_ALIGN;
                if end > *offset {
                    // SAFETY: `offset .. end` lies inside the chunk's mapping and inside this
                    // buffer's own range (the start is page-aligned, the end rounded down), which
                    // no other buffer uses and nothing reads after this drop; MADV_DONTNEED on
                    // private anonymous memory only discards those pages.
                    unsafe {
                        libc::madvise(
                            chunk.ptr().add(*offset) as *mut libc::c_void,
                            end - offset,
                            libc::MADV_DONTNEED,
                        );
                    }
                }
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
            // SAFETY: `offset .. offset + len` lies inside the chunk's mapping (checked when it
            // was carved), is readable and started zeroed, is this buffer's alone, and the
            // chunk lives as long as `self` holds it.
            Storage::Carved { chunk, offset, len } => unsafe {
                std::slice::from_raw_parts(chunk.ptr().add(*offset), *len)
            },
        }
    }
}

impl DerefMut for WeightBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: as in `deref`; no other buffer's range overlaps this one, and `&mut self`
            // makes this the only reference to it.
            Storage::Carved { chunk, offset, len } => unsafe {
                std::slice::from_raw_parts_mut(chunk.ptr().add(*offset), *len)
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
            if len >= HUGE_MIN_BYTES && huge_pages_enabled() {
                assert!(c.huge_page_advised());
                assert_eq!(c.as_ptr() as usize % CARVE_ALIGN, 0);
            }
        }
    }

    /// Buffers share chunks instead of each holding whole 2 MiB pages, never overlap, start
    /// zeroed, and a chunk is unmapped with its last buffer.
    #[cfg(target_os = "linux")]
    #[test]
    fn buffers_are_carved_from_shared_chunks() {
        if !huge_pages_enabled() {
            return;
        }
        // 2B-4T's k/v projection size: five fit in one 2 MiB chunk.
        let len = 640 * 2560 / 4;
        let mut bufs: Vec<WeightBytes> = (0..40).map(|_| WeightBytes::zeroed(len)).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            assert!(b.iter().all(|&v| v == 0), "buffer {i} starts zeroed");
            b.fill(i as u8 + 1);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(
                b.iter().all(|&v| v == i as u8 + 1),
                "buffer {i} was overwritten"
            );
        }
        let mut chunks: Vec<(usize, usize)> = bufs
            .iter()
            .map(|b| match &b.storage {
                Storage::Carved { chunk, .. } => (chunk.ptr() as usize, chunk.mapped()),
                Storage::Heap(_) => panic!("on the heap"),
            })
            .collect();
        chunks.sort_unstable();
        chunks.dedup();
        // 16 MB of buffers: one chunk, or two when the first was another test's half-used one
        // (tests carve from the same chunks at the same time); one chunk each would be forty.
        assert!(chunks.len() <= 3, "{} chunks", chunks.len());
        assert!(chunks
            .iter()
            .all(|c| c.1 >= CHUNK_BYTES && c.0 % HUGE_PAGE == 0));
        // Dropping some buffers gives their pages back and leaves the others' bytes alone; a
        // buffer carved afterwards is zeroed too.
        let kept: Vec<WeightBytes> = bufs.drain(..).skip(1).step_by(2).collect();
        let b = WeightBytes::zeroed(len);
        assert!(b.iter().all(|&v| v == 0));
        for (k, b) in kept.iter().enumerate() {
            let i = 2 * k + 1;
            assert!(b.iter().all(|&v| v == i as u8 + 1), "buffer {i} changed");
        }
    }
}
