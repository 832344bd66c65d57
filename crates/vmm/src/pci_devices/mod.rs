//! Builds the user's PCI tree ([`crate::topology::plan`]) on the root
//! complex: root ports, bridges and devices, each device's INTA wired-OR
//! onto the IOAPIC pin its root-bus slot routes to.
//!
//! ```text
//!  plan ──▶ for each placement, in command-line order:
//!           context (machine + this device) ──▶ the builder of its kind ──▶ Built ──▶ tree.attach
//!                                                (builders/, one file each)            (tree.rs)
//! ```
//!
//! Each kind of device has a builder of its own in `builders/`, which takes
//! the device's config and a context (the wiring, the root complex, the
//! vCPU count, a per-kind count for default names) and returns the
//! function or bridge to attach; where it goes is decided once, here and
//! in `tree.rs`. Helpers builders share: INTx wired-OR per IOAPIC pin
//! (`intx.rs`), error text (`error.rs`), opening disks (`disk.rs`).

use std::path::Path;
use std::sync::Arc;

use dma::{Dma, FunctionContext};
use irq::msi::MsiVectors;
use irq::IrqLine;
use vfio::{HostDevice, VectorTriggers};

use crate::config::DeviceConfig;
use crate::console::ConsoleInput;
use crate::pci_host::PciRoot;
use crate::topology;

mod builders;
mod context;
mod disk;
mod error;
mod hotplug;
#[cfg(test)]
mod hotplug_tests;
mod intx;
#[cfg(test)]
pub(crate) mod test_wiring;
mod tree;
#[cfg(test)]
mod virtio_vtd_tests;

pub use error::PciBuildError;
pub(crate) use hotplug::{Hotplug, Removal, SlotSink};

use context::BuildContext;
use tree::Tree;

/// Whether a function's DMA goes through the machine's IOMMU, if it has
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaRoute {
    /// Translated by the IOMMU: every emulated device that is not virtio
    /// (NVMe), whose guest driver maps its buffers through the DMA API,
    /// and a virtio device whose driver accepted VIRTIO_F_ACCESS_PLATFORM
    /// (virtio 1.2 §6), which iovm offers when the machine has an IOMMU.
    Iommu,
    /// Guest RAM as it is, IOMMU or not: a virtio device whose driver did
    /// not accept VIRTIO_F_ACCESS_PLATFORM hands out guest-physical
    /// addresses, so the device must not translate them (QEMU does the
    /// same).
    Bypass,
}

/// What the devices are wired to: IOAPIC pins, MSI routes, guest memory.
/// The VMM's is KVM's ([`crate::vm`]); tests record.
pub trait Wiring {
    /// The input of IOAPIC pin `gsi`, which the wires sharing it drive
    /// together (wired-OR).
    fn intx_pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError>;

    /// The MSI/MSI-X vectors of the function `ctx` describes (interrupt
    /// remapping will key its translation by the context's requester ID).
    fn msi_vectors(&mut self, ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors>;

    /// Memory as the function `ctx` describes reaches it: guest RAM as it
    /// is, or, for [`DmaRoute::Iommu`] in a machine with an IOMMU, the
    /// IOMMU's translation for its requester ID. The builders put it
    /// behind the function's [`dma::FunctionDma`] (Bus Master Enable), and
    /// every access of the device (rings included) goes through that.
    fn dma(&mut self, ctx: &Arc<FunctionContext>, route: DmaRoute) -> Arc<dyn Dma>;

    /// Whether the machine has an IOMMU ([`DmaRoute::Iommu`] translates):
    /// virtio devices then offer VIRTIO_F_ACCESS_PLATFORM.
    fn has_iommu(&self) -> bool;

    /// Where a console device's output goes (iovm's console).
    fn console_output(&mut self) -> Box<dyn std::io::Write + Send>;

    /// Sends the console's input to `input` (a virtio console) instead of COM1.
    fn console_input(&mut self, input: Arc<dyn ConsoleInput>);

    /// Opens the host function at `sysfs`, described by `ctx`, for
    /// assignment (KVM: through the machine's VFIO container, guest RAM
    /// mapped for its DMA; behind the machine's VT-d, through a container
    /// of its own that mirrors the guest's IOMMU tables for it).
    fn host_device(
        &mut self,
        sysfs: &Path,
        ctx: &Arc<FunctionContext>,
    ) -> Result<Arc<dyn HostDevice>, PciBuildError>;

    /// A relay of an assigned function's INTx onto `line`, the wire into
    /// IOAPIC pin `gsi` (`None`: the machine relays none).
    fn intx_relay(
        &mut self,
        line: Arc<dyn IrqLine>,
        gsi: u32,
    ) -> Result<Option<Arc<dyn vfio::IntxRelay>>, PciBuildError>;

    /// The MSI/MSI-X vectors of the function `ctx` describes, and for each
    /// vector an eventfd whose signal delivers it (KVM: its irqfd), for a
    /// host function that interrupts through eventfds.
    fn triggered_vectors(
        &mut self,
        ctx: &Arc<FunctionContext>,
    ) -> (Arc<dyn MsiVectors>, Arc<dyn VectorTriggers>);

    /// The part of the wiring a function built while the machine runs
    /// needs (an SR-IOV VF the guest enabled): kept by whoever builds it.
    fn function_wiring(&mut self) -> Arc<dyn FunctionWiring>;
}

/// What a function built while the machine runs is wired to: its MSI/MSI-X
/// vectors and its DMA, as [`Wiring::msi_vectors`] and [`Wiring::dma`]
/// give them at boot. It holds no borrow of the machine's build-time
/// state, so an SR-IOV PF's VF builder can keep it.
pub trait FunctionWiring: Send + Sync + std::fmt::Debug {
    /// The MSI/MSI-X vectors of the function `ctx` describes.
    fn msi_vectors(&self, ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors>;

    /// Memory as the function `ctx` describes reaches it (see
    /// [`Wiring::dma`]).
    fn dma(&self, ctx: &Arc<FunctionContext>, route: DmaRoute) -> Arc<dyn Dma>;
}

/// Places every device of `devices` on `pci`, wired by `wiring`, in a
/// machine of `cpus` vCPUs.
pub fn build(
    devices: &[DeviceConfig],
    pci: &PciRoot,
    wiring: &mut dyn Wiring,
    cpus: u32,
) -> Result<(), PciBuildError> {
    build_hotplug(devices, pci, wiring, cpus, Arc::new(|_, _| {})).map(drop)
}

/// Places every device as [`build`] does, and keeps what a device added
/// later needs: the hot-plug root ports (whose Slot Control commands go to
/// `slots`) and the build state.
pub(crate) fn build_hotplug(
    devices: &[DeviceConfig],
    pci: &PciRoot,
    wiring: &mut dyn Wiring,
    cpus: u32,
    slots: SlotSink,
) -> Result<Hotplug, PciBuildError> {
    let plan = topology::plan(devices)?;
    let mut machine = BuildContext::new(pci, wiring, cpus);
    let mut tree = Tree::default();
    let mut attached = Vec::new();
    for place in &plan {
        if let Some((built, ctx)) = machine.build(&devices[place.index], place, devices)? {
            let function = built.endpoint();
            attached.push((place.index, built.shared()));
            tree.attach(pci, place, built)?;
            if let Some(function) = function {
                pci.add_context(&function, ctx);
            }
        }
    }
    let mut state = machine.into_state();
    for (index, function) in &attached {
        state.list(&devices[*index], function);
    }
    Ok(Hotplug::new(
        state,
        pci,
        devices,
        |index| tree.bridge(index),
        cpus,
        slots,
    ))
}
