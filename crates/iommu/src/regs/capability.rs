//! The Capability and Extended Capability registers' values (VT-d 4.1
//! §11.4.2, §11.4.3), built from the [`Capabilities`] the walk checks and
//! the register-level [`Options`], so that what the guest reads is what
//! the remapper enforces.

use crate::caps::Capabilities;

/// What the register page advertises beyond [`Capabilities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Queued invalidation (ECAP.QI, §6.5.2; GCMD.QIE becomes live).
    /// Without it Linux uses the register-based invalidation of §6.5.1
    /// ("Using Register based invalidation").
    pub queued_invalidation: bool,
    /// Interrupt remapping (ECAP.IR, MHMV = 15; GCMD.IRE, SIRTP, CFI and
    /// IRTA become live).
    pub interrupt_remapping: bool,
    /// Extended Interrupt Mode, x2APIC destinations (ECAP.EIM; IRTA.EIME
    /// and FEUADDR/IEUADDR become writable). Only with interrupt remapping.
    pub extended_interrupt_mode: bool,
    /// Read and write draining (CAP.DRD, CAP.DWD; IOTLB.DR/DW writable).
    pub dma_drain: bool,
    /// Caching Mode (CAP.CM, §6.1): software invalidates every change to
    /// its tables, not-present to present included, so the VMM can mirror
    /// them into a host IOMMU for an assigned device ([`crate::mirror`]).
    pub caching_mode: bool,
}

impl Options {
    /// The brief's recommendation (A2): interrupt remapping with x2APIC,
    /// DMA draining.
    pub const DEFAULT: Self = Self {
        queued_invalidation: true,
        interrupt_remapping: true,
        extended_interrupt_mode: true,
        dma_drain: true,
        caching_mode: false,
    };
}

impl Default for Options {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Number of domains: ND = 6, 16-bit domain IDs (§11.4.2).
pub const ND: u64 = 6;
/// Fault-recording Register Offset: the record at 0x22 × 16 = 0x220.
pub const FRO: u64 = 0x22;
/// Number of Fault-recording Registers, minus one: one record.
pub const NFR: u64 = 0;
/// Maximum Address Mask Value for page-selective invalidations (QEMU's).
pub const MAMV: u64 = 18;
/// IOTLB Register Offset: IVA at 0xF × 16 = 0xF0, IOTLB at 0xF8.
pub const IRO: u64 = 0xf;
/// Maximum Handle Mask Value for interrupt entry cache invalidations.
pub const MHMV: u64 = 0xf;

/// The CAP value (§11.4.2): ND, SAGAW and MGAW from the widths, FRO and
/// NFR for the one record at 0x220, SLLPS, PSI, MAMV, DWD/DRD, and CM when
/// asked for. RWBF, PLMR, PHMR, ZLR, PI, ESRTPS and ESIRTPS stay 0 (A2).
pub fn cap_value(caps: &Capabilities, opts: &Options) -> u64 {
    let sagaw = u64::from(caps.width_39) << 1 | u64::from(caps.width_48) << 2;
    let mgaw = u64::from(caps.max_guest_address_width() - 1);
    let sllps = u64::from(caps.page_2m) | u64::from(caps.page_1g) << 1;
    let drain = if opts.dma_drain { 0b11 << 54 } else { 0 };
    ND | sagaw << 8
        | mgaw << 16
        | FRO << 24
        | sllps << 34
        | 1 << 39
        | NFR << 40
        | MAMV << 48
        | drain
        | u64::from(opts.caching_mode) << 7
}

/// The ECAP value (§11.4.3): QI when queued invalidation is on, IR with MHMV and EIM when interrupt
/// remapping is on, PT, IRO. Never SMTS (scalable mode), C, DT or SC.
pub fn ecap_value(caps: &Capabilities, opts: &Options) -> u64 {
    let ir = opts.interrupt_remapping;
    let mut ecap = u64::from(opts.queued_invalidation) << 1 | IRO << 8;
    if ir {
        ecap |= 1 << 3 | MHMV << 20;
    }
    if ir && opts.extended_interrupt_mode {
        ecap |= 1 << 4;
    }
    if caps.pass_through {
        ecap |= 1 << 6;
    }
    ecap
}

/// ECAP fields the registers depend on.
pub(crate) mod ecap {
    /// Queued Invalidation support.
    pub(crate) const QI: u64 = 1 << 1;
    /// Interrupt Remapping support.
    pub(crate) const IR: u64 = 1 << 3;
    /// Extended Interrupt Mode.
    pub(crate) const EIM: u64 = 1 << 4;
}
