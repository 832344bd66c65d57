//! `root-port`: a PCIe root port, a bus of its own with one slot (a link).

use pci::bridge::{RootPort, RootPortConfig};

use super::Built;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::PciBuildError;

/// A root port whose Port Number is how many devices came before it and
/// whose Physical Slot Number is its device number.
pub(super) fn build(dev: &mut DeviceContext<'_, '_>) -> Result<Built, PciBuildError> {
    let port = RootPort::new(RootPortConfig {
        port_number: dev.ordinal() as u8,
        slot: u16::from(dev.slot().device),
        ..Default::default()
    })
    .map_err(|e| PciBuildError::Device(format!("root port: {e}")))?;
    Ok(Built::bridge(port))
}
