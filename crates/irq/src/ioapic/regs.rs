//! The IOAPIC's registers as data (82093AA datasheet §3): where the two
//! memory-mapped registers and the EOI register sit, the indexes of the
//! indirect registers behind IOWIN, and for each the bits a guest may write.
//!
//! One rule applies every write: writable bits take the guest's value, all
//! others keep theirs ([`apply_write`]). The IOAPIC has no write-1-to-clear
//! bits: Remote IRR is read-only and cleared by an EOI, never by a write.

use crate::msi::{ApicMessage, DeliveryMode, MsiMessage};

/// IOREGSEL, the index of the indirect register IOWIN shows (datasheet
/// §3.1.1; bits 7..0, the rest reserved).
pub const IOREGSEL_OFFSET: u64 = 0x00;
/// IOWIN, the 32-bit window onto the register IOREGSEL selects (§3.1.2).
pub const IOWIN_OFFSET: u64 = 0x10;
/// EOI register, write-only: bits 7..0 are a vector whose level-triggered
/// entries get their Remote IRR cleared. Not in the 82093AA; IOAPICs of
/// version 0x20 have it (Intel ICH10 datasheet, APIC direct registers, EOIR).
pub const EOI_OFFSET: u64 = 0x40;

/// IOAPICID: bits 27..24 are the APIC ID, the rest reserved (§3.2.1).
pub const IOAPICID: u8 = 0x00;
/// IOAPICVER, read-only: version in bits 7..0, maximum redirection entry
/// (pins − 1) in bits 23..16 (§3.2.2).
pub const IOAPICVER: u8 = 0x01;
/// IOAPICARB, read-only: the APIC bus arbitration ID in bits 27..24
/// (§3.2.3). It is loaded from IOAPICID, so it reads as the ID here.
pub const IOAPICARB: u8 = 0x02;
/// IOREDTBL: pin `n`'s redirection entry is the dword pair at indexes
/// `0x10 + 2n` (bits 31..0) and `0x11 + 2n` (bits 63..32) (§3.2.4).
pub const IOREDTBL: u8 = 0x10;

/// The version this model reports: 0x20 has the EOI register (the 82093AA
/// itself is 0x11). Linux uses the EOI register from version 0x20 on.
pub const VERSION: u8 = 0x20;

/// Most pins an 8-bit IOREGSEL can address: entries 0x10..=0xFF.
pub const MAX_PINS: usize = (0x100 - IOREDTBL as usize) / 2;

/// What IOWIN reads at an index that names no register. The datasheet does
/// not say; all-ones is what KVM's in-kernel IOAPIC returns.
pub const UNDEFINED_READ: u32 = 0xFFFF_FFFF;

/// Writable bits of IOAPICID.
pub const ID_WRITABLE: u32 = 0x0F00_0000;
/// Writable bits of a redirection entry's low dword: vector, delivery mode,
/// destination mode, polarity, trigger mode, mask; not delivery status
/// (bit 12) nor Remote IRR (bit 14).
pub const RTE_LOW_WRITABLE: u32 = 0x0001_AFFF;
/// Writable bits of a redirection entry's high dword: the destination
/// (63..56) and the extended destination (55..48), which an IOAPIC behind
/// interrupt remapping uses for the remappable format (VT-d 4.1 §5.1.5.1:
/// bit 48 format, 63..49 the interrupt index bits 14..0, bit 11 index bit
/// 15).
pub const RTE_HIGH_WRITABLE: u32 = 0xFFFF_0000;

const _: () = assert!(RTE_LOW_WRITABLE & (DELIVERY_STATUS | REMOTE_IRR) as u32 == 0);

/// Redirection entry bits 7..0: vector.
pub const VECTOR: u64 = 0xFF;
/// Shift of bits 10..8: delivery mode.
pub const DELIVERY_MODE_SHIFT: u32 = 8;
/// Bit 11: destination mode, 1 = logical.
pub const DESTINATION_LOGICAL: u64 = 1 << 11;
/// Bit 12, read-only: delivery status, 1 = send pending.
pub const DELIVERY_STATUS: u64 = 1 << 12;
/// Bit 13: input pin polarity, 1 = active low.
pub const ACTIVE_LOW: u64 = 1 << 13;
/// Bit 14, read-only: Remote IRR, set when a level-triggered interrupt is
/// accepted and cleared by an EOI with the entry's vector.
pub const REMOTE_IRR: u64 = 1 << 14;
/// Bit 15: trigger mode, 1 = level.
pub const LEVEL_TRIGGERED: u64 = 1 << 15;
/// Bit 16: interrupt mask, 1 = masked.
pub const MASKED: u64 = 1 << 16;
/// Shift of bits 63..56: destination.
pub const DESTINATION_SHIFT: u32 = 56;
/// Shift of bits 55..48: extended destination (the remappable format's
/// format bit and index bits 6..0).
pub const EXTENDED_DESTINATION_SHIFT: u32 = 48;

/// Applies a guest write to a register: the `writable` bits take `value`,
/// the others keep `old`.
pub const fn apply_write(old: u32, value: u32, writable: u32) -> u32 {
    (old & !writable) | (value & writable)
}

/// An indirect register, as an IOREGSEL index names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// IOAPICID.
    Id,
    /// IOAPICVER.
    Version,
    /// IOAPICARB.
    Arbitration,
    /// One dword of a redirection entry.
    Redirection {
        /// The pin.
        pin: usize,
        /// Bits 63..32 (`true`) or 31..0.
        high: bool,
    },
}

impl Register {
    /// The register at `index` of an IOAPIC with `pins` pins; `None` for
    /// indexes that name none (0x03..=0x0F, and entries past the last pin).
    pub fn decode(index: u8, pins: usize) -> Option<Self> {
        match index {
            IOAPICID => Some(Self::Id),
            IOAPICVER => Some(Self::Version),
            IOAPICARB => Some(Self::Arbitration),
            i if i >= IOREDTBL => {
                let pin = usize::from((i - IOREDTBL) / 2);
                (pin < pins).then_some(Self::Redirection {
                    pin,
                    high: i & 1 == 1,
                })
            }
            _ => None,
        }
    }

    /// The bits of the register a guest may write.
    pub const fn writable(self) -> u32 {
        match self {
            Self::Id => ID_WRITABLE,
            Self::Version | Self::Arbitration => 0,
            Self::Redirection { high: false, .. } => RTE_LOW_WRITABLE,
            Self::Redirection { high: true, .. } => RTE_HIGH_WRITABLE,
        }
    }
}

/// One 64-bit redirection table entry (§3.2.4), with typed accessors for the
/// bits that drive behaviour. Bits 47..17 are reserved and always 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RedirectionEntry(pub u64);

impl Default for RedirectionEntry {
    fn default() -> Self {
        Self::RESET
    }
}

impl RedirectionEntry {
    /// The value after reset: masked; the datasheet leaves the other fields
    /// undefined, this model zeroes them.
    pub const RESET: Self = Self(MASKED);

    /// Every bit that may hold a 1: the writable ones and Remote IRR
    /// (delivery status is always 0 in this model, see [`Self::delivery_status`]).
    pub const DEFINED: u64 =
        ((RTE_HIGH_WRITABLE as u64) << 32) | RTE_LOW_WRITABLE as u64 | REMOTE_IRR;

    /// Bits 31..0 (`high == false`) or 63..32.
    pub const fn dword(self, high: bool) -> u32 {
        let shift = if high { 32 } else { 0 };
        ((self.0 >> shift) & 0xFFFF_FFFF) as u32
    }

    /// The entry after a guest writes `value` to one of its dwords. Switching
    /// the entry to edge-triggered clears Remote IRR, which is meaningless for
    /// edge-triggered entries; Linux relies on this to clear a stuck Remote
    /// IRR on IOAPICs without an EOI register (KVM and QEMU do the same).
    pub const fn written(self, high: bool, value: u32) -> Self {
        let shift = if high { 32 } else { 0 };
        let writable = if high {
            RTE_HIGH_WRITABLE
        } else {
            RTE_LOW_WRITABLE
        };
        let merged = apply_write(self.dword(high), value, writable) as u64;
        let mut entry = (self.0 & !(0xFFFF_FFFF << shift)) | (merged << shift);
        if entry & LEVEL_TRIGGERED == 0 {
            entry &= !REMOTE_IRR;
        }
        Self(entry)
    }

    /// The entry with only defined bits kept and read-only bits consistent:
    /// what a restored (possibly hostile) saved state is reduced to.
    pub const fn sanitized(self) -> Self {
        let entry = self.0 & Self::DEFINED;
        if entry & LEVEL_TRIGGERED == 0 {
            Self(entry & !REMOTE_IRR)
        } else {
            Self(entry)
        }
    }

    /// The entry with Remote IRR set or cleared.
    pub const fn with_remote_irr(self, set: bool) -> Self {
        if set {
            Self(self.0 | REMOTE_IRR)
        } else {
            Self(self.0 & !REMOTE_IRR)
        }
    }

    /// Interrupt vector.
    pub const fn vector(self) -> u8 {
        (self.0 & VECTOR) as u8
    }

    /// Delivery mode; `None` for the reserved encodings, which are never
    /// delivered.
    pub const fn delivery_mode(self) -> Option<DeliveryMode> {
        DeliveryMode::from_bits(((self.0 >> DELIVERY_MODE_SHIFT) & 0b111) as u8)
    }

    /// Destination mode is logical.
    pub const fn logical_destination(self) -> bool {
        self.0 & DESTINATION_LOGICAL != 0
    }

    /// Delivery status ("send pending"). Always `false` here: a message is
    /// handed to the sink the moment it is sent, and never held up.
    pub const fn delivery_status(self) -> bool {
        self.0 & DELIVERY_STATUS != 0
    }

    /// The pin is asserted when its input is low.
    pub const fn active_low(self) -> bool {
        self.0 & ACTIVE_LOW != 0
    }

    /// A level-triggered interrupt was accepted and awaits its EOI.
    pub const fn remote_irr(self) -> bool {
        self.0 & REMOTE_IRR != 0
    }

    /// Trigger mode bit is level.
    pub const fn level_triggered(self) -> bool {
        self.0 & LEVEL_TRIGGERED != 0
    }

    /// Interrupt mask.
    pub const fn masked(self) -> bool {
        self.0 & MASKED != 0
    }

    /// Destination (bits 63..56).
    pub const fn destination(self) -> u8 {
        (self.0 >> DESTINATION_SHIFT) as u8
    }

    /// Whether the pin behaves as level-triggered: the trigger mode says so
    /// and the delivery mode is one a processor EOIs. SMI, NMI, INIT and
    /// ExtINT are edge-triggered whatever the trigger bit says (§3.2.4), so a
    /// guest cannot leave them waiting for an EOI that never comes.
    pub const fn level_sensitive(self) -> bool {
        match self.delivery_mode() {
            Some(mode) => self.level_triggered() && mode.has_eoi(),
            None => false,
        }
    }

    /// The message this entry sends, built as KVM's split irqchip expects it
    /// ([`ApicMessage::to_msi`]); `None` for a reserved delivery mode. The
    /// mask does not change the message. Bits 63..48 land in address bits
    /// 19..4 and bit 11 in address bit 2, as an IOAPIC behind interrupt
    /// remapping sends them: a compatibility entry gives its destination
    /// (and extended destination, 0 from Linux), a remappable one (bit 48)
    /// its interrupt index, which the remapping unit reads.
    pub const fn message(self) -> Option<MsiMessage> {
        match self.delivery_mode() {
            Some(delivery_mode) => {
                let mut msg = ApicMessage {
                    destination: self.destination(),
                    logical_destination: self.logical_destination(),
                    vector: self.vector(),
                    delivery_mode,
                    level_triggered: self.level_sensitive(),
                }
                .to_msi();
                msg.address |= ((self.0 >> EXTENDED_DESTINATION_SHIFT) & 0xFF) << 4;
                Some(msg)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_register_decode_maps_every_index() {
        let decoded: Vec<_> = (0..=u8::MAX).map(|i| Register::decode(i, 24)).collect();

        assert_eq!(decoded[0x00], Some(Register::Id));
        assert_eq!(decoded[0x01], Some(Register::Version));
        assert_eq!(decoded[0x02], Some(Register::Arbitration));
        assert!(decoded[0x03..0x10].iter().all(Option::is_none));
        assert_eq!(
            decoded[0x3F],
            Some(Register::Redirection {
                pin: 23,
                high: true
            })
        );
        assert!(decoded[0x40..].iter().all(Option::is_none));
    }

    #[test]
    fn test_register_decode_max_pins_reaches_last_index() {
        let last = Register::decode(0xFF, MAX_PINS);

        assert_eq!(
            last,
            Some(Register::Redirection {
                pin: 119,
                high: true
            })
        );
    }

    #[test]
    fn test_redirection_entry_written_all_ones_sets_only_writable_bits() {
        let entry = RedirectionEntry(0);

        let entry = entry.written(false, u32::MAX).written(true, u32::MAX);

        assert_eq!(entry.0, 0xFFFF_0000_0001_AFFF);
    }

    #[test]
    fn test_redirection_entry_written_edge_clears_remote_irr() {
        let entry = RedirectionEntry(LEVEL_TRIGGERED | REMOTE_IRR | 0x40);

        let entry = entry.written(false, 0x40);

        assert!(!entry.remote_irr());
    }

    #[test]
    fn test_redirection_entry_written_high_keeps_remote_irr() {
        let entry = RedirectionEntry(LEVEL_TRIGGERED | REMOTE_IRR | 0x40);

        let entry = entry.written(true, 0x0300_0000);

        assert!(entry.remote_irr());
        assert_eq!(entry.destination(), 0x03);
    }

    #[test]
    fn test_redirection_entry_sanitized_drops_reserved_and_status_bits() {
        let entry = RedirectionEntry(!LEVEL_TRIGGERED);

        let entry = entry.sanitized();

        assert_eq!(entry.0, 0xFFFF_0000_0001_2FFF);
    }
}
