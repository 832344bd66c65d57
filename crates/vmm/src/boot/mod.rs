//! Loading a Linux kernel and starting it in 64-bit mode, following the
//! x86 boot protocol (Linux `Documentation/arch/x86/boot.rst`, "64-bit Boot
//! Protocol"): the bzImage's protected-mode part at 1 MiB, the zero page
//! (`boot_params`) with an E820 map, the command line and the initramfs in
//! guest RAM, and vCPU 0 entering `startup_64` with paging on, an identity map
//! and `%rsi` pointing at the zero page.
//!
//! Why the 64-bit protocol with the bzImage and not PVH: PVH needs the ELF
//! `vmlinux` with a `XEN_ELFNOTE_PHYS32_ENTRY` note, and distributions such as
//! Debian ship only the compressed bzImage (`vmlinuz`). Booting the bzImage
//! directly takes the distribution's file as it is and skips the 16/32-bit
//! setup code and any firmware, which is the fastest path available for it.

pub mod addresses;
pub mod cpu_state;
pub mod loader;
pub mod page_tables;
pub mod reset_vector;
