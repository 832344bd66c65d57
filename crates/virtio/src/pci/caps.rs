//! The transport's PCI configuration space: identity (virtio 1.2 §4.1.2),
//! the vendor-specific capabilities that locate the virtio structures
//! (§4.1.4), and the PM, MSI-X and PCI Express capabilities.
//!
//! ```text
//!  struct virtio_pci_cap (16 bytes)           notify: + notify_off_multiplier (le32)
//!  +0 cap_vndr 0x09 | cap_next | cap_len | cfg_type
//!  +4 bar | id | padding[2]                  pci_cfg: + pci_cfg_data[4] (RW)
//!  +8 offset (le32)
//!  +12 length (le32)
//! ```
//!
//! Every field is read-only except, in the PCI configuration access
//! capability, `bar`, `offset`, `length` and `pci_cfg_data`, which the
//! driver programs (their masks live in configuration space like any
//! other register; [`super::VirtioPci`] performs the BAR access).

use pci::bar::{BarKind, BarSpec};
use pci::caps::endpoint::EndpointConfig;
use pci::caps::msix::{BarLocation, MsixConfig};
use pci::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use pci::caps::pm::PmConfig;
use pci::caps::{id, CapError, MaskedCapability};
use pci::config::{Identity, Type0Config};

use super::layout::{
    Layout, COMMON_OFFSET, DEVICE_OFFSET, ISR_OFFSET, NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER, REGION,
    VIRTIO_BAR,
};
use super::VirtioPciError;
use crate::features::{ID_BLOCK, ID_CONSOLE, ID_NET, ID_RNG};

/// The virtio PCI vendor ID (Red Hat, Inc.).
pub const VENDOR_VIRTIO: u16 = 0x1af4;
/// Modern device IDs are this plus the virtio device ID (§4.1.2.1).
pub const DEVICE_ID_BASE: u16 = 0x1040;
/// The subsystem ID: any value from 0x40 marks a modern-only device.
pub const SUBSYSTEM_ID: u16 = 0x1100;
/// Revision ID of a modern-only device (§4.1.2.1: 1 or higher).
pub const REVISION: u8 = 1;

/// `cfg_type` values of the virtio vendor capabilities (§4.1.4).
pub mod cfg_type {
    /// Common configuration.
    pub const COMMON: u8 = 1;
    /// Notifications.
    pub const NOTIFY: u8 = 2;
    /// ISR status.
    pub const ISR: u8 = 3;
    /// Device-specific configuration.
    pub const DEVICE: u8 = 4;
    /// PCI configuration access.
    pub const PCI_CFG: u8 = 5;
}

/// Offsets of the fields inside a virtio capability.
pub mod field {
    /// `cap_len`.
    pub const CAP_LEN: usize = 2;
    /// `cfg_type`.
    pub const CFG_TYPE: usize = 3;
    /// `bar`.
    pub const BAR: usize = 4;
    /// `offset` (le32).
    pub const OFFSET: usize = 8;
    /// `length` (le32).
    pub const LENGTH: usize = 12;
    /// `notify_off_multiplier` (le32), notify capability only.
    pub const NOTIFY_OFF_MULTIPLIER: usize = 16;
    /// `pci_cfg_data` (4 bytes), PCI configuration access capability only.
    pub const PCI_CFG_DATA: usize = 16;
}

/// Bytes of `struct virtio_pci_cap`.
const CAP_SIZE: u8 = 16;
/// Bytes of the notify and PCI configuration access capabilities.
const CAP_SIZE_EXTENDED: u8 = 20;

/// The class code for a device type (block, network, console, entropy,
/// else "other").
pub fn class_code(device_id: u16) -> u32 {
    match device_id {
        ID_BLOCK => 0x01_80_00,
        ID_NET => 0x02_00_00,
        ID_CONSOLE => 0x07_80_00,
        ID_RNG => 0x00_ff_00,
        _ => 0xff_00_00,
    }
}

/// The body (after ID and next pointer) of a virtio capability.
fn body(cap_len: u8, cfg: u8, offset: u64, length: u64, extra: [u8; 4]) -> Vec<u8> {
    let mut b = vec![cap_len, cfg, VIRTIO_BAR as u8, 0, 0, 0];
    b.extend_from_slice(&(offset as u32).to_le_bytes());
    b.extend_from_slice(&(length as u32).to_le_bytes());
    if cap_len == CAP_SIZE_EXTENDED {
        b.extend_from_slice(&extra);
    }
    b
}

fn read_only(body: Vec<u8>) -> MaskedCapability {
    MaskedCapability {
        id: id::VENDOR,
        body,
        writable: Vec::new(),
    }
}

/// The PCI configuration access capability as placed in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciCfgCap {
    /// Offset of its header.
    pub offset: usize,
}

impl PciCfgCap {
    /// Configuration-space range of `pci_cfg_data`.
    pub fn data_range(&self) -> std::ops::Range<usize> {
        let start = self.offset + field::PCI_CFG_DATA;
        start..start + 4
    }

    /// Whether a configuration access at `offset` of `len` bytes touches
    /// `pci_cfg_data`.
    pub fn touches_data(&self, offset: usize, len: usize) -> bool {
        let data = self.data_range();
        offset < data.end && offset.saturating_add(len) > data.start
    }
}

/// Builds the configuration space: header, PM, MSI-X (when `layout` has
/// vectors), PCI Express endpoint, then the five virtio capabilities.
pub fn endpoint(
    device_id: u16,
    layout: &Layout,
) -> Result<(EndpointConfig, PciCfgCap), VirtioPciError> {
    let device = DEVICE_ID_BASE
        .checked_add(device_id)
        .ok_or(VirtioPciError::DeviceId(device_id))?;
    let identity = Identity {
        vendor: VENDOR_VIRTIO,
        device,
        class: class_code(device_id),
        revision: REVISION,
        subsystem_vendor: VENDOR_VIRTIO,
        subsystem: SUBSYSTEM_ID,
    };
    let bar = BarSpec {
        index: VIRTIO_BAR,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: layout.bar_size,
    };
    let config = Type0Config::new(identity, &[bar], 1)?;
    let mut pci_cfg = PciCfgCap { offset: 0 };
    let ep = EndpointConfig::new(config, |list| {
        list.power_management(PmConfig::default())?;
        if layout.vectors > 0 {
            list.msix(MsixConfig {
                vectors: layout.vectors,
                table: BarLocation {
                    bar: VIRTIO_BAR,
                    offset: bar_offset(layout.msix_table)?,
                },
                pba: BarLocation {
                    bar: VIRTIO_BAR,
                    offset: bar_offset(layout.msix_pba)?,
                },
            })?;
        }
        list.pci_express(PcieConfig {
            device: PcieDevice::Endpoint {
                link: LinkConfig {
                    max_speed: LinkSpeed::Gen3,
                    max_width: LinkWidth::X1,
                    speed: LinkSpeed::Gen3,
                    width: LinkWidth::X1,
                },
            },
            max_payload: MaxPayload::B256,
        })?;
        let no_extra = [0; 4];
        let multiplier = NOTIFY_OFF_MULTIPLIER.to_le_bytes();
        for cap in [
            body(CAP_SIZE, cfg_type::COMMON, COMMON_OFFSET, REGION, no_extra),
            body(
                CAP_SIZE_EXTENDED,
                cfg_type::NOTIFY,
                NOTIFY_OFFSET,
                layout.notify_len(),
                multiplier,
            ),
            body(CAP_SIZE, cfg_type::ISR, ISR_OFFSET, REGION, no_extra),
            body(CAP_SIZE, cfg_type::DEVICE, DEVICE_OFFSET, REGION, no_extra),
        ] {
            list.add(&read_only(cap))?;
        }
        // bar, offset, length and pci_cfg_data are the driver's; the rest
        // (cap_len, cfg_type, id, padding) is read-only. Body index = field − 2.
        let mut writable = vec![0u8; usize::from(CAP_SIZE_EXTENDED) - 2];
        writable[field::BAR - 2] = 0xff;
        writable[field::OFFSET - 2..].fill(0xff);
        pci_cfg.offset = list.add(&MaskedCapability {
            id: id::VENDOR,
            body: body(CAP_SIZE_EXTENDED, cfg_type::PCI_CFG, 0, 0, no_extra),
            writable,
        })?;
        Ok(())
    })?;
    Ok((ep, pci_cfg))
}

fn bar_offset(offset: u64) -> Result<u32, CapError> {
    u32::try_from(offset).map_err(|_| CapError::MsixLocation {
        bar: VIRTIO_BAR,
        offset: u32::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_class_code_per_device_type_matches_its_kind() {
        let classes = [ID_BLOCK, ID_NET, ID_CONSOLE, ID_RNG, 18].map(class_code);

        assert_eq!(
            classes,
            [0x01_80_00, 0x02_00_00, 0x07_80_00, 0x00_ff_00, 0xff_00_00]
        );
    }

    #[test]
    fn test_endpoint_with_device_id_past_u16_fails() {
        let layout = Layout::new(1, 2);

        let result = endpoint(0xffff, &layout);

        assert!(matches!(result, Err(VirtioPciError::DeviceId(0xffff))));
    }

    #[test]
    fn test_pci_cfg_touches_data_only_when_overlapping() {
        let cap = PciCfgCap { offset: 0xd4 };

        let hits = [(0xe4, 4), (0xe0, 4), (0xe7, 1), (0xe8, 4), (0xe2, 4)]
            .map(|(o, l)| cap.touches_data(o, l));

        assert_eq!(hits, [true, false, true, false, true]);
    }
}
