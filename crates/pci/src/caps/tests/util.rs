//! Test helpers: a small deterministic PRNG and register accessors.

use crate::bar::{BarKind, BarSpec};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::msi::MsiConfig;
use crate::caps::msix::{BarLocation, MsixConfig};
use crate::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use crate::caps::pm::PmConfig;
use crate::caps::{CapWriteEffects, Capabilities};
use crate::config::{Identity, Type0Config};
use crate::regs::RegisterMask;

/// xorshift64*: enough randomness for sweeps, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// 1, 2, 4 or 8 bytes, or an odd size, of random data.
    pub fn data(&mut self) -> Vec<u8> {
        let len = [1, 2, 3, 4, 8][self.below(5) as usize];
        self.next().to_le_bytes()[..len].to_vec()
    }
}

pub fn read32(regs: &RegisterMask, offset: usize) -> u32 {
    regs.read_le(offset, 4) as u32
}

/// A guest write to a bare register block with capabilities.
pub fn write(
    caps: &mut Capabilities,
    regs: &mut RegisterMask,
    offset: usize,
    data: &[u8],
) -> CapWriteEffects {
    let before = caps.snapshot(regs);
    regs.write(offset, data);
    caps.after_write(before, regs)
}

pub fn ep_read32(ep: &EndpointConfig, offset: usize) -> u32 {
    let mut d = [0u8; 4];
    ep.read(offset, &mut d);
    u32::from_le_bytes(d)
}

pub fn bar_read32(ep: &EndpointConfig, bar: usize, offset: u64) -> u32 {
    let mut d = [0u8; 4];
    ep.bar_read(bar, offset, &mut d);
    u32::from_le_bytes(d)
}

pub const MSIX_VECTORS: u16 = 8;
pub const TABLE_OFFSET: u64 = 0x2000;
pub const PBA_OFFSET: u64 = 0x3000;

pub fn msix_config(vectors: u16) -> MsixConfig {
    MsixConfig {
        vectors,
        table: BarLocation {
            bar: 0,
            offset: TABLE_OFFSET as u32,
        },
        pba: BarLocation {
            bar: 0,
            offset: PBA_OFFSET as u32,
        },
    }
}

pub fn endpoint_pcie() -> PcieConfig {
    PcieConfig {
        device: PcieDevice::Endpoint {
            link: LinkConfig {
                max_speed: LinkSpeed::Gen3,
                max_width: LinkWidth::X4,
                speed: LinkSpeed::Gen2,
                width: LinkWidth::X1,
            },
        },
        max_payload: MaxPayload::B256,
    }
}

pub const MSI: MsiConfig = MsiConfig {
    vectors: 4,
    address64: true,
    per_vector_mask: true,
};

/// An endpoint with a 16 KiB 64-bit BAR 0 (MSI-X table at 0x2000, PBA at
/// 0x3000) and PM, MSI, MSI-X and PCIe capabilities.
pub fn endpoint() -> EndpointConfig {
    let id = Identity {
        vendor: 0x1b36,
        device: 0x0010,
        class: 0x01_08_02,
        revision: 2,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    };
    let bars = [BarSpec {
        index: 0,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: 0x4000,
    }];
    let config = Type0Config::new(id, &bars, 1).unwrap();
    EndpointConfig::new(config, |list| {
        list.power_management(PmConfig::default())?;
        list.msi(MSI)?;
        list.msix(msix_config(MSIX_VECTORS))?;
        list.pci_express(endpoint_pcie())
    })
    .unwrap()
}
