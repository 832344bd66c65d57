//! MSI-X as a guest driver programs it (PCI Local Bus 3.0 §6.8.2): table
//! and PBA found through the capability, entries written and unmasked while
//! the function is masked, then the function unmasked (Linux's order in
//! `msix_capability_init`).

use super::bars::BarDriver;
use crate::caps::id;
use crate::caps::msix::{control, BarLocation, CONTROL, PBA, TABLE};
use crate::caps::msix_table::{ADDRESS, DATA, ENTRY_SIZE, MASKED, VECTOR_CONTROL};
use crate::config::ConfigWriteEffects;
use crate::message::MsiMessage;

/// BIR: the BAR field of the Table and PBA registers.
const BIR: u32 = 0b111;

/// The MSI-X capability as the driver reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLayout {
    /// Offset of the capability header.
    pub offset: usize,
    /// Table entries (Table Size + 1).
    pub vectors: u16,
    /// Where the table is.
    pub table: BarLocation,
    /// Where the Pending Bit Array is.
    pub pba: BarLocation,
}

impl MsixLayout {
    /// Offset of entry `vector` in the table's BAR.
    pub fn entry(&self, vector: u16) -> u64 {
        u64::from(self.table.offset) + (ENTRY_SIZE as u64) * u64::from(vector)
    }
}

/// MSI-X programming of a guest driver, for every
/// [`crate::function::PciFunction`]. Apart from [`MsixDriver::msix_layout`]
/// and [`MsixDriver::enable_msix`], the methods panic when the function has
/// no MSI-X capability (a bug in the test).
pub trait MsixDriver: BarDriver {
    /// The MSI-X capability, if the function has one.
    fn msix_layout(&self) -> Option<MsixLayout> {
        let offset = self.capability(id::MSIX)?;
        let ctl = self.config_read16(offset + CONTROL);
        let location = |raw: u32| BarLocation {
            bar: (raw & BIR) as usize,
            offset: raw & !BIR,
        };
        Some(MsixLayout {
            offset,
            vectors: (ctl & control::TABLE_SIZE) + 1,
            table: location(self.config_read32(offset + TABLE)),
            pba: location(self.config_read32(offset + PBA)),
        })
    }

    /// Writes Message Control's MSI-X Enable and Function Mask; returns the
    /// write's effects.
    fn set_msix_control(&mut self, enable: bool, function_mask: bool) -> ConfigWriteEffects {
        let msix = expect_msix(self);
        let mut ctl = 0;
        if enable {
            ctl |= control::ENABLE;
        }
        if function_mask {
            ctl |= control::FUNCTION_MASK;
        }
        self.config_write16(msix.offset + CONTROL, ctl)
    }

    /// Writes `message` into entry `vector` (DWORD writes, address then
    /// data), leaving its Mask bit as it is.
    fn write_msix_entry(&mut self, vector: u16, message: MsiMessage) {
        let msix = expect_msix(self);
        let (bar, at) = (msix.table.bar, msix.entry(vector));
        self.bar_write32(bar, at + ADDRESS as u64, message.address as u32);
        self.bar_write32(bar, at + ADDRESS as u64 + 4, (message.address >> 32) as u32);
        self.bar_write32(bar, at + DATA as u64, message.data);
    }

    /// Sets or clears entry `vector`'s Mask bit.
    fn mask_msix_vector(&mut self, vector: u16, masked: bool) {
        let msix = expect_msix(self);
        let ctl = if masked { MASKED } else { 0 };
        let at = msix.entry(vector) + VECTOR_CONTROL as u64;
        self.bar_write32(msix.table.bar, at, ctl);
    }

    /// The pending bits of vectors 0–63 (the PBA's first QWORD).
    fn msix_pending_bits(&mut self) -> u64 {
        let msix = expect_msix(self);
        self.bar_read64(msix.pba.bar, msix.pba.offset.into())
    }

    /// Enables MSI-X as Linux does: Enable with Function Mask set, the first
    /// `vectors` entries (at most the table's) programmed with
    /// `message(vector)` and unmasked, then Function Mask cleared. The other
    /// entries keep their programming and mask. `None` without an MSI-X
    /// capability.
    fn enable_msix(
        &mut self,
        vectors: u16,
        message: impl Fn(u16) -> MsiMessage,
    ) -> Option<MsixLayout> {
        let msix = self.msix_layout()?;
        self.set_msix_control(true, true);
        for v in 0..vectors.min(msix.vectors) {
            self.write_msix_entry(v, message(v));
            self.mask_msix_vector(v, false);
        }
        self.set_msix_control(true, false);
        Some(msix)
    }
}

impl<F: crate::function::PciFunction + ?Sized> MsixDriver for F {}

fn expect_msix<F: MsixDriver + ?Sized>(f: &F) -> MsixLayout {
    f.msix_layout()
        .expect("the function has an MSI-X capability")
}
