//! How a configuration access names its target: the legacy configuration
//! mechanism #1 (ports 0xCF8/0xCFC, PCI Local Bus 3.0 §3.2.2.3.2) and PCIe's
//! Enhanced Configuration Access Mechanism (ECAM, PCIe 6.0 §7.2.2), where
//! each function has 4 KiB of a memory window.

/// Port of the CONFIG_ADDRESS register.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// First port of the CONFIG_DATA window (0xCFC–0xCFF).
pub const CONFIG_DATA_PORT: u16 = 0xcfc;

const ENABLE: u32 = 1 << 31;

/// Bus, device and function of a configuration access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus number, 0–255.
    pub bus: u8,
    /// Device number, 0–31.
    pub device: u8,
    /// Function number, 0–7.
    pub function: u8,
}

impl std::fmt::Display for Bdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// A decoded configuration access: which function, which byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigTarget {
    /// The function.
    pub bdf: Bdf,
    /// Byte offset in its configuration space.
    pub offset: usize,
}

/// Decodes a CONFIG_DATA access at `data_port_offset` (0–3 within 0xCFC) under
/// the CONFIG_ADDRESS value `address`; `None` when the enable bit is clear.
/// Mechanism #1 reaches only the first 256 bytes of a function.
pub fn decode_cf8(address: u32, data_port_offset: u8) -> Option<ConfigTarget> {
    if address & ENABLE == 0 {
        return None;
    }
    Some(ConfigTarget {
        bdf: Bdf {
            bus: (address >> 16) as u8,
            device: ((address >> 11) & 0x1f) as u8,
            function: ((address >> 8) & 0x7) as u8,
        },
        offset: (address & 0xfc) as usize + usize::from(data_port_offset & 3),
    })
}

/// Decodes an offset into an ECAM window whose first bus is `start_bus`.
pub fn decode_ecam(window_offset: u64, start_bus: u8) -> Option<ConfigTarget> {
    let bus = u8::try_from((window_offset >> 20) + u64::from(start_bus)).ok()?;
    Some(ConfigTarget {
        bdf: Bdf {
            bus,
            device: ((window_offset >> 15) & 0x1f) as u8,
            function: ((window_offset >> 12) & 0x7) as u8,
        },
        offset: (window_offset & 0xfff) as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cf8_decode_fields_and_byte_lane() {
        let addr = ENABLE | (2 << 16) | (3 << 11) | (1 << 8) | 0x10;
        let t = decode_cf8(addr, 2).unwrap();
        assert_eq!(
            t.bdf,
            Bdf {
                bus: 2,
                device: 3,
                function: 1
            }
        );
        assert_eq!(t.offset, 0x12);
    }

    #[test]
    fn test_cf8_disabled_and_low_bits_ignored() {
        assert_eq!(decode_cf8(0x10, 0), None);
        assert_eq!(decode_cf8(ENABLE | 0x13, 0).unwrap().offset, 0x10);
        assert_eq!(decode_cf8(ENABLE, 7).unwrap().offset, 3);
    }

    #[test]
    fn test_ecam_decode() {
        let off = (1 << 20) | (31 << 15) | (7 << 12) | 0xffc;
        let t = decode_ecam(off, 0).unwrap();
        assert_eq!(
            t.bdf,
            Bdf {
                bus: 1,
                device: 31,
                function: 7
            }
        );
        assert_eq!(t.offset, 0xffc);
        assert_eq!(decode_ecam(255 << 20, 1), None, "past bus 255");
        assert_eq!(t.bdf.to_string(), "01:1f.7");
    }
}
