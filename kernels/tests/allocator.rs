//! `mem::retain_freed_memory`: after it, freeing a large buffer no longer hands its pages back
//! to the operating system. A process of its own (`harness = false`, on the main thread), so that
//! no other test's allocations move the resident set or the allocator's adaptive thresholds.

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
fn main() {
    use std::hint::black_box;
    use tritlab_kernels::mem::{retain_freed_enabled, retain_freed_memory, RETAIN_FREED_ENV};

    if !retain_freed_enabled() {
        println!("allocator: skipped ({RETAIN_FREED_ENV} turns retention off)");
        return;
    }
    // Above glibc's largest adaptive `mmap` threshold (32 MiB), so by default it is mapped on
    // its own and unmapped when freed.
    const LEN: usize = 40 << 20;
    const MIB: f64 = (1 << 20) as f64;
    let resident = || -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("resident pages");
        pages * 4096
    };
    // Allocates LEN bytes, writes every page, frees them: (resident while held, after the free).
    let cycle = || {
        let buf = black_box(vec![1u8; LEN]);
        let held = resident();
        drop(buf);
        (held, resident())
    };

    let (held, freed) = cycle();
    let released = held.saturating_sub(freed);
    assert!(
        released >= LEN * 3 / 4,
        "by default freeing {} MiB should give it back (resident {:.1} → {:.1} MiB): the \
         measurement would not see retention",
        LEN >> 20,
        held as f64 / MIB,
        freed as f64 / MIB
    );

    assert!(retain_freed_memory(), "glibc should take the setting");
    let (held, freed) = cycle();
    let released = held.saturating_sub(freed);
    assert!(
        released < LEN / 4,
        "after retain_freed_memory, freeing {} MiB gave back {:.1} MiB (resident {:.1} → {:.1} \
         MiB)",
        LEN >> 20,
        released as f64 / MIB,
        held as f64 / MIB,
        freed as f64 / MIB
    );
    // The retained pages serve the next buffers: however many come, the resident set settles
    // (small allocations made in between may split the freed region once).
    let settled: Vec<usize> = (0..6).map(|_| cycle().0).collect();
    assert!(
        settled[5] <= settled[2] + LEN / 4,
        "each new {} MiB buffer grew the resident set: {:?} MiB",
        LEN >> 20,
        settled.iter().map(|&b| b >> 20).collect::<Vec<_>>()
    );
    println!("allocator: freed memory is retained and reused");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
fn main() {
    println!("allocator: skipped (checked on x86-64 Linux with glibc)");
}
