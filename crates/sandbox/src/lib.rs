//! What each iovm thread may do once it faces a guest.
//!
//! A guest is hostile, and a memory-safety bug in iovm or in a crate it
//! uses would hand the guest whatever the thread that runs the bug may do.
//! Each thread therefore enters a seccomp filter of its own kind
//! ([`ThreadKind`]) before it touches guest-controlled data: a vCPU may run
//! KVM and the device accesses it exits for, a block worker may submit I/O
//! on images already open, and neither may open a file, start a program or
//! make a socket. The filters are data ([`filters`](crate::filters) groups
//! and one table); a call outside a thread's filter stops iovm with one
//! line naming the thread kind and the call ([`Mode::On`]), or is logged
//! by the kernel and allowed ([`Mode::Log`], for finding a missing call).
//!
//! [`privileges`] drops root for an ordinary user once everything
//! privileged is open.
//!
//! The binary calls [`configure`] once; library code calls [`enter`] at
//! the top of each thread it starts. Without [`configure`] (unit tests,
//! other embedders) [`enter`] does nothing.

mod filters;
mod kind;
pub mod privileges;
mod violation;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use seccompiler::BpfProgram;

pub use kind::ThreadKind;

/// Exit status when a thread makes a call its filter forbids.
pub const EXIT_SECCOMP: i32 = 8;

/// Whether the filters are enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Enforced: a forbidden call stops iovm with [`EXIT_SECCOMP`] and one line.
    #[default]
    On,
    /// Installed, but a forbidden call is only logged by the kernel
    /// (`dmesg`: `audit: type=1326 … comm="THREAD" … syscall=N`) and goes
    /// ahead.
    Log,
    /// No filters. Unsafe: a bug in iovm reached by a guest can do
    /// anything iovm's user can.
    Off,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Mode::On),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            _ => Err(format!("'{s}' is not a seccomp mode (on, log or off)")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::On => "on",
            Mode::Log => "log",
            Mode::Off => "off",
        })
    }
}

/// Why the sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// seccompiler refused a filter (a bug in the table).
    #[error("seccomp filter: {0}")]
    Filter(#[from] seccompiler::BackendError),
    /// A rule's condition was refused (a bug in the table).
    #[error("seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
    /// iovm's filters are written for another architecture.
    #[error("seccomp filters are not written for {0}")]
    Arch(&'static str),
    /// `PR_SET_NO_NEW_PRIVS` or the SIGSYS handler could not be set.
    #[error("cannot prepare seccomp: {0}")]
    Prepare(std::io::Error),
    /// [`configure`] was called twice.
    #[error("the sandbox is already configured")]
    Configured,
    /// A filter was asked for with filters off.
    #[error("seccomp is off")]
    Off,
}

struct Policy {
    mode: Mode,
    programs: HashMap<ThreadKind, BpfProgram>,
    selftest: Option<ThreadKind>,
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Sets the process's policy: compiles every kind's filter (so a bad table
/// fails here, before any guest runs), sets `PR_SET_NO_NEW_PRIVS` and the
/// SIGSYS handler that reports a forbidden call; with `user`, every filter
/// lets the threads become that user ([`privileges::drop_now`]). With `selftest`, a thread
/// of that kind makes a forbidden call right after entering its filter
/// (the tests' proof that the filter is there and kills).
pub fn configure(
    mode: Mode,
    selftest: Option<ThreadKind>,
    user: Option<privileges::Credentials>,
) -> Result<(), SandboxError> {
    if let Some(c) = user {
        privileges::TARGET
            .set(c)
            .map_err(|_| SandboxError::Configured)?;
    }
    let mut programs = HashMap::new();
    if mode != Mode::Off {
        fix_allocator_arenas();
        for kind in ThreadKind::ALL {
            programs.insert(kind, filters::compile(kind, mode)?);
        }
        privileges::no_new_privs().map_err(SandboxError::Prepare)?;
        violation::install_handler().map_err(SandboxError::Prepare)?;
    }
    POLICY
        .set(Policy {
            mode,
            programs,
            selftest,
        })
        .map_err(|_| SandboxError::Configured)
}

/// Sets glibc's limit of malloc arenas now, as its default would be (8
/// per CPU on 64-bit): otherwise the first thread to need a new arena
/// works the limit out by opening `/sys/devices/system/cpu/online`, which
/// no filter but the main thread's allows.
fn fix_allocator_arenas() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let arenas = i32::try_from(cpus.saturating_mul(8)).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets a tunable of the allocator.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } != 1 {
        tracing::warn!("cannot set malloc's arena limit; a thread may trip its filter");
    }
}

/// The configured mode, if [`configure`] was called.
pub fn mode() -> Option<Mode> {
    POLICY.get().map(|p| p.mode)
}

/// Puts the calling thread under `kind`'s filter, for good. Does nothing
/// when the sandbox is not configured or is off. A filter that cannot be
/// installed ends iovm (it must not run a guest unfiltered by accident).
pub fn enter(kind: ThreadKind) {
    let Some(policy) = POLICY.get() else {
        return;
    };
    violation::mark(kind);
    let Some(program) = policy.programs.get(&kind) else {
        return;
    };
    if let Err(e) = seccompiler::apply_filter(program) {
        tracing::error!("cannot install the seccomp filter of the {kind} thread: {e}");
        eprintln!("iovm: error: cannot install the seccomp filter of the {kind} thread: {e}");
        // SAFETY: ends the process at once; nothing of it is used after.
        unsafe { libc::_exit(1) };
    }
    tracing::debug!("{kind} thread: seccomp filter ({}) installed", policy.mode);
    if policy.selftest == Some(kind) {
        violation::forbidden_call();
    }
}

/// The seccomp mode of thread `tid` of this process, from
/// `/proc/self/task/TID/status` (0 none, 1 strict, 2 filter).
pub fn thread_seccomp_mode(tid: i32) -> std::io::Result<u8> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no Seccomp line in the thread's status"))
}
