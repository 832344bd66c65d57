//! The kinds of thread iovm runs, each with a filter of its own.

use std::fmt;
use std::str::FromStr;

/// A kind of iovm thread. Every thread iovm starts enters one of these
/// (with [`crate::enter`]) before it touches anything a guest or a client
/// controls; threads of one kind share a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadKind {
    /// The main thread: builds machines (on every reboot too), serves the
    /// run loop's events, adds and removes devices at run time.
    Main,
    /// A vCPU: `KVM_RUN` and the device accesses it exits for, which may
    /// start device workers (virtio activation, SR-IOV VF enable).
    Vcpu,
    /// The NVMe controller's worker: doorbells, the io_uring backend.
    NvmeWorker,
    /// The AHCI controller's worker.
    AhciWorker,
    /// A virtio-blk device's worker.
    VirtioBlk,
    /// A virtio-net device's worker: the TAP and the queues.
    VirtioNet,
    /// The e1000e NIC's worker: the TAP and the rings.
    E1000e,
    /// A virtio-rng device's worker.
    VirtioRng,
    /// A virtio-console device's worker.
    VirtioConsole,
    /// The serial console's input threads (terminal, socket listener and clients).
    Console,
    /// The thread that waits for SIGTERM and SIGINT.
    Signals,
    /// The management API's listener.
    ApiServer,
    /// A management API client's connection.
    ApiClient,
    /// A thread that waits for the run loop's answer to an API request.
    ApiWaiter,
    /// The relay of an assigned device's INTx.
    VfioIntx,
}

impl ThreadKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ThreadKind; 15] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::NvmeWorker,
        ThreadKind::AhciWorker,
        ThreadKind::VirtioBlk,
        ThreadKind::VirtioNet,
        ThreadKind::E1000e,
        ThreadKind::VirtioRng,
        ThreadKind::VirtioConsole,
        ThreadKind::Console,
        ThreadKind::Signals,
        ThreadKind::ApiServer,
        ThreadKind::ApiClient,
        ThreadKind::ApiWaiter,
        ThreadKind::VfioIntx,
    ];

    /// The kind's name, as `--seccomp-selftest` takes it and messages print it.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::NvmeWorker => "nvme",
            ThreadKind::AhciWorker => "ahci",
            ThreadKind::VirtioBlk => "virtio-blk",
            ThreadKind::VirtioNet => "virtio-net",
            ThreadKind::E1000e => "e1000e",
            ThreadKind::VirtioRng => "virtio-rng",
            ThreadKind::VirtioConsole => "virtio-console",
            ThreadKind::Console => "console",
            ThreadKind::Signals => "signals",
            ThreadKind::ApiServer => "api-server",
            ThreadKind::ApiClient => "api-client",
            ThreadKind::ApiWaiter => "api-waiter",
            ThreadKind::VfioIntx => "vfio-intx",
        }
    }

    /// A small number for the thread-local marker the violation handler reads.
    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ThreadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown thread kind '{s}' (one of: {})", names.join(", "))
            })
    }
}
