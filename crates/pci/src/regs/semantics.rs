//! What each bit of a register does when the guest reads or writes it, and
//! which semantics one bit may have together.

use std::fmt;

/// One semantic a bit can have, as named in a [`super::MaskError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantic {
    /// A guest write stores the bit ("RW", PCIe Base 4.0 §7.4).
    Writable,
    /// Writing 1 clears the bit, writing 0 leaves it ("RW1C", PCIe Base 4.0 §7.4).
    WriteOneToClear,
    /// Writing 1 sets the bit, writing 0 leaves it.
    WriteOneToSet,
    /// A guest read returns the bit and then clears it.
    ReadToClear,
}

impl fmt::Display for Semantic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Writable => "read-write",
            Self::WriteOneToClear => "write-1-to-clear",
            Self::WriteOneToSet => "write-1-to-set",
            Self::ReadToClear => "read-to-clear",
        })
    }
}

/// The semantics of the bits of one register range, as masks over its
/// little-endian value (bit `8 * k + i` is bit `i` of byte `k`; bytes past
/// the eighth get no semantic). A bit in no mask is read-only: writes leave
/// it and reads have no side effect.
///
/// Every bit has at most one *write* semantic: read-only, read-write,
/// write-1-to-clear or write-1-to-set. Independently of that it may be
/// read-to-clear, but only if no write can set it: read-to-clear combines
/// with read-only (the 8254x statistics counters) and with write-1-to-clear
/// (the 8254x ICR, which a read or a write of 1 clears), never with
/// read-write or write-1-to-set. Any other combination is refused with
/// [`super::MaskError::Conflict`] when the masks are installed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Semantics {
    /// Read-write: a write stores the bit ("RW", PCIe Base 4.0 §7.4), e.g.
    /// the Command register (PCI Local Bus 3.0 §6.2.2).
    pub writable: u64,
    /// Write-1-to-clear: writing 1 clears the bit, 0 leaves it ("RW1C",
    /// PCIe Base 4.0 §7.4), e.g. the Status register's error bits (PCI
    /// Local Bus 3.0 §6.2.3).
    pub w1c: u64,
    /// Write-1-to-set: writing 1 sets the bit, 0 leaves it, e.g. the Intel
    /// 8254x/e1000e Interrupt Mask Set/Read register IMS (8254x Software
    /// Developer's Manual §13.4.20: "Any bits written with a 0b are
    /// unchanged"; a separate register, IMC, clears them).
    pub w1s: u64,
    /// Read-to-clear: a guest read returns the bit and then clears it, e.g.
    /// the 8254x/e1000e Interrupt Cause Read register ICR (8254x Software
    /// Developer's Manual §13.4.17; also write-1-to-clear) and the
    /// statistics counters (§13.7). Only the bytes an access covers clear.
    /// A counter that clears as a whole when one part is read (the 8254x's
    /// 64-bit counters clear when the upper half is read) is not a per-bit
    /// semantic: its device model clears it.
    pub read_to_clear: u64,
}

/// The semantics of one byte: [`Semantics`] cut to eight bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ByteSemantics {
    pub(super) writable: u8,
    pub(super) w1c: u8,
    pub(super) w1s: u8,
    pub(super) read_to_clear: u8,
}

/// Byte `i` of a little-endian value; bytes past the eighth are zero.
pub(super) fn byte_of(value: u64, i: usize) -> u8 {
    u32::try_from(8 * i)
        .ok()
        .and_then(|shift| value.checked_shr(shift))
        .unwrap_or(0) as u8
}

impl Semantics {
    /// Byte `i` of the masks.
    pub(super) fn byte(&self, i: usize) -> ByteSemantics {
        ByteSemantics {
            writable: byte_of(self.writable, i),
            w1c: byte_of(self.w1c, i),
            w1s: byte_of(self.w1s, i),
            read_to_clear: byte_of(self.read_to_clear, i),
        }
    }
}

impl ByteSemantics {
    /// The first pair of semantics [`Semantics`] forbids on one bit, with
    /// the bits that have both.
    pub(super) fn conflict(&self) -> Option<(Semantic, Semantic, u8)> {
        let (rw, w1c, w1s, rc) = (
            (Semantic::Writable, self.writable),
            (Semantic::WriteOneToClear, self.w1c),
            (Semantic::WriteOneToSet, self.w1s),
            (Semantic::ReadToClear, self.read_to_clear),
        );
        [(rw, w1c), (rw, w1s), (w1c, w1s), (rw, rc), (w1s, rc)]
            .into_iter()
            .find(|((_, a), (_, b))| a & b != 0)
            .map(|((first, a), (second, b))| (first, second, a & b))
    }

    /// The byte `old` after the guest writes `data` to it.
    pub(super) fn write(&self, old: u8, data: u8) -> u8 {
        let kept = old & !self.writable & !(data & self.w1c);
        kept | (data & self.writable) | (data & self.w1s)
    }

    /// The byte `value` after a guest read of it.
    pub(super) fn after_read(&self, value: u8) -> u8 {
        value & !self.read_to_clear
    }
}
