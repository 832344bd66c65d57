//! The Access Control Services extended capability of a downstream port
//! (PCIe 6.0 §7.7.8, §6.12): which peer-to-peer paths the port can close,
//! so that software (an IOMMU driver forming isolation groups) can rely on
//! every request from below reaching the root complex's translation.
//!
//! ```text
//! +0x0  header: ID 0x000D, version 1
//! +0x4  ACS Capability: V, R, C, U supported; no egress vector      RO
//! +0x6  ACS Control: the enables of the supported features         RW
//! ```
//!
//! iovm's fabric has no peer-to-peer path: a device's DMA goes through its
//! `Dma` handle to guest memory (through the IOMMU when there is one),
//! never into another function's BAR. So Source Validation, P2P Request
//! Redirect, P2P Completion Redirect and Upstream Forwarding hold whether
//! or not software enables them; the enables are kept for software to read
//! back. Translation Blocking, Egress Control and Direct Translated P2P
//! are not offered (no ATS, no egress vector): their bits are read-only
//! zero.

use super::{CapError, ExtendedCapability};
use crate::regs::RegisterMask;

/// Extended capability ID of ACS.
pub const ACS_ID: u16 = 0x000d;
/// Offset of the ACS Capability register.
pub const CAPABILITY: usize = 4;
/// Offset of the ACS Control register.
pub const CONTROL: usize = 6;

/// ACS Capability / Control bits.
pub mod bits {
    /// Source Validation.
    pub const SOURCE_VALIDATION: u16 = 1 << 0;
    /// Translation Blocking (not offered).
    pub const TRANSLATION_BLOCKING: u16 = 1 << 1;
    /// P2P Request Redirect.
    pub const REQUEST_REDIRECT: u16 = 1 << 2;
    /// P2P Completion Redirect.
    pub const COMPLETION_REDIRECT: u16 = 1 << 3;
    /// Upstream Forwarding.
    pub const UPSTREAM_FORWARDING: u16 = 1 << 4;
    /// What a root port of iovm offers.
    pub const OFFERED: u16 =
        SOURCE_VALIDATION | REQUEST_REDIRECT | COMPLETION_REDIRECT | UPSTREAM_FORWARDING;
}

/// The ACS capability of a root port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acs;

impl ExtendedCapability for Acs {
    fn id(&self) -> u16 {
        ACS_ID
    }

    fn version(&self) -> u8 {
        1
    }

    fn size(&self) -> usize {
        8
    }

    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError> {
        regs.set_value(offset + CAPABILITY, 2, bits::OFFERED.into())?;
        regs.set_masks(offset + CAPABILITY, 2, 0, 0)?;
        regs.set_masks(offset + CONTROL, 2, bits::OFFERED.into(), 0)?;
        Ok(())
    }
}
