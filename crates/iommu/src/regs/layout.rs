//! The register page's map (VT-d 4.1 §11.4, Table 11-2): where each
//! register sits, and the fields this model implements. Offsets past the
//! fault recording register read as zero and ignore writes.

/// Size of the register page (VT-d 4.1 §11.4: one 4 KiB page per unit).
pub const REGS_SIZE: usize = 0x1000;

/// Version (32 bits, RO, §11.4.1).
pub const VER: usize = 0x00;
/// Capability (64 bits, RO, §11.4.2).
pub const CAP: usize = 0x08;
/// Extended Capability (64 bits, RO, §11.4.3).
pub const ECAP: usize = 0x10;
/// Global Command (32 bits, WO: reads 0, §11.4.4).
pub const GCMD: usize = 0x18;
/// Global Status (32 bits, RO, §11.4.5).
pub const GSTS: usize = 0x1c;
/// Root Table Address (64 bits, §11.4.6).
pub const RTADDR: usize = 0x20;
/// Context Command (64 bits, §11.4.7).
pub const CCMD: usize = 0x28;
/// Fault Status (32 bits, §11.4.9).
pub const FSTS: usize = 0x34;
/// Fault Event Control (32 bits, §11.4.10).
pub const FECTL: usize = 0x38;
/// Fault Event Data (32 bits, §11.4.11).
pub const FEDATA: usize = 0x3c;
/// Fault Event Address (32 bits, §11.4.12).
pub const FEADDR: usize = 0x40;
/// Fault Event Upper Address (32 bits, §11.4.13).
pub const FEUADDR: usize = 0x44;
/// Invalidation Queue Head (64 bits, RO, §11.4, Invalidation Queue Head Register).
pub const IQH: usize = 0x80;
/// Invalidation Queue Tail (64 bits, §11.4, Invalidation Queue Tail Register).
pub const IQT: usize = 0x88;
/// Invalidation Queue Address (64 bits, §11.4, Invalidation Queue Address Register).
pub const IQA: usize = 0x90;
/// Invalidation Completion Status (32 bits, §11.4, Invalidation Completion Status Register).
pub const ICS: usize = 0x9c;
/// Invalidation Event Control (32 bits, §11.4, Invalidation Event Control Register).
pub const IECTL: usize = 0xa0;
/// Invalidation Event Data (32 bits, §11.4, Invalidation Event Data Register).
pub const IEDATA: usize = 0xa4;
/// Invalidation Event Address (32 bits, §11.4, Invalidation Event Address Register).
pub const IEADDR: usize = 0xa8;
/// Invalidation Event Upper Address (32 bits, §11.4, Invalidation Event Upper Address Register).
pub const IEUADDR: usize = 0xac;
/// Invalidation Queue Error Record (64 bits, RO, §11.4, Invalidation Queue Error Record Register).
pub const IQERCD: usize = 0xb0;
/// Interrupt Remapping Table Address (64 bits, §11.4, Interrupt Remapping Table Address Register).
pub const IRTA: usize = 0xb8;
/// Invalidate Address (64 bits, §11.4.8.2), at ECAP.IRO × 16.
pub const IVA: usize = 0xf0;
/// IOTLB Invalidate (64 bits, §11.4.8.1), at ECAP.IRO × 16 + 8.
pub const IOTLB: usize = 0xf8;
/// The one fault recording register (128 bits, §11.4.14), at CAP.FRO × 16.
pub const FRCD: usize = 0x220;
/// End of the implemented registers (QEMU's DMAR_REG_SIZE).
pub const REGS_END: usize = 0x230;

/// Global Command and Global Status bits (§11.4.4, §11.4.5): a status bit
/// has its command's bit number.
pub mod gcmd {
    /// Translation Enable / Translation Enable Status (level).
    pub const TE: u32 = 1 << 31;
    /// Set Root Table Pointer (one-shot) / Root Table Pointer Status.
    pub const SRTP: u32 = 1 << 30;
    /// Queued Invalidation Enable / Status (level).
    pub const QIE: u32 = 1 << 26;
    /// Interrupt Remapping Enable / Status (level).
    pub const IRE: u32 = 1 << 25;
    /// Set Interrupt Remap Table Pointer (one-shot) / its Status.
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility Format Interrupt (level).
    pub const CFI: u32 = 1 << 23;
    /// The level commands: a GCMD write carries their wanted state.
    pub const LEVELS: u32 = TE | QIE | IRE | CFI;
}

/// Root Table Address fields (§11.4.6).
pub mod rtaddr {
    /// Root table address, bits 63:12. TTM (11:10) stays 00: legacy mode.
    pub const RTA: u64 = !0xfff;
}

/// Context Command fields (§11.4.7).
pub mod ccmd {
    /// Invalidate Context-Cache: software sets it, hardware clears it.
    pub const ICC: u64 = 1 << 63;
    /// Context Invalidation Request Granularity, bits 62:61.
    pub const CIRG_SHIFT: u32 = 61;
    /// Context Actual Invalidation Granularity, bits 60:59.
    pub const CAIG_SHIFT: u32 = 59;
    /// Function Mask, bits 33:32.
    pub const FM_SHIFT: u32 = 32;
    /// Source ID, bits 31:16.
    pub const SID_SHIFT: u32 = 16;
    /// Bits software writes: ICC, CIRG, FM, SID, DID.
    pub const WRITABLE: u64 = ICC | 0b11 << CIRG_SHIFT | 0b11 << FM_SHIFT | 0xffff_ffff;
}

/// IOTLB Invalidate and Invalidate Address fields (§11.4.8.1, §11.4.8.2).
pub mod iotlb {
    /// Invalidate IOTLB: software sets it, hardware clears it.
    pub const IVT: u64 = 1 << 63;
    /// IOTLB Invalidation Request Granularity, bits 61:60.
    pub const IIRG_SHIFT: u32 = 60;
    /// IOTLB Actual Invalidation Granularity, bits 58:57.
    pub const IAIG_SHIFT: u32 = 57;
    /// Drain Reads.
    pub const DR: u64 = 1 << 49;
    /// Drain Writes.
    pub const DW: u64 = 1 << 48;
    /// Domain ID, bits 47:32.
    pub const DID_SHIFT: u32 = 32;
    /// Bits software writes, drain hints aside.
    pub const WRITABLE: u64 = IVT | 0b11 << IIRG_SHIFT | 0xffff << DID_SHIFT;
    /// Invalidate Address: ADDR 63:12, IH 6, AM 5:0.
    pub const IVA_WRITABLE: u64 = !0xfff | IH | 0x3f;
    /// Invalidation Hint (IVA bit 6): leaf entries only.
    pub const IH: u64 = 1 << 6;
}

/// Fault Status bits (§11.4.9).
pub mod fsts {
    /// Primary Fault Overflow (RW1C).
    pub const PFO: u32 = 1 << 0;
    /// Primary Pending Fault (RO): some fault record has F set.
    pub const PPF: u32 = 1 << 1;
    /// Invalidation Queue Error (RW1C).
    pub const IQE: u32 = 1 << 4;
    /// Invalidation Completion Error (RW1C).
    pub const ICE: u32 = 1 << 5;
    /// Invalidation Time-out Error (RW1C).
    pub const ITE: u32 = 1 << 6;
    /// The write-1-to-clear bits.
    pub const W1C: u32 = PFO | IQE | ICE | ITE;
    /// The bits that make an interrupt condition (§11.4.10, IP).
    pub const CONDITIONS: u32 = PFO | PPF | IQE | ICE | ITE;
}

/// Fault Event Control and Invalidation Event Control bits (§11.4.10 and
/// the Invalidation Event Control Register).
pub mod ectl {
    /// Interrupt Mask (RW, 1 at reset).
    pub const IM: u32 = 1 << 31;
    /// Interrupt Pending (RO).
    pub const IP: u32 = 1 << 30;
}

/// Invalidation queue fields (§11.4, the Invalidation Queue Head, Tail
/// and Address Registers; §6.5.2).
pub mod iq {
    /// IQH/IQT: the queue offset, bits 18:4 (128-bit descriptors).
    pub const OFFSET: u64 = 0x7fff0;
    /// IQA: base address, bits 63:12.
    pub const BASE: u64 = !0xfff;
    /// IQA: Queue Size, bits 2:0 (2^QS pages). DW (bit 11) is reserved
    /// without scalable mode and stays 0.
    pub const QS: u64 = 0x7;
}

/// Interrupt Remapping Table Address fields (§11.4, its register; §9.9).
pub mod irta {
    /// Table address, bits 63:12.
    pub const BASE: u64 = !0xfff;
    /// Extended Interrupt Mode Enable (x2APIC), with ECAP.EIM.
    pub const EIME: u64 = 1 << 11;
    /// Size: 2^(S+1) entries, bits 3:0.
    pub const S: u64 = 0xf;
}

/// Fault recording register fields (§11.4.14), as bits of its two
/// quadwords.
pub mod frcd {
    /// Low quadword: Fault Info, the faulting page, bits 63:12.
    pub const FI: u64 = !0xfff;
    /// High quadword: Source ID, bits 79:64.
    pub const SID_SHIFT: u32 = 0;
    /// High quadword: Fault Reason, bits 103:96.
    pub const FR_SHIFT: u32 = 32;
    /// High quadword: Type, bit 126: 0 a write, 1 a read.
    pub const T: u64 = 1 << 62;
    /// High quadword: Fault, bit 127 (RW1C).
    pub const F: u64 = 1 << 63;
}
