//! The machine's emulated Intel VT-d unit (`--device intel-iommu`, issue
//! 18): the `iommu` crate's [`Remapper`] and register page ([`Registers`])
//! joined to the machine: the page on the MMIO bus at
//! [`VTD_START`](crate::layout::VTD_START) (`page.rs`), every emulated
//! function's DMA through the remapper (`translated.rs`), and the fault
//! event sent through the machine's MSI path.
//!
//! ```text
//!  guest MMIO ─▶ RegisterPage ─▶ Registers::write ─▶ apply (SRTP, TE, invalidations) ─▶ Remapper
//!                                                  ├▶ ProcessQueue ─▶ descriptors ─▶ the same
//!                                                  ├▶ IRE/SIRTP/CFI/IEC ─▶ InterruptRemapper, GsiRouter::refresh
//!                                                  └▶ FaultEvent ─▶ MsiSink
//!  NVMe ─▶ FunctionDma (BME) ─▶ VtdDma ─▶ IommuDma ─▶ Remapper ─▶ guest RAM
//!                                 └ on a fault: forward_faults ─▶ FRCD, FSTS, fault event
//! ```
//!
//! What it offers today (VT-d 4.1): DMA remapping in legacy mode with
//! register-based (§6.5.1) and queued invalidation (§6.5.2: the queue is
//! processed within the guest's IQT write, wait statuses included, as
//! Linux spins on them with interrupts off), a context cache and IOTLB
//! dropped by the matching invalidations, one fault recording register
//! (§7.2.1) and the fault event (§7.3); and interrupt remapping (chapter
//! 5, unless `intremap=off`): the machine's GSI router sends every MSI and
//! IOAPIC message through [`InterruptRemap`], and the routes are
//! translated again when the guest changes remapping or invalidates its
//! interrupt entry cache. Virtio devices offer
//! VIRTIO_F_ACCESS_PLATFORM and go through the unit once their driver
//! accepts it; a driver that does not gets guest-physical addresses
//! that bypass the unit, as QEMU does (see
//! [`crate::pci_devices::DmaRoute`]).

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use dma::{Dma, FunctionContext, RequesterId};
use iommu::regs::{self, Options};
use iommu::{
    Capabilities, Effect, FaultRecord, HostMapper, InterruptRemapper, Mirror, Registers, Remapper,
    SyncScope,
};
use irq::msi::{MsiMessage, MsiSink};

use crate::config::{AddressWidth, IommuConfig};
use crate::interrupts::{GsiRouter, InterruptRemap};

mod page;
mod translated;

pub use page::RegisterPage;
pub use translated::VtdDma;

/// Fault records the remapper keeps until they are forwarded to the
/// register page: CAP.NFR + 1 (one, §11.4.2). Faults are forwarded as soon
/// as the access that caused them fails, so this only bounds a burst from
/// several devices at once; the ones dropped set PFO as hardware would.
const FAULT_RECORDS: usize = 1;

/// One VT-d unit: its remapper, its register page and where its fault
/// event goes.
#[derive(Debug)]
pub struct Vtd {
    remapper: Arc<Remapper>,
    interrupts: InterruptRemapper,
    regs: Mutex<Registers>,
    events: Arc<dyn MsiSink>,
    routes: OnceLock<Weak<GsiRouter>>,
    /// Assigned host functions behind the unit, each with the mirror of
    /// its address space in its own host IOMMU container.
    mirrors: Mutex<Vec<(Arc<FunctionContext>, Mirror)>>,
}

/// What the unit supports for `cfg` (§11.4.2): 39-bit widths always,
/// 48-bit ones with `aw-bits=48`, a host address width of the same bits.
fn capabilities(cfg: &IommuConfig) -> Capabilities {
    Capabilities {
        width_48: cfg.address_width == AddressWidth::Bits48,
        host_address_width: cfg.address_width.bits(),
        ..Capabilities::DEFAULT
    }
}

/// The register-level options: queued invalidation always; interrupt
/// remapping as configured (the command line refuses `intremap=on` until
/// it is wired to KVM's routes).
fn options(cfg: &IommuConfig) -> Options {
    Options {
        queued_invalidation: true,
        interrupt_remapping: cfg.interrupt_remapping,
        extended_interrupt_mode: cfg.interrupt_remapping,
        caching_mode: cfg.caching_mode,
        ..Options::DEFAULT
    }
}

impl Vtd {
    /// A unit at reset (translation off) for `cfg`, reading its tables
    /// through `ram` (guest RAM, untranslated) and sending its fault event
    /// to `events`.
    pub fn new(cfg: &IommuConfig, ram: Arc<dyn Dma>, events: Arc<dyn MsiSink>) -> Arc<Self> {
        let caps = capabilities(cfg);
        Arc::new(Self {
            regs: Mutex::new(Registers::new(&caps, &options(cfg))),
            interrupts: InterruptRemapper::new(ram.clone()),
            remapper: Arc::new(Remapper::new(ram, caps, FAULT_RECORDS)),
            events,
            routes: OnceLock::new(),
            mirrors: Mutex::new(Vec::new()),
        })
    }

    /// Puts the machine's interrupt routes behind this unit's interrupt
    /// remapping (with `intremap=on`): every message is translated by it,
    /// and the routes are translated again when the guest changes the
    /// remapping state or invalidates its interrupt entry cache.
    pub fn remap_interrupts_of(self: &Arc<Self>, router: &Arc<GsiRouter>) {
        let _ = self.routes.set(Arc::downgrade(router));
        let unit: Arc<dyn InterruptRemap> = self.clone();
        router.set_remap(&unit);
    }

    /// Carries out an interrupt remapping effect; returns whether it was
    /// one (and the routes must be translated again).
    fn apply_interrupt_effect(&self, effect: &Effect) -> bool {
        match *effect {
            Effect::InterruptRemapping(on) => self.interrupts.set_enabled(on),
            Effect::SetInterruptTable {
                addr,
                entries,
                eime,
            } => self.interrupts.set_table(addr, entries, eime),
            Effect::CompatibilityFormat(allowed) => self.interrupts.set_compatibility(allowed),
            Effect::InvalidateInterruptEntries(_) => {}
            _ => return false,
        }
        true
    }

    /// Translates every interrupt route again.
    fn refresh_routes(&self) {
        if let Some(router) = self.routes.get().and_then(Weak::upgrade) {
            if let Err(e) = router.refresh() {
                tracing::warn!("VT-d: interrupt routes not updated: {e}");
            }
        }
    }

    /// The remapper every translated function's DMA goes through.
    pub fn remapper(&self) -> &Arc<Remapper> {
        &self.remapper
    }

    /// The DMA of the function `ctx` describes, translated by this unit.
    pub fn dma(self: &Arc<Self>, ctx: &Arc<FunctionContext>) -> Arc<dyn Dma> {
        Arc::new(VtdDma::new(ctx.clone(), self.clone()))
    }

    /// Gives the DMA of an assigned host function (`ctx`) the translations
    /// the guest programs for it, through `host`, its own host IOMMU
    /// container: mapped now as the unit stands, then again at each
    /// invalidation that covers it (the unit is in caching mode, so every
    /// change is invalidated).
    pub fn mirror(&self, ctx: Arc<FunctionContext>, host: Arc<dyn HostMapper>) {
        let mut mirror = Mirror::new(host);
        mirror.sync(&self.remapper, ctx.requester(), &SyncScope::All);
        self.mirrors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((ctx, mirror));
    }

    /// Brings the mirrors `effect` concerns in line with the tables.
    fn sync_mirrors(&self, effect: &Effect) {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(PoisonError::into_inner);
        for (ctx, mirror) in mirrors.iter_mut() {
            let requester = ctx.requester();
            if let Some(scope) = SyncScope::of(effect, requester, mirror.domain()) {
                mirror.sync(&self.remapper, requester, &scope);
            }
        }
    }

    /// The register page, for the MMIO bus.
    pub fn register_page(self: &Arc<Self>) -> RegisterPage {
        RegisterPage::new(self.clone())
    }

    fn regs(&self) -> std::sync::MutexGuard<'_, Registers> {
        self.regs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A guest read of the register page (faults logged since the last
    /// access are recorded first, so a guest polling FSTS sees them).
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        let events = {
            let mut regs = self.regs();
            let events = regs::forward_faults(&self.remapper, &mut regs);
            regs.read(offset, data);
            events
        };
        self.send(events);
    }

    /// A guest write of the register page: its effects are carried out
    /// before it returns (GSTS already says so, §11.4.5).
    pub fn write(&self, offset: usize, data: &[u8]) {
        let mut refresh = false;
        let events = {
            let mut regs = self.regs();
            let mut events = regs::forward_faults(&self.remapper, &mut regs);
            let mut effects = regs.write(offset, data);
            if let Some(at) = effects.iter().position(|e| *e == Effect::ProcessQueue) {
                let queued = regs.process_queue(self.remapper.ram().as_ref());
                effects.splice(at..=at, queued);
            }
            for effect in effects {
                if self.apply_interrupt_effect(&effect) {
                    refresh = true;
                } else if regs::apply(&effect, &self.remapper) {
                    self.sync_mirrors(&effect);
                } else {
                    events.push(effect);
                }
            }
            events
        };
        if refresh {
            self.refresh_routes();
        }
        self.send(events);
    }

    /// Moves the remapper's new faults into the fault recording register
    /// and sends the fault event they raise (§7.3).
    pub fn forward_faults(&self) {
        let events = regs::forward_faults(&self.remapper, &mut self.regs());
        self.send(events);
    }

    /// Carries out the effects left: the fault and invalidation events go
    /// to the MSI sink (never remapped).
    fn send(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::FaultEvent(msg) | Effect::InvalidationEvent(msg) => {
                    self.events.deliver(msg)
                }
                other => tracing::debug!("VT-d: {other:?} is not implemented, ignored"),
            }
        }
    }
}

impl InterruptRemap for Vtd {
    fn remap(&self, msg: MsiMessage, requester: RequesterId, record: bool) -> Option<MsiMessage> {
        match self.interrupts.remap(msg, requester) {
            Ok(m) => Some(m),
            Err(f) => {
                if record && !f.suppressed {
                    tracing::debug!("VT-d: interrupt {msg:x?} from {requester} blocked: {f:?}");
                    self.remapper.log_fault(FaultRecord {
                        requester,
                        addr: u64::from(f.index.unwrap_or(0)) << 48,
                        reason: f.reason,
                        write: true,
                    });
                    self.forward_faults();
                }
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_regs;
#[cfg(test)]
mod tests;
