//! Builds the user's PCI tree ([`crate::topology::plan`]) on the root
//! complex: root ports, bridges and devices, each device's INTA wired-OR
//! onto the IOAPIC pin its root-bus slot routes to.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use backend::{BlockFile, DiskConfig};
use devices::nvme::{NamespaceConfig, Nvme, NvmeConfig as NvmeDeviceConfig};
use devices::pci_serial::{PciSerial, PciSerialConfig};
use dma::Dma;
use irq::msi::MsiVectors;
use irq::wired_or::WiredOr;
use irq::IrqLine;
use pci::address::Bdf;
use pci::bridge::{PciBridge, RootPort, RootPortConfig};
use pci::root::{AttachError, BridgeId, SharedFunction};

use crate::config::{DeviceConfig, DeviceKind, NvmeNamespaceConfig};
use crate::console::ConsoleInput;
use crate::pci_host::PciRoot;
use crate::topology::{self, Parent, Placement, TopologyError};

mod nvme_doorbells;
mod virtio_devices;

use nvme_doorbells::NvmeFunction;
use virtio_devices::VirtioCounts;

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

/// What the devices are wired to: IOAPIC pins, MSI routes, guest memory.
/// The VMM's is KVM's ([`crate::vm`]); tests record.
pub trait Wiring {
    /// The input of IOAPIC pin `gsi`, which the wires sharing it drive
    /// together (wired-OR).
    fn intx_pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError>;

    /// A new function's MSI/MSI-X vectors.
    fn msi_vectors(&mut self) -> Arc<dyn MsiVectors>;

    /// A new function's view of guest memory for DMA.
    fn dma(&mut self) -> Arc<dyn Dma>;

    /// Guest memory as virtqueues read it.
    fn memory(&mut self) -> Arc<virtio::Memory>;

    /// Where a console device's output goes (iovm's console).
    fn console_output(&mut self) -> Box<dyn std::io::Write + Send>;

    /// Sends the console's input to `input` (a virtio console) instead of COM1.
    fn console_input(&mut self, input: Arc<dyn ConsoleInput>);
}

/// The INTx wires of the machine: one wired-OR per IOAPIC pin.
struct IntxWires<'a> {
    wiring: &'a mut dyn Wiring,
    shared: BTreeMap<u32, Arc<WiredOr>>,
}

impl IntxWires<'_> {
    fn line(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        if !self.shared.contains_key(&gsi) {
            let pin = self.wiring.intx_pin(gsi)?;
            self.shared.insert(gsi, WiredOr::new(pin));
        }
        Ok(Arc::new(self.shared[&gsi].input()))
    }
}

/// Places every device of `devices` on `pci`, wired by `wiring`, in a
/// machine of `cpus` vCPUs.
pub fn build(
    devices: &[DeviceConfig],
    pci: &PciRoot,
    wiring: &mut dyn Wiring,
    cpus: u32,
) -> Result<(), PciBuildError> {
    let plan = topology::plan(devices)?;
    let mut wires = IntxWires {
        wiring,
        shared: BTreeMap::new(),
    };
    let mut nvme_count = 0u32;
    let mut virtio_counts = VirtioCounts::default();
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
            DeviceKind::Nvme(c) => {
                nvme_count += 1;
                let namespaces = devices
                    .iter()
                    .filter(|d| d.bus.is_some() && d.bus == device.id)
                    .filter_map(|d| match &d.kind {
                        DeviceKind::NvmeNamespace(ns) => Some(ns),
                        _ => None,
                    })
                    .map(open_namespace)
                    .collect::<Result<Vec<_>, _>>()?;
                let cfg = NvmeDeviceConfig {
                    serial: c
                        .serial
                        .clone()
                        .unwrap_or_else(|| format!("IOVM{nvme_count:04}")),
                    max_io_queues: c.queues.unwrap_or_else(|| cpus.clamp(1, 8) as u16),
                    namespaces,
                    msix: !c.no_msix,
                    msi: !c.no_msi,
                    ..Default::default()
                };
                let intx = wires.line(place.gsi(1))?;
                let msi = wires.wiring.msi_vectors();
                let dma = wires.wiring.dma();
                let mut nvme = Nvme::new(cfg, dma, msi, intx)
                    .map_err(|e| PciBuildError::Device(format!("nvme: {}", chain(&e))))?;
                nvme.start_worker()
                    .map_err(|e| PciBuildError::Device(format!("nvme: {}", chain(&e))))?;
                let function = NvmeFunction::new(nvme);
                let fds = function
                    .doorbell_eventfds()
                    .map_err(|e| PciBuildError::Device(format!("nvme doorbell eventfd: {e}")))?;
                let shared = Arc::new(Mutex::new(function));
                let switch = pci.add_bar_eventfds(&(shared.clone() as SharedFunction), fds, false);
                shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_doorbells(switch);
                attach(pci, place, &bridges, shared)?;
            }
            DeviceKind::NvmeNamespace(_) => {}
            DeviceKind::Virtio(v) => {
                let intx = wires.line(place.gsi(1))?;
                let function =
                    virtio_devices::build(v, pci, wires.wiring, intx, cpus, &mut virtio_counts)?;
                attach(pci, place, &bridges, function)?;
            }
        }
    }
    Ok(())
}

/// An error and its causes, as one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Opens a namespace's disk (with `O_DIRECT` where the file system allows).
fn open_namespace(ns: &NvmeNamespaceConfig) -> Result<NamespaceConfig, PciBuildError> {
    let disk = BlockFile::open(&DiskConfig {
        path: ns.path.clone(),
        readonly: ns.readonly,
        direct: true,
    })
    .map_err(|e| PciBuildError::Device(format!("nvme-ns {}: {}", ns.path.display(), chain(&e))))?;
    Ok(NamespaceConfig {
        disk: Arc::new(disk),
        block_size: ns.block_size,
        readonly: ns.readonly,
    })
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
