//! Ctrl-C while a command runs: counted here, acted on by whoever waits for the command.
//!
//! Only SIGINT is caught: SIGTERM and SIGHUP keep their default effect and end tritlab. The
//! line editor installs its own handler while it reads a line and puts this one back after, so
//! a Ctrl-C at the prompt clears the line and one during a command lands here.

use std::sync::atomic::{AtomicUsize, Ordering};

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// Installs the SIGINT handler (once is enough; installing again is harmless). The handler
/// only counts: `ctrlc` runs it on a thread of its own, woken from the signal handler.
pub fn install() {
    // An error means a handler is already installed, which is this one.
    let _ = ctrlc::set_handler(|| {
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    });
}

/// Ctrl-Cs since the last [`reset`].
pub fn count() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// Forgets earlier Ctrl-Cs (call when a command starts).
pub fn reset() {
    INTERRUPTS.store(0, Ordering::SeqCst);
}
