//! Invalidation queue descriptors (VT-d 4.1 §6.5.2), legacy mode: the
//! 128-bit descriptors software writes into the queue, parsed into what
//! they ask for. Only the types a legacy-mode unit without a device-TLB
//! implements are valid (context-cache, IOTLB, interrupt entry cache,
//! invalidation wait); every other type, a reserved granularity and any
//! reserved bit set make the descriptor invalid, which stops the queue
//! with FSTS.IQE (§6.5.2.10).
//!
//! ```text
//!  type  qw0                                            qw1
//!  0x1   G 5:4, DID 31:16, SID 47:32, FM 49:48          reserved
//!  0x2   G 5:4, DW 6, DR 7, DID 31:16                   ADDR 63:12, IH 6, AM 5:0
//!  0x4   G 4 (0 global, 1 index), IM 31:27, IIDX 47:32  reserved
//!  0x5   IF 4, SW 5, FN 6, status data 63:32            status address 63:2
//! ```

use dma::RequesterId;

use crate::regs::{ContextInvalidation, IotlbInvalidation, IotlbScope};

/// Size of one legacy-mode descriptor in bytes (IQA.DW = 0).
pub const DESCRIPTOR_SIZE: u64 = 16;

/// What one descriptor asks the unit to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Context-cache invalidate (§6.5.2.1).
    Context(ContextInvalidation),
    /// IOTLB invalidate (§6.5.2.3).
    Iotlb(IotlbInvalidation),
    /// Interrupt entry cache invalidate (§6.5.2.7).
    InterruptEntries(InterruptInvalidation),
    /// Invalidation wait (§6.5.2.8).
    Wait(Wait),
}

/// What an interrupt entry cache invalidation covers (§6.5.2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptInvalidation {
    /// Every cached interrupt remapping entry.
    Global,
    /// 2^`mask` entries from `index` (aligned down to that size).
    Index {
        /// Interrupt Index (IIDX), aligned down to 2^`mask`.
        index: u16,
        /// Index Mask (IM): how many low index bits are ignored.
        mask: u8,
    },
}

impl InterruptInvalidation {
    /// Whether the invalidation covers entry `index`.
    pub fn covers(&self, index: u16) -> bool {
        match *self {
            Self::Global => true,
            Self::Index { index: first, mask } => {
                u32::from(index) >> mask == u32::from(first) >> mask
            }
        }
    }
}

/// An invalidation wait descriptor (§6.5.2.8): once every earlier
/// descriptor is done, optionally write `status` and raise the
/// invalidation completion event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Interrupt Flag: set ICS.IWC and send the invalidation event.
    pub interrupt: bool,
    /// Status Write: `(address, data)` of the 32-bit write to make.
    pub status: Option<(u64, u32)>,
    /// Fence: later descriptors wait for this one (always true here, as
    /// the queue is processed in order).
    pub fence: bool,
}

/// Why a descriptor is invalid (each sets FSTS.IQE, §6.5.2.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// A type this unit does not implement: device-TLB (ECAP.DT = 0),
    /// the scalable-mode PASID types, or a reserved one.
    #[error("descriptor type {0:#x} not supported")]
    UnsupportedType(u8),
    /// Granularity 0 (reserved) in a context-cache or IOTLB descriptor.
    #[error("reserved granularity")]
    ReservedGranularity,
    /// Reserved bits set.
    #[error("reserved bits set: qw0 {0:#x}, qw1 {1:#x}")]
    Reserved(u64, u64),
}

/// Reserved bits of each type (those outside its fields), qw0 and qw1.
/// Bits 11:9 (the high type bits of later revisions) are reserved here.
mod reserved {
    pub(super) const CONTEXT: (u64, u64) = (!(0xf | 0x3 << 4 | 0x3_ffff_ffff << 16), !0);
    pub(super) const IOTLB: (u64, u64) =
        (!(0xf | 0x3 << 4 | 1 << 6 | 1 << 7 | 0xffff << 16), 0xf80);
    pub(super) const IEC: (u64, u64) = (!(0xf | 1 << 4 | 0x1f << 27 | 0xffff << 32), !0);
    pub(super) const WAIT: (u64, u64) =
        (!(0xf | 1 << 4 | 1 << 5 | 1 << 6 | 0xffff_ffff << 32), 0x3);
}

/// What the parser may accept: drain hints only with CAP.DRD/DWD; page-
/// selective masks up to CAP.MAMV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// IOTLB DR and DW are defined (CAP.DRD, CAP.DWD).
    pub dma_drain: bool,
    /// CAP.MAMV: a larger address mask is performed as a domain flush.
    pub max_address_mask: u8,
}

/// Parses the descriptor `(qw0, qw1)`.
pub fn parse(qw0: u64, qw1: u64, limits: &Limits) -> Result<Descriptor, DescriptorError> {
    let ty = (qw0 & 0xf) as u8 | (((qw0 >> 9) & 0x7) as u8) << 4;
    let check = |(r0, r1): (u64, u64)| {
        if qw0 & r0 != 0 || qw1 & r1 != 0 {
            Err(DescriptorError::Reserved(qw0 & r0, qw1 & r1))
        } else {
            Ok(())
        }
    };
    let did = (qw0 >> 16) as u16;
    let granularity = (qw0 >> 4) & 0x3;
    match ty {
        0x1 => {
            check(reserved::CONTEXT)?;
            let request = match granularity {
                1 => ContextInvalidation::Global,
                2 => ContextInvalidation::Domain { did },
                3 => ContextInvalidation::Device {
                    did,
                    source: RequesterId((qw0 >> 32) as u16),
                    function_mask: ((qw0 >> 48) & 0x3) as u8,
                },
                _ => return Err(DescriptorError::ReservedGranularity),
            };
            Ok(Descriptor::Context(request))
        }
        0x2 => {
            let drain = if limits.dma_drain { 0 } else { 0xc0 };
            check((reserved::IOTLB.0 | drain, reserved::IOTLB.1))?;
            let mask = (qw1 & 0x3f) as u8;
            let scope = match granularity {
                1 => IotlbScope::Global,
                2 => IotlbScope::Domain { did },
                3 if mask <= limits.max_address_mask => IotlbScope::Pages {
                    did,
                    addr: qw1 & !0xfff & !((0x1000u64 << mask) - 1),
                    mask,
                    leaf_only: qw1 & 1 << 6 != 0,
                },
                3 => IotlbScope::Domain { did },
                _ => return Err(DescriptorError::ReservedGranularity),
            };
            Ok(Descriptor::Iotlb(IotlbInvalidation {
                scope,
                drain_reads: qw0 & 1 << 7 != 0,
                drain_writes: qw0 & 1 << 6 != 0,
            }))
        }
        0x4 => {
            check(reserved::IEC)?;
            let request = if qw0 & 1 << 4 == 0 {
                InterruptInvalidation::Global
            } else {
                let mask = ((qw0 >> 27) & 0x1f) as u8;
                let index = (qw0 >> 32) as u16;
                let aligned = if mask >= 16 {
                    0
                } else {
                    index & !((1u16 << mask) - 1)
                };
                InterruptInvalidation::Index {
                    index: aligned,
                    mask,
                }
            };
            Ok(Descriptor::InterruptEntries(request))
        }
        0x5 => {
            check(reserved::WAIT)?;
            let status = (qw0 & 1 << 5 != 0).then_some((qw1 & !0x3, (qw0 >> 32) as u32));
            Ok(Descriptor::Wait(Wait {
                interrupt: qw0 & 1 << 4 != 0,
                status,
                fence: qw0 & 1 << 6 != 0,
            }))
        }
        other => Err(DescriptorError::UnsupportedType(other)),
    }
}

#[cfg(test)]
mod tests;
