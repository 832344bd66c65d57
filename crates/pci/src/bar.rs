//! Base Address Registers (PCI Local Bus 3.0 §6.2.5.1): what a BAR decodes,
//! how its bits behave, and how its address is read back.
//!
//! A BAR's size is a power of two; the bits below it are read-only zero
//! (plus the read-only type bits), so a guest that writes all-ones reads back
//! the size mask. A 64-bit memory BAR takes two consecutive registers.

/// Offset of BAR 0 in a type 0 header.
pub const BAR0_OFFSET: usize = 0x10;
/// BAR registers in a type 0 header.
pub const TYPE0_BARS: usize = 6;

/// Expansion ROM BAR bit 0: address decode enable (PCI 3.0 §6.2.5.2).
pub const ROM_ENABLE: u32 = 1;

/// The writable mask of an expansion ROM BAR of `size` bytes (a power of
/// two, at least 2 KiB): the address bits above the size, and Enable.
/// The expansion ROM is BAR number 6 in errors.
pub fn rom_writable_mask(size: u32) -> Result<u64, BarError> {
    if !size.is_power_of_two() || size < 0x800 {
        return Err(BarError::BadSize {
            index: 6,
            size: size.into(),
            min: 0x800,
        });
    }
    Ok((!(size - 1) | ROM_ENABLE).into())
}

const IO_SPACE: u32 = 1 << 0;
const MEM_TYPE_64: u32 = 0b10 << 1;
const MEM_PREFETCHABLE: u32 = 1 << 3;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space, 32-bit address (x86 uses 16 bits).
    Io,
    /// Memory below 4 GiB.
    Mem32 {
        /// Reads have no side effects and may be merged.
        prefetchable: bool,
    },
    /// Memory anywhere in 64-bit space; uses this register and the next.
    Mem64 {
        /// Reads have no side effects and may be merged.
        prefetchable: bool,
    },
}

/// Why a BAR description is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BarError {
    /// Not a power of two, or below the minimum for its kind.
    #[error("BAR {index}: size {size:#x} must be a power of two of at least {min:#x} bytes")]
    BadSize {
        /// Register index.
        index: usize,
        /// The size given.
        size: u64,
        /// The minimum for its kind.
        min: u64,
    },
    /// Past the last register (a 64-bit BAR needs two).
    #[error("BAR {index} does not fit in the header's {TYPE0_BARS} BAR registers")]
    BadIndex {
        /// Register index.
        index: usize,
    },
    /// Two BARs claim one register.
    #[error("BAR {index} overlaps another BAR's register")]
    Overlap {
        /// Register index.
        index: usize,
    },
}

/// One BAR of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    /// Register index, 0–5.
    pub index: usize,
    /// What it decodes.
    pub kind: BarKind,
    /// Bytes it decodes.
    pub size: u64,
}

impl BarSpec {
    /// Registers this BAR occupies.
    pub fn registers(&self) -> usize {
        match self.kind {
            BarKind::Mem64 { .. } => 2,
            _ => 1,
        }
    }

    /// Checks size and placement.
    pub fn validate(&self) -> Result<(), BarError> {
        let min = match self.kind {
            BarKind::Io => 4,
            _ => 16,
        };
        let too_big =
            matches!(self.kind, BarKind::Io | BarKind::Mem32 { .. }) && self.size > 1 << 31;
        if !self.size.is_power_of_two() || self.size < min || too_big {
            return Err(BarError::BadSize {
                index: self.index,
                size: self.size,
                min,
            });
        }
        if self.index + self.registers() > TYPE0_BARS {
            return Err(BarError::BadIndex { index: self.index });
        }
        Ok(())
    }

    /// The read-only low bits that say what the BAR is.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            BarKind::Io => IO_SPACE,
            BarKind::Mem32 { prefetchable } => {
                if prefetchable {
                    MEM_PREFETCHABLE
                } else {
                    0
                }
            }
            BarKind::Mem64 { prefetchable } => {
                MEM_TYPE_64 | if prefetchable { MEM_PREFETCHABLE } else { 0 }
            }
        }
    }

    /// Writable bits of the full (up to 64-bit) register value.
    pub fn writable_mask(&self) -> u64 {
        let addr_bits = !(self.size - 1);
        match self.kind {
            BarKind::Io | BarKind::Mem32 { .. } => addr_bits & 0xffff_ffff,
            BarKind::Mem64 { .. } => addr_bits,
        }
    }

    /// The address a register value names (type bits stripped).
    pub fn address(&self, raw: u64) -> u64 {
        match self.kind {
            BarKind::Io => raw & 0xffff_fffc,
            BarKind::Mem32 { .. } => raw & 0xffff_fff0,
            BarKind::Mem64 { .. } => raw & !0xf,
        }
    }

    /// Whether the BAR decodes I/O space (else memory).
    pub fn is_io(&self) -> bool {
        self.kind == BarKind::Io
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_validate_sizes() {
        let ok = BarSpec {
            index: 0,
            kind: BarKind::Mem64 {
                prefetchable: false,
            },
            size: 0x4000,
        };
        assert!(ok.validate().is_ok());
        let odd = BarSpec { size: 0x3000, ..ok };
        assert!(matches!(odd.validate(), Err(BarError::BadSize { .. })));
        let tiny_io = BarSpec {
            index: 0,
            kind: BarKind::Io,
            size: 2,
        };
        assert!(tiny_io.validate().is_err());
        let last64 = BarSpec { index: 5, ..ok };
        assert_eq!(last64.validate(), Err(BarError::BadIndex { index: 5 }));
    }

    #[test]
    fn test_masks_and_type_bits() {
        let io = BarSpec {
            index: 1,
            kind: BarKind::Io,
            size: 8,
        };
        assert_eq!(io.type_bits(), 1);
        assert_eq!(io.writable_mask(), 0xffff_fff8);
        let m64 = BarSpec {
            index: 0,
            kind: BarKind::Mem64 { prefetchable: true },
            size: 0x1000,
        };
        assert_eq!(m64.type_bits(), 0b1100);
        assert_eq!(m64.writable_mask(), 0xffff_ffff_ffff_f000);
        assert_eq!(m64.address(0x1_2345_600c), 0x1_2345_6000);
    }
}
