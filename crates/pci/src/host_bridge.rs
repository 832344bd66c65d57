//! The PCIe host bridge at 00:00.0: the root complex's own function, which
//! identifies the bridge to the OS (class 06/00/00) and decodes nothing.

use crate::bar::BarSpec;
use crate::config::{BarWindow, ConfigWriteEffects, Identity, Type0Config};
use crate::function::PciFunction;

/// Red Hat's PCI vendor ID, under which the generic PCIe host bridge of
/// virtual machines is registered (`1b36:0008`, "QEMU PCIe Host bridge" in
/// pci.ids), so guests name it without any driver.
pub const VENDOR_REDHAT: u16 = 0x1b36;
/// Device ID of the generic PCIe host bridge.
pub const DEVICE_PCIE_HOST: u16 = 0x0008;
/// Class code: bridge, host bridge.
pub const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

/// The host bridge function.
#[derive(Debug)]
pub struct HostBridge {
    config: Type0Config,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBridge {
    /// A host bridge with no BARs and no interrupt.
    pub fn new() -> Self {
        let id = Identity {
            vendor: VENDOR_REDHAT,
            device: DEVICE_PCIE_HOST,
            class: CLASS_HOST_BRIDGE,
            revision: 0,
            subsystem_vendor: VENDOR_REDHAT,
            subsystem: 0x1100,
        };
        let config = match Type0Config::new(id, &[], 0) {
            Ok(c) => c,
            Err(e) => unreachable!("a BAR-less header is always valid: {e}"),
        };
        Self { config }
    }
}

impl PciFunction for HostBridge {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        self.config.write(offset, data)
    }

    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.config.bar_windows()
    }
}
