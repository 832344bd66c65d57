//! An address-space bus: maps ranges of port I/O (or, later, MMIO) space to
//! the devices that own them, and forwards each access with the offset inside
//! the device's range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

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

/// A set of non-overlapping ranges that may change while the machine runs
/// (the guest moves BARs).
///
/// The map is behind a read-write lock, held only to look a range up or to
/// change the map, never while a device runs: a device may change the map
/// from inside an access (a configuration write that moves a BAR) without
/// deadlocking, and a change is atomic, so no access ever sees a half-moved
/// mapping.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Entry>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.map().iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

fn overlaps(map: &BTreeMap<u64, Entry>, base: u64, end: u64) -> bool {
    map.range(..end)
        .next_back()
        .is_some_and(|(b, e)| b + e.len > base)
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Entry>> {
        self.ranges.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Entry>> {
        self.ranges.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `device` the range `base..base+len`, seen by it as offsets
    /// `offset_base..offset_base+len`.
    pub fn insert(
        &self,
        base: u64,
        len: u64,
        offset_base: u64,
        device: SharedDevice,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::Invalid { base, len })?;
        let mut map = self.map_mut();
        if overlaps(&map, base, end) {
            return Err(BusError::Overlap { base, len });
        }
        map.insert(
            base,
            Entry {
                len,
                offset_base,
                device,
            },
        );
        Ok(())
    }

    /// Removes the range that starts at `base`; returns whether there was one.
    pub fn remove(&self, base: u64) -> bool {
        self.map_mut().remove(&base).is_some()
    }

    /// Moves the range at `old_base` to `new_base` in one step. On overlap
    /// with another range the bus is left as it was.
    pub fn relocate(&self, old_base: u64, new_base: u64) -> Result<(), BusError> {
        let mut map = self.map_mut();
        let Some(entry) = map.remove(&old_base) else {
            return Err(BusError::Invalid {
                base: old_base,
                len: 0,
            });
        };
        let len = entry.len;
        let fits = new_base
            .checked_add(len)
            .filter(|&end| !overlaps(&map, new_base, end));
        match fits {
            Some(_) => {
                map.insert(new_base, entry);
                Ok(())
            }
            None => {
                map.insert(old_base, entry);
                Err(BusError::Overlap {
                    base: new_base,
                    len,
                })
            }
        }
    }

    fn find(&self, addr: u64, size: usize) -> Option<(SharedDevice, u64)> {
        let map = self.map();
        let (base, entry) = map.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(size as u64)? <= entry.len)
            .then(|| (entry.device.clone(), entry.offset_base + offset))
    }

    /// Forwards a read; returns false (and leaves `data` alone) when no device
    /// owns the whole access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((device, offset)) = self.find(addr, data.len()) else {
            return false;
        };
        device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(offset, data);
        true
    }

    /// Forwards a write; returns false when no device owns the whole access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((device, offset)) = self.find(addr, data.len()) else {
            return false;
        };
        device
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
        let bus = Bus::new();
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
        let bus = Bus::new();
        bus.insert(0x60, 1, 0, dev.clone()).unwrap();
        bus.insert(0x64, 1, 4, dev.clone()).unwrap();
        bus.write(0x64, &[0xfe]);
        assert_eq!(dev.lock().unwrap().writes, vec![(4, vec![0xfe])]);
    }

    #[test]
    fn test_bus_refuses_overlap_and_empty() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let bus = Bus::new();
        bus.insert(0x100, 0x10, 0, dev.clone()).unwrap();
        assert!(bus.insert(0x10f, 1, 0, dev.clone()).is_err());
        assert!(bus.insert(0xf8, 0x9, 0, dev.clone()).is_err());
        assert!(bus.insert(0x200, 0, 0, dev.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, 0, dev.clone()).is_err());
        assert!(bus.insert(0xf0, 0x10, 0, dev).is_ok());
    }

    #[test]
    fn test_bus_relocate_moves_atomically_and_refuses_overlap() {
        let a = Arc::new(Mutex::new(Recorder::default()));
        let b = Arc::new(Mutex::new(Recorder::default()));
        let bus = Bus::new();
        bus.insert(0x1000, 0x100, 0, a.clone()).unwrap();
        bus.insert(0x2000, 0x100, 0, b.clone()).unwrap();
        bus.relocate(0x1000, 0x3000).unwrap();
        assert!(!bus.write(0x1000, &[1]), "old range no longer answers");
        assert!(bus.write(0x3010, &[2]));
        assert_eq!(a.lock().unwrap().writes, vec![(0x10, vec![2])]);
        assert!(bus.relocate(0x3000, 0x2080).is_err(), "would overlap b");
        assert!(bus.write(0x3000, &[3]), "a stays where it was");
        assert!(bus.write(0x2080, &[4]));
        assert_eq!(
            b.lock().unwrap().writes,
            vec![(0x80, vec![4])],
            "b keeps its range"
        );
        assert!(bus.relocate(0x9999, 0x5000).is_err());
    }

    #[test]
    fn test_bus_device_may_change_the_map_during_its_own_access() {
        struct Mover(Arc<Bus>);
        impl BusDevice for Mover {
            fn read(&mut self, _: u64, _: &mut [u8]) {}
            fn write(&mut self, _: u64, _: &[u8]) {
                self.0.remove(0x10);
            }
        }
        let bus = Arc::new(Bus::new());
        let target = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x10, 1, 0, target).unwrap();
        bus.insert(0x20, 1, 0, Arc::new(Mutex::new(Mover(bus.clone()))))
            .unwrap();
        assert!(bus.write(0x20, &[0]), "no deadlock");
        assert!(!bus.write(0x10, &[0]));
        assert!(bus.remove(0x20));
    }

    #[test]
    fn test_bus_access_straddling_end_is_unclaimed() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let bus = Bus::new();
        bus.insert(0x70, 2, 0, dev.clone()).unwrap();
        let mut d = [0xaa; 4];
        assert!(!bus.read(0x70, &mut d));
        assert_eq!(d, [0xaa; 4]);
        assert!(!bus.write(0x71, &[1, 2]));
        assert!(!bus.read(0x6f, &mut d[..1]));
        assert!(dev.lock().unwrap().writes.is_empty());
    }
}
