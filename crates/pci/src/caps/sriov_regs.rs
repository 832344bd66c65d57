//! Register offsets and bits of the Single Root I/O Virtualization extended
//! capability (PCIe 6.0 §9.3.3). Offsets are from the capability header.

/// Extended capability ID of SR-IOV (PCI Code and ID Assignment §3).
pub const SRIOV_ID: u16 = 0x0010;
/// Capability version.
pub const VERSION: u8 = 1;
/// Bytes the capability occupies.
pub const SIZE: usize = 0x40;

/// SR-IOV Capabilities (§9.3.3.2), 32 bits.
pub const CAPABILITIES: usize = 0x04;
/// SR-IOV Control (§9.3.3.3), 16 bits.
pub const CONTROL: usize = 0x08;
/// SR-IOV Status (§9.3.3.4), 16 bits.
pub const STATUS: usize = 0x0a;
/// InitialVFs (§9.3.3.5), 16 bits.
pub const INITIAL_VFS: usize = 0x0c;
/// TotalVFs (§9.3.3.6), 16 bits.
pub const TOTAL_VFS: usize = 0x0e;
/// NumVFs (§9.3.3.7), 16 bits.
pub const NUM_VFS: usize = 0x10;
/// Function Dependency Link (§9.3.3.8), 8 bits.
pub const FUNCTION_DEPENDENCY: usize = 0x12;
/// First VF Offset (§9.3.3.9), 16 bits.
pub const FIRST_VF_OFFSET: usize = 0x14;
/// VF Stride (§9.3.3.10), 16 bits.
pub const VF_STRIDE: usize = 0x16;
/// VF Device ID (§9.3.3.11), 16 bits.
pub const VF_DEVICE_ID: usize = 0x1a;
/// Supported Page Sizes (§9.3.3.12), 32 bits.
pub const SUPPORTED_PAGE_SIZES: usize = 0x1c;
/// System Page Size (§9.3.3.13), 32 bits.
pub const SYSTEM_PAGE_SIZE: usize = 0x20;
/// VF BAR0 (§9.3.3.14); VF BAR n is at `VF_BAR0 + 4 * n`.
pub const VF_BAR0: usize = 0x24;
/// VF Migration State Array Offset (§9.3.3.15), 32 bits.
pub const MIGRATION_STATE: usize = 0x3c;

/// SR-IOV Control bits (§9.3.3.3).
pub mod control {
    /// VF Enable: the VFs exist.
    pub const VF_ENABLE: u16 = 1 << 0;
    /// VF Migration Enable (not supported: read-only zero).
    pub const VF_MIGRATION_ENABLE: u16 = 1 << 1;
    /// VF Migration Interrupt Enable (not supported: read-only zero).
    pub const VF_MIGRATION_INTERRUPT: u16 = 1 << 2;
    /// VF Memory Space Enable: the VFs' memory BARs decode.
    pub const VF_MSE: u16 = 1 << 3;
    /// ARI Capable Hierarchy: the PF sits where ARI is enabled.
    pub const ARI_CAPABLE_HIERARCHY: u16 = 1 << 4;
    /// The bits this model implements as read-write.
    pub const WRITABLE: u16 = VF_ENABLE | VF_MSE | ARI_CAPABLE_HIERARCHY;
}

/// Supported Page Sizes bits: bit n means 2^(n+12) bytes (§9.3.3.12).
pub mod page_size {
    /// 4 KiB.
    pub const SIZE_4K: u32 = 1 << 0;
    /// The sizes a PF must support: 4K, 8K, 64K, 256K, 1M and 4M.
    pub const REQUIRED: u32 = 0x553;

    /// Bytes of the page size `bit` (one bit set) names.
    pub fn bytes(bit: u32) -> u64 {
        4096u64 << bit.trailing_zeros().min(51)
    }
}
