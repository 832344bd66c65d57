//! Register semantics as data: a byte array whose bits each have a
//! [`Semantics`] (read-only, read-write, write-1-to-clear, write-1-to-set,
//! read-to-clear), as a PCI configuration space or any device register
//! block needs. Conflicting semantics on one bit are refused when they are
//! installed (the rules are in [`Semantics`]).
//!
//! Accesses are per byte, as byte enables select them: a write of any width
//! at any offset applies each written byte's semantics to that byte only,
//! and a read-to-clear read clears only the bytes it returns. Bytes past the
//! end of the block read as zero and ignore writes.

mod semantics;

pub use semantics::{Semantic, Semantics};

use semantics::{byte_of, ByteSemantics};

/// Why a mask could not be installed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    /// A bit was given two semantics it cannot have together.
    #[error("bits {bits:#04x} at offset {offset:#x} cannot be both {first} and {second}")]
    Conflict {
        /// Byte offset.
        offset: usize,
        /// The bits given both semantics.
        bits: u8,
        /// One semantic.
        first: Semantic,
        /// The other.
        second: Semantic,
    },
    /// The range lies outside the block.
    #[error("range {offset:#x}+{len} is outside the {size}-byte register block")]
    OutOfRange {
        /// Start.
        offset: usize,
        /// Length.
        len: usize,
        /// Size of the block.
        size: usize,
    },
}

/// A block of byte registers with their semantics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterMask {
    value: Vec<u8>,
    semantics: Vec<ByteSemantics>,
}

impl RegisterMask {
    /// A block of `size` bytes, all zero and read-only.
    pub fn new(size: usize) -> Self {
        Self {
            value: vec![0; size],
            semantics: vec![ByteSemantics::default(); size],
        }
    }

    /// Size of the block in bytes.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the block has no bytes.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), MaskError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(MaskError::OutOfRange {
                offset,
                len,
                size: self.len(),
            }),
        }
    }

    /// Sets the reset value of `len` bytes at `offset` (little endian).
    pub fn set_value(&mut self, offset: usize, len: usize, value: u64) -> Result<(), MaskError> {
        self.check(offset, len)?;
        for i in 0..len {
            self.value[offset + i] = byte_of(value, i);
        }
        Ok(())
    }

    /// Declares what every bit of `len` bytes at `offset` does, replacing
    /// what those bytes had. Refuses, changing nothing, a bit given two
    /// semantics it cannot have together ([`Semantics`] lists the rules).
    pub fn set_semantics(
        &mut self,
        offset: usize,
        len: usize,
        semantics: Semantics,
    ) -> Result<(), MaskError> {
        self.check(offset, len)?;
        for i in 0..len {
            if let Some((first, second, bits)) = semantics.byte(i).conflict() {
                return Err(MaskError::Conflict {
                    offset: offset + i,
                    bits,
                    first,
                    second,
                });
            }
        }
        for i in 0..len {
            self.semantics[offset + i] = semantics.byte(i);
        }
        Ok(())
    }

    /// Declares which bits of `len` bytes at `offset` the guest may write,
    /// and which it clears by writing 1; the others are read-only (see
    /// [`RegisterMask::set_semantics`] for the other semantics).
    pub fn set_masks(
        &mut self,
        offset: usize,
        len: usize,
        writable: u64,
        w1c: u64,
    ) -> Result<(), MaskError> {
        let semantics = Semantics {
            writable,
            w1c,
            ..Semantics::default()
        };
        self.set_semantics(offset, len, semantics)
    }

    /// Reads `data.len()` bytes at `offset` without side effects: nothing
    /// clears, read-to-clear bits included. For the device's own reads and
    /// for guest reads of blocks with no read-to-clear bits; a guest read of
    /// a block that has them goes through [`RegisterMask::read_and_clear`].
    /// Bytes past the end read as zero.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| self.value.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Reads an aligned little-endian value of `len` bytes (1, 2, 4 or 8),
    /// without side effects as [`RegisterMask::read`].
    pub fn read_le(&self, offset: usize, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        self.read(offset, &mut buf[..len.min(8)]);
        u64::from_le_bytes(buf)
    }

    /// A guest read: returns `data.len()` bytes at `offset` as
    /// [`RegisterMask::read`] does, then clears the read-to-clear bits of
    /// the bytes it returned (and no others).
    pub fn read_and_clear(&mut self, offset: usize, data: &mut [u8]) {
        self.read(offset, data);
        for i in 0..data.len() {
            let Some(o) = offset.checked_add(i).filter(|&o| o < self.len()) else {
                return;
            };
            self.value[o] = self.semantics[o].after_read(self.value[o]);
        }
    }

    /// Applies a guest write: writable bits take the new value, write-1-to-
    /// clear bits written 1 clear, write-1-to-set bits written 1 set,
    /// everything else stays. Bytes past the end are ignored.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i).filter(|&o| o < self.len()) else {
                return;
            };
            self.value[o] = self.semantics[o].write(self.value[o], b);
        }
    }

    /// Sets bits from the device side (e.g. a status bit the device raises),
    /// regardless of the guest's masks.
    pub fn device_set(&mut self, offset: usize, len: usize, bits: u64) {
        for i in 0..len {
            if let Some(v) = self.value.get_mut(offset + i) {
                *v |= byte_of(bits, i);
            }
        }
    }
}

#[cfg(test)]
mod tests;
