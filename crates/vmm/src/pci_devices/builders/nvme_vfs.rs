//! The virtual functions of an SR-IOV NVMe controller (`nvme,sriov-vfs=N`),
//! built and removed while the machine runs, as the guest sets and clears
//! VF Enable in the PF's SR-IOV capability (PCIe 6.0 §9.3.3.3).
//!
//! ```text
//!  guest writes PF SR-IOV Control ─▶ SriovEffect ─▶ PciRoot::apply ─▶ NvmeVfs::apply
//!    VF Enable 0→1, NumVFs = n: build VF 0..n (controller, worker, MSI-X
//!        vectors, DMA for its own requester ID, doorbell eventfds) and
//!        attach VF k at ARI function PF + First VF Offset + k × Stride of
//!        the PF's link (device f >> 3, function f & 7 in the root complex)
//!    VF MSE / VF BAR moved: each VF gets the window its PF's VF BAR gives
//!        it; the buses are resynced
//!    VF Enable 1→0 (or FLR of the PF): detach every VF: its BAR leaves the
//!        bus, its eventfds are unregistered, its context forgotten, and the
//!        last reference goes, which joins its worker and drains its
//!        backend (the I/O in flight completes before the engine closes)
//! ```
//!
//! Each VF is a fresh controller every time it is enabled: VF k is CNTLID
//! k + 1 of the PF's subsystem (same SUBNQN and serial), its namespaces are
//! the `nvme-ns,vf=k` of the command line with NSIDs after the PF's and
//! the lower VFs' (the disks stay open across enables).

use std::sync::{Arc, Mutex, Weak};

use devices::nvme::{NamespaceConfig, Nvme, NvmeConfig, PciRole, SubsystemConfig};
use dma::{FunctionContext, FunctionDma, RequesterId};
use irq::IrqLine;
use pci::caps::sriov::{SriovEffect, VfChange};
use pci::root::{SharedFunction, Slot};

use super::nvme_doorbells::NvmeFunction;
use crate::pci_devices::{DmaRoute, FunctionWiring};
use crate::pci_host::{PciRoot, SriovHandler};

/// A VF has no INTx (Interrupt Pin 0, PCIe 6.0 §9.3.4.1.13): its line
/// goes nowhere.
#[derive(Debug)]
struct NoIntx;

impl IrqLine for NoIntx {
    fn pulse(&self) -> Result<(), irq::IrqError> {
        Ok(())
    }

    fn set_level(&self, _asserted: bool) -> Result<(), irq::IrqError> {
        Ok(())
    }
}

/// What every VF of one PF is built from.
#[derive(Debug)]
pub(super) struct VfTemplate {
    /// The PF's controller config (serial, queues, engine, subsystem);
    /// namespaces, CNTLID and NSIDs are set per VF.
    pub(super) controller: NvmeConfig,
    /// Each VF's namespaces, opened at boot.
    pub(super) namespaces: Vec<Vec<NamespaceConfig>>,
    /// Each VF's first NSID.
    pub(super) first_nsid: Vec<u32>,
}

/// One VF on the tree.
#[derive(Debug)]
struct LiveVf {
    slot: Slot,
    function: Weak<Mutex<NvmeFunction>>,
}

/// The VFs of one NVMe PF.
#[derive(Debug)]
pub(super) struct NvmeVfs {
    pf: Weak<Mutex<NvmeFunction>>,
    template: VfTemplate,
    wiring: Arc<dyn FunctionWiring>,
    live: Mutex<Vec<LiveVf>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NvmeVfs {
    /// The VFs of `pf`, none enabled yet.
    pub(super) fn new(
        pf: &Arc<Mutex<NvmeFunction>>,
        template: VfTemplate,
        wiring: Arc<dyn FunctionWiring>,
    ) -> Self {
        Self {
            pf: Arc::downgrade(pf),
            template,
            wiring,
            live: Mutex::new(Vec::new()),
        }
    }

    /// Builds VF `k` as a fresh controller with its worker running.
    fn build(&self, k: u16) -> Result<(Arc<Mutex<NvmeFunction>>, Arc<FunctionContext>), String> {
        let ctx = FunctionContext::new(RequesterId::default());
        let target = self.wiring.dma(&ctx, DmaRoute::Iommu);
        let dma = Arc::new(FunctionDma::new(ctx.clone(), target));
        let msi = self.wiring.msi_vectors(&ctx);
        let i = usize::from(k);
        let pf = &self.template.controller;
        let cfg = NvmeConfig {
            namespaces: self.template.namespaces.get(i).cloned().unwrap_or_default(),
            msix: true,
            msi: false,
            subsystem: SubsystemConfig {
                cntlid: k + 1,
                first_nsid: self.template.first_nsid.get(i).copied().unwrap_or(1),
                ..pf.subsystem.clone()
            },
            role: PciRole::VirtualFunction,
            counters: ctx.counters().clone(),
            ..pf.clone()
        };
        let mut nvme = Nvme::new(cfg, dma, msi, Arc::new(NoIntx)).map_err(|e| e.to_string())?;
        nvme.start_worker().map_err(|e| e.to_string())?;
        Ok((Arc::new(Mutex::new(NvmeFunction::new(nvme))), ctx))
    }

    /// VF Enable set with `n` VFs: builds and attaches them.
    fn enable(&self, root: &PciRoot, n: u16) {
        let Some(pf) = self.pf.upgrade() else {
            return;
        };
        let pf_shared: SharedFunction = pf.clone();
        let Some(Slot::Behind { bridge, .. }) = root.slot_of(&pf_shared) else {
            ratelimit::warn!("SR-IOV: the NVMe PF is not behind a port; no VFs");
            return;
        };
        let numbers: Vec<Option<u8>> = {
            let pf = lock(&pf);
            (0..n).map(|k| pf.nvme().vf_function(k)).collect()
        };
        let mut live = lock(&self.live);
        if !live.is_empty() {
            ratelimit::warn!("SR-IOV: VFs enabled while VFs exist; ignored");
            return;
        }
        for (k, number) in (0..n).zip(numbers) {
            let Some(f) = number else {
                ratelimit::warn!("SR-IOV: VF {k} has no function number below 256");
                break;
            };
            match self.attach(root, bridge, f, k) {
                Ok(vf) => live.push(vf),
                Err(e) => {
                    ratelimit::warn!("SR-IOV: VF {k} not created: {e}");
                    break;
                }
            }
        }
        ratelimit::info!("SR-IOV: {} NVMe VFs enabled", live.len());
    }

    fn attach(
        &self,
        root: &PciRoot,
        bridge: pci::root::BridgeId,
        f: u8,
        k: u16,
    ) -> Result<LiveVf, String> {
        let (vf, ctx) = self.build(k)?;
        let shared: SharedFunction = vf.clone();
        let fds = lock(&vf)
            .doorbell_eventfds()
            .map_err(|e| format!("doorbell eventfd: {e}"))?;
        let (device, function) = (f >> 3, f & 7);
        root.attach_behind(bridge, device, function, shared.clone())
            .map_err(|e| e.to_string())?;
        let switch = root.add_bar_eventfds(&shared, fds, false);
        lock(&vf).set_doorbells(switch);
        root.add_context(&shared, ctx);
        Ok(LiveVf {
            slot: Slot::Behind {
                bridge,
                device,
                function,
            },
            function: Arc::downgrade(&vf),
        })
    }

    /// VF Enable cleared: every VF leaves the tree and is dropped.
    fn disable(&self, root: &PciRoot) {
        let gone = std::mem::take(&mut *lock(&self.live));
        let count = gone.len();
        for vf in gone {
            if let Err(e) = root.detach(vf.slot) {
                ratelimit::warn!("SR-IOV: VF at {:?} not detached: {e}", vf.slot);
            }
            if vf.function.strong_count() > 0 {
                ratelimit::warn!("SR-IOV: a detached VF is still referenced");
            }
        }
        if count > 0 {
            ratelimit::info!("SR-IOV: {count} NVMe VFs disabled");
        }
    }

    /// Gives each VF the BAR window its PF's SR-IOV capability says.
    fn place_bars(&self) -> bool {
        let Some(pf) = self.pf.upgrade() else {
            return false;
        };
        let live: Vec<Weak<Mutex<NvmeFunction>>> = lock(&self.live)
            .iter()
            .map(|v| v.function.clone())
            .collect();
        let windows: Vec<_> = {
            let pf = lock(&pf);
            (0..live.len() as u16)
                .map(|k| pf.nvme().vf_bar_windows(k))
                .collect()
        };
        let mut changed = false;
        for (vf, w) in live.iter().zip(windows) {
            if let Some(vf) = vf.upgrade() {
                changed |= lock(&vf).nvme().set_vf_bar_windows(w);
            }
        }
        changed
    }
}

impl SriovHandler for NvmeVfs {
    fn apply(&self, root: &PciRoot, effect: SriovEffect) {
        match effect.vfs {
            Some(VfChange::Enabled(n)) => self.enable(root, n),
            Some(VfChange::Disabled) => self.disable(root),
            None => {}
        }
        if self.place_bars() {
            root.resync();
        }
    }
}
