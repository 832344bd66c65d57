//! Configuration space as a guest driver reads and writes it: accesses of
//! one, two and four bytes, the command register, the capability lists.

use crate::caps::list::{walk, walk_extended, Found};
use crate::config::{ConfigWriteEffects, COMMAND};
use crate::function::PciFunction;

/// Configuration space accesses of a guest driver, for every [`PciFunction`].
pub trait ConfigDriver: PciFunction {
    /// The byte at `offset`.
    fn config_read8(&self, offset: usize) -> u8 {
        let mut d = [0u8; 1];
        self.config_read(offset, &mut d);
        d[0]
    }

    /// The little-endian word at `offset`.
    fn config_read16(&self, offset: usize) -> u16 {
        let mut d = [0u8; 2];
        self.config_read(offset, &mut d);
        u16::from_le_bytes(d)
    }

    /// The little-endian DWORD at `offset`.
    fn config_read32(&self, offset: usize) -> u32 {
        let mut d = [0u8; 4];
        self.config_read(offset, &mut d);
        u32::from_le_bytes(d)
    }

    /// Writes a byte at `offset`; returns what the VMM must apply.
    fn config_write8(&mut self, offset: usize, value: u8) -> ConfigWriteEffects {
        self.config_write(offset, &[value])
    }

    /// Writes a little-endian word at `offset`; returns what the VMM must apply.
    fn config_write16(&mut self, offset: usize, value: u16) -> ConfigWriteEffects {
        self.config_write(offset, &value.to_le_bytes())
    }

    /// Writes a little-endian DWORD at `offset`; returns what the VMM must apply.
    fn config_write32(&mut self, offset: usize, value: u32) -> ConfigWriteEffects {
        self.config_write(offset, &value.to_le_bytes())
    }

    /// The command register.
    fn command(&self) -> u16 {
        self.config_read16(COMMAND)
    }

    /// Writes the command register (bits of [`crate::config::command`], e.g.
    /// `MEMORY | BUS_MASTER` to let the function decode and master the bus).
    fn set_command(&mut self, bits: u16) -> ConfigWriteEffects {
        self.config_write16(COMMAND, bits)
    }

    /// The conventional capabilities in list order, walked from the
    /// Capabilities Pointer.
    fn capabilities(&self) -> Vec<Found> {
        walk(|offset| self.config_read32(offset))
    }

    /// The extended capabilities in list order, walked from 0x100.
    fn extended_capabilities(&self) -> Vec<Found> {
        walk_extended(|offset| self.config_read32(offset))
    }

    /// Offset of the first conventional capability with ID `id`
    /// ([`crate::caps::id`]).
    fn capability(&self, id: u8) -> Option<usize> {
        first(self.capabilities(), id.into())
    }

    /// Offset of the first extended capability with ID `id`.
    fn extended_capability(&self, id: u16) -> Option<usize> {
        first(self.extended_capabilities(), id)
    }
}

impl<F: PciFunction + ?Sized> ConfigDriver for F {}

fn first(found: Vec<Found>, id: u16) -> Option<usize> {
    found.into_iter().find(|f| f.id == id).map(|f| f.offset)
}
