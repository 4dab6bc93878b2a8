//! Ctrl-C while a command runs: counted here, acted on by whoever waits for the command.
//!
//! Only SIGINT is caught: SIGTERM and SIGHUP keep their default effect and end tritlab. The
//! line editor installs its own handler while it reads a line and puts this one back after, so
//! a Ctrl-C at the prompt clears the line and one during a command lands here.

use std::sync::atomic::{AtomicUsize, Ordering};

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// Installs the SIGINT handler (once is enough; installing again is harmless).
pub fn install() {
    #[cfg(unix)]
    {
        extern "C" fn on_sigint(_: libc::c_int) {
            // Async-signal-safe: an atomic add only.
            INTERRUPTS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: the handler only touches an atomic; `sigaction` is given a zeroed, then
        // filled-in structure, as POSIX requires.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrlc::set_handler(|| {
            INTERRUPTS.fetch_add(1, Ordering::SeqCst);
        });
    }
}

/// Ctrl-Cs since the last [`reset`].
pub fn count() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// Forgets earlier Ctrl-Cs (call when a command starts).
pub fn reset() {
    INTERRUPTS.store(0, Ordering::SeqCst);
}
