//! `pci-bridge`: a PCI-to-PCI bridge, a bus of its own with 32 slots.

use pci::bridge::PciBridge;

use super::Built;
use crate::pci_devices::PciBuildError;

/// A bridge; it has no options.
pub(super) fn build() -> Result<Built, PciBuildError> {
    let bridge = PciBridge::new().map_err(|e| PciBuildError::Device(format!("bridge: {e}")))?;
    Ok(Built::bridge(bridge))
}
