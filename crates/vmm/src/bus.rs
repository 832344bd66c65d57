//! An address-space bus: maps ranges of port I/O (or, later, MMIO) space to
//! the devices that own them, and forwards each access with the offset inside
//! the device's range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::BusDevice;

/// A device shared between the bus and whoever built it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// A range could not be added.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The new range overlaps one already on the bus.
    #[error("range {base:#x}+{len:#x} overlaps a range already on the bus")]
    Overlap {
        /// Start of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// Zero-length or wrapping range.
    #[error("range {base:#x}+{len:#x} is empty or wraps around")]
    Invalid {
        /// Start of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    /// Added to the access offset, so one device can own several windows
    /// (the i8042 answers at 0x60 and at 0x64).
    offset_base: u64,
    device: SharedDevice,
}

/// A set of non-overlapping ranges.
#[derive(Clone, Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.ranges.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `device` the range `base..base+len`, seen by it as offsets
    /// `offset_base..offset_base+len`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        offset_base: u64,
        device: SharedDevice,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::Invalid { base, len })?;
        let clash_below = self
            .ranges
            .range(..end)
            .next_back()
            .is_some_and(|(b, e)| b + e.len > base);
        if clash_below {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(
            base,
            Entry {
                len,
                offset_base,
                device,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        let (base, entry) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(size as u64)? <= entry.len)
            .then_some((entry, entry.offset_base + offset))
    }

    /// Forwards a read; returns false (and leaves `data` alone) when no device
    /// owns the whole access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((entry, offset)) = self.find(addr, data.len()) else {
            return false;
        };
        entry
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(offset, data);
        true
    }

    /// Forwards a write; returns false when no device owns the whole access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((entry, offset)) = self.find(addr, data.len()) else {
            return false;
        };
        entry
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(offset, data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn test_bus_routes_with_offset() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, 0, dev.clone()).unwrap();
        assert!(bus.write(0x3fb, &[7]));
        let mut d = [0u8; 1];
        assert!(bus.read(0x3fd, &mut d));
        assert_eq!(d, [5]);
        assert_eq!(dev.lock().unwrap().writes, vec![(3, vec![7])]);
    }

    #[test]
    fn test_bus_offset_base_maps_second_window() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x60, 1, 0, dev.clone()).unwrap();
        bus.insert(0x64, 1, 4, dev.clone()).unwrap();
        bus.write(0x64, &[0xfe]);
        assert_eq!(dev.lock().unwrap().writes, vec![(4, vec![0xfe])]);
    }

    #[test]
    fn test_bus_refuses_overlap_and_empty() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x100, 0x10, 0, dev.clone()).unwrap();
        assert!(bus.insert(0x10f, 1, 0, dev.clone()).is_err());
        assert!(bus.insert(0xf8, 0x9, 0, dev.clone()).is_err());
        assert!(bus.insert(0x200, 0, 0, dev.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, 0, dev.clone()).is_err());
        assert!(bus.insert(0xf0, 0x10, 0, dev).is_ok());
    }

    #[test]
    fn test_bus_access_straddling_end_is_unclaimed() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(0x70, 2, 0, dev.clone()).unwrap();
        let mut d = [0xaa; 4];
        assert!(!bus.read(0x70, &mut d));
        assert_eq!(d, [0xaa; 4]);
        assert!(!bus.write(0x71, &[1, 2]));
        assert!(!bus.read(0x6f, &mut d[..1]));
        assert!(dev.lock().unwrap().writes.is_empty());
    }
}
