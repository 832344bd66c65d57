//! `ahci`: an AHCI SATA controller with its disks (the `sata-disk`
//! devices whose `bus=` is its id), each on the port it names or the
//! lowest free one, and its worker running.

use std::sync::Arc;

use devices::ahci::{
    Ahci, AhciConfig as ControllerConfig, SataDiskConfig as DiskConfig, MAX_PORTS,
};

use super::Built;
use crate::config::{AhciConfig, DeviceKind, SataDiskConfig};
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::disk::open_disk;
use crate::pci_devices::{DmaRoute, PciBuildError};

/// Model number a disk reports unless given.
const DEFAULT_MODEL: &str = "iovm SATA disk";

/// A controller with 6 ports unless given; disk serials `IOVM` + the
/// controller's and port's numbers unless given.
pub(super) fn build(
    c: &AhciConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let ports = c.ports.map_or(MAX_PORTS, usize::from);
    let wanted: Vec<&SataDiskConfig> = dev
        .children()
        .filter_map(|kind| match kind {
            DeviceKind::SataDisk(d) => Some(d),
            _ => None,
        })
        .collect();
    let disks = assign_ports(&wanted, ports, dev.number())?;
    let cfg = ControllerConfig {
        ports,
        disks,
        msi: !c.no_msi,
        counters: dev.counters(),
        ..Default::default()
    };
    let intx = dev.intx()?;
    let msi = dev.msi_vectors();
    let dma = dev.dma(DmaRoute::Iommu);
    let mut ahci = Ahci::new(cfg, dma, msi, intx).map_err(|e| PciBuildError::device("ahci", &e))?;
    ahci.start_worker()
        .map_err(|e| PciBuildError::device("ahci", &e))?;
    Ok(Built::function(ahci))
}

/// Puts each disk on its port (given, or the lowest free one) and opens
/// its file; refuses a port the controller lacks or one taken twice.
fn assign_ports(
    wanted: &[&SataDiskConfig],
    ports: usize,
    number: u32,
) -> Result<Vec<Option<DiskConfig>>, PciBuildError> {
    let mut disks: Vec<Option<DiskConfig>> = vec![None; ports];
    for d in wanted {
        let p = match d.port {
            Some(p) => usize::from(p),
            None => disks.iter().position(Option::is_none).ok_or_else(|| {
                PciBuildError::Device(format!(
                    "sata-disk {}: all {ports} ports of its ahci controller are taken",
                    d.path.display()
                ))
            })?,
        };
        if p >= ports {
            return Err(PciBuildError::Device(format!(
                "sata-disk {}: port={p}, but its ahci controller has ports 0-{}",
                d.path.display(),
                ports - 1
            )));
        }
        if disks[p].is_some() {
            return Err(PciBuildError::Device(format!(
                "sata-disk {}: port {p} already has a disk",
                d.path.display()
            )));
        }
        let file = open_disk("sata-disk", &d.path, d.readonly)?;
        disks[p] = Some(DiskConfig {
            disk: Arc::new(file),
            readonly: d.readonly,
            serial: d
                .serial
                .clone()
                .unwrap_or_else(|| format!("IOVM{number:04}P{p}")),
            model: d.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into()),
            discard: d.discard,
        });
    }
    Ok(disks)
}
