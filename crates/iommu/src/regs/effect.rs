//! What a guest access to the register page asks of the rest of the VMM:
//! the register block only records state and returns [`Effect`]s; the
//! remapper, the invalidation queue and the interrupt path act on them.

use dma::RequesterId;
use irq::msi::MsiMessage;

use crate::qi::InterruptInvalidation;

/// One consequence of a register write or a recorded fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// GCMD.SRTP latched RTADDR (§11.4.4, §11.4.6): the root table in use
    /// is now at `addr` (bits 63:12). GSTS.RTPS is already set.
    SetRootTable(u64),
    /// GCMD.TE changed (§11.4.4): DMA remapping on or off. GSTS.TES
    /// already shows it.
    Translation(bool),
    /// GCMD.QIE changed: the invalidation queue on or off (QIES shows it;
    /// off also reset IQH to 0).
    QueuedInvalidation(bool),
    /// GCMD.IRE changed: interrupt remapping on or off (IRES shows it).
    InterruptRemapping(bool),
    /// GCMD.SIRTP latched IRTA (§11.4.4): the interrupt remapping table
    /// at `addr` with `entries` entries (2^(S+1)), x2APIC destinations if
    /// `eime`. GSTS.IRTPS is already set.
    SetInterruptTable {
        /// Table address, bits 63:12.
        addr: u64,
        /// Number of 128-bit entries.
        entries: u32,
        /// Extended Interrupt Mode Enable.
        eime: bool,
    },
    /// GCMD.CFI changed: compatibility-format interrupts allowed or
    /// blocked while interrupt remapping is on (CFIS shows it).
    CompatibilityFormat(bool),
    /// A CCMD write with ICC set (§11.4.7): drop cached context entries.
    /// ICC is already clear and CAIG reports the granularity.
    InvalidateContext(ContextInvalidation),
    /// An IOTLB register write with IVT set (§11.4.8.1): drop cached
    /// translations. IVT is already clear and IAIG reports the granularity.
    InvalidateIotlb(IotlbInvalidation),
    /// The invalidation queue has descriptors to carry out (§6.5.2): an
    /// IQT write moved the tail, or software cleared IQE or turned the
    /// queue on with descriptors pending. The VMM calls
    /// [`Registers::process_queue`](super::Registers::process_queue)
    /// before the write returns.
    ProcessQueue,
    /// An interrupt entry cache invalidation from the queue (§6.5.2.7):
    /// interrupts routed through the covered entries must be translated
    /// again.
    InvalidateInterruptEntries(InterruptInvalidation),
    /// The invalidation completion event to send now (§6.5.2.8, the
    /// Invalidation Event registers), in compatibility format.
    InvalidationEvent(MsiMessage),
    /// A fault event interrupt to send now (§7.3, §11.4.10), from FEDATA
    /// and FEUADDR:FEADDR, in compatibility format (never remapped).
    FaultEvent(MsiMessage),
}

/// What a context-cache invalidation covers (CCMD.CIRG, §11.4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextInvalidation {
    /// Every context entry.
    Global,
    /// Every entry of domain `did`.
    Domain {
        /// Domain ID.
        did: u16,
    },
    /// The entries of one source (with the function mask) in domain `did`.
    Device {
        /// Domain ID.
        did: u16,
        /// Source ID.
        source: RequesterId,
        /// Function Mask (FM): how many low bits of the function number to
        /// ignore: 0 none, 1 bit 2, 2 bits 2:1, 3 bits 2:0.
        function_mask: u8,
    },
}

/// What an IOTLB invalidation covers (IOTLB.IIRG, §11.4.8.1) and its drain
/// hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IotlbInvalidation {
    /// The granularity performed (what IAIG reports).
    pub scope: IotlbScope,
    /// Drain Reads (DR): only with CAP.DRD.
    pub drain_reads: bool,
    /// Drain Writes (DW): only with CAP.DWD.
    pub drain_writes: bool,
}

/// The IOTLB entries an invalidation drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotlbScope {
    /// Every translation.
    Global,
    /// Every translation of domain `did`.
    Domain {
        /// Domain ID.
        did: u16,
    },
    /// 2^`mask` pages from `addr` (aligned to that size) in domain `did`
    /// (IVA, §11.4.8.2).
    Pages {
        /// Domain ID.
        did: u16,
        /// First page, bits 63:12 of IVA.
        addr: u64,
        /// Address Mask (AM): 2^AM pages, at most CAP.MAMV.
        mask: u8,
        /// Invalidation Hint (IH): only leaf entries changed.
        leaf_only: bool,
    },
}
