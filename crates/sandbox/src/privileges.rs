//! Privileges the process gives up for good.

use std::io;

/// Sets `PR_SET_NO_NEW_PRIVS`: nothing this process runs from now on
/// (there is no `exec` in iovm, but a bug could try one) gains privileges
/// through set-user-ID files or file capabilities. Seccomp filters need it
/// when iovm is not root.
pub fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with these arguments only sets a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
