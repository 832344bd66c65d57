//! Test helper: guest RAM with VT-d tables written into it as a guest
//! driver would (root entries, context entries, second-level tables).

use std::cell::Cell;
use std::sync::Arc;

use dma::{Dma, GuestDma};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::walk::Levels;

/// The root table's address.
pub(crate) const ROOT: u64 = 0x1_0000;
/// Guest RAM size: 4 MiB from 0.
pub(crate) const RAM_SIZE: u64 = 0x40_0000;
/// Page tables are allocated from here up to 2 MiB.
const TABLES: u64 = 0x10_0000;

/// Guest RAM and a bump allocator for page tables.
#[derive(Debug)]
pub(crate) struct Machine {
    mem: Arc<GuestMemoryMmap>,
    ram: Arc<dyn Dma>,
    next: Cell<u64>,
}

impl Machine {
    pub(crate) fn new() -> Self {
        let mem = Arc::new(
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM_SIZE as usize)])
                .expect("test RAM"),
        );
        Self {
            ram: Arc::new(GuestDma::new(mem.clone())),
            mem,
            next: Cell::new(TABLES),
        }
    }

    pub(crate) fn ram(&self) -> &Arc<dyn Dma> {
        &self.ram
    }

    pub(crate) fn alloc_table(&self) -> u64 {
        let table = self.next.get();
        assert!(table < 0x20_0000, "out of test page tables");
        self.next.set(table + 0x1000);
        table
    }

    pub(crate) fn write_u64(&self, addr: u64, value: u64) {
        self.mem
            .write_obj(value, GuestAddress(addr))
            .expect("test write");
    }

    pub(crate) fn read_u64(&self, addr: u64) -> u64 {
        self.mem.read_obj(GuestAddress(addr)).expect("test read")
    }

    pub(crate) fn write_bytes(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .expect("test write");
    }

    pub(crate) fn read_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.mem
            .read_slice(&mut out, GuestAddress(addr))
            .expect("test read");
        out
    }

    pub(crate) fn set_root_entry(&self, bus: u8, lo: u64, hi: u64) {
        let addr = ROOT + u64::from(bus) * 16;
        self.write_u64(addr, lo);
        self.write_u64(addr + 8, hi);
    }

    pub(crate) fn set_root(&self, bus: u8, lo: u64) {
        self.set_root_entry(bus, lo, 0);
    }

    pub(crate) fn set_context(&self, table: u64, devfn: u8, lo: u64, hi: u64) {
        let addr = table + u64::from(devfn) * 16;
        self.write_u64(addr, lo);
        self.write_u64(addr + 8, hi);
    }

    /// Address of the entry at `level` on the walk of `iova` (the tables
    /// above it must exist).
    pub(crate) fn entry_at(&self, top: u64, levels: Levels, iova: u64, level: u32) -> u64 {
        let mut table = top;
        for l in (level..=levels.count()).rev() {
            let entry = table + ((iova >> (12 + 9 * (l - 1))) & 0x1ff) * 8;
            if l == level {
                return entry;
            }
            table = self.read_u64(entry) & 0x000f_ffff_ffff_f000;
        }
        unreachable!("level {level} is not on a {levels:?} walk")
    }

    /// Maps `iova` to `gpa` with a leaf at `leaf_level` (2 and 3 are
    /// superpages) carrying `bits`; tables on the way are allocated and
    /// their entries get Read and Write.
    pub(crate) fn map(
        &self,
        top: u64,
        levels: Levels,
        iova: u64,
        gpa: u64,
        leaf_level: u32,
        bits: u64,
    ) {
        let mut table = top;
        for l in (leaf_level..=levels.count()).rev() {
            let entry = table + ((iova >> (12 + 9 * (l - 1))) & 0x1ff) * 8;
            if l == leaf_level {
                let ps = if l > 1 { 1 << 7 } else { 0 };
                self.write_u64(entry, gpa | ps | bits);
                return;
            }
            let current = self.read_u64(entry);
            table = if current & 3 == 0 {
                let next = self.alloc_table();
                self.write_u64(entry, next | 3);
                next
            } else {
                current & 0x000f_ffff_ffff_f000
            };
        }
    }
}
