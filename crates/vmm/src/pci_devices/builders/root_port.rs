//! `root-port`: a PCIe root port, a bus of its own with one slot (a link).
//! With `hotplug=on` (the default) its slot has a hot-plug controller: the
//! port gets its MSI vector and INTA wire for the hot-plug interrupt, and
//! is handed to the machine's hot-plug ports ([`super::super::hotplug`]).

use std::sync::{Arc, Mutex};

use pci::bridge::{PortInterrupts, RootPort, RootPortConfig};

use super::Built;
use crate::config::RootPortConfig as PortOptions;
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::tree::NewBridge;
use crate::pci_devices::PciBuildError;

/// A root port whose Port Number is how many devices came before it and
/// whose Physical Slot Number is its device number. A hot-plug slot is
/// occupied when a device names the port as its bus; a slot without
/// hot-plug reports a device present, as it always did.
pub(super) fn build(
    options: &PortOptions,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let present = !options.hotplug || dev.children().next().is_some();
    let mut port = RootPort::new(RootPortConfig {
        port_number: dev.ordinal() as u8,
        slot: u16::from(dev.slot().device),
        present,
        hotplug: options.hotplug,
        ..Default::default()
    })
    .map_err(|e| PciBuildError::Device(format!("root port: {e}")))?;
    if !options.hotplug {
        return Ok(Built::Bridge(NewBridge::new(port)));
    }
    port.connect_interrupts(PortInterrupts {
        msi: dev.msi_vectors(),
        intx: dev.intx()?,
    });
    let shared = Arc::new(Mutex::new(port));
    dev.hotplug_port(shared.clone(), present);
    Ok(Built::Bridge(NewBridge::shared(shared)))
}
