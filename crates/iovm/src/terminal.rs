//! Raw mode for an interactive console, always undone: on normal exit (the
//! guard's `Drop`), on error paths (they return through the guard), and on
//! fatal signals (a handler restores the saved settings, then lets the signal
//! take its default action).

use std::sync::OnceLock;

/// Saved terminal settings of standard input.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

const FATAL_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct RawModeGuard(());

fn restore() {
    if let Some(saved) = SAVED.get() {
        // SAFETY: tcsetattr is async-signal-safe and reads a fully initialised termios.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
}

extern "C" fn restore_and_reraise(sig: libc::c_int) {
    restore();
    // SAFETY: resetting to the default disposition and re-raising are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Whether standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Puts standard input's terminal in raw mode; `None` when it is not a terminal.
pub fn enter_raw_mode() -> Option<RawModeGuard> {
    if !stdin_is_tty() {
        return None;
    }
    // SAFETY: termios is plain data; tcgetattr fills it in or fails.
    let mut current: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and pointer.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut current) } != 0 {
        return None;
    }
    let _ = SAVED.set(current);
    for sig in FATAL_SIGNALS {
        // SAFETY: installs a handler that only calls async-signal-safe functions.
        unsafe { libc::signal(sig, restore_and_reraise as *const () as libc::sighandler_t) };
    }
    let mut raw = current;
    // SAFETY: cfmakeraw edits the struct in place.
    unsafe { libc::cfmakeraw(&mut raw) };
    // Keep output post-processing so host-side messages still start at column 0.
    raw.c_oflag |= libc::OPOST | libc::ONLCR;
    // SAFETY: valid descriptor and pointer.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) };
    Some(RawModeGuard(()))
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore();
    }
}
