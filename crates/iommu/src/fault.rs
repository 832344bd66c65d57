//! DMA-remapping faults (VT-d 4.1 §7.1): why a request was blocked, with
//! the reason codes of §7.1.3 (Table 7-1, legacy mode), the record the
//! fault recording registers will expose (§11.4.14), and a bounded
//! log that keeps the first records and counts the overflow (the
//! Primary Fault Overflow rule, FSTS.PFO, §11.4.9).

use dma::RequesterId;

/// Why a remapping request faulted (VT-d 4.1 §7.1.3, Table 7-1). The
/// discriminant is the spec's fault reason code (`FR` in the fault record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum FaultReason {
    /// The root entry for the bus has its Present bit clear (§9.1).
    #[error("root entry not present")]
    RootNotPresent = 0x1,
    /// The context entry for the device and function has its Present bit
    /// clear (§9.3).
    #[error("context entry not present")]
    ContextNotPresent = 0x2,
    /// The context entry is programmed with an unsupported or reserved
    /// value: a TT or AW the hardware does not support (§9.3).
    #[error("invalid context entry")]
    InvalidContext = 0x3,
    /// The input address is above the guest address width (§3.6).
    #[error("address beyond the guest address width")]
    AddressBeyondWidth = 0x4,
    /// A write through an entry whose Write bit is clear (§3.6, §9.8).
    #[error("write not permitted")]
    WriteNotPermitted = 0x5,
    /// A read through an entry whose Read bit is clear (§3.6, §9.8).
    #[error("read not permitted")]
    ReadNotPermitted = 0x6,
    /// A second-level paging entry could not be read (§9.8).
    #[error("page-table entry unreadable")]
    PageTableUnreadable = 0x7,
    /// The root entry could not be read (§9.1).
    #[error("root table unreadable")]
    RootTableUnreadable = 0x8,
    /// The context entry could not be read (§9.3).
    #[error("context table unreadable")]
    ContextTableUnreadable = 0x9,
    /// Reserved bits set in a present root entry (§9.1).
    #[error("reserved bits in root entry")]
    RootReserved = 0xA,
    /// Reserved bits set in a present context entry (§9.3).
    #[error("reserved bits in context entry")]
    ContextReserved = 0xB,
    /// Reserved bits set in a present second-level paging entry (§9.8).
    #[error("reserved bits in page-table entry")]
    PteReserved = 0xC,
    /// A translation request or translated request blocked by the context
    /// entry's TT (§7.1.3). Only device-TLB (ATS) requests raise it; this
    /// model has no device-TLB, so untranslated DMA never does.
    #[error("translation type not allowed")]
    TranslationTypeNotAllowed = 0xD,
    /// An interrupt request in remappable format with reserved bits set
    /// (§5.1.4.1, Table 5-2).
    #[error("reserved bits in an interrupt request")]
    IrRequestReserved = 0x20,
    /// The interrupt index is beyond the table IRTA sizes.
    #[error("interrupt index beyond the remapping table")]
    IrIndexBeyondTable = 0x21,
    /// The interrupt remapping table entry has its Present bit clear.
    #[error("interrupt remapping entry not present")]
    IrteNotPresent = 0x22,
    /// The interrupt remapping table entry could not be read.
    #[error("interrupt remapping table unreadable")]
    IrteUnreadable = 0x23,
    /// Reserved bits, or a reserved SVT, in a present IRTE.
    #[error("reserved bits in an interrupt remapping entry")]
    IrteReserved = 0x24,
    /// A compatibility-format request while remapping is on and GCMD.CFI
    /// is clear.
    #[error("compatibility-format interrupt blocked")]
    CompatibilityBlocked = 0x25,
    /// The requester failed the IRTE's source validation (SVT/SQ/SID).
    #[error("interrupt request from an unexpected source")]
    IrSourceMismatch = 0x26,
}

impl FaultReason {
    /// The spec's reason code (§7.1.3), as the fault record's FR field.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One blocked request, as a fault recording register will report it
/// (VT-d 4.1 §11.4.14: SID, FR, T, FI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// The source ID of the request (FRCD.SID).
    pub requester: RequesterId,
    /// The faulting input address (FRCD.FI; the register keeps bits 63:12).
    pub addr: u64,
    /// Why (FRCD.FR).
    pub reason: FaultReason,
    /// A write request (FRCD.T is 0 for a write, 1 for a read).
    pub write: bool,
}

/// The faults recorded so far: at most `capacity` records (the fault
/// recording registers, CAP.NFR + 1, §11.4.2), and a count of those dropped
/// because the log was full (FSTS.PFO, §11.4.9, as a count so tests and
/// logs can tell how many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultLog {
    capacity: usize,
    records: Vec<FaultRecord>,
    overflowed: u64,
}

impl FaultLog {
    /// An empty log that keeps up to `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            records: Vec::with_capacity(capacity.min(256)),
            overflowed: 0,
        }
    }

    /// Records `fault`, or counts it if the log is full (§7.1: a fault
    /// that finds no free record sets PFO and is dropped).
    pub fn record(&mut self, fault: FaultRecord) {
        if self.records.len() < self.capacity {
            self.records.push(fault);
        } else {
            self.overflowed = self.overflowed.saturating_add(1);
        }
    }

    /// The kept records, oldest first.
    pub fn records(&self) -> &[FaultRecord] {
        &self.records
    }

    /// How many faults were dropped because the log was full; non-zero
    /// means FSTS.PFO is set (§11.4.9).
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Empties the log and the overflow count (software cleared the
    /// records and PFO, §7.1).
    pub fn clear(&mut self) {
        self.records.clear();
        self.overflowed = 0;
    }

    /// Returns the log as it is and leaves it empty, with the same
    /// capacity (the records are handed to the fault recording registers).
    pub fn take(&mut self) -> Self {
        let empty = Self::new(self.capacity);
        std::mem::replace(self, empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(addr: u64) -> FaultRecord {
        FaultRecord {
            requester: RequesterId::new(0, 3, 0),
            addr,
            reason: FaultReason::RootNotPresent,
            write: false,
        }
    }

    #[test]
    fn test_fault_reason_codes_match_the_spec_table() {
        let codes = [
            (FaultReason::RootNotPresent, 0x1),
            (FaultReason::ContextNotPresent, 0x2),
            (FaultReason::InvalidContext, 0x3),
            (FaultReason::AddressBeyondWidth, 0x4),
            (FaultReason::WriteNotPermitted, 0x5),
            (FaultReason::ReadNotPermitted, 0x6),
            (FaultReason::PageTableUnreadable, 0x7),
            (FaultReason::RootTableUnreadable, 0x8),
            (FaultReason::ContextTableUnreadable, 0x9),
            (FaultReason::RootReserved, 0xA),
            (FaultReason::ContextReserved, 0xB),
            (FaultReason::PteReserved, 0xC),
            (FaultReason::TranslationTypeNotAllowed, 0xD),
            (FaultReason::IrRequestReserved, 0x20),
            (FaultReason::IrIndexBeyondTable, 0x21),
            (FaultReason::IrteNotPresent, 0x22),
            (FaultReason::IrteUnreadable, 0x23),
            (FaultReason::IrteReserved, 0x24),
            (FaultReason::CompatibilityBlocked, 0x25),
            (FaultReason::IrSourceMismatch, 0x26),
        ];

        let got: Vec<u8> = codes.iter().map(|(r, _)| r.code()).collect();

        let want: Vec<u8> = codes.iter().map(|&(_, c)| c).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn test_fault_log_full_keeps_first_and_counts_rest() {
        let mut log = FaultLog::new(2);

        for addr in 0..5 {
            log.record(fault(addr << 12));
        }

        assert_eq!(log.records(), &[fault(0), fault(0x1000)]);
        assert_eq!(log.overflowed(), 3);
    }

    #[test]
    fn test_fault_log_take_returns_it_and_leaves_it_empty() {
        let mut log = FaultLog::new(1);
        log.record(fault(0));
        log.record(fault(0x1000));

        let taken = log.take();
        log.record(fault(0x2000));
        log.record(fault(0x3000));

        assert_eq!((taken.records(), taken.overflowed()), (&[fault(0)][..], 1));
        assert_eq!((log.records(), log.overflowed()), (&[fault(0x2000)][..], 1));
    }

    #[test]
    fn test_fault_log_clear_frees_records_and_overflow() {
        let mut log = FaultLog::new(1);
        log.record(fault(0));
        log.record(fault(0x1000));

        log.clear();
        log.record(fault(0x2000));

        assert_eq!(log.records(), &[fault(0x2000)]);
        assert_eq!(log.overflowed(), 0);
    }
}
