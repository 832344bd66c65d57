//! The guest-physical memory map of an iovm x86-64 machine, and the E820 table
//! that reports it to the guest.
//!
//! ```text
//!  0x0000_0000 ┬ low RAM: real-mode area; boot GDT, zero page, page tables,
//!              │ command line (see `boot::addresses`)
//!  0x0009_fc00 ┼ reserved: EBDA, VGA hole, BIOS area; ACPI tables at 0xE0000
//!  0x0010_0000 ┼ RAM: kernel, initramfs (at the top of this range)
//!  min(RAM,3G) ┤
//!  0xc000_0000 ┼ 32-bit MMIO hole (1 GiB): PCI BARs, IOAPIC, local APIC
//!  0x1_0000_0000 ┼ RAM above 4 GiB, when the machine has more than 3 GiB
//!              ┴
//! ```
//!
//! The E820 table says exactly this: RAM where RAM is, reserved where the
//! guest must not allocate, nothing for the MMIO hole (the ACPI host bridge
//! describes that). Pure data, unit-tested.

use vm_memory::GuestAddress;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// End of the conventional RAM below the Extended BIOS Data Area.
pub const EBDA_START: u64 = 0x9_fc00;
/// Start of extended memory, where the protected-mode kernel is loaded.
pub const HIGH_MEMORY_START: u64 = MIB;
/// Where the ACPI tables live (inside the BIOS read-only area the OS scans).
pub const ACPI_TABLES_START: u64 = 0xe_0000;
/// Start of the 32-bit MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 3 * GIB;
/// Size of the 32-bit MMIO hole.
pub const MMIO_HOLE_SIZE: u64 = GIB;
/// First address above 4 GiB.
pub const RAM_ABOVE_4G_START: u64 = 4 * GIB;
/// Start of the 32-bit window for PCI memory BARs (the ACPI host bridge's `_CRS`).
pub const PCI_MMIO32_START: u64 = MMIO_HOLE_START;
/// Size of the 32-bit PCI memory window.
pub const PCI_MMIO32_SIZE: u64 = 512 * MIB;
/// PCIe ECAM window: 1 MiB per bus, buses 0–255 (PCIe 6.0 §7.2.2).
pub const ECAM_START: u64 = 0xe000_0000;
/// Size of the ECAM window.
pub const ECAM_SIZE: u64 = 256 * MIB;
/// Size of the 64-bit window for PCI memory BARs, above RAM.
pub const PCI_MMIO64_SIZE: u64 = 16 * GIB;
/// The IOAPIC's register window.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APIC's register window.
pub const LAPIC_START: u64 = 0xfee0_0000;
/// Size of the local APIC's register window (one page).
pub const LAPIC_SIZE: u64 = 0x1000;
/// The emulated VT-d unit's register page (VT-d 4.1 §11.4, one 4 KiB
/// page; the DMAR's DRHD names it, §8.3), where QEMU puts it: between the
/// IOAPIC and the local APIC, clear of both. On the MMIO bus only with
/// `--device intel-iommu`.
pub const VTD_START: u64 = 0xfed9_0000;
/// Size of the VT-d register page.
pub const VTD_SIZE: u64 = 0x1000;

// The windows inside the 32-bit hole do not overlap.
const _: () = assert!(PCI_MMIO32_START + PCI_MMIO32_SIZE <= ECAM_START);
const _: () = assert!(ECAM_START + ECAM_SIZE <= IOAPIC_START);
const _: () = assert!(IOAPIC_START + crate::irqchip::IOAPIC_WINDOW <= VTD_START);
const _: () = assert!(VTD_START + VTD_SIZE <= LAPIC_START);

/// Smallest machine iovm builds: room for the kernel to decompress and run.
pub const MIN_MEMORY: u64 = 64 * MIB;

/// The type of an E820 entry (ACPI 6.5 §15.1, "Address Range Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Reserved: the OS must not use it.
    Reserved = 2,
}

/// One entry of the E820 memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Kind,
}

/// Where guest RAM goes for a given amount of memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// RAM below the MMIO hole, from address 0.
    pub low_size: u64,
    /// RAM from 4 GiB up (zero when everything fits below the hole).
    pub high_size: u64,
}

impl MemoryLayout {
    /// Splits `total` bytes of RAM around the 32-bit MMIO hole.
    pub fn new(total: u64) -> Self {
        let low_size = total.min(MMIO_HOLE_START);
        Self {
            low_size,
            high_size: total - low_size,
        }
    }

    /// The RAM regions to allocate and map: `(start, size)`.
    pub fn ram_regions(&self) -> Vec<(GuestAddress, usize)> {
        let mut regions = vec![(GuestAddress(0), self.low_size as usize)];
        if self.high_size > 0 {
            regions.push((GuestAddress(RAM_ABOVE_4G_START), self.high_size as usize));
        }
        regions
    }

    /// End (exclusive) of RAM below 4 GiB.
    pub fn low_end(&self) -> u64 {
        self.low_size
    }

    /// End (exclusive) of all guest RAM.
    pub fn ram_end(&self) -> u64 {
        if self.high_size > 0 {
            RAM_ABOVE_4G_START + self.high_size
        } else {
            self.low_size
        }
    }

    /// The 64-bit PCI memory window: the first GiB boundary at or above both
    /// 4 GiB and the end of RAM, for [`PCI_MMIO64_SIZE`] bytes.
    pub fn pci_mmio64_start(&self) -> u64 {
        self.ram_end().max(RAM_ABOVE_4G_START).div_ceil(GIB) * GIB
    }

    /// The E820 map handed to the kernel in the zero page.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut map = vec![
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820Kind::Ram,
            },
            E820Entry {
                addr: EBDA_START,
                size: HIGH_MEMORY_START - EBDA_START,
                kind: E820Kind::Reserved,
            },
            E820Entry {
                addr: HIGH_MEMORY_START,
                size: self.low_size - HIGH_MEMORY_START,
                kind: E820Kind::Ram,
            },
        ];
        // The ECAM window must be reserved, or Linux will not use it.
        map.push(E820Entry {
            addr: ECAM_START,
            size: ECAM_SIZE,
            kind: E820Kind::Reserved,
        });
        if self.high_size > 0 {
            map.push(E820Entry {
                addr: RAM_ABOVE_4G_START,
                size: self.high_size,
                kind: E820Kind::Ram,
            });
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_layout_512m_is_all_below_hole() {
        let l = MemoryLayout::new(512 * MIB);
        assert_eq!(
            l.ram_regions(),
            vec![(GuestAddress(0), (512 * MIB) as usize)]
        );
        assert_eq!(l.ram_end(), 512 * MIB);
    }

    #[test]
    fn test_layout_5g_splits_around_hole() {
        let l = MemoryLayout::new(5 * GIB);
        assert_eq!(
            l.ram_regions(),
            vec![
                (GuestAddress(0), (3 * GIB) as usize),
                (GuestAddress(4 * GIB), (2 * GIB) as usize)
            ]
        );
        assert_eq!(l.ram_end(), 6 * GIB);
    }

    #[test]
    fn test_layout_exactly_3g_has_no_high_ram() {
        let l = MemoryLayout::new(3 * GIB);
        assert_eq!(l.high_size, 0);
        assert_eq!(l.ram_regions().len(), 1);
    }

    #[test]
    fn test_e820_ram_adds_up_and_never_covers_hole() {
        let total = 5 * GIB;
        let map = MemoryLayout::new(total).e820();
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820Kind::Ram)
            .map(|e| e.size)
            .sum();
        let reserved = HIGH_MEMORY_START - EBDA_START;
        assert_eq!(ram, total - reserved);
        for e in map.iter().filter(|e| e.kind == E820Kind::Ram) {
            let end = e.addr + e.size;
            assert!(
                end <= MMIO_HOLE_START || e.addr >= RAM_ABOVE_4G_START,
                "{e:?}"
            );
        }
    }

    #[test]
    fn test_e820_entries_are_sorted_and_disjoint() {
        let map = MemoryLayout::new(5 * GIB).e820();
        for pair in map.windows(2) {
            assert!(pair[0].addr + pair[0].size <= pair[1].addr, "{pair:?}");
        }
    }

    #[test]
    fn test_e820_reserves_ecam_inside_hole_and_clear_of_pci_window() {
        let map = MemoryLayout::new(512 * MIB).e820();
        assert!(map
            .iter()
            .any(|e| e.addr == ECAM_START && e.size == ECAM_SIZE && e.kind == E820Kind::Reserved));
    }

    #[test]
    fn test_pci_mmio64_window_is_above_ram_and_4g() {
        assert_eq!(MemoryLayout::new(512 * MIB).pci_mmio64_start(), 4 * GIB);
        assert_eq!(MemoryLayout::new(5 * GIB).pci_mmio64_start(), 6 * GIB);
        assert_eq!(MemoryLayout::new(3 * GIB + 1).pci_mmio64_start(), 5 * GIB);
    }

    #[test]
    fn test_vtd_page_overlaps_no_other_window() {
        let layout = MemoryLayout::new(5 * GIB);
        let windows = [
            (0, layout.low_end()),
            (RAM_ABOVE_4G_START, layout.ram_end()),
            (PCI_MMIO32_START, PCI_MMIO32_START + PCI_MMIO32_SIZE),
            (ECAM_START, ECAM_START + ECAM_SIZE),
            (IOAPIC_START, IOAPIC_START + crate::irqchip::IOAPIC_WINDOW),
            (LAPIC_START, LAPIC_START + LAPIC_SIZE),
            (
                layout.pci_mmio64_start(),
                layout.pci_mmio64_start() + PCI_MMIO64_SIZE,
            ),
        ];
        let vtd = (VTD_START, VTD_START + VTD_SIZE);
        for w in windows {
            assert!(vtd.1 <= w.0 || w.1 <= vtd.0, "{vtd:x?} overlaps {w:x?}");
        }
        assert!(MMIO_HOLE_START <= vtd.0 && vtd.1 <= RAM_ABOVE_4G_START);
        assert_eq!(VTD_START % VTD_SIZE, 0, "page aligned");
    }

    #[test]
    fn test_e820_acpi_tables_are_in_reserved_range() {
        let map = MemoryLayout::new(512 * MIB).e820();
        let e = map
            .iter()
            .find(|e| e.addr <= ACPI_TABLES_START && ACPI_TABLES_START < e.addr + e.size)
            .unwrap();
        assert_eq!(e.kind, E820Kind::Reserved);
    }
}
