//! Reporting a forbidden call: the filters trap (`SECCOMP_RET_TRAP`), and
//! the SIGSYS handler here writes one line naming the thread kind and the
//! call, then ends the process with [`crate::EXIT_SECCOMP`]. Only
//! async-signal-safe work happens in the handler: a thread-local read,
//! formatting into a stack buffer, `write` and `_exit` (both allowed by
//! every filter).

use std::cell::Cell;
use std::io;

use crate::ThreadKind;

thread_local! {
    /// The kind the current thread entered, as an index into
    /// [`ThreadKind::ALL`] (`usize::MAX`: none).
    static KIND: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Records that the current thread is of `kind`, for the handler.
pub(crate) fn mark(kind: ThreadKind) {
    KIND.with(|k| k.set(kind.index()));
}

/// Offset of `si_syscall` in the kernel's `siginfo_t` for SIGSYS on
/// 64-bit Linux: after `si_signo`, `si_errno`, `si_code` and padding (16
/// bytes) comes `_sigsys` { `_call_addr` (8 bytes), `_syscall` (int) }.
const SI_SYSCALL_OFFSET: usize = 24;

/// Installs the SIGSYS handler for the whole process.
pub(crate) fn install_handler() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the fields set below make it a
    // SA_SIGINFO handler with an empty mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset to clear.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler that only does async-signal-safe work.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Appends `text` to `buf` at `*len`, as far as it fits.
fn push(buf: &mut [u8], len: &mut usize, text: &[u8]) {
    let n = text.len().min(buf.len() - *len);
    buf[*len..*len + n].copy_from_slice(&text[..n]);
    *len += n;
}

/// Appends `value` in decimal.
fn push_number(buf: &mut [u8], len: &mut usize, value: i64) {
    let mut digits = [0u8; 20];
    let mut v = value.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if value < 0 {
        push(buf, len, b"-");
    }
    push(buf, len, &digits[i..]);
}

/// The line the handler writes for a call `nr` by a thread of kind
/// `kind` (an index into [`ThreadKind::ALL`]).
pub(crate) fn message(buf: &mut [u8; 256], kind: usize, nr: i64) -> usize {
    let mut len = 0;
    push(buf, &mut len, b"\r\niovm: error: seccomp: the ");
    let name = ThreadKind::ALL.get(kind).map_or("unfiltered", |k| k.name());
    push(buf, &mut len, name.as_bytes());
    push(buf, &mut len, b" thread made system call ");
    push_number(buf, &mut len, nr);
    push(
        buf,
        &mut len,
        b", which its filter forbids; iovm stops (--seccomp log lists such calls in dmesg instead)\n",
    );
    len
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler;
    // for SIGSYS it holds `si_syscall` at this offset.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read()
    };
    let kind = KIND.try_with(Cell::get).unwrap_or(usize::MAX);
    let mut buf = [0u8; 256];
    let len = message(&mut buf, kind, i64::from(nr));
    // SAFETY: writes our stack buffer to stderr, then ends the process
    // without running anything else of it.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(crate::EXIT_SECCOMP);
    }
}

/// A call no filter allows (`personality(0xffffffff)`, which would only
/// query the execution domain): the self-test's proof that a filter kills.
pub(crate) fn forbidden_call() {
    // SAFETY: `personality` with 0xffffffff changes nothing.
    unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffff_u64) };
}
