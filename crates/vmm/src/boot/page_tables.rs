//! The identity map the 64-bit boot protocol requires: the low 4 GiB mapped
//! 1:1 with 2 MiB pages (Intel SDM Vol. 3A §4.5, 4-level paging), which covers
//! the kernel, the zero page, the command line and the initramfs.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::addresses::{PDE_START, PDPTE_START, PML4_START};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;
/// Page directories needed: one per GiB.
const PD_COUNT: u64 = 4;
const ENTRIES: u64 = 512;

/// Writes the page tables into guest memory; returns the value for CR3.
pub fn write_identity_map(mem: &GuestMemoryMmap) -> Result<u64, vm_memory::GuestMemoryError> {
    mem.write_obj(PDPTE_START | PRESENT | WRITABLE, GuestAddress(PML4_START))?;
    for pd in 0..PD_COUNT {
        let pd_addr = PDE_START + pd * 0x1000;
        mem.write_obj(
            pd_addr | PRESENT | WRITABLE,
            GuestAddress(PDPTE_START + pd * 8),
        )?;
        for i in 0..ENTRIES {
            let phys = (pd * ENTRIES + i) << 21;
            mem.write_obj(
                phys | PRESENT | WRITABLE | PAGE_SIZE_2M,
                GuestAddress(pd_addr + i * 8),
            )?;
        }
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables as the MMU would, for a 2 MiB mapping.
    fn translate(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> u64 {
        let pml4e: u64 = mem
            .read_obj(GuestAddress(cr3 + ((va >> 39) & 0x1ff) * 8))
            .unwrap();
        let pdpte: u64 = mem
            .read_obj(GuestAddress((pml4e & !0xfff) + ((va >> 30) & 0x1ff) * 8))
            .unwrap();
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8))
            .unwrap();
        assert_ne!(pde & PAGE_SIZE_2M, 0);
        (pde & !0x1f_ffff & !(1 << 63)) | (va & 0x1f_ffff)
    }

    #[test]
    fn test_identity_map_covers_low_4g() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cr3 = write_identity_map(&mem).unwrap();
        for va in [
            0u64,
            0x7000,
            0x100_0000,
            0x4000_1234,
            0xbfff_ffff,
            0xffff_f000,
        ] {
            assert_eq!(translate(&mem, cr3, va), va);
        }
    }
}
