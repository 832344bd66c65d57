//! The system calls iovm's threads make, in groups by purpose (x86-64
//! numbers). A thread kind's filter is a list of these groups
//! ([`super::table`]); a call in no group of a thread's list is forbidden
//! to it.

use libc::*;

/// What any Rust thread needs to live and end: memory, locks and condition
/// variables, time, its signal frame, stderr for the log, randomness for
/// hash maps, closing what it drops.
pub(crate) const BASE: &[c_long] = &[
    SYS_brk,
    SYS_mmap,
    SYS_munmap,
    SYS_mprotect,
    SYS_madvise,
    SYS_mremap,
    SYS_futex,
    SYS_sched_yield,
    SYS_nanosleep,
    SYS_clock_nanosleep,
    SYS_clock_gettime,
    SYS_gettimeofday,
    SYS_restart_syscall,
    SYS_rt_sigreturn,
    SYS_rt_sigprocmask,
    SYS_sigaltstack,
    SYS_exit,
    SYS_exit_group,
    SYS_write,
    SYS_writev,
    SYS_getrandom,
    SYS_gettid,
    SYS_getpid,
    SYS_close,
];

/// Starting a thread: the calls the parent makes (`clone3`, the stack and
/// its guard page) and those the child makes before it enters its own
/// filter, which it inherits from its parent (robust futex list, restartable
/// sequences, its name, the stack bounds std reads, and entering its own
/// filter with `prctl` and `seccomp`, which can only narrow what it may do).
pub(crate) const SPAWN: &[c_long] = &[
    SYS_clone,
    SYS_clone3,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_prctl,
    SYS_sched_getaffinity,
    SYS_seccomp,
];

/// Waiting for and signalling events: epoll, eventfds (read and write),
/// poll, the timers device workers arm.
pub(crate) const EVENTS: &[c_long] = &[
    SYS_epoll_wait,
    SYS_epoll_pwait,
    SYS_epoll_ctl,
    SYS_read,
    SYS_poll,
    SYS_ppoll,
    SYS_timerfd_settime,
    SYS_timerfd_gettime,
];

/// Block I/O on an image already open: io_uring submission and the
/// synchronous fallbacks, flushes, hole punching.
pub(crate) const BLOCK_IO: &[c_long] = &[
    SYS_io_uring_enter,
    SYS_pread64,
    SYS_pwrite64,
    SYS_preadv,
    SYS_pwritev,
    SYS_preadv2,
    SYS_pwritev2,
    SYS_fsync,
    SYS_fdatasync,
    SYS_fallocate,
    SYS_lseek,
];

/// Frames to and from a TAP already open.
pub(crate) const NET_IO: &[c_long] = &[SYS_readv, SYS_read, SYS_write, SYS_writev];

/// Making what a device needs when the guest starts it (virtio DRIVER_OK,
/// an NVMe queue, an SR-IOV VF): eventfds, epoll sets, timers, io_uring
/// instances, duplicated descriptors.
pub(crate) const DEVICE_START: &[c_long] = &[
    SYS_eventfd2,
    SYS_epoll_create1,
    SYS_timerfd_create,
    SYS_io_uring_setup,
    SYS_io_uring_register,
    SYS_fcntl,
    SYS_dup,
];

/// What only the main thread does: open files and device nodes, look at
/// the file system, build machines, serve sockets (the serial console's,
/// the API's), lock images, kick vCPUs with a signal, know its limits.
pub(crate) const MACHINE_BUILD: &[c_long] = &[
    SYS_open,
    SYS_openat,
    SYS_stat,
    SYS_fstat,
    SYS_lstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_statfs,
    SYS_fstatfs,
    SYS_readlink,
    SYS_readlinkat,
    SYS_getdents64,
    SYS_access,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_unlink,
    SYS_unlinkat,
    SYS_ftruncate,
    SYS_flock,
    SYS_memfd_create,
    SYS_fadvise64,
    SYS_uname,
    SYS_sysinfo,
    SYS_getcwd,
    SYS_pipe2,
    SYS_dup2,
    SYS_dup3,
    SYS_tgkill,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_prlimit64,
    SYS_getrlimit,
    SYS_mlock,
    SYS_munlock,
    SYS_rt_sigaction,
    SYS_sched_setaffinity,
];

/// Making Unix sockets: the serial console's and the API's listeners.
pub(crate) const SOCKET_MAKE: &[c_long] = &[
    SYS_socket,
    SYS_bind,
    SYS_listen,
    SYS_connect,
    SYS_socketpair,
];

/// Using sockets already made: accepting, talking, passing descriptors.
pub(crate) const SOCKET_IO: &[c_long] = &[
    SYS_accept,
    SYS_accept4,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendto,
    SYS_recvfrom,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_getsockname,
    SYS_getpeername,
    SYS_shutdown,
];

/// Waiting for a blocked signal.
pub(crate) const SIGNAL_WAIT: &[c_long] = &[SYS_rt_sigtimedwait, SYS_rt_sigsuspend];

/// `getrandom` alone, for the entropy device (already in [`BASE`], named
/// here so the RNG's filter says why it needs it).
pub(crate) const ENTROPY: &[c_long] = &[SYS_getrandom];
