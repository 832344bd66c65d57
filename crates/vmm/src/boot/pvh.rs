//! Starting an uncompressed ELF `vmlinux` through its PVH entry point (the
//! Xen PVH boot ABI that Linux implements without Xen, `CONFIG_PVH`: the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note names a 32-bit entry, `arch/x86/platform/pvh/head.S`,
//! and the `hvm_start_info` structure of `xen/include/public/arch-x86/hvm/start_info.h`
//! describes memory, command line, initramfs and RSDP).
//!
//! Why: the bzImage spends its first seconds decompressing itself; an ELF
//! `vmlinux` is already decompressed, so the guest starts its kernel at
//! once. `cargo xtask guest` extracts one from Debian's `vmlinuz`.
//!
//! vCPU 0 enters in 32-bit protected mode with paging off, flat segments,
//! and `%ebx` holding the address of the start-of-day structure.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::addresses::{CMDLINE_MAX_SIZE, CMDLINE_START, ZERO_PAGE_START};
use super::loader::{place_initramfs, BootSource, LoadError};
use crate::layout::{MemoryLayout, HIGH_MEMORY_START};

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const START_MAGIC: u32 = 0x336e_c578;
/// Version 1: the memory map fields are present.
const START_VERSION: u32 = 1;
/// Where the start-of-day structure goes (the zero page's place: the PVH
/// path has no zero page).
pub const START_INFO: u64 = ZERO_PAGE_START;
/// Size of `hvm_start_info` (version 1).
const START_INFO_SIZE: u64 = 56;
/// The module list (one entry: the initramfs), after the structure.
const MODLIST: u64 = START_INFO + 0x40;
/// Size of one `hvm_modlist_entry`.
const MODLIST_ENTRY_SIZE: u64 = 32;
/// The memory map, after the module list.
const MEMMAP: u64 = MODLIST + 0x40;
/// Size of one `hvm_memmap_table_entry`.
const MEMMAP_ENTRY_SIZE: u64 = 24;
/// Most memory map entries that fit before the stack page.
const MEMMAP_MAX: usize = 64;

// The structures follow one another and end below the boot stack's page.
const _: () = assert!(START_INFO + START_INFO_SIZE <= MODLIST);
const _: () = assert!(MODLIST + MODLIST_ENTRY_SIZE <= MEMMAP);
const _: () = assert!(MEMMAP + MEMMAP_MAX as u64 * MEMMAP_ENTRY_SIZE <= 0x8000);

/// Whether the kernel file is an ELF image (so it boots through PVH).
pub fn is_elf(kernel: &mut File) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    kernel.seek(SeekFrom::Start(0))?;
    let n = kernel.read(&mut magic)?;
    kernel.seek(SeekFrom::Start(0))?;
    Ok(n == 4 && magic == *b"\x7fELF")
}

/// Where vCPU 0 starts: the PVH entry and the start-of-day structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvhEntry {
    /// The 32-bit entry point the ELF note names.
    pub entry: u64,
    /// The `hvm_start_info` address, for `%ebx`.
    pub start_info: u64,
}

/// The start-of-day structure's bytes.
fn start_info(modules: u32, rsdp: u64, memmap_entries: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(START_INFO_SIZE as usize);
    b.extend_from_slice(&START_MAGIC.to_le_bytes());
    b.extend_from_slice(&START_VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    b.extend_from_slice(&modules.to_le_bytes());
    b.extend_from_slice(&(if modules > 0 { MODLIST } else { 0 }).to_le_bytes());
    b.extend_from_slice(&CMDLINE_START.to_le_bytes());
    b.extend_from_slice(&rsdp.to_le_bytes());
    b.extend_from_slice(&MEMMAP.to_le_bytes());
    b.extend_from_slice(&memmap_entries.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // reserved
    b
}

/// Loads the ELF kernel, the initramfs and the command line, and writes the
/// start-of-day structure; returns where vCPU 0 starts.
pub fn load(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    src: BootSource<'_>,
) -> Result<PvhEntry, LoadError> {
    let loaded =
        Elf::load(mem, None, src.kernel, Some(GuestAddress(HIGH_MEMORY_START))).map_err(|e| {
            LoadError::Kernel {
                path: src.kernel_path.to_string(),
                reason: e.to_string(),
            }
        })?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(LoadError::NoPvhEntry(src.kernel_path.to_string()));
    };

    let cmdline = src.cmdline.as_bytes();
    if cmdline.contains(&0) {
        return Err(LoadError::CmdlineNul);
    }
    let max = CMDLINE_MAX_SIZE - 1;
    if cmdline.len() as u64 > max {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    mem.write_slice(cmdline, GuestAddress(CMDLINE_START))?;
    mem.write_obj(0u8, GuestAddress(CMDLINE_START + cmdline.len() as u64))?;

    let mut modules = 0;
    if let Some((file, path)) = src.initramfs {
        let limit = layout.low_end();
        let (addr, size) = place_initramfs(mem, limit, loaded.kernel_end, file, path)?;
        let mut m = Vec::with_capacity(MODLIST_ENTRY_SIZE as usize);
        for v in [addr, size, 0, 0] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        mem.write_slice(&m, GuestAddress(MODLIST))?;
        modules = 1;
    }

    let e820 = layout.e820();
    for (i, e) in e820.iter().take(MEMMAP_MAX).enumerate() {
        let mut m = Vec::with_capacity(MEMMAP_ENTRY_SIZE as usize);
        m.extend_from_slice(&e.addr.to_le_bytes());
        m.extend_from_slice(&e.size.to_le_bytes());
        m.extend_from_slice(&(e.kind as u32).to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        mem.write_slice(&m, GuestAddress(MEMMAP + i as u64 * MEMMAP_ENTRY_SIZE))?;
    }
    let entries = e820.len().min(MEMMAP_MAX) as u32;
    mem.write_slice(
        &start_info(modules, src.rsdp, entries),
        GuestAddress(START_INFO),
    )?;
    Ok(PvhEntry {
        entry: entry.0,
        start_info: START_INFO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_start_info_layout_is_the_abis() {
        let b = start_info(1, 0xe_0000, 5);
        assert_eq!(b.len() as u64, START_INFO_SIZE);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(u32_at(0), 0x336e_c578, "magic");
        assert_eq!(u32_at(4), 1, "version with a memory map");
        assert_eq!(u32_at(12), 1, "nr_modules");
        assert_eq!(u64_at(16), MODLIST);
        assert_eq!(u64_at(24), CMDLINE_START);
        assert_eq!(u64_at(32), 0xe_0000, "rsdp_paddr");
        assert_eq!(u64_at(40), MEMMAP);
        assert_eq!(u32_at(48), 5, "memmap_entries");
        assert_eq!(u64_at(16), MODLIST);
        assert_eq!(
            u64::from_le_bytes(start_info(0, 0, 1)[16..24].try_into().unwrap()),
            0,
            "no module list without an initramfs"
        );
    }

    #[test]
    fn test_only_an_elf_file_is_taken_for_pvh() {
        let dir = std::env::temp_dir().join(format!("iovm-pvh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let elf = dir.join("vmlinux");
        let bz = dir.join("vmlinuz");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01rest").unwrap();
        std::fs::write(&bz, b"MZ\0\0 a bzImage").unwrap();
        assert!(is_elf(&mut File::open(&elf).unwrap()).unwrap());
        assert!(!is_elf(&mut File::open(&bz).unwrap()).unwrap());
        std::fs::write(&bz, b"\x7f").unwrap();
        assert!(!is_elf(&mut File::open(&bz).unwrap()).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
