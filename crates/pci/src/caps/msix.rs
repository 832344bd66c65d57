//! The MSI-X capability in configuration space (PCI Local Bus 3.0 §6.8.2;
//! PCIe 6.0 §7.7.2). The table and PBA it points to live in a BAR: see
//! [`super::msix_table`].
//!
//! ```text
//!  +0  ID 0x11 | next | Message Control: Table Size (10:0, N-1) RO,
//!                                        Function Mask (14) RW, Enable (15) RW
//!  +4  Table Offset (31:3) | Table BIR (2:0)   RO
//!  +8  PBA Offset (31:3)   | PBA BIR (2:0)     RO
//! ```

use super::{get, CapError};
use crate::bar::TYPE0_BARS;
use crate::regs::RegisterMask;

/// Bytes the capability occupies.
pub const SIZE: usize = 12;
/// Offset of Message Control.
pub const CONTROL: usize = 2;
/// Offset of the Table Offset/BIR register.
pub const TABLE: usize = 4;
/// Offset of the PBA Offset/BIR register.
pub const PBA: usize = 8;
/// Most vectors an MSI-X function can have.
pub const MAX_VECTORS: u16 = 2048;

/// Message Control bits.
pub mod control {
    /// Table Size field (vectors − 1).
    pub const TABLE_SIZE: u16 = 0x7ff;
    /// All vectors masked regardless of their own mask bits.
    pub const FUNCTION_MASK: u16 = 1 << 14;
    /// MSI-X Enable.
    pub const ENABLE: u16 = 1 << 15;
}

/// Where an MSI-X structure lives: a BAR and a QWORD-aligned offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarLocation {
    /// BAR index (the BIR), 0–5.
    pub bar: usize,
    /// Offset in the BAR, a multiple of 8.
    pub offset: u32,
}

/// How the capability and its table are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixConfig {
    /// Table entries, 1–2048.
    pub vectors: u16,
    /// Where the table is (16 bytes per vector).
    pub table: BarLocation,
    /// Where the Pending Bit Array is (8 bytes per 64 vectors).
    pub pba: BarLocation,
}

impl MsixConfig {
    /// Bytes of the table.
    pub fn table_size(&self) -> u64 {
        16 * u64::from(self.vectors)
    }

    /// Bytes of the PBA.
    pub fn pba_size(&self) -> u64 {
        8 * u64::from(self.vectors).div_ceil(64)
    }

    /// Checks the vector count, the locations and that table and PBA are apart.
    pub fn validate(&self) -> Result<(), CapError> {
        if self.vectors == 0 || self.vectors > MAX_VECTORS {
            return Err(CapError::MsixVectors {
                vectors: self.vectors,
            });
        }
        for loc in [self.table, self.pba] {
            if loc.bar >= TYPE0_BARS || loc.offset % 8 != 0 {
                return Err(CapError::MsixLocation {
                    bar: loc.bar,
                    offset: loc.offset,
                });
            }
        }
        let (t, p) = (u64::from(self.table.offset), u64::from(self.pba.offset));
        let apart = t + self.table_size() <= p || p + self.pba_size() <= t;
        if self.table.bar == self.pba.bar && !apart {
            return Err(CapError::MsixOverlap);
        }
        Ok(())
    }
}

/// MSI-X Enable and Function Mask, as the guest set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsixControl {
    /// MSI-X Enable.
    pub enabled: bool,
    /// Function Mask: every vector masked.
    pub function_masked: bool,
}

/// A placed MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    offset: usize,
}

impl MsixCapability {
    pub(super) fn install(
        config: MsixConfig,
        regs: &mut RegisterMask,
        offset: usize,
    ) -> Result<Self, CapError> {
        config.validate()?;
        let size_field = (config.vectors - 1) & control::TABLE_SIZE;
        regs.set_value(offset + CONTROL, 2, size_field.into())?;
        let writable = control::ENABLE | control::FUNCTION_MASK;
        regs.set_masks(offset + CONTROL, 2, writable.into(), 0)?;
        let bir = |loc: BarLocation| u64::from(loc.offset) | loc.bar as u64;
        regs.set_value(offset + TABLE, 4, bir(config.table))?;
        regs.set_value(offset + PBA, 4, bir(config.pba))?;
        regs.set_masks(offset + TABLE, 8, 0, 0)?;
        Ok(Self { offset })
    }

    /// Offset of the capability header.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Enable and Function Mask as in configuration space now.
    pub fn control(&self, regs: &RegisterMask) -> MsixControl {
        let ctl = get(regs, self.offset + CONTROL, 2) as u16;
        MsixControl {
            enabled: ctl & control::ENABLE != 0,
            function_masked: ctl & control::FUNCTION_MASK != 0,
        }
    }
}
