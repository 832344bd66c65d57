//! Primary fault logging and the fault event (VT-d 4.1 §7.2.1, §7.3):
//! the one fault recording register (§11.4.14, at 0x220), Fault Status
//! (§11.4.9), Fault Event Control (§11.4.10) and the message registers
//! (§11.4.11 to §11.4.13).
//!
//! A fault is recorded if the record is free (F clear) and PFO is clear;
//! otherwise PFO is set and the fault is dropped. A new interrupt condition
//! exists only if no FSTS status bit was set before; it is sent at once if
//! FECTL.IM is clear, else FECTL.IP holds it until software clears IM (then
//! it is sent) or services every status bit (then it is dropped).

use irq::msi::MsiMessage;

use super::capability::ecap;
use super::layout::{ectl, frcd, fsts, FEADDR, FECTL, FEDATA, FEUADDR, FRCD, FSTS};
use super::{Effect, Registers};
use crate::fault::FaultRecord;

impl Registers {
    /// Records `fault` in the fault recording register as hardware does
    /// (§7.2.1): SID, FR, T (0 write, 1 read) and the faulting page, F and
    /// FSTS.PPF set, FRI 0. A fault that finds the record busy sets PFO,
    /// unless it repeats the pending one exactly (same source, page, reason
    /// and type): that one is collapsed into it. Returns the fault event to
    /// send now, if the fault is a new interrupt condition and FECTL.IM is
    /// clear.
    pub fn record_fault(&mut self, fault: &FaultRecord) -> Option<Effect> {
        let status = self.fsts();
        let (_, hi) = self.fault_record();
        if status & fsts::PFO != 0 {
            return None;
        }
        let t = if fault.write { 0 } else { frcd::T };
        let new_hi = frcd::F
            | t
            | u64::from(fault.reason.code()) << frcd::FR_SHIFT
            | u64::from(fault.requester.0) << frcd::SID_SHIFT;
        if hi & frcd::F != 0 {
            let (lo, _) = self.fault_record();
            let repeat = hi == new_hi && lo == fault.addr & frcd::FI;
            if !repeat {
                self.put(FSTS, 4, u64::from(status | fsts::PFO));
            }
            return None;
        }
        let hi = new_hi;
        self.put(FRCD, 8, fault.addr & frcd::FI);
        self.put(FRCD + 8, 8, hi);
        self.put(FSTS, 4, u64::from(status | fsts::PPF));
        if status & fsts::CONDITIONS != 0 {
            return None;
        }
        self.raise()
    }

    /// A fault dropped before it reached the register (the remapper's log
    /// was full): it found the record busy, so PFO is set if F is (§7.2.1).
    /// With F clear there was no busy record and nothing changes.
    pub fn record_overflow(&mut self) {
        let (_, hi) = self.fault_record();
        if hi & frcd::F != 0 {
            self.put(FSTS, 4, u64::from(self.fsts() | fsts::PFO));
        }
    }

    /// A new interrupt condition: sent now, or held in IP while masked.
    pub(super) fn raise(&mut self) -> Option<Effect> {
        let fectl = self.fectl();
        if fectl & ectl::IM != 0 {
            self.put(FECTL, 4, u64::from(fectl | ectl::IP));
            return None;
        }
        Some(Effect::FaultEvent(self.fault_message()))
    }

    /// The fault event message (§11.4.11 to §11.4.13): FEDATA to
    /// FEUADDR:FEADDR (FEUADDR only with ECAP.EIM, else 0).
    pub fn fault_message(&self) -> MsiMessage {
        let upper = if self.ecap() & ecap::EIM != 0 {
            self.get(FEUADDR, 4)
        } else {
            0
        };
        MsiMessage {
            address: upper << 32 | self.get(FEADDR, 4),
            data: self.get32(FEDATA),
        }
    }

    /// After any guest write: PPF follows the record's F, an IM cleared
    /// with IP set sends the held event, and IP clears once software has
    /// serviced every status bit (§11.4.10).
    pub(super) fn after_fault_write(&mut self, fectl_before: u32, effects: &mut Vec<Effect>) {
        let (_, hi) = self.fault_record();
        let mut status = self.fsts() & !fsts::PPF;
        if hi & frcd::F != 0 {
            status |= fsts::PPF;
        }
        self.put(FSTS, 4, u64::from(status));
        let fectl = self.fectl();
        if fectl & ectl::IP == 0 {
            return;
        }
        let unmasked = fectl_before & ectl::IM != 0 && fectl & ectl::IM == 0;
        if unmasked {
            effects.push(Effect::FaultEvent(self.fault_message()));
        }
        if unmasked || status & fsts::CONDITIONS == 0 {
            self.put(FECTL, 4, u64::from(fectl & !ectl::IP));
        }
    }
}
