//! Register semantics as data: a byte array with per-byte writable and
//! write-1-to-clear masks, as a PCI configuration space (or any register
//! block) needs. `writable & w1c == 0` is checked when masks are set.

/// Why a mask could not be installed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    /// A bit was declared both read-write and write-1-to-clear.
    #[error("bits {bits:#04x} at offset {offset:#x} are both writable and write-1-to-clear")]
    Conflict {
        /// Byte offset.
        offset: usize,
        /// The bits in both masks.
        bits: u8,
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

/// Byte `i` of a little-endian value; bytes past the eighth are zero.
fn byte_of(value: u64, i: usize) -> u8 {
    u32::try_from(8 * i)
        .ok()
        .and_then(|shift| value.checked_shr(shift))
        .unwrap_or(0) as u8
}

/// A block of byte registers with their write semantics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterMask {
    value: Vec<u8>,
    writable: Vec<u8>,
    w1c: Vec<u8>,
}

impl RegisterMask {
    /// A block of `size` bytes, all zero and read-only.
    pub fn new(size: usize) -> Self {
        Self {
            value: vec![0; size],
            writable: vec![0; size],
            w1c: vec![0; size],
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

    /// Declares which bits of `len` bytes at `offset` the guest may write,
    /// and which it clears by writing 1.
    pub fn set_masks(
        &mut self,
        offset: usize,
        len: usize,
        writable: u64,
        w1c: u64,
    ) -> Result<(), MaskError> {
        self.check(offset, len)?;
        for i in 0..len {
            let (w, c) = (byte_of(writable, i), byte_of(w1c, i));
            if w & c != 0 {
                return Err(MaskError::Conflict {
                    offset: offset + i,
                    bits: w & c,
                });
            }
        }
        for i in 0..len {
            self.writable[offset + i] = byte_of(writable, i);
            self.w1c[offset + i] = byte_of(w1c, i);
        }
        Ok(())
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the end read as zero.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| self.value.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Reads an aligned little-endian value of `len` bytes (1, 2, 4 or 8).
    pub fn read_le(&self, offset: usize, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        self.read(offset, &mut buf[..len.min(8)]);
        u64::from_le_bytes(buf)
    }

    /// Applies a guest write: writable bits take the new value, set
    /// write-1-to-clear bits clear, everything else stays. Bytes past the end
    /// are ignored.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i).filter(|&o| o < self.len()) else {
                return;
            };
            let (w, c) = (self.writable[o], self.w1c[o]);
            self.value[o] = (self.value[o] & !w & !(b & c)) | (b & w);
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
mod tests {
    use super::*;

    #[test]
    fn test_write_respects_writable_mask() {
        let mut r = RegisterMask::new(8);
        r.set_value(0, 2, 0xabcd).unwrap();
        r.set_masks(0, 2, 0x00ff, 0).unwrap();
        r.write(0, &[0x12, 0x34]);
        assert_eq!(r.read_le(0, 2), 0xab12);
    }

    #[test]
    fn test_write_one_clears_w1c_bits_and_zero_leaves_them() {
        let mut r = RegisterMask::new(4);
        r.set_masks(2, 2, 0, 0xf900).unwrap();
        r.device_set(2, 2, 0x8100);
        r.write(2, &[0x00, 0x00]);
        assert_eq!(r.read_le(2, 2), 0x8100, "writing 0 keeps the bits");
        r.write(2, &[0x00, 0x80]);
        assert_eq!(
            r.read_le(2, 2),
            0x0100,
            "writing 1 clears the W1C bit; bit 8 is read-only"
        );
    }

    #[test]
    fn test_ranges_longer_than_eight_bytes_zero_the_rest() {
        let mut r = RegisterMask::new(16);
        r.set_value(0, 12, u64::MAX).unwrap();
        r.set_masks(0, 12, u64::MAX, 0).unwrap();
        r.device_set(0, 12, u64::MAX);
        assert_eq!(r.read_le(8, 4), 0);
        assert_eq!(r.read_le(0, 8), u64::MAX);
    }

    #[test]
    fn test_conflicting_masks_are_refused() {
        let mut r = RegisterMask::new(4);
        assert_eq!(
            r.set_masks(0, 2, 0x0101, 0x0100),
            Err(MaskError::Conflict { offset: 1, bits: 1 })
        );
    }

    #[test]
    fn test_out_of_range_accesses_are_harmless() {
        let mut r = RegisterMask::new(4);
        assert!(r.set_value(3, 2, 0).is_err());
        assert!(r.set_masks(usize::MAX, 2, 0, 0).is_err());
        r.write(usize::MAX - 1, &[1, 2, 3]);
        r.write(3, &[0xff, 0xff]);
        let mut d = [0xaa; 4];
        r.read(usize::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
