//! `nvme`: an NVMe controller with its namespaces (the `nvme-ns` devices
//! whose `bus=` is its id), its I/O submission doorbells handed to the
//! root complex as eventfds that come on with shadow doorbells. With
//! `sriov-vfs=N` it is an SR-IOV PF whose VFs `nvme_vfs.rs` builds when the
//! guest enables them; `nvme-ns,vf=K` namespaces are VF K's.

use std::sync::{Arc, Mutex};

use devices::nvme::{
    NamespaceConfig, Nvme, NvmeConfig as ControllerConfig, PciRole, SubsystemConfig,
};
use pci::root::SharedFunction;

use super::nvme_doorbells::NvmeFunction;
use super::nvme_vfs::{NvmeVfs, VfTemplate};
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
    let of = |vf: Option<u16>| -> Result<Vec<NamespaceConfig>, PciBuildError> {
        dev.children()
            .filter_map(|kind| match kind {
                DeviceKind::NvmeNamespace(ns) if ns.vf == vf => Some(ns),
                _ => None,
            })
            .map(open_namespace)
            .collect()
    };
    let namespaces = of(None)?;
    let vf_namespaces = (0..c.sriov_vfs)
        .map(|k| of(Some(k)))
        .collect::<Result<Vec<_>, _>>()?;
    let serial = c
        .serial
        .clone()
        .unwrap_or_else(|| format!("IOVM{:04}", dev.number()));
    let mut cfg = ControllerConfig {
        serial,
        max_io_queues: c.queues.unwrap_or_else(|| dev.cpus().clamp(1, 8) as u16),
        namespaces,
        msix: !c.no_msix,
        msi: !c.no_msi,
        counters: dev.counters(),
        ..Default::default()
    };
    let vfs = (c.sriov_vfs > 0).then(|| sriov_layout(&mut cfg, c.sriov_vfs, vf_namespaces));
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
    if let Some(template) = vfs {
        let handler = NvmeVfs::new(&shared, template, dev.function_wiring());
        dev.sriov_handler(&(shared.clone() as SharedFunction), Arc::new(handler));
    }
    Ok(Built::Function(shared))
}

/// Makes `cfg` an SR-IOV PF with `total` VFs whose namespaces are
/// `vf_namespaces`: one subsystem (SUBNQN from the serial, CMIC
/// multi-controller), the PF CNTLID 0 with NSIDs from 1, each VF's NSIDs
/// after those before it, NN their total. Returns what the VFs are built
/// from.
fn sriov_layout(
    cfg: &mut ControllerConfig,
    total: u16,
    vf_namespaces: Vec<Vec<NamespaceConfig>>,
) -> VfTemplate {
    let mut next = 1 + cfg.namespaces.len() as u32;
    let first_nsid = vf_namespaces
        .iter()
        .map(|ns| {
            let first = next;
            next += ns.len() as u32;
            first
        })
        .collect();
    cfg.role = PciRole::PhysicalFunction { total_vfs: total };
    cfg.subsystem = SubsystemConfig {
        nqn: Some(format!("nqn.2024-01.dev.iovm:nvme:{}", cfg.serial)),
        cntlid: 0,
        multi_controller: true,
        first_nsid: 1,
        max_nsid: Some(next - 1),
    };
    VfTemplate {
        controller: ControllerConfig {
            namespaces: Vec::new(),
            ..cfg.clone()
        },
        namespaces: vf_namespaces,
        first_nsid,
    }
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
