//! Loading a Linux kernel and starting it in 64-bit mode, following the
//! x86 boot protocol (Linux `Documentation/arch/x86/boot.rst`, "64-bit Boot
//! Protocol"): the bzImage's protected-mode part at 1 MiB, the zero page
//! (`boot_params`) with an E820 map, the command line and the initramfs in
//! guest RAM, and vCPU 0 entering `startup_64` with paging on, an identity map
//! and `%rsi` pointing at the zero page.
//!
//! Two ways in, chosen by the kernel file: a bzImage (what distributions
//! such as Debian ship as `vmlinuz`) through the 64-bit boot protocol, which
//! skips the 16/32-bit setup code and any firmware; and an uncompressed ELF
//! `vmlinux` through its PVH entry point ([`pvh`]), which also skips the
//! bzImage's self-decompression (`cargo xtask guest` extracts one from the
//! Debian kernel).

pub mod addresses;
pub mod cpu_state;
pub mod loader;
pub mod page_tables;
pub mod pvh;
pub mod reset_vector;
