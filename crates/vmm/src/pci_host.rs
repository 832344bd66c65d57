//! The PCI root complex on the machine's buses: the configuration ports
//! 0xCF8–0xCFF on the port bus and the ECAM window on the MMIO bus, both
//! forwarding to one [`pci::root::RootComplex`].
//!
//! Configuration writes return their effects (a BAR moved, bus mastering
//! switched); this is where the VMM applies them. No function with BARs is
//! attached yet, so effects are only logged for now.

use std::sync::{Arc, Mutex};

use devices::BusDevice;
use pci::address::Bdf;
use pci::host_bridge::HostBridge;
use pci::root::{AttachError, RootComplex, RoutedEffects};

/// Ports of the legacy configuration mechanism (CONFIG_ADDRESS and CONFIG_DATA).
pub const CONFIG_PORTS_SIZE: u64 = 8;

/// The root complex shared by its two access paths.
#[derive(Clone, Debug)]
pub struct PciRoot(Arc<Mutex<RootComplex>>);

impl PciRoot {
    /// A root complex with the host bridge at 00:00.0.
    pub fn new() -> Result<Self, AttachError> {
        let mut root = RootComplex::new();
        root.attach(
            Bdf {
                bus: 0,
                device: 0,
                function: 0,
            },
            Arc::new(Mutex::new(HostBridge::new())),
        )?;
        Ok(Self(Arc::new(Mutex::new(root))))
    }

    /// The device for the port bus at 0xCF8.
    pub fn config_ports(&self) -> ConfigPorts {
        ConfigPorts(self.clone())
    }

    /// The device for the MMIO bus at the ECAM base.
    pub fn ecam(&self) -> Ecam {
        Ecam(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RootComplex> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn apply(routed: RoutedEffects) {
    if let Some(bdf) = routed.bdf {
        if routed.effects != Default::default() {
            tracing::debug!("PCI {bdf}: {:?}", routed.effects);
        }
    }
}

/// 0xCF8–0xCFF.
#[derive(Debug)]
pub struct ConfigPorts(PciRoot);

impl BusDevice for ConfigPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0.lock().legacy_read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let routed = self.0.lock().legacy_write(offset, data);
        apply(routed);
    }
}

/// The ECAM window.
#[derive(Debug)]
pub struct Ecam(PciRoot);

impl BusDevice for Ecam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0.lock().ecam_read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let routed = self.0.lock().ecam_write(offset, data);
        apply(routed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ports_and_ecam_reach_the_same_host_bridge() {
        let root = PciRoot::new().unwrap();
        let mut ports = root.config_ports();
        let mut ecam = root.ecam();
        ports.write(0, &(1u32 << 31).to_le_bytes());
        let mut via_ports = [0u8; 4];
        ports.read(4, &mut via_ports);
        let mut via_ecam = [0u8; 4];
        ecam.read(0, &mut via_ecam);
        assert_eq!(via_ports, via_ecam);
        assert_eq!(u32::from_le_bytes(via_ecam), 0x0008_1b36);
    }
}
