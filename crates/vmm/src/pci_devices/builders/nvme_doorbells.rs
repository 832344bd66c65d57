//! An NVMe controller on the PCI tree whose I/O submission doorbells become
//! ioeventfds once the guest has set up shadow doorbells (Doorbell Buffer
//! Config, NVMe 1.4 §5.8): from then on the device reads the tail from the
//! shadow buffer, so a doorbell write needs no value and no exit to user
//! space, only a wake-up of the controller's worker.
//!
//! Before that (and after a controller reset, which drops the shadow
//! buffers) the doorbells trap as ordinary MMIO writes, whose value the
//! controller needs.

use devices::nvme::{Nvme, DOORBELL_BASE, NVME_BAR};

/// End of the admin submission and completion queue doorbells (CAP.DSTRD = 0).
const ADMIN_DOORBELLS_END: u64 = DOORBELL_BASE + 8;
use pci::bar::BarSpec;
use pci::config::{BarWindow, ConfigWriteEffects};
use pci::function::PciFunction;

use crate::pci_host::{BarEventFd, BarEvents};

/// [`Nvme`] plus the switch of its doorbell eventfds.
#[derive(Debug)]
pub struct NvmeFunction {
    nvme: Nvme,
    doorbells: Option<BarEvents>,
}

impl NvmeFunction {
    /// Wraps `nvme`; its doorbells stay trapped until [`Self::set_doorbells`].
    pub fn new(nvme: Nvme) -> Self {
        Self {
            nvme,
            doorbells: None,
        }
    }

    /// The eventfds of the I/O submission doorbells, for
    /// [`crate::pci_host::PciRoot::add_bar_eventfds`] (inactive at first).
    pub fn doorbell_eventfds(&self) -> std::io::Result<Vec<BarEventFd>> {
        self.nvme
            .sq_doorbell_eventfds()
            .map(|(slot, fd)| {
                Ok(BarEventFd {
                    bar: slot.bar,
                    offset: slot.offset,
                    fd: fd.try_clone()?,
                })
            })
            .collect()
    }

    /// The controller.
    pub fn nvme(&self) -> &Nvme {
        &self.nvme
    }

    /// The switch [`crate::pci_host::PciRoot::add_bar_eventfds`] returned.
    pub fn set_doorbells(&mut self, doorbells: BarEvents) {
        self.doorbells = Some(doorbells);
    }
}

impl PciFunction for NvmeFunction {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.nvme.config_read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        self.nvme.config_write(offset, data)
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        self.nvme.bar_read(bar, offset, data);
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.nvme.bar_write(bar, offset, data);
        // Only a register write (CC: reset) or the admin queue's doorbells
        // (Doorbell Buffer Config runs there) can change the mode; an I/O
        // doorbell that traps costs no extra look at the controller.
        if bar != NVME_BAR || offset >= ADMIN_DOORBELLS_END {
            return;
        }
        if let Some(shadow) = self.nvme.take_doorbell_mode_change() {
            if let Some(doorbells) = &self.doorbells {
                tracing::debug!(
                    "NVMe doorbell ioeventfds {}",
                    if shadow { "on" } else { "off" }
                );
                doorbells.set_active(shadow);
            }
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.nvme.bar_windows()
    }
}
