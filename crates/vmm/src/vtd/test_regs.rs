//! The VT-d register offsets and GCMD bits the machine-level tests use,
//! as the MMIO helpers take them (`u64`), from the `iommu` crate's map
//! (VT-d 4.1 §11.4) rather than written out again.

use iommu::regs::layout;

/// Version.
pub(crate) const VER: u64 = layout::VER as u64;
/// Capability.
pub(crate) const CAP: u64 = layout::CAP as u64;
/// Extended Capability.
pub(crate) const ECAP: u64 = layout::ECAP as u64;
/// Global Command.
pub(crate) const GCMD: u64 = layout::GCMD as u64;
/// Global Status.
pub(crate) const GSTS: u64 = layout::GSTS as u64;
/// Root Table Address.
pub(crate) const RTADDR: u64 = layout::RTADDR as u64;
/// Fault Status.
pub(crate) const FSTS: u64 = layout::FSTS as u64;
/// Fault Event Control.
pub(crate) const FECTL: u64 = layout::FECTL as u64;
/// Fault Event Data.
pub(crate) const FEDATA: u64 = layout::FEDATA as u64;
/// Fault Event Address.
pub(crate) const FEADDR: u64 = layout::FEADDR as u64;
/// The fault recording register.
pub(crate) const FRCD: u64 = layout::FRCD as u64;
/// GCMD/GSTS: Translation Enable.
pub(crate) const TE: u32 = layout::gcmd::TE;
/// GCMD/GSTS: Set Root Table Pointer / Root Table Pointer Status.
pub(crate) const SRTP: u32 = layout::gcmd::SRTP;
