//! Which groups of system calls ([`super::groups`]) and which ioctls each
//! thread kind may use: the whole policy, in one table.
//!
//! A thread inherits its parent's filter and adds its own, and the kernel
//! applies both: a kind must therefore be allowed everything the kinds it
//! starts are allowed (the main thread starts every kind; vCPUs start
//! device workers when the guest enables a device). `tests.rs` checks it.

use libc::c_long;

use super::groups::*;
use crate::ThreadKind;

/// The ioctls a kind may make, by the type byte of the request number
/// (bits 8..16, `_IOC_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ioctls {
    /// None at all.
    Never,
    /// Only requests of these types.
    Types(&'static [u8]),
    /// Any request (the main thread, which sets up terminals, block
    /// devices, TAPs, KVM and VFIO).
    Any,
}

/// `_IOC_TYPE` of KVM's ioctls (`KVMIO`).
pub(crate) const KVM: u8 = 0xAE;
/// `_IOC_TYPE` of VFIO's ioctls (`VFIO_TYPE`, ';').
pub(crate) const VFIO: u8 = b';';
/// `_IOC_TYPE` 'T': TUN/TAP (offloads, header size) and terminal requests.
pub(crate) const TUN: u8 = b'T';
/// `_IOC_TYPE` 0x12: block device requests (size, discard, zero-out).
pub(crate) const BLOCK: u8 = 0x12;

/// What one thread kind may do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allowance {
    /// The groups of system calls it may make.
    pub(crate) groups: &'static [&'static [c_long]],
    /// The ioctls among them.
    pub(crate) ioctls: Ioctls,
}

/// The kind's allowance.
pub(crate) fn allowance(kind: ThreadKind) -> Allowance {
    use ThreadKind::*;
    let (groups, ioctls): (&'static [&'static [c_long]], Ioctls) = match kind {
        Main => (
            &[
                BASE,
                SPAWN,
                EVENTS,
                BLOCK_IO,
                NET_IO,
                DEVICE_START,
                MACHINE_BUILD,
                SOCKET_MAKE,
                SOCKET_IO,
                SIGNAL_WAIT,
            ],
            Ioctls::Any,
        ),
        Vcpu => (
            &[BASE, SPAWN, EVENTS, BLOCK_IO, NET_IO, DEVICE_START],
            Ioctls::Types(&[KVM, VFIO, TUN, BLOCK]),
        ),
        NvmeWorker | AhciWorker | VirtioBlk => {
            (&[BASE, EVENTS, BLOCK_IO], Ioctls::Types(&[BLOCK, KVM]))
        }
        VirtioNet | E1000e => (&[BASE, EVENTS, NET_IO], Ioctls::Types(&[TUN, KVM])),
        VirtioRng => (&[BASE, EVENTS, ENTROPY], Ioctls::Types(&[KVM])),
        VirtioConsole => (&[BASE, EVENTS], Ioctls::Types(&[KVM])),
        Console => (
            &[BASE, SPAWN, EVENTS, SOCKET_IO],
            Ioctls::Types(&[KVM, TUN]),
        ),
        Signals => (&[BASE, SIGNAL_WAIT], Ioctls::Never),
        ApiServer => (&[BASE, SPAWN, EVENTS, SOCKET_IO], Ioctls::Never),
        ApiClient => (&[BASE, EVENTS, SOCKET_IO], Ioctls::Never),
        ApiWaiter => (&[BASE], Ioctls::Never),
        VfioIntx => (&[BASE, EVENTS], Ioctls::Types(&[KVM, VFIO])),
    };
    Allowance { groups, ioctls }
}

/// The kinds a thread of `kind` may start (checked by the tests).
#[cfg(test)]
pub(crate) fn starts(kind: ThreadKind) -> &'static [ThreadKind] {
    use ThreadKind::*;
    match kind {
        Main => &ThreadKind::ALL,
        Vcpu => &[
            NvmeWorker,
            AhciWorker,
            VirtioBlk,
            VirtioNet,
            E1000e,
            VirtioRng,
            VirtioConsole,
        ],
        Console => &[Console],
        ApiServer => &[ApiClient],
        _ => &[],
    }
}
