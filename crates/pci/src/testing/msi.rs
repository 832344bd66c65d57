//! MSI as a guest driver programs it (PCI Local Bus 3.0 §6.8.1): the
//! capability's variant read from Message Control, then address, data and
//! Multiple Message Enable written, Enable last.

use super::config::ConfigDriver;
use crate::caps::id;
use crate::caps::msi::{control, ADDRESS, CONTROL};
use crate::config::ConfigWriteEffects;
use crate::message::MsiMessage;

/// The MSI capability as the driver reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiLayout {
    /// Offset of the capability header.
    pub offset: usize,
    /// Vectors the function can use (Multiple Message Capable).
    pub vectors: u8,
    /// The 64-bit address variant.
    pub address64: bool,
    /// Per-vector masking.
    pub per_vector_mask: bool,
}

impl MsiLayout {
    /// Offset of Message Data.
    pub fn data_offset(&self) -> usize {
        self.offset + if self.address64 { 0x0c } else { 0x08 }
    }
}

/// MSI programming of a guest driver, for every [`crate::function::PciFunction`].
pub trait MsiDriver: ConfigDriver {
    /// The MSI capability, if the function has one.
    fn msi_layout(&self) -> Option<MsiLayout> {
        let offset = self.capability(id::MSI)?;
        let ctl = self.config_read16(offset + CONTROL);
        let mmc = (ctl >> control::MMC_SHIFT) & 0b111;
        Some(MsiLayout {
            offset,
            vectors: 1 << mmc.min(5),
            address64: ctl & control::ADDRESS64 != 0,
            per_vector_mask: ctl & control::PER_VECTOR_MASK != 0,
        })
    }

    /// Programs `message` (the upper address half only in the 64-bit
    /// variant) and enables `vectors` vectors (a power of two the function
    /// is capable of); returns the effects of the Message Control write that
    /// enables MSI, or `None` without an MSI capability.
    fn enable_msi(&mut self, message: MsiMessage, vectors: u8) -> Option<ConfigWriteEffects> {
        let msi = self.msi_layout()?;
        self.config_write32(msi.offset + ADDRESS, message.address as u32);
        if msi.address64 {
            self.config_write32(msi.offset + ADDRESS + 4, (message.address >> 32) as u32);
        }
        self.config_write16(msi.data_offset(), message.data as u16);
        let mme = vectors.trailing_zeros() as u16;
        let ctl = control::ENABLE | mme << control::MME_SHIFT;
        Some(self.config_write16(msi.offset + CONTROL, ctl))
    }
}

impl<F: crate::function::PciFunction + ?Sized> MsiDriver for F {}
