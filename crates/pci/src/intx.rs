//! Legacy INTx routing: which interrupt pin of the root complex a function's
//! INTA–INTD reaches.
//!
//! Behind a PCI-to-PCI bridge a device's pin is rotated by its device number
//! on each bridge it crosses (PCI-to-PCI Bridge Architecture 1.2 §9.1, the
//! "swizzle"); on bus 0 the platform routes each slot's four pins to IOAPIC
//! inputs, here the PC convention GSI 16 + (slot + pin) mod 4, which the DSDT's
//! `_PRT` tells the guest.

/// First IOAPIC input used for PCI INTx.
pub const INTX_GSI_BASE: u32 = 16;
/// PCI interrupt pins per function: INTA (1) to INTD (4).
pub const PINS: u8 = 4;

/// A pin (1 = INTA … 4 = INTD) of a device on a secondary bus, as seen on
/// the primary side of the bridge in front of it.
pub fn swizzle(device: u8, pin: u8) -> u8 {
    (pin.wrapping_sub(1).wrapping_add(device) % PINS) + 1
}

/// The pin a device reaches on bus 0, given its pin and the device numbers
/// of the path from it up to bus 0 (its own first, then each bridge's).
pub fn pin_on_root_bus(pin: u8, path_devices: &[u8]) -> u8 {
    path_devices.iter().fold(pin, |p, &dev| swizzle(dev, p))
}

/// The GSI a bus-0 `slot`'s `pin` (1–4) is wired to.
pub fn gsi_for(slot: u8, pin: u8) -> u32 {
    INTX_GSI_BASE + (u32::from(slot) + u32::from(pin.wrapping_sub(1))) % u32::from(PINS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_swizzle_table_matches_bridge_spec() {
        // Bridge spec Table 9-1: device number mod 4 rotates INTA..INTD.
        let table = [[1, 2, 3, 4], [2, 3, 4, 1], [3, 4, 1, 2], [4, 1, 2, 3]];
        for (dev, row) in table.iter().enumerate() {
            for pin in 1..=4u8 {
                assert_eq!(
                    swizzle(dev as u8, pin),
                    row[usize::from(pin - 1)],
                    "dev {dev} pin {pin}"
                );
                assert_eq!(swizzle(dev as u8 + 4, pin), row[usize::from(pin - 1)]);
            }
        }
    }

    #[test]
    fn test_pin_through_two_bridges() {
        // INTB of device 1 behind a bridge at device 2 behind a bridge at device 3.
        assert_eq!(
            pin_on_root_bus(2, &[1, 2, 3]),
            swizzle(3, swizzle(2, swizzle(1, 2)))
        );
        assert_eq!(pin_on_root_bus(1, &[0]), 1);
    }

    #[test]
    fn test_gsi_rotates_by_slot() {
        assert_eq!(gsi_for(0, 1), 16);
        assert_eq!(gsi_for(1, 1), 17);
        assert_eq!(gsi_for(3, 2), 16);
        assert_eq!(gsi_for(31, 4), 16 + (31 + 3) % 4);
    }
}
