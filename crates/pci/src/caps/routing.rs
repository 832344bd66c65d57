//! Keeping a function's message routes equal to what the guest programmed,
//! and sending its vectors (PCI Local Bus 3.0 §6.8).
//!
//! The routes are a function of the capability registers: with MSI-X
//! enabled, vector `v` sends table entry `v`; with MSI enabled, vector `v`
//! below the enabled count sends the MSI message with `v` in its low data
//! bits; otherwise nothing is routed. [`MsiRouting::sync`] recomputes that
//! after every guest write and tells the [`MsiVectors`] only what differs, so
//! no change (an enable bit, a table entry, Multiple Message Enable) can be
//! missed by a special case.
//!
//! Masks do not change routes: a masked vector is held pending by the
//! capability model, and sent on unmask through the same route.
//! A function whose Bus Master Enable is clear cannot write memory, so it
//! sends no message (PCI 3.0 §6.8.1.3 and §6.2.2): the interrupt is lost,
//! as on hardware, and the caller learns it from [`Signal::NoBusMaster`].

use std::sync::Arc;

use irq::msi::{MsiMessage, MsiVectors};

use super::endpoint::{EndpointConfig, EndpointWriteEffects};
use super::msix_table::MsixTableEffects;
use crate::config::command;
use crate::message::{Delivery, Trigger};

/// Largest vector count MSI can enable.
const MSI_MAX_VECTORS: u16 = 32;

/// What became of a device's request to signal a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The message was sent.
    Sent,
    /// The vector is masked; it is pending and goes out on unmask.
    Pending,
    /// Neither MSI nor MSI-X is enabled: use INTx.
    UseIntx,
    /// Bus mastering is off: no message can be sent, the interrupt is lost.
    NoBusMaster,
    /// The vector is beyond those enabled (a device-model bug).
    NoSuchVector,
}

/// A function's message routes and the port they are installed through.
#[derive(Debug)]
pub struct MsiRouting {
    vectors: Arc<dyn MsiVectors>,
    installed: Vec<Option<MsiMessage>>,
}

impl MsiRouting {
    /// Routing through `vectors`, with nothing routed yet.
    pub fn new(vectors: Arc<dyn MsiVectors>) -> Self {
        Self {
            vectors,
            installed: Vec::new(),
        }
    }

    /// Whether the guest has enabled MSI-X or MSI on `ep` (so INTx is
    /// off: PCI 3.0 §6.8.1.3, §6.8.2.3).
    pub fn enabled(ep: &EndpointConfig) -> bool {
        let caps = ep.caps();
        caps.msix_table().is_some_and(|t| t.control().enabled)
            || caps
                .msi()
                .is_some_and(|msi| msi.state(ep.config().regs()).enabled)
    }

    /// The routes the guest's programming of `ep` asks for, by vector.
    pub fn wanted(ep: &EndpointConfig) -> Vec<Option<MsiMessage>> {
        let caps = ep.caps();
        if let Some(table) = caps.msix_table().filter(|t| t.control().enabled) {
            return (0..table.vectors())
                .map(|v| table.entry(v).map(|e| e.message()))
                .collect();
        }
        if let Some(msi) = caps.msi() {
            let state = msi.state(ep.config().regs());
            if state.enabled {
                return (0..MSI_MAX_VECTORS)
                    .map(|v| (v < u16::from(state.vectors)).then(|| state.message(v)))
                    .collect();
            }
        }
        Vec::new()
    }

    /// Brings the installed routes in line with `ep`, telling the port only
    /// the vectors whose message changed, all in one update (a guest
    /// toggling MSI-X Enable costs the VMM one routing table, not one per
    /// vector).
    pub fn sync(&mut self, ep: &EndpointConfig) {
        let wanted = Self::wanted(ep);
        let len = wanted.len().max(self.installed.len());
        self.installed.resize(len, None);
        let mut changes = Vec::new();
        for (v, installed) in self.installed.iter_mut().enumerate() {
            let want = wanted.get(v).copied().flatten();
            if *installed != want {
                *installed = want;
                changes.push((v as u16, want));
            }
        }
        self.installed.truncate(wanted.len());
        if !changes.is_empty() {
            self.vectors.update(&changes);
        }
    }

    /// Applies a guest configuration write's interrupt consequences: routes,
    /// then the pending vectors it made deliverable.
    pub fn after_config_write(&mut self, ep: &EndpointConfig, effects: &EndpointWriteEffects) {
        self.sync(ep);
        self.deliver(ep, &effects.caps.deliver);
    }

    /// Applies a guest write to the MSI-X table or PBA.
    pub fn after_table_write(&mut self, ep: &EndpointConfig, effects: &MsixTableEffects) {
        if !effects.changed.is_empty() {
            self.sync(ep);
        }
        self.deliver(ep, &effects.deliver);
    }

    fn deliver(&self, ep: &EndpointConfig, deliveries: &[Delivery]) {
        if deliveries.is_empty() {
            return;
        }
        if ep.config().command() & command::BUS_MASTER == 0 {
            tracing::debug!(
                "{} unmasked vectors lost: bus mastering is off",
                deliveries.len()
            );
            return;
        }
        let msix = Self::msix_enabled(ep);
        for d in deliveries {
            self.vectors.send(d.vector, d.message);
            self.count(msix);
        }
    }

    /// Whether MSI-X (rather than MSI) is what `ep` signals with.
    fn msix_enabled(ep: &EndpointConfig) -> bool {
        ep.caps().msix_table().is_some_and(|t| t.control().enabled)
    }

    /// Counts one message sent, through MSI-X or MSI.
    fn count(&self, msix: bool) {
        if let Some(c) = self.vectors.counters() {
            if msix {
                c.irq_msix.inc();
            } else {
                c.irq_msi.inc();
            }
        }
    }

    /// The device signals `vector` through MSI-X or MSI.
    pub fn signal(&mut self, ep: &mut EndpointConfig, vector: u16) -> Signal {
        let master = ep.config().command() & command::BUS_MASTER != 0;
        let msix = Self::msix_enabled(ep);
        if !master && Self::enabled(ep) {
            return Signal::NoBusMaster;
        }
        match ep.trigger(vector) {
            Trigger::Deliver(message) => {
                self.vectors.send(vector, message);
                self.count(msix);
                Signal::Sent
            }
            Trigger::Pending => Signal::Pending,
            Trigger::Disabled => Signal::UseIntx,
            Trigger::NoSuchVector => Signal::NoSuchVector,
        }
    }

    /// Removes every route (device reset, or the function going away).
    pub fn clear(&mut self) {
        let changes: Vec<_> = (self.installed.iter_mut().enumerate())
            .filter_map(|(v, installed)| installed.take().map(|_| (v as u16, None)))
            .collect();
        self.installed.clear();
        if !changes.is_empty() {
            self.vectors.update(&changes);
        }
    }
}
