//! Host memory inside BARs: a function may hand over memory that backs
//! part of one of its memory BARs (an assigned device's registers, mapped
//! from its VFIO region). While the BAR is mapped, each such range is
//! installed through [`MemorySlots`] (KVM: a user memory slot) at the BAR's
//! address plus the range's offset, so guest accesses there never exit to
//! iovm; it moves with the BAR and leaves before the BAR stops decoding or
//! the function is dropped. The rest of the BAR (an MSI-X table) keeps
//! exiting to the function.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Mapping, MappingKey};

/// Memory backing `len` bytes at `offset` inside BAR `bar`, at `host_addr`
/// in iovm's address space. Whoever hands it over keeps it mapped until
/// its function is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMemory {
    /// The BAR index.
    pub bar: usize,
    /// Offset inside the BAR (page-aligned).
    pub offset: u64,
    /// Bytes (whole pages).
    pub len: u64,
    /// Where the memory is in iovm's address space.
    pub host_addr: u64,
}

/// Where the VMM installs BAR memory into the guest's physical address
/// space (KVM: `KVM_SET_USER_MEMORY_REGION`).
pub trait MemorySlots: Send + Sync {
    /// Maps `len` bytes of host memory at `host_addr` at guest-physical
    /// `gpa`; returns the slot to undo it with.
    fn map(&self, gpa: u64, len: u64, host_addr: u64) -> std::io::Result<u32>;

    /// Removes slot `slot`.
    fn unmap(&self, slot: u32);
}

/// The BAR memory functions handed over, by function key, and the slots
/// installed for it.
#[derive(Default)]
pub(super) struct BarMemoryTable {
    pub(super) port: Option<Arc<dyn MemorySlots>>,
    pub(super) sets: BTreeMap<usize, Vec<BarMemory>>,
    installed: BTreeMap<(MappingKey, u64), u32>,
}

impl BarMemoryTable {
    /// Installs (`map`) or removes the memory of BAR `key` mapped at `m`.
    pub(super) fn apply(&mut self, key: MappingKey, m: Mapping, map: bool) {
        if m.io {
            return;
        }
        let Some(port) = self.port.clone() else {
            return;
        };
        let Some(set) = self.sets.get(&key.0) else {
            return;
        };
        for mem in set.iter().filter(|r| r.bar == key.1) {
            let inside = mem
                .offset
                .checked_add(mem.len)
                .is_some_and(|end| end <= m.size);
            if !inside {
                continue;
            }
            if map {
                let gpa = m.base + mem.offset;
                match port.map(gpa, mem.len, mem.host_addr) {
                    Ok(slot) => {
                        self.installed.insert((key, mem.offset), slot);
                    }
                    Err(e) => ratelimit::warn!(
                        "BAR {} memory at {gpa:#x} not mapped ({e}): its accesses exit to iovm",
                        key.1
                    ),
                }
            } else if let Some(slot) = self.installed.remove(&(key, mem.offset)) {
                port.unmap(slot);
            }
        }
    }

    /// Forgets a function's memory (its slots must be gone already).
    pub(super) fn remove(&mut self, function: usize) {
        self.sets.remove(&function);
    }

    /// Forgets everything (teardown; the slots are gone).
    pub(super) fn clear(&mut self) {
        self.sets.clear();
        self.installed.clear();
        self.port = None;
    }
}
