//! The root complex's configuration access paths: the legacy CONFIG_ADDRESS /
//! CONFIG_DATA ports and the ECAM window, both routed to the functions on the
//! buses. An access to a function that does not exist reads all-ones and
//! drops writes, as a master abort does on real hardware (PCI 3.0 §6.1).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::address::{decode_cf8, decode_ecam, Bdf, ConfigTarget};
use crate::config::{ConfigWriteEffects, CONFIG_SPACE_SIZE};
use crate::function::PciFunction;

/// A function shared between the root complex and its owner.
pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// Bytes the legacy mechanism reaches of each function.
const LEGACY_CONFIG_SIZE: usize = 256;

/// Why a function could not be attached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    /// The slot is taken.
    #[error("PCI address {0} is already taken")]
    Taken(Bdf),
    /// Device or function number out of range.
    #[error("PCI address {0} is out of range (device 0-31, function 0-7)")]
    OutOfRange(Bdf),
}

/// A configuration access result with its effects, for the VMM to apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutedEffects {
    /// The function written, if any.
    pub bdf: Option<Bdf>,
    /// What the write changed.
    pub effects: ConfigWriteEffects,
}

/// Segment 0's functions and the latch of the legacy mechanism.
#[derive(Default)]
pub struct RootComplex {
    functions: BTreeMap<Bdf, SharedFunction>,
    config_address: u32,
}

impl std::fmt::Debug for RootComplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootComplex")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RootComplex {
    /// An empty root complex.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `function` at `bdf`.
    pub fn attach(&mut self, bdf: Bdf, function: SharedFunction) -> Result<(), AttachError> {
        if bdf.device > 31 || bdf.function > 7 {
            return Err(AttachError::OutOfRange(bdf));
        }
        if self.functions.contains_key(&bdf) {
            return Err(AttachError::Taken(bdf));
        }
        self.functions.insert(bdf, function);
        Ok(())
    }

    /// The function at `bdf`, if any.
    pub fn function(&self, bdf: Bdf) -> Option<SharedFunction> {
        self.functions.get(&bdf).cloned()
    }

    fn config_read(&self, target: ConfigTarget, data: &mut [u8], limit: usize) {
        let in_range = target
            .offset
            .checked_add(data.len())
            .is_some_and(|end| end <= limit);
        match self.functions.get(&target.bdf) {
            Some(f) if in_range => f
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .config_read(target.offset, data),
            _ => data.fill(0xff),
        }
    }

    fn config_write(&self, target: ConfigTarget, data: &[u8], limit: usize) -> RoutedEffects {
        let in_range = target
            .offset
            .checked_add(data.len())
            .is_some_and(|end| end <= limit);
        match self.functions.get(&target.bdf) {
            Some(f) if in_range => RoutedEffects {
                bdf: Some(target.bdf),
                effects: f
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .config_write(target.offset, data),
            },
            _ => RoutedEffects::default(),
        }
    }

    /// A read in the 8-port window 0xCF8–0xCFF at `port_offset` (0–7).
    pub fn legacy_read(&self, port_offset: u64, data: &mut [u8]) {
        match port_offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.config_address.to_le_bytes()),
            4..=7 => match decode_cf8(self.config_address, (port_offset - 4) as u8) {
                Some(target) => self.config_read(target, data, LEGACY_CONFIG_SIZE),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    /// A write in the window 0xCF8–0xCFF. Only 32-bit writes reach
    /// CONFIG_ADDRESS (byte writes to 0xCF9 are the PC's reset control
    /// register, which is not modelled here).
    pub fn legacy_write(&mut self, port_offset: u64, data: &[u8]) -> RoutedEffects {
        match port_offset {
            0 => {
                if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                    self.config_address = u32::from_le_bytes(bytes);
                }
                RoutedEffects::default()
            }
            4..=7 => match decode_cf8(self.config_address, (port_offset - 4) as u8) {
                Some(target) => self.config_write(target, data, LEGACY_CONFIG_SIZE),
                None => RoutedEffects::default(),
            },
            _ => RoutedEffects::default(),
        }
    }

    /// A read at `offset` in the ECAM window (whose first bus is 0).
    pub fn ecam_read(&self, offset: u64, data: &mut [u8]) {
        match decode_ecam(offset, 0) {
            Some(target) => self.config_read(target, data, CONFIG_SPACE_SIZE),
            None => data.fill(0xff),
        }
    }

    /// A write at `offset` in the ECAM window.
    pub fn ecam_write(&self, offset: u64, data: &[u8]) -> RoutedEffects {
        match decode_ecam(offset, 0) {
            Some(target) => self.config_write(target, data, CONFIG_SPACE_SIZE),
            None => RoutedEffects::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_bridge::HostBridge;

    fn root() -> RootComplex {
        let mut r = RootComplex::new();
        r.attach(
            Bdf {
                bus: 0,
                device: 0,
                function: 0,
            },
            Arc::new(Mutex::new(HostBridge::new())),
        )
        .unwrap();
        r
    }

    fn cf8(bus: u32, dev: u32, func: u32, reg: u32) -> [u8; 4] {
        ((1 << 31) | (bus << 16) | (dev << 11) | (func << 8) | reg).to_le_bytes()
    }

    #[test]
    fn test_legacy_read_of_host_bridge_ids() {
        let mut r = root();
        r.legacy_write(0, &cf8(0, 0, 0, 0));
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
        let mut w = [0u8; 2];
        r.legacy_read(6, &mut w);
        assert_eq!(
            u16::from_le_bytes(w),
            0x0008,
            "byte lane 2 is the device ID"
        );
    }

    #[test]
    fn test_absent_function_reads_all_ones() {
        let mut r = root();
        r.legacy_write(0, &cf8(0, 5, 0, 0));
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
        let mut e = [0u8; 4];
        r.ecam_read((3 << 20) | (1 << 15), &mut e);
        assert_eq!(e, [0xff; 4]);
    }

    #[test]
    fn test_disabled_config_address_reads_all_ones() {
        let mut r = root();
        r.legacy_write(0, &0u32.to_le_bytes());
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn test_config_address_reads_back_and_ignores_narrow_writes() {
        let mut r = root();
        r.legacy_write(0, &cf8(1, 2, 3, 0x40));
        r.legacy_write(1, &[0x06]);
        r.legacy_write(0, &[0x00]);
        let mut d = [0u8; 4];
        r.legacy_read(0, &mut d);
        assert_eq!(d, cf8(1, 2, 3, 0x40));
    }

    #[test]
    fn test_ecam_reaches_extended_space_and_legacy_does_not() {
        let r = root();
        let mut d = [0u8; 4];
        r.ecam_read(0x100, &mut d);
        assert_eq!(d, [0; 4], "no extended capabilities on the host bridge");
        r.ecam_read(0xffe, &mut d);
        assert_eq!(d, [0xff; 4], "crosses the end of the function's space");
    }

    #[test]
    fn test_ecam_write_reports_the_function() {
        let r = root();
        let out = r.ecam_write(0x04, &[0x06, 0x00]);
        assert_eq!(
            out.bdf,
            Some(Bdf {
                bus: 0,
                device: 0,
                function: 0
            })
        );
        assert_eq!(out.effects.bus_master, Some(true));
    }

    #[test]
    fn test_attach_refuses_taken_and_out_of_range() {
        let mut r = root();
        let hb = || -> SharedFunction { Arc::new(Mutex::new(HostBridge::new())) };
        assert_eq!(
            r.attach(
                Bdf {
                    bus: 0,
                    device: 0,
                    function: 0
                },
                hb()
            ),
            Err(AttachError::Taken(Bdf {
                bus: 0,
                device: 0,
                function: 0
            }))
        );
        assert!(matches!(
            r.attach(
                Bdf {
                    bus: 0,
                    device: 32,
                    function: 0
                },
                hb()
            ),
            Err(AttachError::OutOfRange(_))
        ));
    }

    #[test]
    fn test_hostile_config_access_sweep_keeps_host_bridge_identity() {
        let mut r = root();
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = u64::from(x % 8);
            let len = [1usize, 2, 4][(x >> 8) as usize % 3];
            let bytes = x.to_le_bytes();
            r.legacy_write(port, &bytes[..len]);
            r.ecam_write(u64::from(x) & 0x0fff_ffff, &bytes[..len]);
            let mut d = [0u8; 4];
            r.legacy_read(port, &mut d[..len]);
        }
        r.legacy_write(0, &cf8(0, 0, 0, 0));
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
    }
}
