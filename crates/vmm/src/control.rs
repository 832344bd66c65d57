//! Changing a running machine from outside: add a PCI device to a free
//! hot-plug root port, remove one. What a management API (or any other
//! thread of the process) calls.
//!
//! A [`ControlHandle`] sends each request into the machine's run loop
//! ([`crate::vm::VmEvent::Control`]) and waits for the answer; vCPUs never
//! wait for it, and the run loop never waits for the guest.
//!
//! ```text
//!  add_device ──▶ run loop: check id, kind, disks; a free hot-plug port;
//!                 build with the boot-time builder; attach behind the port;
//!                 Presence Detect (+ the attention button on a slot that
//!                 is off, or link up on one that is on) ──▶ hot-plug
//!                 interrupt ──▶ answer
//!                 { id, bdf }                        (the guest's pciehp
//!                                                      enumerates and binds)
//!  remove_device ─▶ run loop: press the port's attention button ──▶ (guest:
//!                 5 s to cancel, unbind, power the slot off) ──▶ Slot Control
//!                 power off ──▶ detach: BARs unmapped, ioeventfds
//!                 unregistered, MSI routes and irqfds released, workers
//!                 joined, files and TAPs closed ──▶ answer Ok
//!                 (no power off within the timeout: RemoveTimeout; the
//!                 device stays, and a later power off still detaches it)
//! ```
//!
//! The handle outlives machines: [`crate::lifecycle::run_managed`]
//! attaches it to each machine it runs, so a request made between a reboot
//! and the next boot, or after the end, gets [`ControlError::NotRunning`].

mod serve;

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pci::address::Bdf;

use crate::config::DeviceConfig;
use crate::vm::VmEvent;

#[cfg(test)]
pub(crate) use serve::Change;
pub(crate) use serve::Controls;
pub use serve::SlotEvent;

/// How long [`ControlHandle::remove_device`] gives the guest to let go of
/// a device: Linux's `pciehp` waits 5 s after the attention button for a
/// second press that cancels, then unbinds the driver (a disk flushes) and
/// powers the slot off, then waits 1 s more.
pub const DEFAULT_REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A device to add while the machine runs, spelled as on the command line
/// (`--device`): the PCI function, and its parts (an NVMe controller's
/// `nvme-ns` namespaces, whose `bus=` is the function's id or empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddRequest {
    /// The function: `virtio-blk`, `virtio-net`, `virtio-rng` or `nvme`. It
    /// goes behind a free hot-plug root port, at 00.0; `bus=` and `addr=`
    /// must be unset. Without an id it gets one (its kind and a number).
    pub device: DeviceConfig,
    /// Its parts, in order.
    pub parts: Vec<DeviceConfig>,
}

impl AddRequest {
    /// `device` with no parts.
    pub fn new(device: DeviceConfig) -> Self {
        Self {
            device,
            parts: Vec::new(),
        }
    }
}

/// A device added: its id and where the guest finds it (the bus is the
/// port's secondary bus as the guest has numbered it; 0 before the guest
/// enumerated the port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// Its id (given, or made up).
    pub id: String,
    /// Its PCI address now.
    pub bdf: Bdf,
}

/// A PCI function of the running machine, as the guest sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its id (`id=`, or made up when hot-added), if it has one.
    pub id: Option<String>,
    /// Its kind, as `--device` names it (`root-port`, `virtio-blk`, …).
    pub kind: &'static str,
    /// Its address under the bus numbers the guest programmed (behind a
    /// bridge the guest has not numbered yet, bus 0).
    pub bdf: Bdf,
}

/// Why a request failed. Each message is one line a user can act on.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// No machine runs (not yet booted, rebooting, or ended).
    #[error("no machine is running")]
    NotRunning,
    /// Every hot-plug root port holds a device.
    #[error("no free hot-plug root port: start the machine with more --device root-port (hotplug=on is the default)")]
    NoFreePort,
    /// No device has that id.
    #[error("no device has id '{0}'")]
    UnknownId(String),
    /// The id is taken.
    #[error("a device with id '{0}' already exists")]
    DuplicateId(String),
    /// That kind cannot be added while the machine runs.
    #[error("a {0} cannot be hot-added; use virtio-blk, virtio-net, virtio-rng or nvme")]
    NotHotpluggable(&'static str),
    /// The device's config is wrong (a file missing, a bad option).
    #[error("{0}")]
    BadConfig(String),
    /// The device sits where no hot-plug controller can remove it.
    #[error("device '{0}' is not alone behind a hot-plug root port, so it cannot be removed")]
    NotRemovable(String),
    /// The guest did not power the slot off in time.
    #[error("the guest did not release device '{id}' within {} s (is pciehp loaded?); it stays, and goes once the guest powers its slot off", after.as_secs())]
    RemoveTimeout {
        /// The device.
        id: String,
        /// How long it had.
        after: Duration,
    },
}

/// A request into the run loop, with where its answer goes.
#[derive(Debug)]
pub enum ControlRequest {
    /// Add a device.
    Add(AddRequest, Sender<Result<Added, ControlError>>),
    /// Remove the device with this id, within this time.
    Remove(String, Duration, Sender<Result<(), ControlError>>),
    /// List the machine's PCI functions.
    Devices(Sender<Vec<DeviceInfo>>),
}

/// Sends requests into whichever machine runs now, and waits for their
/// answers. Cheap to clone; every clone reaches the same machine.
#[derive(Clone, Debug, Default)]
pub struct ControlHandle {
    sink: Arc<Mutex<Option<Sender<VmEvent>>>>,
}

impl ControlHandle {
    /// A handle attached to no machine yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Sender<VmEvent>>> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests go into `sink` (a machine's event channel) from now on.
    pub(crate) fn attach(&self, sink: Sender<VmEvent>) {
        *self.lock() = Some(sink);
    }

    /// Requests fail with [`ControlError::NotRunning`] from now on.
    pub(crate) fn detach(&self) {
        *self.lock() = None;
    }

    fn send(&self, request: ControlRequest) -> Result<(), ControlError> {
        let guard = self.lock();
        let sink = guard.as_ref().ok_or(ControlError::NotRunning)?;
        sink.send(VmEvent::Control(request))
            .map_err(|_| ControlError::NotRunning)
    }

    /// Adds `request`'s device to a free hot-plug root port of the running
    /// machine and answers with its id and address once it is attached and
    /// the guest has been told (the guest's driver binds on its own time).
    pub fn add_device(&self, request: AddRequest) -> Result<Added, ControlError> {
        let (tx, rx) = mpsc::channel();
        self.send(ControlRequest::Add(request, tx))?;
        rx.recv().unwrap_or(Err(ControlError::NotRunning))
    }

    /// The PCI functions the machine was given (`--device`, root ports and
    /// bridges too; not the host bridge, not SR-IOV VFs) and those added
    /// since and not removed, in build order, with their addresses now.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>, ControlError> {
        let (tx, rx) = mpsc::channel();
        self.send(ControlRequest::Devices(tx))?;
        rx.recv().map_err(|_| ControlError::NotRunning)
    }

    /// Removes the device `id` (see [`ControlHandle::remove_device_within`])
    /// within [`DEFAULT_REMOVE_TIMEOUT`].
    pub fn remove_device(&self, id: &str) -> Result<(), ControlError> {
        self.remove_device_within(id, DEFAULT_REMOVE_TIMEOUT)
    }

    /// Presses the attention button of the port device `id` sits behind,
    /// and answers once the guest has powered the slot off and the device
    /// is gone with all it held, or after `timeout`
    /// ([`ControlError::RemoveTimeout`]). A slot the guest never powered
    /// on is let go at once.
    pub fn remove_device_within(&self, id: &str, timeout: Duration) -> Result<(), ControlError> {
        let (tx, rx) = mpsc::channel();
        self.send(ControlRequest::Remove(id.to_string(), timeout, tx))?;
        rx.recv().unwrap_or(Err(ControlError::NotRunning))
    }
}
