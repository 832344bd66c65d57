//! Where each virtio structure sits in the transport's one memory BAR
//! (virtio 1.2 §4.1.4: the capabilities point into it by offset).
//!
//! ```text
//!  0x0000  common configuration (§4.1.4.3)          4 KiB
//!  0x1000  ISR status (§4.1.4.5)                    4 KiB
//!  0x2000  device-specific configuration (§4.1.4.6) 4 KiB
//!  0x3000  notifications (§4.1.4.4): queue N at     4 bytes per queue,
//!          0x3000 + 4·N                             rounded up to 4 KiB
//!  then    MSI-X table, 16 bytes per vector         rounded up to 4 KiB
//!  then    MSI-X PBA, 8 bytes per 64 vectors        rounded up to 4 KiB
//! ```
//!
//! Every region starts on a page, so the VMM may map or trap each
//! separately; the BAR is the next power of two past the end.

/// The BAR index holding every virtio structure (64-bit, non-prefetchable).
pub const VIRTIO_BAR: usize = 0;
/// Alignment and minimum size of each region.
pub const REGION: u64 = 0x1000;
/// Offset of the common configuration structure.
pub const COMMON_OFFSET: u64 = 0;
/// Offset of the ISR status byte.
pub const ISR_OFFSET: u64 = 0x1000;
/// Offset of the device-specific configuration.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Offset of the first queue's notification address.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Bytes between two queues' notification addresses (`notify_off_multiplier`).
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;

fn round_up(len: u64) -> u64 {
    len.div_ceil(REGION).max(1) * REGION
}

/// The BAR layout for a number of queues and MSI-X vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of queues (each has a notification address).
    pub queues: u16,
    /// MSI-X vectors (0: no MSI-X table).
    pub vectors: u16,
    /// Offset of the MSI-X table.
    pub msix_table: u64,
    /// Offset of the MSI-X PBA.
    pub msix_pba: u64,
    /// Size of the BAR (a power of two).
    pub bar_size: u64,
}

/// Which structure a BAR offset falls in, and the offset inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// The common configuration.
    Common(u64),
    /// The ISR status.
    Isr(u64),
    /// The device-specific configuration.
    Device(u64),
    /// The notification region.
    Notify(u64),
    /// The MSI-X table or PBA (served at the BAR offset itself).
    Msix,
    /// Nothing: reads zero, writes ignored.
    Unused,
}

impl Layout {
    /// The layout for `queues` queues and `vectors` MSI-X vectors.
    pub fn new(queues: u16, vectors: u16) -> Self {
        let notify_end = NOTIFY_OFFSET + round_up(u64::from(queues) * 4);
        let table_len = round_up(16 * u64::from(vectors));
        let pba_len = round_up(8 * u64::from(vectors).div_ceil(64));
        let end = notify_end + table_len + pba_len;
        Self {
            queues,
            vectors,
            msix_table: notify_end,
            msix_pba: notify_end + table_len,
            bar_size: end.next_power_of_two(),
        }
    }

    /// Bytes of the notification region the capability advertises.
    pub fn notify_len(&self) -> u64 {
        u64::from(self.queues) * u64::from(NOTIFY_OFF_MULTIPLIER)
    }

    /// The BAR offset of `queue`'s notification address.
    pub fn notify_offset(queue: u16) -> u64 {
        NOTIFY_OFFSET + u64::from(queue) * u64::from(NOTIFY_OFF_MULTIPLIER)
    }

    /// Which structure `offset` falls in.
    pub fn region(&self, offset: u64) -> Region {
        let within = |base: u64, len: u64| offset.checked_sub(base).filter(|&rel| rel < len);
        if let Some(rel) = within(COMMON_OFFSET, REGION) {
            Region::Common(rel)
        } else if let Some(rel) = within(ISR_OFFSET, REGION) {
            Region::Isr(rel)
        } else if let Some(rel) = within(DEVICE_OFFSET, REGION) {
            Region::Device(rel)
        } else if let Some(rel) = within(NOTIFY_OFFSET, self.msix_table - NOTIFY_OFFSET) {
            Region::Notify(rel)
        } else if self.vectors > 0
            && within(self.msix_table, self.bar_size - self.msix_table).is_some()
        {
            Region::Msix
        } else {
            Region::Unused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_layout_two_queues_three_vectors_fits_in_32k() {
        let layout = Layout::new(2, 3);

        assert_eq!(layout.msix_table, 0x4000);
        assert_eq!(layout.msix_pba, 0x5000);
        assert_eq!(layout.bar_size, 0x8000);
        assert_eq!(layout.notify_len(), 8);
    }

    #[test]
    fn test_layout_many_queues_grow_notify_region_and_stay_page_aligned() {
        let layout = Layout::new(1024, 2048);

        assert_eq!(layout.msix_table, 0x4000);
        assert_eq!(layout.msix_pba, 0x4000 + 0x8000);
        assert_eq!(layout.bar_size, 0x10000);
    }

    #[test]
    fn test_region_offsets_map_to_structures() {
        let layout = Layout::new(2, 3);

        let regions: Vec<_> = [
            0x14,
            0x1000,
            0x2008,
            0x3004,
            0x4000,
            0x5000,
            0x6000,
            u64::MAX,
        ]
        .map(|o| layout.region(o))
        .to_vec();

        assert_eq!(
            regions,
            vec![
                Region::Common(0x14),
                Region::Isr(0),
                Region::Device(8),
                Region::Notify(4),
                Region::Msix,
                Region::Msix,
                Region::Msix,
                Region::Unused,
            ]
        );
    }

    #[test]
    fn test_region_without_msix_leaves_table_space_unused() {
        let layout = Layout::new(1, 0);

        assert_eq!(layout.region(layout.msix_table), Region::Unused);
    }
}
