//! One builder per device kind, each in a file of its own, and the table
//! that picks one for a device ([`build`]).
//!
//! A builder is a function `build(config, dev)` returning the [`Built`]
//! function or bridge: it makes the device from its config and what
//! [`DeviceContext`] hands out (wires, default-name counts, vCPUs), and
//! leaves placing it to the caller. A virtio kind builds only its device
//! type; `virtio_pci.rs` puts every one behind the same transport.
//!
//! A new kind is a new file here, its `mod` line and its line in
//! [`build`].

use std::sync::{Arc, Mutex};

use pci::bridge::PciBridgeFunction;
use pci::function::PciFunction;
use pci::root::SharedFunction;

use super::context::DeviceContext;
use super::tree::NewBridge;
use super::PciBuildError;
use crate::config::{DeviceKind, VirtioKind};

mod ahci;
mod e1000e;
mod nvme;
mod nvme_doorbells;
mod nvme_vfs;
mod pci_bridge;
mod pci_serial;
mod root_port;
#[cfg(test)]
mod sriov_tests;
#[cfg(test)]
mod tests;
mod vfio_pci;
mod virtio_blk;
mod virtio_console;
mod virtio_net;
mod virtio_pci;
mod virtio_rng;

/// What a builder made, for the caller to place.
pub(crate) enum Built {
    /// A function (an endpoint).
    Function(SharedFunction),
    /// A root port or bridge: a bus other devices sit behind.
    Bridge(NewBridge),
}

impl Built {
    /// The endpoint it is, if it is one (the function whose DMA context
    /// the root complex then keeps current).
    pub(crate) fn endpoint(&self) -> Option<SharedFunction> {
        match self {
            Self::Function(f) => Some(f.clone()),
            Self::Bridge(_) => None,
        }
    }

    /// The function it is (a bridge too), as the root complex holds it.
    pub(crate) fn shared(&self) -> SharedFunction {
        match self {
            Self::Function(f) => f.clone(),
            Self::Bridge(b) => b.function(),
        }
    }

    /// `function`, shared with the root complex.
    fn function<F: PciFunction + 'static>(function: F) -> Self {
        Self::Function(Arc::new(Mutex::new(function)))
    }

    /// `bridge`, shared with the root complex.
    fn bridge<B: PciBridgeFunction + 'static>(bridge: B) -> Self {
        Self::Bridge(NewBridge::new(bridge))
    }
}

/// Builds a device of `kind` with the builder of that kind, or `None` for
/// a kind that is no PCI function of its own (an NVMe namespace or a SATA
/// disk, which its controller's builder opens). The match has no catch-all: a kind added
/// to [`DeviceKind`] does not compile until it has a line here.
pub(crate) fn build(
    kind: &DeviceKind,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Option<Built>, PciBuildError> {
    let built = match kind {
        DeviceKind::RootPort(c) => root_port::build(c, dev)?,
        DeviceKind::PciBridge => pci_bridge::build()?,
        DeviceKind::PciSerial(c) => pci_serial::build(c, dev)?,
        DeviceKind::Nvme(c) => nvme::build(c, dev)?,
        DeviceKind::NvmeNamespace(_) | DeviceKind::SataDisk(_) => return Ok(None),
        DeviceKind::Ahci(c) => ahci::build(c, dev)?,
        DeviceKind::E1000e(c) => e1000e::build(c, dev)?,
        DeviceKind::VfioPci(c) => vfio_pci::build(c, dev)?,
        DeviceKind::Virtio(v) => {
            let device = match &v.device {
                VirtioKind::Blk(c) => virtio_blk::build(c, dev)?,
                VirtioKind::Net(c) => virtio_net::build(c, dev)?,
                VirtioKind::Console => virtio_console::build(dev)?,
                VirtioKind::Rng => virtio_rng::build()?,
            };
            virtio_pci::build(v, device, dev)?
        }
    };
    Ok(Some(built))
}
