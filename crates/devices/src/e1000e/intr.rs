//! Interrupt delivery (82574 datasheet §7.4, §10.2.4): ICR causes against
//! IMS, sent as MSI-X vectors chosen by IVAR, as one MSI message, or as
//! the INTA level, each rate limited by ITR/EITR.
//!
//! ```text
//!  cause ─▶ ICR ─┬─ MSI-X: RXQ0/RXQ1/TXQ0/TXQ1/OTHER & IMS ─▶ IVAR entry ─▶ EITR gap ─▶ vector
//!                │         (EIAC: the cause clears; CTRL_EXT.EIAME: IAM masks it)
//!                └─ MSI/INTx: ICR & IMS ≠ 0 ─▶ INT_ASSERTED ─▶ ITR gap ─▶ message / INTA level
//! ```
//!
//! A vector whose gap has not elapsed is held; [`Interrupts::deadline`]
//! tells the worker when to look again. An IVAR entry without its valid
//! bit, or naming a vector the table lacks, sends nothing (rate-limited
//! warning).

use std::sync::Arc;
use std::time::{Duration, Instant};

use irq::IrqLine;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::routing::{MsiRouting, Signal};
use pci::config::command;

use super::regs::{self, ctrl_ext, icr, Regs};
use super::MSIX_VECTORS;

/// The MSI-X causes and where their IVAR entry sits.
const MSIX_CAUSES: [(u32, u32); 5] = [
    (icr::RXQ0, 0),
    (icr::RXQ1, 4),
    (icr::TXQ0, 8),
    (icr::TXQ1, 12),
    (icr::OTHER, 16),
];

/// Index of the MSI/INTx moderation slot.
const SINGLE: usize = MSIX_VECTORS as usize;

/// Throttle interval of an ITR/EITR value (256 ns units, 16 bits).
pub fn interval(reg: u32) -> Duration {
    Duration::from_nanos(u64::from(reg & 0xffff) * 256)
}

/// What the interrupt side holds besides the registers.
#[derive(Debug)]
pub struct Interrupts {
    /// The PCI function's configuration space and capabilities.
    pub pci: EndpointConfig,
    /// Message routes.
    pub routing: MsiRouting,
    intx: Arc<dyn IrqLine>,
    intx_level: bool,
    /// An MSI was sent for the current assertion.
    msi_sent: bool,
    /// Earliest time each vector (and the single MSI) may fire again.
    next: [Option<Instant>; SINGLE + 1],
    /// Messages sent, by vector (MSI: the last slot).
    pub sent: [u64; SINGLE + 1],
    /// IVAR entries found unusable.
    pub bad_ivar: u64,
}

impl Interrupts {
    /// Interrupts through `routing` and `intx` for `pci`.
    pub fn new(pci: EndpointConfig, routing: MsiRouting, intx: Arc<dyn IrqLine>) -> Self {
        Self {
            pci,
            routing,
            intx,
            intx_level: false,
            msi_sent: false,
            next: [None; SINGLE + 1],
            sent: [0; SINGLE + 1],
            bad_ivar: 0,
        }
    }

    /// Whether MSI-X is enabled.
    pub fn msix(&self) -> bool {
        self.pci
            .caps()
            .msix_table()
            .is_some_and(|t| t.control().enabled)
    }

    /// Whether MSI or MSI-X is enabled.
    pub fn messages(&self) -> bool {
        MsiRouting::enabled(&self.pci)
    }

    /// Sets cause bits in ICR; under MSI-X also the queue and OTHER causes
    /// they stand for.
    pub fn raise(&self, regs: &mut Regs, causes: u32) {
        let mut c = causes;
        if self.msix() {
            if c & icr::RXT0 != 0 {
                c |= icr::RXQ0;
            }
            if c & icr::TXDW != 0 {
                c |= icr::TXQ0;
            }
            if c & icr::OTHER_CAUSES != 0 {
                c |= icr::OTHER;
            }
        }
        regs.update(regs::ICR, c, true);
    }

    /// A guest read of ICR: the causes, then cleared; with
    /// CTRL_EXT.IAME and an asserted interrupt, IAM's bits leave IMS.
    pub fn read_icr(&mut self, regs: &mut Regs) -> u32 {
        let v = regs.get(regs::ICR);
        if v & icr::INT_ASSERTED != 0 && regs.get(regs::CTRL_EXT) & ctrl_ext::IAME != 0 {
            let ims = regs.get(regs::IMS) & !regs.get(regs::IAM);
            regs.set(regs::IMS, ims);
        }
        regs.set(regs::ICR, 0);
        v
    }

    /// Sends what is due at `now` and drives INTx. Returns the deadline of
    /// a held interrupt, if any.
    pub fn update(&mut self, regs: &mut Regs, now: Instant, warn: &mut dyn FnMut(String)) {
        if self.msix() {
            self.set_intx(false);
            self.update_msix(regs, now, warn);
            return;
        }
        let pending = regs.get(regs::ICR) & regs.get(regs::IMS) & !icr::INT_ASSERTED != 0;
        regs.update(regs::ICR, icr::INT_ASSERTED, pending);
        if !pending {
            self.msi_sent = false;
            self.next[SINGLE] = self.next[SINGLE].filter(|t| *t > now);
        }
        if self.messages() {
            self.set_intx(false);
            if pending && !self.msi_sent && self.ready(SINGLE, now) {
                self.arm(SINGLE, regs.get(regs::ITR), now);
                self.msi_sent = true;
                self.signal(0);
            }
        } else {
            self.set_intx(pending);
        }
    }

    fn update_msix(&mut self, regs: &mut Regs, now: Instant, warn: &mut dyn FnMut(String)) {
        let ivar = regs.get(regs::IVAR);
        for (cause, shift) in MSIX_CAUSES {
            if regs.get(regs::ICR) & regs.get(regs::IMS) & cause == 0 {
                continue;
            }
            let entry = (ivar >> shift) & 0xf;
            let vector = (entry & 0x7) as usize;
            if entry & 0x8 == 0 || vector >= SINGLE {
                self.bad_ivar += 1;
                warn(format!(
                    "IVAR {ivar:#x}: cause {cause:#x} has no valid vector; not sent"
                ));
                // The cause stays pending; masking it avoids a storm of warnings.
                regs.update(regs::IMS, cause, false);
                continue;
            }
            if !self.ready(vector, now) {
                continue;
            }
            self.arm(vector, regs.get(regs::EITR0 + 4 * vector), now);
            if regs.get(regs::EIAC) & cause != 0 {
                regs.update(regs::ICR, cause, false);
            }
            if regs.get(regs::CTRL_EXT) & ctrl_ext::EIAME != 0 {
                let masked = regs.get(regs::IAM) & cause;
                regs.update(regs::IMS, masked, false);
            }
            self.signal(vector as u16);
        }
    }

    fn ready(&self, slot: usize, now: Instant) -> bool {
        self.next[slot].is_none_or(|t| now >= t)
    }

    fn arm(&mut self, slot: usize, reg: u32, now: Instant) {
        let gap = interval(reg);
        self.next[slot] = (!gap.is_zero()).then(|| now + gap);
    }

    fn signal(&mut self, vector: u16) {
        let slot = if self.msix() { vector as usize } else { SINGLE };
        match self.routing.signal(&mut self.pci, vector) {
            Signal::Sent | Signal::Pending => self.sent[slot] += 1,
            Signal::UseIntx => {}
            Signal::NoBusMaster => tracing::debug!("e1000e: message lost: bus master off"),
            Signal::NoSuchVector => tracing::debug!("e1000e: vector {vector} not enabled"),
        }
    }

    fn set_intx(&mut self, pending: bool) {
        self.pci.config_mut().set_interrupt_status(pending);
        let level = pending && self.pci.config().command() & command::INTX_DISABLE == 0;
        if level != self.intx_level {
            self.intx_level = level;
            if let Err(e) = self.intx.set_level(level) {
                tracing::warn!("e1000e: INTx not delivered: {e}");
            }
        }
    }

    /// When a held interrupt may go out: the earliest gap end of a vector
    /// with a cause waiting, or `None`.
    pub fn deadline(&self, regs: &Regs) -> Option<Instant> {
        let waiting = regs.get(regs::ICR) & regs.get(regs::IMS);
        if waiting == 0 {
            return None;
        }
        if !self.msix() {
            return self.next[SINGLE].filter(|_| !self.msi_sent && self.messages());
        }
        let ivar = regs.get(regs::IVAR);
        MSIX_CAUSES
            .iter()
            .filter(|(c, _)| waiting & c != 0)
            .filter_map(|(_, s)| self.next.get(((ivar >> s) & 7) as usize).copied().flatten())
            .min()
    }

    /// Forgets the moderation state (device reset).
    pub fn reset(&mut self) {
        self.next = [None; SINGLE + 1];
        self.msi_sent = false;
    }
}
