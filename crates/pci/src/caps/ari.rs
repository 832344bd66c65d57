//! The Alternative Routing-ID Interpretation extended capability (PCIe 6.0
//! §7.8.7): a function that has it tells software that its device uses the
//! 8-bit function number of ARI (§6.13), so a downstream port above it may
//! forward all 256 functions of device 0, as SR-IOV VFs past function 7
//! need.
//!
//! ```text
//! +0x0  header: ID 0x000E, version 1
//! +0x4  ARI Capability: MFVC/ACS Function Groups 0, Next Function Number (15:8)  RO
//! +0x6  ARI Control: no Function Groups, read-only zero
//! ```
//!
//! Next Function Number links the device's functions for software's scan;
//! a PF whose other functions are all VFs has none (0), so a rescan finds
//! the PF only and the VFs stay the PF's to announce (PCIe 6.0 §9.3.4.1.1).

use super::{CapError, ExtendedCapability};
use crate::regs::RegisterMask;

/// Extended capability ID of ARI.
pub const ARI_ID: u16 = 0x000e;
/// Offset of the ARI Capability register.
pub const CAPABILITY: usize = 4;
/// Offset of the ARI Control register.
pub const CONTROL: usize = 6;

/// The ARI capability of one function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ari {
    /// The next function of the device software's scan visits; 0 ends it.
    pub next_function: u8,
}

impl ExtendedCapability for Ari {
    fn id(&self) -> u16 {
        ARI_ID
    }

    fn version(&self) -> u8 {
        1
    }

    fn size(&self) -> usize {
        8
    }

    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError> {
        regs.set_value(offset + CAPABILITY, 2, u64::from(self.next_function) << 8)?;
        regs.set_masks(offset + CAPABILITY, 4, 0, 0)?;
        Ok(())
    }
}
