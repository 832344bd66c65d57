//! The MSI capability (PCI Local Bus 3.0 §6.8.1; PCIe 6.0 §7.7.1).
//!
//! ```text
//!          32-bit address            64-bit address
//!  +0x00   ID 0x05 | next | Message Control
//!  +0x04   Message Address [31:2]    Message Address [31:2]
//!  +0x08   Message Data (16)         Message Upper Address
//!  +0x0C   Mask Bits *               Message Data (16)
//!  +0x10   Pending Bits *            Mask Bits *
//!  +0x14                             Pending Bits *
//!                                      * with per-vector masking
//! ```
//!
//! Message Control: Enable (bit 0) RW; Multiple Message Capable (3:1) RO;
//! Multiple Message Enable (6:4) RW, clamped to Capable; 64-bit (7) RO;
//! Per-Vector Masking Capable (8) RO. The function sends vector `v` of `n`
//! enabled vectors by replacing the low log2(n) bits of Message Data with `v`
//! (§6.8.1.6, "the function is permitted to modify the low order bits"; Linux
//! allocates an aligned block, so this is the same as OR-ing `v` in).
//! A masked vector sets its Pending bit instead; it is delivered, and the bit
//! cleared, as soon as a write leaves it enabled and unmasked.

use super::{get, put, CapError};
use crate::message::{Delivery, MsiMessage, Trigger};
use crate::regs::RegisterMask;

/// Offset of Message Control.
pub const CONTROL: usize = 2;
/// Offset of Message Address (low DWORD).
pub const ADDRESS: usize = 4;

/// Message Control bits.
pub mod control {
    /// MSI Enable.
    pub const ENABLE: u16 = 1 << 0;
    /// Shift of Multiple Message Capable (log2 of vectors, bits 3:1).
    pub const MMC_SHIFT: u32 = 1;
    /// Shift of Multiple Message Enable (log2 of vectors, bits 6:4).
    pub const MME_SHIFT: u32 = 4;
    /// Multiple Message Enable field.
    pub const MME: u16 = 0b111 << MME_SHIFT;
    /// 64-bit address capable.
    pub const ADDRESS64: u16 = 1 << 7;
    /// Per-vector masking capable.
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
}

/// How the capability is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiConfig {
    /// Vectors the function can use: 1, 2, 4, 8, 16 or 32.
    pub vectors: u8,
    /// The 64-bit address variant (else 32-bit).
    pub address64: bool,
    /// Per-vector Mask and Pending bits.
    pub per_vector_mask: bool,
}

impl MsiConfig {
    /// Bytes the capability occupies.
    pub fn size(&self) -> usize {
        let base = if self.address64 { 0x10 } else { 0x0c };
        base + if self.per_vector_mask { 8 } else { 0 }
    }
}

/// MSI as the guest programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiState {
    /// MSI Enable.
    pub enabled: bool,
    /// Message address (upper half 0 for the 32-bit variant).
    pub address: u64,
    /// Message data as written (before any vector number goes in).
    pub data: u16,
    /// Vectors enabled by Multiple Message Enable (1–32).
    pub vectors: u8,
    /// Mask bits (0 without per-vector masking).
    pub mask: u32,
    /// Pending bits.
    pub pending: u32,
}

impl MsiState {
    /// The message for `vector` (which must be below `vectors`).
    pub fn message(&self, vector: u16) -> MsiMessage {
        let low = u32::from(self.vectors) - 1;
        MsiMessage {
            address: self.address,
            data: (u32::from(self.data) & !low) | (u32::from(vector) & low),
        }
    }
}

/// What a guest write did to MSI, for the VMM's interrupt routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiChange {
    /// MSI was turned on with this programming.
    Enabled(MsiState),
    /// MSI was turned off.
    Disabled,
    /// While enabled, the address, data, vector count or masks changed.
    Reprogrammed(MsiState),
}

/// A placed MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    offset: usize,
    config: MsiConfig,
}

impl Msi {
    pub(super) fn install(
        config: MsiConfig,
        regs: &mut RegisterMask,
        offset: usize,
    ) -> Result<Self, CapError> {
        if !config.vectors.is_power_of_two() || config.vectors > 32 {
            return Err(CapError::MsiVectors {
                vectors: config.vectors,
            });
        }
        let msi = Self { offset, config };
        let log2 = config.vectors.trailing_zeros() as u16;
        let mut ctl = log2 << control::MMC_SHIFT;
        if config.address64 {
            ctl |= control::ADDRESS64;
        }
        if config.per_vector_mask {
            ctl |= control::PER_VECTOR_MASK;
        }
        regs.set_value(offset + CONTROL, 2, ctl.into())?;
        let ctl_writable = control::ENABLE | control::MME;
        regs.set_masks(offset + CONTROL, 2, ctl_writable.into(), 0)?;
        regs.set_masks(offset + ADDRESS, 4, 0xffff_fffc, 0)?;
        if config.address64 {
            regs.set_masks(offset + ADDRESS + 4, 4, 0xffff_ffff, 0)?;
        }
        regs.set_masks(msi.data_offset(), 4, 0xffff, 0)?;
        if config.per_vector_mask {
            let implemented = (1u64 << config.vectors) - 1;
            regs.set_masks(msi.mask_offset(), 4, implemented, 0)?;
            regs.set_masks(msi.mask_offset() + 4, 4, 0, 0)?;
        }
        Ok(msi)
    }

    /// Offset of the capability header.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Offset of Message Data.
    pub fn data_offset(&self) -> usize {
        self.offset + if self.config.address64 { 0x0c } else { 0x08 }
    }

    /// Offset of Mask Bits (Pending Bits follow); meaningful only with
    /// per-vector masking.
    pub fn mask_offset(&self) -> usize {
        self.data_offset() + 4
    }

    /// The guest's programming.
    pub fn state(&self, regs: &RegisterMask) -> MsiState {
        let ctl = get(regs, self.offset + CONTROL, 2) as u16;
        let mme = (ctl & control::MME) >> control::MME_SHIFT;
        let lo = get(regs, self.offset + ADDRESS, 4);
        let hi = if self.config.address64 {
            get(regs, self.offset + ADDRESS + 4, 4)
        } else {
            0
        };
        let (mask, pending) = if self.config.per_vector_mask {
            let m = get(regs, self.mask_offset(), 4) as u32;
            (m, get(regs, self.mask_offset() + 4, 4) as u32)
        } else {
            (0, 0)
        };
        MsiState {
            enabled: ctl & control::ENABLE != 0,
            address: lo | (hi << 32),
            data: get(regs, self.data_offset(), 2) as u16,
            vectors: 1 << mme.min(5),
            mask,
            pending,
        }
    }

    /// The device signals `vector`.
    pub fn trigger(&self, regs: &mut RegisterMask, vector: u16) -> Trigger {
        let s = self.state(regs);
        if !s.enabled {
            Trigger::Disabled
        } else if vector >= u16::from(s.vectors) {
            Trigger::NoSuchVector
        } else if s.mask & (1 << vector) != 0 {
            regs.device_set(self.mask_offset() + 4, 4, 1 << vector);
            Trigger::Pending
        } else {
            Trigger::Deliver(s.message(vector))
        }
    }

    /// Clamps Multiple Message Enable, reports a routing change and delivers
    /// pending vectors that are now enabled and unmasked.
    pub(super) fn after_write(
        &self,
        before: MsiState,
        regs: &mut RegisterMask,
    ) -> (Option<MsiChange>, Vec<Delivery>) {
        let ctl = get(regs, self.offset + CONTROL, 2) as u16;
        let mme = (ctl & control::MME) >> control::MME_SHIFT;
        let mmc = self.config.vectors.trailing_zeros() as u16;
        if mme > mmc {
            let fixed = (ctl & !control::MME) | (mmc << control::MME_SHIFT);
            put(regs, self.offset + CONTROL, 2, fixed.into());
        }
        let after = self.state(regs);
        let route = |s: &MsiState| (s.address, s.data, s.vectors, s.mask);
        let change = match (before.enabled, after.enabled) {
            (false, true) => Some(MsiChange::Enabled(after)),
            (true, false) => Some(MsiChange::Disabled),
            (true, true) if route(&before) != route(&after) => Some(MsiChange::Reprogrammed(after)),
            _ => None,
        };
        let mut deliver = Vec::new();
        if after.enabled {
            let ready = after.pending & !after.mask & enabled_bits(after.vectors);
            if ready != 0 {
                put(
                    regs,
                    self.mask_offset() + 4,
                    4,
                    (after.pending & !ready).into(),
                );
                deliver = (0..32u16)
                    .filter(|v| ready & (1 << v) != 0)
                    .map(|vector| Delivery {
                        vector,
                        message: after.message(vector),
                    })
                    .collect();
            }
        }
        (change, deliver)
    }
}

fn enabled_bits(vectors: u8) -> u32 {
    ((1u64 << vectors) - 1) as u32
}
