//! Puts the kernel, initramfs, command line and zero page into guest RAM: a
//! bzImage through the 64-bit boot protocol, an ELF `vmlinux` through its
//! PVH entry ([`super::pvh`]).

use std::fs::File;

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::addresses::{CMDLINE_MAX_SIZE, CMDLINE_START, ZERO_PAGE_START};
use crate::layout::{MemoryLayout, HIGH_MEMORY_START};

/// "HdrS": the setup header's magic (boot protocol ≥ 2.00).
const HDRS_MAGIC: u32 = 0x5372_6448;
/// `xloadflags` bit: the kernel has the 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of `startup_64` from the start of the protected-mode kernel.
const STARTUP_64_OFFSET: u64 = 0x200;
/// "Undefined" boot loader ID (boot protocol: `type_of_loader`).
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// Boot protocol 2.12 introduced `xloadflags`.
const MIN_PROTOCOL: u16 = 0x020c;
const PAGE_SIZE: u64 = 4096;

/// What can go wrong while loading; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel file is not a bzImage.
    #[error("{0} is not a Linux kernel iovm can boot (neither a bzImage with a 'HdrS' boot header nor an ELF vmlinux); pass a bzImage such as Debian's /boot/vmlinuz-* or its vmlinux")]
    NotBzImage(String),
    /// An ELF kernel without the PVH entry note.
    #[error("{0} is an ELF kernel without a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY: Linux's CONFIG_PVH); pass its bzImage instead")]
    NoPvhEntry(String),
    /// The kernel predates the 64-bit entry point.
    #[error("{path} uses boot protocol {major}.{minor:02} without a 64-bit entry point; iovm needs protocol 2.12 or newer (Linux 3.8+)")]
    TooOld {
        /// The kernel file.
        path: String,
        /// Protocol major version.
        major: u16,
        /// Protocol minor version.
        minor: u16,
    },
    /// linux-loader could not place the image.
    #[error("could not load kernel {path}: {reason}")]
    Kernel {
        /// The kernel file.
        path: String,
        /// What linux-loader said.
        reason: String,
    },
    /// The command line does not fit.
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The kernel's limit.
        max: u64,
    },
    /// The command line contains a NUL byte.
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    /// RAM too small for kernel plus initramfs.
    #[error("{size} bytes of initramfs do not fit in guest RAM below {limit:#x} after the kernel; give the guest more --memory")]
    InitramfsTooBig {
        /// Initramfs size.
        size: u64,
        /// Highest address it could end at.
        limit: u64,
    },
    /// Reading the initramfs failed.
    #[error("could not read initramfs {path}")]
    Initramfs {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a boot structure into guest memory failed.
    #[error("could not write boot data into guest memory")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// The kernel image and what goes with it.
#[derive(Debug)]
pub struct BootSource<'a> {
    /// The bzImage, opened.
    pub kernel: &'a mut File,
    /// Its path, for messages.
    pub kernel_path: &'a str,
    /// The initramfs, opened, with its path.
    pub initramfs: Option<(&'a mut File, &'a str)>,
    /// The command line.
    pub cmdline: &'a str,
    /// Guest-physical address of the ACPI RSDP.
    pub rsdp: u64,
}

/// Checks the boot header of an opened kernel file without loading it.
pub fn check_bzimage(header: &setup_header, path: &str) -> Result<(), LoadError> {
    let magic = header.header;
    if magic != HDRS_MAGIC {
        return Err(LoadError::NotBzImage(path.to_string()));
    }
    let version = header.version;
    let xloadflags = header.xloadflags;
    if version < MIN_PROTOCOL || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LoadError::TooOld {
            path: path.to_string(),
            major: version >> 8,
            minor: version & 0xff,
        });
    }
    Ok(())
}

/// Reads the setup header at its fixed offset (0x1f1), if the file is long enough.
pub fn read_setup_header(kernel: &mut File) -> std::io::Result<setup_header> {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = [0u8; std::mem::size_of::<setup_header>()];
    kernel.seek(SeekFrom::Start(0x1f1))?;
    kernel.read_exact(&mut bytes)?;
    kernel.seek(SeekFrom::Start(0))?;
    Ok(vm_memory::ByteValued::from_slice(&bytes)
        .copied()
        .unwrap_or_default())
}

/// Where and how vCPU 0 starts the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `startup_64` of a bzImage, in long mode, `%rsi` at the zero page.
    Linux64(u64),
    /// The PVH entry of an ELF `vmlinux`, in 32-bit protected mode.
    Pvh(super::pvh::PvhEntry),
}

/// Loads everything, the kernel as its format asks (ELF: PVH; otherwise
/// the bzImage's 64-bit protocol); returns where vCPU 0 starts.
pub fn load(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    src: BootSource<'_>,
) -> Result<Entry, LoadError> {
    let elf = super::pvh::is_elf(src.kernel)
        .map_err(|_| LoadError::NotBzImage(src.kernel_path.into()))?;
    if elf {
        super::pvh::load(mem, layout, src).map(Entry::Pvh)
    } else {
        load_bzimage(mem, layout, src).map(Entry::Linux64)
    }
}

/// Loads a bzImage and its zero page; returns the 64-bit entry point.
fn load_bzimage(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    src: BootSource<'_>,
) -> Result<u64, LoadError> {
    let header =
        read_setup_header(src.kernel).map_err(|_| LoadError::NotBzImage(src.kernel_path.into()))?;
    check_bzimage(&header, src.kernel_path)?;

    let loaded = BzImage::load(mem, None, src.kernel, Some(GuestAddress(HIGH_MEMORY_START)))
        .map_err(|e| LoadError::Kernel {
            path: src.kernel_path.to_string(),
            reason: e.to_string(),
        })?;
    let mut hdr = loaded.setup_header.unwrap_or(header);

    let cmdline = src.cmdline.as_bytes();
    if cmdline.contains(&0) {
        return Err(LoadError::CmdlineNul);
    }
    let max = u64::from(hdr.cmdline_size).min(CMDLINE_MAX_SIZE - 1);
    if cmdline.len() as u64 > max {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    mem.write_slice(cmdline, GuestAddress(CMDLINE_START))?;
    mem.write_obj(0u8, GuestAddress(CMDLINE_START + cmdline.len() as u64))?;

    let kernel_reserved_end = loaded.kernel_load.0
        + u64::from(hdr.init_size).max(loaded.kernel_end - loaded.kernel_load.0);
    if let Some((file, path)) = src.initramfs {
        let (addr, size) = load_initramfs(mem, layout, &hdr, kernel_reserved_end, file, path)?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }

    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.cmd_line_ptr = CMDLINE_START as u32;
    hdr.cmdline_size = cmdline.len() as u32;

    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: src.rsdp,
        ..Default::default()
    };
    let e820 = layout.e820();
    for (slot, entry) in params.e820_table.iter_mut().zip(&e820) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind as u32,
        };
    }
    params.e820_entries = e820.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))?;

    Ok(loaded.kernel_load.0 + STARTUP_64_OFFSET)
}

/// Places the initramfs at the top of RAM below 4 GiB (and below the kernel's
/// `initrd_addr_max`), page aligned, as boot loaders do.
fn load_initramfs(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    hdr: &setup_header,
    kernel_end: u64,
    file: &mut File,
    path: &str,
) -> Result<(u64, u64), LoadError> {
    let limit = layout.low_end().min(u64::from(hdr.initrd_addr_max) + 1);
    place_initramfs(mem, limit, kernel_end, file, path)
}

/// Reads the initramfs `file` into guest RAM as high as possible below
/// `limit`, page aligned and above `kernel_end`; returns its address and size.
pub(super) fn place_initramfs(
    mem: &GuestMemoryMmap,
    limit: u64,
    kernel_end: u64,
    file: &mut File,
    path: &str,
) -> Result<(u64, u64), LoadError> {
    let io_err = |source| LoadError::Initramfs {
        path: path.to_string(),
        source,
    };
    let size = file.metadata().map_err(io_err)?.len();
    let addr = limit
        .checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|&a| a >= kernel_end)
        .ok_or(LoadError::InitramfsTooBig { size, limit })?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, size as usize)
        .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, version: u16, xload: u16) -> setup_header {
        setup_header {
            header: magic,
            version,
            xloadflags: xload,
            ..Default::default()
        }
    }

    #[test]
    fn test_check_bzimage_accepts_modern_kernel() {
        assert!(check_bzimage(&header(HDRS_MAGIC, 0x020f, 0x7f), "k").is_ok());
    }

    #[test]
    fn test_check_bzimage_rejects_missing_magic() {
        let err = check_bzimage(&header(0, 0x020f, 1), "/tmp/x").unwrap_err();
        assert!(
            err.to_string()
                .contains("/tmp/x is not a Linux kernel iovm can boot"),
            "{err}"
        );
    }

    #[test]
    fn test_check_bzimage_rejects_32bit_only_kernel() {
        let err = check_bzimage(&header(HDRS_MAGIC, 0x020a, 0), "k").unwrap_err();
        assert!(err.to_string().contains("protocol 2.10"), "{err}");
    }
}
