//! Raw mode for an interactive console, always undone: on normal exit (the
//! guard's `Drop`), on error paths (they return through the guard), on a
//! panic (the panic hook calls [`restore`]), and on fatal signals (a handler
//! restores the saved settings, then lets the signal take its default
//! action). SIGTERM and SIGINT are not among them: they ask the guest to
//! shut down, and the run ends through the guard.

use std::os::fd::RawFd;
use std::sync::OnceLock;

/// The terminal whose settings were changed, and its original settings.
static SAVED: OnceLock<(RawFd, libc::termios)> = OnceLock::new();

const FATAL_SIGNALS: [libc::c_int; 2] = [libc::SIGHUP, libc::SIGQUIT];

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct RawModeGuard(());

/// Puts the terminal back as it was before raw mode (if it was changed).
pub fn restore() {
    if let Some((fd, saved)) = SAVED.get() {
        // SAFETY: tcsetattr is async-signal-safe and reads a fully initialised termios.
        unsafe { libc::tcsetattr(*fd, libc::TCSANOW, saved) };
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
    enter_raw_mode_on(libc::STDIN_FILENO)
}

/// Puts terminal `fd` in raw mode (once per process); `None` when `fd` is not
/// a terminal or raw mode was already entered.
fn enter_raw_mode_on(fd: RawFd) -> Option<RawModeGuard> {
    // SAFETY: termios is plain data; tcgetattr fills it in or fails.
    let mut current: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; a bad descriptor only makes the call fail.
    if unsafe { libc::tcgetattr(fd, &mut current) } != 0 {
        return None;
    }
    SAVED.set((fd, current)).ok()?;
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
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) };
    Some(RawModeGuard(()))
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        // SAFETY: plain data filled by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and pointer.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag
    }

    /// Opens a pseudo-terminal pair: (controller, terminal).
    fn pty() -> (RawFd, RawFd) {
        let (mut ctl, mut term) = (0, 0);
        // SAFETY: out-pointers to two ints; no name, termios or winsize requested.
        let rc = unsafe {
            libc::openpty(
                &mut ctl,
                &mut term,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        (ctl, term)
    }

    /// One test, because raw mode is entered once per process.
    #[test]
    fn test_raw_mode_entered_then_restored_on_drop_and_on_signal() {
        let (_ctl, term) = pty();
        let cooked = lflag(term);
        assert_ne!(cooked & libc::ICANON, 0);

        let guard = enter_raw_mode_on(term).expect("a pty is a terminal");
        assert_eq!(lflag(term) & (libc::ICANON | libc::ECHO), 0, "raw mode");
        drop(guard);
        assert_eq!(lflag(term), cooked, "restored on drop");

        // A child process re-enters raw mode and dies of SIGHUP (its
        // terminal went away): the handler must restore the terminal before
        // the process ends.
        // SAFETY: the child only makes async-signal-safe calls before it dies.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: termios is plain data.
            let mut raw = unsafe { std::mem::zeroed::<libc::termios>() };
            // SAFETY: valid descriptor and pointers.
            unsafe {
                libc::tcgetattr(term, &mut raw);
                libc::cfmakeraw(&mut raw);
                libc::tcsetattr(term, libc::TCSANOW, &raw);
                libc::raise(libc::SIGHUP);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status));
        assert_eq!(lflag(term), cooked, "restored by the signal handler");
    }
}
