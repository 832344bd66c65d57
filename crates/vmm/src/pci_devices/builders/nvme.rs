//! `nvme`: an NVMe controller with its namespaces (the `nvme-ns` devices
//! whose `bus=` is its id), its I/O submission doorbells handed to the
//! root complex as eventfds that come on with shadow doorbells.

use std::sync::{Arc, Mutex};

use devices::nvme::{NamespaceConfig, Nvme, NvmeConfig as ControllerConfig};
use pci::root::SharedFunction;

use super::nvme_doorbells::NvmeFunction;
use super::Built;
use crate::config::{DeviceKind, NvmeConfig, NvmeNamespaceConfig};
use crate::pci_devices::context::DeviceContext;
use crate::pci_devices::disk::open_disk;
use crate::pci_devices::{DmaRoute, PciBuildError};

/// A controller with serial `IOVM` + its number unless given, one I/O
/// queue pair per vCPU (at most 8) unless given, and its worker running.
pub(super) fn build(
    c: &NvmeConfig,
    dev: &mut DeviceContext<'_, '_>,
) -> Result<Built, PciBuildError> {
    let namespaces = dev
        .children()
        .filter_map(|kind| match kind {
            DeviceKind::NvmeNamespace(ns) => Some(ns),
            _ => None,
        })
        .map(open_namespace)
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = ControllerConfig {
        serial: c
            .serial
            .clone()
            .unwrap_or_else(|| format!("IOVM{:04}", dev.number())),
        max_io_queues: c.queues.unwrap_or_else(|| dev.cpus().clamp(1, 8) as u16),
        namespaces,
        msix: !c.no_msix,
        msi: !c.no_msi,
        ..Default::default()
    };
    let intx = dev.intx()?;
    let msi = dev.msi_vectors();
    let dma = dev.dma(DmaRoute::Iommu);
    let mut nvme = Nvme::new(cfg, dma, msi, intx).map_err(|e| PciBuildError::device("nvme", &e))?;
    nvme.start_worker()
        .map_err(|e| PciBuildError::device("nvme", &e))?;
    let function = NvmeFunction::new(nvme);
    let fds = function
        .doorbell_eventfds()
        .map_err(|e| PciBuildError::Device(format!("nvme doorbell eventfd: {e}")))?;
    let shared = Arc::new(Mutex::new(function));
    let switch = dev.bar_eventfds(&(shared.clone() as SharedFunction), fds, false);
    shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set_doorbells(switch);
    Ok(Built::Function(shared))
}

/// Opens a namespace's disk.
fn open_namespace(ns: &NvmeNamespaceConfig) -> Result<NamespaceConfig, PciBuildError> {
    let disk = open_disk("nvme-ns", &ns.path, ns.readonly)?;
    Ok(NamespaceConfig {
        disk: Arc::new(disk),
        block_size: ns.block_size,
        readonly: ns.readonly,
    })
}
