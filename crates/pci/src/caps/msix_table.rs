//! The MSI-X table and Pending Bit Array (PCI Local Bus 3.0 §6.8.2.6–9;
//! PCIe 6.0 §7.7.2.5–7), served at `(bar, offset)` as the device's BAR
//! handler forwards them.
//!
//! ```text
//!  table entry n, at table offset + 16·n        PBA, at PBA offset
//!  +0   Message Address [31:2]   RW             QWORD k: pending bits of
//!  +4   Message Upper Address    RW             vectors 64k … 64k+63, RO
//!  +8   Message Data             RW
//!  +12  Vector Control: Mask (bit 0) RW, reset 1
//! ```
//!
//! A vector is delivered when MSI-X is enabled and neither the Function Mask
//! nor its own Mask bit is set; otherwise firing it sets its pending bit, and
//! the first write that makes it deliverable sends it and clears the bit.
//!
//! The spec leaves accesses other than aligned DWORD/QWORD undefined; here
//! every access works bytewise through the entry masks, bytes outside the
//! table or PBA read 0 and are not written, and the PBA ignores writes.

use super::msix::{MsixConfig, MsixControl};
use crate::message::{Delivery, MsiMessage, Trigger};
use crate::regs::RegisterMask;

/// Bytes per table entry.
pub const ENTRY_SIZE: usize = 16;
/// Offset of Message Address within an entry.
pub const ADDRESS: usize = 0;
/// Offset of Message Data within an entry.
pub const DATA: usize = 8;
/// Offset of Vector Control within an entry.
pub const VECTOR_CONTROL: usize = 12;
/// Vector Control: the vector is masked.
pub const MASKED: u32 = 1;

/// `offset` relative to a structure at `(loc_bar, loc_offset)` of `size` bytes.
fn relative(loc_bar: usize, loc_offset: u32, size: u64, bar: usize, offset: u64) -> Option<usize> {
    let rel = offset.checked_sub(u64::from(loc_offset))?;
    (bar == loc_bar && rel < size).then_some(rel as usize)
}

/// One table entry as the guest programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixEntry {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
    /// The vector's Mask bit.
    pub masked: bool,
}

impl MsixEntry {
    /// The message this entry sends.
    pub fn message(&self) -> MsiMessage {
        MsiMessage {
            address: self.address,
            data: self.data,
        }
    }
}

/// A table entry changed by a guest write (update that vector's route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixVectorChange {
    /// Table index.
    pub vector: u16,
    /// The entry after the write.
    pub entry: MsixEntry,
}

/// What a guest write to the table or PBA changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsixTableEffects {
    /// Entries whose address, data or mask changed.
    pub changed: Vec<MsixVectorChange>,
    /// Pending vectors the write unmasked: send them now.
    pub deliver: Vec<Delivery>,
}

/// The MSI-X table, PBA and the control bits mirrored from configuration space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsixTable {
    config: MsixConfig,
    entries: RegisterMask,
    pending: Vec<u64>,
    control: MsixControl,
}

impl MsixTable {
    /// A table at reset: every vector masked, nothing pending. `config` must
    /// have passed [`MsixConfig::validate`].
    pub fn new(config: MsixConfig) -> Self {
        let n = usize::from(config.vectors);
        let mut entries = RegisterMask::new(n * ENTRY_SIZE);
        for base in (0..n).map(|v| v * ENTRY_SIZE) {
            entries.set_masks(base, 8, 0xffff_ffff_ffff_fffc, 0).ok();
            entries
                .set_masks(base + DATA, 8, 0x0000_0001_ffff_ffff, 0)
                .ok();
            entries
                .set_value(base + VECTOR_CONTROL, 4, MASKED.into())
                .ok();
        }
        Self {
            config,
            entries,
            pending: vec![0; n.div_ceil(64)],
            control: MsixControl::default(),
        }
    }

    /// Back to the reset state (all masked, nothing pending, disabled).
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// Number of vectors.
    pub fn vectors(&self) -> u16 {
        self.config.vectors
    }

    /// Enable and Function Mask as last set by [`MsixTable::set_control`].
    pub fn control(&self) -> MsixControl {
        self.control
    }

    /// Entry `vector`, if it exists.
    pub fn entry(&self, vector: u16) -> Option<MsixEntry> {
        (vector < self.config.vectors).then(|| {
            let base = usize::from(vector) * ENTRY_SIZE;
            MsixEntry {
                address: self.entries.read_le(base + ADDRESS, 8),
                data: self.entries.read_le(base + DATA, 4) as u32,
                masked: self.entries.read_le(base + VECTOR_CONTROL, 4) as u32 & MASKED != 0,
            }
        })
    }

    /// Whether `vector`'s pending bit is set.
    pub fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pending
            .get(v / 64)
            .is_some_and(|q| q & (1 << (v % 64)) != 0)
    }

    fn set_pending(&mut self, vector: u16, on: bool) {
        let v = usize::from(vector);
        if let Some(q) = self.pending.get_mut(v / 64) {
            if on {
                *q |= 1 << (v % 64);
            } else {
                *q &= !(1 << (v % 64));
            }
        }
    }

    /// The device no longer needs `vector` (its event was handled while it
    /// was masked): clears its pending bit (§6.8.2.9).
    pub fn clear_pending(&mut self, vector: u16) {
        self.set_pending(vector, false);
    }

    fn table_offset(&self, bar: usize, offset: u64) -> Option<usize> {
        let c = &self.config;
        relative(c.table.bar, c.table.offset, c.table_size(), bar, offset)
    }

    fn pba_offset(&self, bar: usize, offset: u64) -> Option<usize> {
        let c = &self.config;
        relative(c.pba.bar, c.pba.offset, c.pba_size(), bar, offset)
    }

    /// Whether an access starting at `(bar, offset)` is the table's or the PBA's.
    pub fn contains(&self, bar: usize, offset: u64) -> bool {
        self.table_offset(bar, offset).is_some() || self.pba_offset(bar, offset).is_some()
    }

    /// A read of the BAR at `offset`; `false` (and `data` untouched) when
    /// it is neither the table's nor the PBA's.
    pub fn read(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        if let Some(rel) = self.table_offset(bar, offset) {
            self.entries.read(rel, data);
        } else if let Some(rel) = self.pba_offset(bar, offset) {
            for (i, b) in data.iter_mut().enumerate() {
                let byte = rel + i;
                *b = self
                    .pending
                    .get(byte / 8)
                    .map_or(0, |q| (q >> (8 * (byte % 8))) as u8);
            }
        } else {
            return false;
        }
        true
    }

    /// A guest write to the BAR at `offset`; `None` when it is neither the
    /// table's nor the PBA's (the PBA ignores writes).
    pub fn write(&mut self, bar: usize, offset: u64, data: &[u8]) -> Option<MsixTableEffects> {
        let Some(rel) = self.table_offset(bar, offset) else {
            return self
                .pba_offset(bar, offset)
                .map(|_| MsixTableEffects::default());
        };
        let mut effects = MsixTableEffects::default();
        let Some(last_byte) = data.len().checked_sub(1).map(|l| rel + l) else {
            return Some(effects);
        };
        let last = (last_byte / ENTRY_SIZE).min(usize::from(self.config.vectors) - 1);
        let vectors = (rel / ENTRY_SIZE) as u16..=last as u16;
        let before: Vec<_> = vectors.clone().filter_map(|v| self.entry(v)).collect();
        self.entries.write(rel, data);
        for (vector, old) in vectors.zip(before) {
            let Some(entry) = self.entry(vector) else {
                continue;
            };
            if entry != old {
                effects.changed.push(MsixVectorChange { vector, entry });
            }
            effects.deliver.extend(self.flush(vector));
        }
        Some(effects)
    }

    /// Mirrors Enable / Function Mask from configuration space; returns the
    /// pending vectors this made deliverable.
    pub fn set_control(&mut self, control: MsixControl) -> Vec<Delivery> {
        self.control = control;
        (0..self.config.vectors)
            .filter_map(|v| self.flush(v))
            .collect()
    }

    fn masked(&self, entry: &MsixEntry) -> bool {
        self.control.function_masked || entry.masked
    }

    /// Sends `vector` if it is pending and now deliverable.
    fn flush(&mut self, vector: u16) -> Option<Delivery> {
        let entry = self.entry(vector)?;
        if !self.control.enabled || self.masked(&entry) || !self.is_pending(vector) {
            return None;
        }
        self.set_pending(vector, false);
        Some(Delivery {
            vector,
            message: entry.message(),
        })
    }

    /// The device signals `vector`.
    pub fn trigger(&mut self, vector: u16) -> Trigger {
        let Some(entry) = self.entry(vector) else {
            return Trigger::NoSuchVector;
        };
        if !self.control.enabled {
            Trigger::Disabled
        } else if self.masked(&entry) {
            self.set_pending(vector, true);
            Trigger::Pending
        } else {
            Trigger::Deliver(entry.message())
        }
    }
}
