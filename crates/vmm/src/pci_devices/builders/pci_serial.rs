//! `pci-serial`: a PCI 16550 serial card whose output goes to a file (or
//! nowhere).

use std::fs::File;

use devices::pci_serial::{PciSerial, PciSerialConfig as CardConfig};

use super::Built;
use crate::config::PciSerialConfig;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::PciBuildError;

/// A card on INTA, writing to `c.output` (created or truncated).
pub(super) fn build(
    c: &PciSerialConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let output: Box<dyn std::io::Write + Send> = match &c.output {
        Some(path) => Box::new(crate::reopen::output(path, || File::create(path)).map_err(
            |e| PciBuildError::Device(format!("pci-serial output {}: {e}", path.display())),
        )?),
        None => Box::new(std::io::sink()),
    };
    let card = PciSerial::new(
        dev.intx()?,
        CardConfig {
            output,
            loopback: c.loopback,
        },
    );
    Ok(Built::function(card))
}
