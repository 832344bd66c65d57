//! Builds the user's PCI tree ([`crate::topology::plan`]) on the root
//! complex: root ports, bridges and devices, each device's INTA wired-OR
//! onto the IOAPIC pin its root-bus slot routes to.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use devices::pci_serial::{PciSerial, PciSerialConfig};
use irq::ioapic::WirePolarity;
use irq::wired_or::WiredOr;
use irq::IrqLine;
use pci::address::Bdf;
use pci::bridge::{PciBridge, RootPort, RootPortConfig};
use pci::root::{AttachError, BridgeId, SharedFunction};

use crate::config::{DeviceConfig, DeviceKind};
use crate::irqchip::Irqchip;
use crate::pci_host::PciRoot;
use crate::topology::{self, Parent, Placement, TopologyError};

/// Why the PCI tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PciBuildError {
    /// The requested tree breaks a rule.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The root complex refused a placement (a bug: the plan was checked).
    #[error("cannot place a device: {0}")]
    Attach(#[from] AttachError),
    /// A device could not be built.
    #[error("{0}")]
    Device(String),
}

/// Where devices' INTx wires go: an IOAPIC pin per GSI, or a recording
/// in tests.
pub trait IntxPins {
    /// The input of IOAPIC pin `gsi`, which the wires sharing it drive
    /// together (wired-OR).
    fn pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError>;
}

impl IntxPins for Irqchip {
    fn pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        let pin = self
            .line(gsi, WirePolarity::ActiveLow)
            .map_err(|e| PciBuildError::Device(format!("INTx into GSI {gsi}: {e}")))?;
        Ok(Arc::new(pin))
    }
}

/// The INTx wires of the machine: one wired-OR per IOAPIC pin.
struct IntxWires<'a> {
    pins: &'a mut dyn IntxPins,
    shared: BTreeMap<u32, Arc<WiredOr>>,
}

impl IntxWires<'_> {
    fn line(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        if !self.shared.contains_key(&gsi) {
            let pin = self.pins.pin(gsi)?;
            self.shared.insert(gsi, WiredOr::new(pin));
        }
        Ok(Arc::new(self.shared[&gsi].input()))
    }
}

/// Places every device of `devices` on `pci`, their INTx wired to `pins`.
pub fn build(
    devices: &[DeviceConfig],
    pci: &PciRoot,
    pins: &mut dyn IntxPins,
) -> Result<(), PciBuildError> {
    let plan = topology::plan(devices)?;
    let mut wires = IntxWires {
        pins,
        shared: BTreeMap::new(),
    };
    let mut bridges: BTreeMap<usize, BridgeId> = BTreeMap::new();
    for (root_port_number, place) in plan.iter().enumerate() {
        let device = &devices[place.index];
        match &device.kind {
            DeviceKind::RootPort => {
                let port = RootPort::new(RootPortConfig {
                    port_number: root_port_number as u8,
                    slot: u16::from(place.slot.device),
                    ..Default::default()
                })
                .map_err(|e| PciBuildError::Device(format!("root port: {e}")))?;
                let id = attach_bridge(pci, place, &bridges, Arc::new(Mutex::new(port)))?;
                bridges.insert(place.index, id);
            }
            DeviceKind::PciBridge => {
                let bridge =
                    PciBridge::new().map_err(|e| PciBuildError::Device(format!("bridge: {e}")))?;
                let id = attach_bridge(pci, place, &bridges, Arc::new(Mutex::new(bridge)))?;
                bridges.insert(place.index, id);
            }
            DeviceKind::PciSerial(c) => {
                let output: Box<dyn std::io::Write + Send> = match &c.output {
                    Some(path) => Box::new(File::create(path).map_err(|e| {
                        PciBuildError::Device(format!("pci-serial output {}: {e}", path.display()))
                    })?),
                    None => Box::new(std::io::sink()),
                };
                let card = PciSerial::new(
                    wires.line(place.gsi(1))?,
                    PciSerialConfig {
                        output,
                        loopback: c.loopback,
                    },
                );
                attach(pci, place, &bridges, Arc::new(Mutex::new(card)))?;
            }
        }
    }
    Ok(())
}

fn root_bdf(place: &Placement) -> Bdf {
    Bdf {
        bus: 0,
        device: place.slot.device,
        function: place.slot.function,
    }
}

fn attach(
    pci: &PciRoot,
    place: &Placement,
    bridges: &BTreeMap<usize, BridgeId>,
    function: SharedFunction,
) -> Result<(), PciBuildError> {
    match place.parent {
        Parent::Root => pci.attach(root_bdf(place), function)?,
        Parent::Bridge(p) => pci.attach_behind(
            bridges[&p],
            place.slot.device,
            place.slot.function,
            function,
        )?,
    }
    Ok(())
}

fn attach_bridge<B: pci::bridge::PciBridgeFunction + 'static>(
    pci: &PciRoot,
    place: &Placement,
    bridges: &BTreeMap<usize, BridgeId>,
    bridge: Arc<Mutex<B>>,
) -> Result<BridgeId, PciBuildError> {
    Ok(match place.parent {
        Parent::Root => pci.attach_bridge(root_bdf(place), bridge)?,
        Parent::Bridge(p) => {
            pci.attach_bridge_behind(bridges[&p], place.slot.device, place.slot.function, bridge)?
        }
    })
}
