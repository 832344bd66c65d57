//! Privileges the process gives up for good: `PR_SET_NO_NEW_PRIVS`, and
//! root for an ordinary user (`--user`) once everything privileged is
//! open.
//!
//! The switch happens while iovm's threads run, each in its filter: glibc
//! changes the IDs of every thread (it signals each one to make the same
//! calls), so every filter allows `setgroups(0, …)`, `setresgid` and
//! `setresuid` with exactly the target IDs ([`Credentials`]), and nothing
//! else of the kind; once made, those calls change nothing.

use std::ffi::CString;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// The user and group iovm becomes: `--user USER[:GROUP]`, each a name or
/// a number; without a group, the user's own (or the same number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
}

/// Why privileges could not be given up.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user or group.
    #[error("no user or group '{0}' (give a name from /etc/passwd or /etc/group, or a number)")]
    Unknown(String),
    /// `--user` names root.
    #[error("--user must name an ordinary user, not root")]
    Root,
    /// A call failed.
    #[error("cannot become user {uid}:{gid}: {what}: {source}")]
    Switch {
        /// The target user.
        uid: u32,
        /// The target group.
        gid: u32,
        /// Which step failed.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The process still has capabilities after the switch.
    #[error("capabilities remain after becoming user {0}: {1}")]
    Remaining(u32, String),
}

/// The user entry for `name`: (uid, gid).
fn user_by_name(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; it
    // is read at once, before any other call could reuse it.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    // SAFETY: non-null, so it points at a valid passwd entry.
    (!pw.is_null()).then(|| unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// The group ID of group `name`.
fn group_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null, so it points at a valid group entry.
    (!gr.is_null()).then(|| unsafe { (*gr).gr_gid })
}

impl FromStr for Credentials {
    type Err = PrivilegeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let (uid, own_gid) = match user.parse::<u32>() {
            Ok(uid) => (uid, uid),
            Err(_) => user_by_name(user).ok_or_else(|| PrivilegeError::Unknown(user.into()))?,
        };
        let gid = match group {
            None => own_gid,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_by_name(g).ok_or_else(|| PrivilegeError::Unknown(g.into()))?,
            },
        };
        if uid == 0 || gid == 0 {
            return Err(PrivilegeError::Root);
        }
        Ok(Credentials { uid, gid })
    }
}

/// The IDs to become, set by [`crate::configure`]; filters allow exactly these.
pub(crate) static TARGET: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();
static DROPPED: AtomicBool = AtomicBool::new(false);

/// Whether `--user` asked for a switch that has not happened yet (callers
/// keep what they open for use after it).
pub fn switch_pending() -> bool {
    TARGET.get().is_some() && !DROPPED.load(Ordering::Acquire)
}

/// Whether `--user` was given (the process runs, or will run, unprivileged).
pub fn switching() -> bool {
    TARGET.get().is_some()
}

fn step(c: Credentials, what: &'static str, rc: libc::c_int) -> Result<(), PrivilegeError> {
    if rc == 0 {
        return Ok(());
    }
    Err(PrivilegeError::Switch {
        uid: c.uid,
        gid: c.gid,
        what,
        source: io::Error::last_os_error(),
    })
}

/// Becomes the `--user` given to [`crate::configure`], if any and not yet:
/// drops the capability bounding set and the ambient set of this thread
/// (threads started later inherit them), the supplementary groups, then
/// the group and user IDs of every thread (real, effective and saved, so
/// there is no way back); then checks that no capability remains.
pub fn drop_now() -> Result<(), PrivilegeError> {
    let Some(&c) = TARGET.get() else {
        return Ok(());
    };
    if DROPPED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    for cap in 0..64 {
        // SAFETY: prctl on this thread's bounding set; EINVAL past the
        // last capability the kernel knows ends the loop.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            break;
        }
    }
    // SAFETY: clears this thread's ambient capabilities.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    step(c, "clear ambient capabilities", rc)?;
    // SAFETY: an empty group list; glibc applies it to every thread.
    step(c, "setgroups", unsafe {
        libc::setgroups(0, std::ptr::null())
    })?;
    // SAFETY: as above, for the group IDs.
    step(c, "setresgid", unsafe {
        libc::setresgid(c.gid, c.gid, c.gid)
    })?;
    // SAFETY: as above, for the user IDs; the kernel clears the permitted
    // and effective capabilities of each thread that leaves UID 0.
    step(c, "setresuid", unsafe {
        libc::setresuid(c.uid, c.uid, c.uid)
    })?;
    let left = capability_lines()
        .into_iter()
        .filter(|(_, value)| !value.trim_start_matches('0').is_empty())
        .map(|(name, value)| format!("{name} {value}"))
        .collect::<Vec<_>>();
    if !left.is_empty() {
        return Err(PrivilegeError::Remaining(c.uid, left.join(", ")));
    }
    tracing::info!("running as user {}:{} with no capabilities", c.uid, c.gid);
    Ok(())
}

/// This thread's `Cap*` lines of `/proc/thread-self/status`.
fn capability_lines() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_numbers_parse_and_a_group_defaults_to_the_user_number() {
        assert_eq!(
            "65534".parse::<Credentials>().unwrap(),
            Credentials {
                uid: 65534,
                gid: 65534
            }
        );
        assert_eq!(
            "1000:100".parse::<Credentials>().unwrap(),
            Credentials {
                uid: 1000,
                gid: 100
            }
        );
    }

    #[test]
    fn test_root_and_unknown_names_are_refused() {
        assert!(matches!(
            "0".parse::<Credentials>(),
            Err(PrivilegeError::Root)
        ));
        assert!(matches!(
            "root".parse::<Credentials>(),
            Err(PrivilegeError::Root)
        ));
        assert!(matches!(
            "1000:0".parse::<Credentials>(),
            Err(PrivilegeError::Root)
        ));
        let e = "no-such-user-iovm".parse::<Credentials>().unwrap_err();
        assert!(
            e.to_string()
                .contains("no user or group 'no-such-user-iovm'"),
            "{e}"
        );
    }

    #[test]
    fn test_a_name_from_the_password_file_parses() {
        // Debian has `nobody` (65534) and `nogroup`.
        let c: Credentials = "nobody".parse().unwrap();
        assert_eq!(c.uid, 65534);
        let c: Credentials = "nobody:nogroup".parse().unwrap();
        assert_eq!(c.gid, 65534);
    }
}
