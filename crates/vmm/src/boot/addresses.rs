//! Where boot-time structures live in low guest memory (all below 1 MiB, in
//! the RAM the E820 map reports as usable, which the kernel reclaims later).

/// The boot GDT (four 8-byte descriptors).
pub const BOOT_GDT_START: u64 = 0x500;
/// An empty IDT: interrupts stay off until the kernel installs its own.
pub const BOOT_IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer (the kernel sets up its own almost at once).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Top-level page table (PML4).
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of the page directories mapping the low 4 GiB with 2 MiB pages.
pub const PDE_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Room reserved for the command line.
pub const CMDLINE_MAX_SIZE: u64 = 0x1_0000;
