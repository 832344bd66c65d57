//! BARs as a guest driver handles them (PCI Local Bus 3.0 §6.2.5.1): probed
//! for type and size by writing all-ones with decoding off, given an
//! address, and then read and written inside.

use super::config::ConfigDriver;
use crate::bar::{BarKind, BarSpec, BAR0_OFFSET, TYPE0_BARS};
use crate::config::command;

const IO_SPACE: u32 = 1;
const MEM_TYPE: u32 = 0b110;
const MEM_TYPE_64: u32 = 0b100;
const PREFETCHABLE: u32 = 1 << 3;

/// BAR handling of a guest driver, for every [`crate::function::PciFunction`]
/// with a type 0 header (six BAR registers from 0x10).
pub trait BarDriver: ConfigDriver {
    /// Probes the BAR whose first register is `index`, as Linux's
    /// `__pci_read_base` does: memory and I/O decoding off, all-ones
    /// written, the size mask read back, the register(s) and the command
    /// register restored (the effects of these writes cancel out and are
    /// dropped). `None`: the BAR is not implemented, or `index` is the upper
    /// register of a 64-bit BAR.
    fn size_bar(&mut self, index: usize) -> Option<BarSpec> {
        if index >= TYPE0_BARS {
            return None;
        }
        let mut first = 0;
        while first < index {
            first += registers(self.config_read32(register(first)));
        }
        if first != index {
            return None;
        }
        let cmd = self.command();
        let decode = cmd & (command::IO | command::MEMORY);
        if decode != 0 {
            self.set_command(cmd & !decode);
        }
        let spec = probe(self, index);
        if decode != 0 {
            self.set_command(cmd);
        }
        spec
    }

    /// Every implemented BAR, probed in register order (the upper register
    /// of a 64-bit BAR skipped), as at enumeration.
    fn size_bars(&mut self) -> Vec<BarSpec> {
        let mut bars = Vec::new();
        let mut index = 0;
        while index < TYPE0_BARS {
            let spec = self.size_bar(index);
            index += spec.map_or(1, |s| s.registers());
            bars.extend(spec);
        }
        bars
    }

    /// Writes `addr` into the BAR whose first register is `index` (both
    /// registers of a 64-bit BAR), as at enumeration with decoding off; a
    /// decoding BAR's move comes back from the command write that follows.
    fn place_bar(&mut self, index: usize, addr: u64) {
        let reg = register(index);
        let wide = registers(self.config_read32(reg)) == 2;
        self.config_write32(reg, addr as u32);
        if wide {
            self.config_write32(reg + 4, (addr >> 32) as u32);
        }
    }

    /// The little-endian DWORD at `offset` in BAR `bar`.
    fn bar_read32(&mut self, bar: usize, offset: u64) -> u32 {
        let mut d = [0u8; 4];
        self.bar_read(bar, offset, &mut d);
        u32::from_le_bytes(d)
    }

    /// The little-endian QWORD at `offset` in BAR `bar`.
    fn bar_read64(&mut self, bar: usize, offset: u64) -> u64 {
        let mut d = [0u8; 8];
        self.bar_read(bar, offset, &mut d);
        u64::from_le_bytes(d)
    }

    /// Writes a little-endian DWORD at `offset` in BAR `bar`.
    fn bar_write32(&mut self, bar: usize, offset: u64, value: u32) {
        self.bar_write(bar, offset, &value.to_le_bytes());
    }

    /// Writes a little-endian QWORD at `offset` in BAR `bar`.
    fn bar_write64(&mut self, bar: usize, offset: u64, value: u64) {
        self.bar_write(bar, offset, &value.to_le_bytes());
    }
}

impl<F: crate::function::PciFunction + ?Sized> BarDriver for F {}

fn register(index: usize) -> usize {
    BAR0_OFFSET + 4 * index
}

/// Registers a BAR takes, from the type bits of its first register.
fn registers(raw: u32) -> usize {
    if raw & IO_SPACE == 0 && raw & MEM_TYPE == MEM_TYPE_64 {
        2
    } else {
        1
    }
}

fn kind(raw: u32) -> BarKind {
    let prefetchable = raw & PREFETCHABLE != 0;
    if raw & IO_SPACE != 0 {
        BarKind::Io
    } else if raw & MEM_TYPE == MEM_TYPE_64 {
        BarKind::Mem64 { prefetchable }
    } else {
        BarKind::Mem32 { prefetchable }
    }
}

/// All-ones into the BAR's register(s), the mask read back, the old value
/// written back; decoding must be off.
fn probe<F: ConfigDriver + ?Sized>(f: &mut F, index: usize) -> Option<BarSpec> {
    let reg = register(index);
    let low = f.config_read32(reg);
    let kind = kind(low);
    let flags = if kind == BarKind::Io { 0x3 } else { 0xf };
    let mask_low = size_mask(f, reg) & !flags;
    if mask_low == 0 {
        return None;
    }
    let mask_high = if registers(low) == 2 {
        size_mask(f, reg + 4)
    } else {
        u32::MAX
    };
    let mask = u64::from(mask_high) << 32 | u64::from(mask_low);
    Some(BarSpec {
        index,
        kind,
        size: mask.wrapping_neg(),
    })
}

/// What register `reg` reads after all-ones are written; its value is
/// restored.
fn size_mask<F: ConfigDriver + ?Sized>(f: &mut F, reg: usize) -> u32 {
    let old = f.config_read32(reg);
    f.config_write32(reg, u32::MAX);
    let mask = f.config_read32(reg);
    f.config_write32(reg, old);
    mask
}
