//! Reading what the guest will see from the host function's own
//! configuration space (PCI Local Bus 3.0 §6.1, §6.8; PCIe 6.0 §7.5): its
//! identity, the kind of each BAR (sizes come from VFIO's region info),
//! its interrupt pin and its MSI and MSI-X capabilities. The capability
//! list is walked with a bound, so a looping list cannot hang the VMM.

use pci::bar::{BarKind, BarSpec};
use pci::caps::msi::MsiConfig;
use pci::caps::msix::{BarLocation, MsixConfig};
use pci::config::Identity;

/// Capability ID of MSI (PCI 3.0 §6.8.1).
const CAP_MSI: u8 = 0x05;
/// Capability ID of MSI-X (PCI 3.0 §6.8.2).
const CAP_MSIX: u8 = 0x11;
/// Most capabilities a 256-byte header can hold (each at least 4 bytes,
/// above 0x40).
const MAX_CAPS: usize = 48;

/// What the assigned function shows, taken from the host function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Vendor, device, class, revision, subsystem.
    pub identity: Identity,
    /// The BARs the device implements, with their sizes.
    pub bars: Vec<BarSpec>,
    /// MSI, if the device has it.
    pub msi: Option<MsiConfig>,
    /// MSI-X, if the device has it.
    pub msix: Option<MsixConfig>,
    /// Its interrupt pin (0: none, 1-4: INTA-INTD).
    pub pin: u8,
}

fn u16_at(c: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([c[off], c[off + 1]])
}

fn u32_at(c: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([c[off], c[off + 1], c[off + 2], c[off + 3]])
}

/// Why a host function cannot be assigned.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The configuration header is not a type 0 (endpoint) header.
    #[error("header type {0:#x} is not an endpoint (type 0); bridges cannot be assigned")]
    NotEndpoint(u8),
    /// The configuration space read as all ones: the device is gone.
    #[error("its configuration space reads as all ones (no device)")]
    Absent,
}

/// Reads `config` (the first 256 bytes of the host function's
/// configuration space) with `bar_size(i)` the size VFIO reports for BAR
/// `i`.
pub fn scan(config: &[u8; 256], bar_size: impl Fn(usize) -> u64) -> Result<HostConfig, ScanError> {
    if u16_at(config, 0) == 0xffff {
        return Err(ScanError::Absent);
    }
    let header = config[0x0e] & 0x7f;
    if header != 0 {
        return Err(ScanError::NotEndpoint(header));
    }
    let identity = Identity {
        vendor: u16_at(config, 0),
        device: u16_at(config, 2),
        class: u32_at(config, 0x08) >> 8,
        revision: config[0x08],
        subsystem_vendor: u16_at(config, 0x2c),
        subsystem: u16_at(config, 0x2e),
    };
    let mut bars = Vec::new();
    let mut index = 0;
    while index < 6 {
        let raw = u32_at(config, 0x10 + 4 * index);
        let size = bar_size(index);
        let kind = if raw & 1 == 1 {
            BarKind::Io
        } else if (raw >> 1) & 3 == 2 {
            BarKind::Mem64 {
                prefetchable: raw & 8 != 0,
            }
        } else {
            BarKind::Mem32 {
                prefetchable: raw & 8 != 0,
            }
        };
        let wide = matches!(kind, BarKind::Mem64 { .. });
        if size.is_power_of_two() && !(wide && index == 5) {
            bars.push(BarSpec { index, kind, size });
        }
        index += if wide { 2 } else { 1 };
    }
    let (mut msi, mut msix) = (None, None);
    let has_list = u16_at(config, 0x06) & 0x10 != 0;
    let mut at = if has_list {
        usize::from(config[0x34] & 0xfc)
    } else {
        0
    };
    for _ in 0..MAX_CAPS {
        if !(0x40..=0xfc).contains(&at) {
            break;
        }
        match config[at] {
            CAP_MSI => {
                let control = u16_at(config, at + 2);
                msi = Some(MsiConfig {
                    vectors: 1 << ((control >> 1) & 0x7).min(5),
                    address64: control & 0x80 != 0,
                    per_vector_mask: control & 0x100 != 0,
                });
            }
            CAP_MSIX if at <= 0xf4 => {
                let control = u16_at(config, at + 2);
                let table = u32_at(config, at + 4);
                let pba = u32_at(config, at + 8);
                msix = Some(MsixConfig {
                    vectors: (control & 0x7ff) + 1,
                    table: BarLocation {
                        bar: (table & 7) as usize,
                        offset: table & !7,
                    },
                    pba: BarLocation {
                        bar: (pba & 7) as usize,
                        offset: pba & !7,
                    },
                });
            }
            _ => {}
        }
        at = usize::from(config[at + 1] & 0xfc);
    }
    let msix = msix.filter(|m| {
        let fits = |loc: &BarLocation, len: u64| {
            bars.iter()
                .any(|b| b.index == loc.bar && u64::from(loc.offset) + len <= b.size)
        };
        fits(&m.table, m.table_size()) && fits(&m.pba, m.pba_size())
    });
    Ok(HostConfig {
        identity,
        bars,
        msi,
        msix,
        pin: if config[0x3d] <= 4 { config[0x3d] } else { 0 },
    })
}

#[cfg(test)]
mod tests;
