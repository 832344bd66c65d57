//! Feature bits and device IDs shared by every device type
//! (virtio 1.2 §5 device IDs, §6 reserved feature bits).

/// Device ID of a network card (virtio 1.2 §5).
pub const ID_NET: u16 = 1;
/// Device ID of a block device.
pub const ID_BLOCK: u16 = 2;
/// Device ID of a console.
pub const ID_CONSOLE: u16 = 3;
/// Device ID of an entropy source.
pub const ID_RNG: u16 = 4;

/// The driver may use indirect descriptors (§6, bit 28).
pub const F_RING_INDIRECT_DESC: u64 = 1 << 28;
/// `used_event` / `avail_event` notification suppression (bit 29).
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
/// Compliance with virtio 1.0 or later (bit 32).
pub const F_VERSION_1: u64 = 1 << 32;
/// The device's DMA goes through the platform's IOMMU (bit 33).
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;

/// The bits a transport offers on behalf of every device.
pub const TRANSPORT_FEATURES: u64 = F_RING_INDIRECT_DESC | F_RING_EVENT_IDX | F_VERSION_1;
