//! `vfio-pci`: a host PCI function assigned to the guest (issue 19): opened
//! through the machine's VFIO container (its DMA reaches guest RAM through
//! the host's IOMMU at IOVA = guest-physical address), presented by the
//! `vfio` crate's [`AssignedFunction`], its MSI/MSI-X vectors KVM routes
//! whose irqfds the device signals directly, and its BAR pages (all but
//! the MSI-X table's and PBA's) mapped from the device into the guest so
//! that register and doorbell accesses never exit.

use std::sync::{Arc, Mutex};

use pci::bar::BarSpec;
use pci::config::{BarWindow, ConfigWriteEffects};
use pci::function::PciFunction;
use pci::root::SharedFunction;
use vfio::{AssignedFunction, Interrupts, MappedRegion};

use super::Built;
use crate::config::VfioPciConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::PciBuildError;
use crate::pci_host::BarMemory;

/// An assigned function and the BAR mappings the guest reaches directly.
/// The mappings go first when dropped (the root complex removed their
/// memory slots before it dropped the function): a mapping holds the VFIO
/// device file open, and the function's device must be the last user of
/// its group when it goes, or VFIO cannot take the group out of the
/// container. Then the function is quiesced, reset and closed.
#[derive(Debug)]
struct Passthrough {
    _mapped: Vec<Box<dyn MappedRegion>>,
    function: AssignedFunction,
}

impl PciFunction for Passthrough {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.function.config_read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        self.function.config_write(offset, data)
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        self.function.bar_read(bar, offset, data);
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.function.bar_write(bar, offset, data);
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.function.bar_windows()
    }
}

/// The host function `c` names, reset and presented to the guest.
pub(super) fn build(
    c: &VfioPciConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let host = dev.host_device(&c.sysfs)?;
    let (vectors, triggers) = dev.triggered_vectors();
    let shown = Interrupts {
        msix: !c.no_msix,
        msi: !c.no_msi,
        intx: true,
    };
    let intx = dev.intx_relay()?;
    let function = AssignedFunction::with_interrupts(host.clone(), vectors, triggers, intx, shown)
        .map_err(|e| PciBuildError::Device(format!("vfio-pci {}: {e}", c.sysfs.display())))?;
    let mut mapped = Vec::new();
    let mut memory = Vec::new();
    let direct = if c.no_mmap {
        Vec::new()
    } else {
        function.direct_ranges()
    };
    for r in direct {
        match host.map(r.bar as u32, r.offset, r.len) {
            Ok(Some(m)) => {
                memory.push(BarMemory {
                    bar: r.bar,
                    offset: r.offset,
                    len: r.len,
                    host_addr: m.host_addr(),
                });
                mapped.push(m);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "vfio-pci {}: BAR {} {:#x}+{:#x} not mapped ({e}): its accesses exit",
                c.sysfs.display(),
                r.bar,
                r.offset,
                r.len
            ),
        }
    }
    tracing::info!(
        "vfio-pci: {} assigned ({:04x}:{:04x}), {} BAR range(s) mapped directly",
        c.sysfs.display(),
        function.host_config().identity.vendor,
        function.host_config().identity.device,
        memory.len()
    );
    let shared = Arc::new(Mutex::new(Passthrough {
        _mapped: mapped,
        function,
    }));
    dev.bar_memory(&(shared.clone() as SharedFunction), memory);
    Ok(Built::Function(shared))
}
