//! Capabilities the PCI fuzz targets build their endpoints with.

use pci::caps::msix::{BarLocation, MsixConfig};
use pci::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};

/// MSI-X with `vectors` entries, the table at 0x2000 and the PBA at 0x3000
/// of BAR 0.
pub fn msix_in_bar0(vectors: u16) -> MsixConfig {
    MsixConfig {
        vectors,
        table: BarLocation {
            bar: 0,
            offset: 0x2000,
        },
        pba: BarLocation {
            bar: 0,
            offset: 0x3000,
        },
    }
}

/// A PCI Express endpoint on a Gen3 x4 link.
pub fn pcie_endpoint() -> PcieConfig {
    let link = LinkConfig {
        max_speed: LinkSpeed::Gen3,
        max_width: LinkWidth::X4,
        speed: LinkSpeed::Gen3,
        width: LinkWidth::X4,
    };
    PcieConfig {
        device: PcieDevice::Endpoint { link },
        max_payload: MaxPayload::B256,
    }
}
