//! Queued invalidation (VT-d 4.1 §6.5.2): the unit fetches descriptors
//! from the queue at IQA, from IQH up to the IQT software wrote, carries
//! each out in order and advances IQH. Linux ends every batch with a wait
//! descriptor whose status write it spins on with interrupts off, so the
//! whole batch is processed before the IQT write returns.
//!
//! An invalid descriptor, one that cannot be fetched, or a tail beyond
//! the queue stops processing with IQH at the offending descriptor and
//! FSTS.IQE set (§6.5.2.10); the fault event is raised as for any
//! FSTS condition. Processing resumes once software clears IQE.

use dma::Dma;
use irq::msi::MsiMessage;

use super::capability::{ecap, MAMV};
use super::layout::{ectl, fsts, gcmd, iq, FSTS, ICS, IEADDR, IECTL, IEDATA, IEUADDR, IQERCD};
use super::{Effect, Registers};
use crate::qi::{self, Descriptor, Limits, DESCRIPTOR_SIZE};

/// ICS.IWC: Invalidation Wait Descriptor Complete (RW1C).
const IWC: u32 = 1;

impl Registers {
    /// Whether the queue is on and not stopped by an error: a write that
    /// moved IQT or cleared IQE should be followed by
    /// [`Registers::process_queue`].
    pub fn queue_runnable(&self) -> bool {
        self.gsts() & gcmd::QIE != 0 && self.fsts() & fsts::IQE == 0
    }

    /// Carries out the descriptors from IQH to IQT, fetching them and
    /// writing wait statuses through `ram` (guest memory, untranslated).
    /// Returns the invalidations for the caches and the events to send,
    /// in order.
    pub fn process_queue(&mut self, ram: &dyn Dma) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !self.queue_runnable() {
            return effects;
        }
        let iqa = self.iqa();
        let entries = 256u64 << (iqa & iq::QS);
        let base = iqa & iq::BASE;
        let tail = self.iqt() / DESCRIPTOR_SIZE;
        let mut head = self.iqh() / DESCRIPTOR_SIZE;
        if tail >= entries || head >= entries {
            tracing::debug!("VT-d: queue tail {tail} or head {head} beyond its {entries} entries");
            self.queue_error(&mut effects);
            return effects;
        }
        let limits = Limits {
            dma_drain: self.cap() & (0b11 << 54) != 0,
            max_address_mask: MAMV as u8,
        };
        while head != tail {
            let mut raw = [0u8; DESCRIPTOR_SIZE as usize];
            let fetched = ram.read(base.wrapping_add(head * DESCRIPTOR_SIZE), &mut raw);
            let [qw0, qw1] =
                [0, 8].map(|i| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or_default()));
            let descriptor = match fetched {
                Ok(()) => qi::parse(qw0, qw1, &limits).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let descriptor = match descriptor {
                Ok(d) => d,
                Err(why) => {
                    tracing::debug!("VT-d: invalid queue descriptor at {head}: {why}");
                    self.set_iqh(head * DESCRIPTOR_SIZE);
                    self.queue_error(&mut effects);
                    return effects;
                }
            };
            match descriptor {
                Descriptor::Context(c) => effects.push(Effect::InvalidateContext(c)),
                Descriptor::Iotlb(i) => effects.push(Effect::InvalidateIotlb(i)),
                Descriptor::InterruptEntries(i) => {
                    if self.ecap() & ecap::IR != 0 {
                        effects.push(Effect::InvalidateInterruptEntries(i));
                    }
                }
                Descriptor::Wait(w) => {
                    if let Some((addr, data)) = w.status {
                        if let Err(e) = ram.write(addr, &data.to_le_bytes()) {
                            tracing::debug!("VT-d: wait status write to {addr:#x} failed: {e}");
                        }
                    }
                    if w.interrupt {
                        self.wait_complete(&mut effects);
                    }
                }
            }
            head = (head + 1) % entries;
        }
        self.set_iqh(head * DESCRIPTOR_SIZE);
        effects
    }

    /// FSTS.IQE with its fault event (IQERCD keeps 0: "no information").
    fn queue_error(&mut self, effects: &mut Vec<Effect>) {
        let status = self.fsts();
        self.put(FSTS, 4, u64::from(status | fsts::IQE));
        self.put(IQERCD, 8, 0);
        if status & fsts::CONDITIONS == 0 {
            effects.extend(self.raise());
        }
    }

    /// A wait descriptor with IF: ICS.IWC set; a new condition sends the
    /// invalidation event unless IECTL.IM holds it in IP.
    fn wait_complete(&mut self, effects: &mut Vec<Effect>) {
        let ics = self.get32(ICS);
        self.put(ICS, 4, u64::from(ics | IWC));
        if ics & IWC != 0 {
            return;
        }
        let iectl = self.get32(IECTL);
        if iectl & ectl::IM != 0 {
            self.put(IECTL, 4, u64::from(iectl | ectl::IP));
        } else {
            effects.push(Effect::InvalidationEvent(self.invalidation_message()));
        }
    }

    /// The invalidation event message: IEDATA to IEUADDR:IEADDR (IEUADDR
    /// only with ECAP.EIM).
    pub fn invalidation_message(&self) -> MsiMessage {
        let upper = if self.ecap() & ecap::EIM != 0 {
            self.get(IEUADDR, 4)
        } else {
            0
        };
        MsiMessage {
            address: upper << 32 | self.get(IEADDR, 4),
            data: self.get32(IEDATA),
        }
    }

    /// After any guest write: IECTL.IP follows the fault event's rules for
    /// ICS.IWC (an IM cleared with IP set sends the held event; IWC
    /// cleared drops it).
    pub(super) fn after_invalidation_write(
        &mut self,
        iectl_before: u32,
        effects: &mut Vec<Effect>,
    ) {
        let iectl = self.get32(IECTL);
        if iectl & ectl::IP == 0 {
            return;
        }
        let unmasked = iectl_before & ectl::IM != 0 && iectl & ectl::IM == 0;
        if unmasked {
            effects.push(Effect::InvalidationEvent(self.invalidation_message()));
        }
        if unmasked || self.get32(ICS) & IWC == 0 {
            self.put(IECTL, 4, u64::from(iectl & !ectl::IP));
        }
    }
}
