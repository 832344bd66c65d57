//! The common configuration structure (virtio 1.2 §4.1.4.3) as data: its
//! fields' offsets and widths, and the transport-side registers behind
//! them (feature windows, the selected queue's setup).
//!
//! ```text
//!  0x00 le32 device_feature_select RW    0x16 le16 queue_select       RW
//!  0x04 le32 device_feature        RO    0x18 le16 queue_size         RW*
//!  0x08 le32 driver_feature_select RW    0x1a le16 queue_msix_vector  RW*
//!  0x0c le32 driver_feature        RW    0x1c le16 queue_enable       RW*
//!  0x10 le16 config_msix_vector    RW    0x1e le16 queue_notify_off   RO
//!  0x12 le16 num_queues            RO    0x20 le64 queue_desc         RW*
//!  0x14 u8   device_status         RW    0x28 le64 queue_driver       RW*
//!  0x15 u8   config_generation     RO    0x30 le64 queue_device       RW*
//!                                  (* until DRIVER_OK)
//! ```
//!
//! A field is accessed with its own width at its own offset (§4.1.3.1);
//! 64-bit fields also as two 32-bit halves. Anything else matches no field:
//! it reads as zero and its writes are ignored.

/// One field of the common configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `device_feature_select`.
    DeviceFeatureSelect,
    /// `device_feature`.
    DeviceFeature,
    /// `driver_feature_select`.
    DriverFeatureSelect,
    /// `driver_feature`.
    DriverFeature,
    /// `config_msix_vector`.
    ConfigMsixVector,
    /// `num_queues`.
    NumQueues,
    /// `device_status`.
    DeviceStatus,
    /// `config_generation`.
    ConfigGeneration,
    /// `queue_select`.
    QueueSelect,
    /// `queue_size`.
    QueueSize,
    /// `queue_msix_vector`.
    QueueMsixVector,
    /// `queue_enable`.
    QueueEnable,
    /// `queue_notify_off`.
    QueueNotifyOff,
    /// `queue_desc`.
    QueueDesc,
    /// `queue_driver`.
    QueueDriver,
    /// `queue_device`.
    QueueDevice,
}

/// Offset and width of every field.
const FIELDS: [(u64, usize, Field); 16] = [
    (0x00, 4, Field::DeviceFeatureSelect),
    (0x04, 4, Field::DeviceFeature),
    (0x08, 4, Field::DriverFeatureSelect),
    (0x0c, 4, Field::DriverFeature),
    (0x10, 2, Field::ConfigMsixVector),
    (0x12, 2, Field::NumQueues),
    (0x14, 1, Field::DeviceStatus),
    (0x15, 1, Field::ConfigGeneration),
    (0x16, 2, Field::QueueSelect),
    (0x18, 2, Field::QueueSize),
    (0x1a, 2, Field::QueueMsixVector),
    (0x1c, 2, Field::QueueEnable),
    (0x1e, 2, Field::QueueNotifyOff),
    (0x20, 8, Field::QueueDesc),
    (0x28, 8, Field::QueueDriver),
    (0x30, 8, Field::QueueDevice),
];

/// Which part of a field an access covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole field.
    Whole,
    /// The low 32 bits of a 64-bit field.
    Low,
    /// The high 32 bits of a 64-bit field.
    High,
}

impl Part {
    /// `old` with this part replaced by `value`.
    pub fn merge(self, old: u64, value: u64) -> u64 {
        match self {
            Part::Whole => value,
            Part::Low => (old & !0xffff_ffff) | (value & 0xffff_ffff),
            Part::High => (old & 0xffff_ffff) | (value << 32),
        }
    }

    /// This part of `value`.
    pub fn extract(self, value: u64) -> u64 {
        match self {
            Part::Whole => value,
            Part::Low => value & 0xffff_ffff,
            Part::High => value >> 32,
        }
    }
}

/// The field an access of `len` bytes at `offset` names, if any.
pub fn decode(offset: u64, len: usize) -> Option<(Field, Part)> {
    FIELDS.iter().find_map(|&(off, width, field)| {
        if offset == off && len == width {
            Some((field, Part::Whole))
        } else if width == 8 && len == 4 && offset == off {
            Some((field, Part::Low))
        } else if width == 8 && len == 4 && offset == off + 4 {
            Some((field, Part::High))
        } else {
            None
        }
    })
}

/// Reads a little-endian value of up to 8 bytes.
pub fn le(data: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = data.len().min(8);
    buf[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(buf)
}

/// Writes `value` little-endian into `data` (up to 8 bytes, rest zero).
pub fn put_le(data: &mut [u8], value: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if i < 8 { (value >> (8 * i)) as u8 } else { 0 };
    }
}

/// One queue's setup as the driver wrote it (§4.1.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRegs {
    /// Largest size the device allows.
    pub max_size: u16,
    /// `queue_size`: starts at the maximum.
    pub size: u16,
    /// `queue_enable`.
    pub enabled: bool,
    /// `queue_desc`: descriptor table address.
    pub desc: u64,
    /// `queue_driver`: available ring address.
    pub driver: u64,
    /// `queue_device`: used ring address.
    pub device: u64,
}

impl QueueRegs {
    /// A queue at reset.
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// The transport's own registers (the vCPU side; status, vectors and the
/// configuration generation live with the interrupt state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommonState {
    /// `device_feature_select`.
    pub device_feature_select: u32,
    /// `driver_feature_select`.
    pub driver_feature_select: u32,
    /// The features the driver accepted so far.
    pub driver_features: u64,
    /// `queue_select`.
    pub queue_select: u16,
    /// Every queue's registers.
    pub queues: Vec<QueueRegs>,
}

impl CommonState {
    /// The state at reset for queues of `max_sizes`.
    pub fn new(max_sizes: &[u16]) -> Self {
        Self {
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            queues: max_sizes.iter().map(|&m| QueueRegs::new(m)).collect(),
        }
    }

    /// Back to the reset state, keeping the queues' maximum sizes.
    pub fn reset(&mut self) {
        let max: Vec<u16> = self.queues.iter().map(|q| q.max_size).collect();
        *self = Self::new(&max);
    }

    /// The 32-bit window `select` of `features` (0 past the second).
    pub fn window(features: u64, select: u32) -> u32 {
        match select {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        }
    }

    /// The selected queue, if it exists.
    pub fn selected(&self) -> Option<&QueueRegs> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The selected queue, mutable, if it exists.
    pub fn selected_mut(&mut self) -> Option<&mut QueueRegs> {
        self.queues.get_mut(usize::from(self.queue_select))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decode_natural_widths_find_fields() {
        let found = [(0x14, 1), (0x16, 2), (0x0c, 4), (0x20, 8)].map(|(o, l)| decode(o, l));

        assert_eq!(
            found,
            [
                Some((Field::DeviceStatus, Part::Whole)),
                Some((Field::QueueSelect, Part::Whole)),
                Some((Field::DriverFeature, Part::Whole)),
                Some((Field::QueueDesc, Part::Whole)),
            ]
        );
    }

    #[test]
    fn test_decode_64_bit_halves_find_parts() {
        let found = [decode(0x28, 4), decode(0x34, 4)];

        assert_eq!(
            found,
            [
                Some((Field::QueueDriver, Part::Low)),
                Some((Field::QueueDevice, Part::High))
            ]
        );
    }

    #[test]
    fn test_decode_wrong_width_or_offset_finds_nothing() {
        let found = [
            (0x14, 2),
            (0x16, 4),
            (0x0d, 1),
            (0x22, 2),
            (0x38, 2),
            (0x1000, 4),
        ]
        .map(|(o, l)| decode(o, l));

        assert_eq!(found, [None; 6]);
    }

    #[test]
    fn test_part_merge_replaces_only_its_half() {
        let old = 0x1111_2222_3333_4444;

        let merged = [Part::Low, Part::High].map(|p| p.merge(old, 0xaaaa_bbbb));

        assert_eq!(merged, [0x1111_2222_aaaa_bbbb, 0xaaaa_bbbb_3333_4444]);
    }

    #[test]
    fn test_window_selects_low_high_and_zero() {
        let features = 0x0000_0003_3000_0001;

        let windows = [0, 1, 2, u32::MAX].map(|s| CommonState::window(features, s));

        assert_eq!(windows, [0x3000_0001, 3, 0, 0]);
    }
}
