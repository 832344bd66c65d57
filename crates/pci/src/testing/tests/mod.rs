//! The fake driver against an endpoint model, by trait: it finds what the
//! function advertises and programs what the function then reports.

mod bars;
mod config;
mod msi;
mod msix;

use super::function::FakeFunction;
use crate::bar::{BarKind, BarSpec};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::msi::MsiConfig;
use crate::caps::msix::{BarLocation, MsixConfig};
use crate::caps::pm::PmConfig;
use crate::caps::ReadOnlyExtended;
use crate::config::{Identity, Type0Config};

const ID: Identity = Identity {
    vendor: 0x1b36,
    device: 0x0010,
    class: 0x01_08_02,
    revision: 2,
    subsystem_vendor: 0x1af4,
    subsystem: 0x1100,
};

/// Where the MSI-X table and PBA are in BAR 0.
const TABLE: u32 = 0x2000;
const PBA: u32 = 0x3000;
const MSIX_VECTORS: u16 = 8;

const MSI64: MsiConfig = MsiConfig {
    vectors: 4,
    address64: true,
    per_vector_mask: true,
};

const MSI32: MsiConfig = MsiConfig {
    vectors: 2,
    address64: false,
    per_vector_mask: false,
};

/// A 16 KiB 64-bit BAR 0 (MSI-X table and PBA), a 4 KiB prefetchable
/// 32-bit BAR 2 and a 32-byte I/O BAR 3.
fn bars() -> Vec<BarSpec> {
    vec![
        BarSpec {
            index: 0,
            kind: BarKind::Mem64 {
                prefetchable: false,
            },
            size: 0x4000,
        },
        BarSpec {
            index: 2,
            kind: BarKind::Mem32 { prefetchable: true },
            size: 0x1000,
        },
        BarSpec {
            index: 3,
            kind: BarKind::Io,
            size: 0x20,
        },
    ]
}

/// [`bars`] with PM, `msi`, 8-vector MSI-X at 0x60, and two extended
/// capabilities (0x000b v1 at 0x100, 0x0001 v2 at 0x10c).
fn function(msi: MsiConfig) -> FakeFunction {
    let config = Type0Config::new(ID, &bars(), 1).unwrap();
    let ep = EndpointConfig::new(config, |list| {
        list.power_management(PmConfig::default())?;
        list.msi(msi)?;
        list.msix(MsixConfig {
            vectors: MSIX_VECTORS,
            table: BarLocation {
                bar: 0,
                offset: TABLE,
            },
            pba: BarLocation {
                bar: 0,
                offset: PBA,
            },
        })?;
        for (id, version, len) in [(0x000b, 1, 8), (0x0001, 2, 0x44)] {
            list.add_extended(&ReadOnlyExtended {
                id,
                version,
                body: vec![0; len],
            })?;
        }
        Ok(())
    })
    .unwrap();
    FakeFunction::new(ep)
}

/// [`bars`] and no capability.
fn bare() -> FakeFunction {
    let config = Type0Config::new(ID, &bars(), 1).unwrap();
    FakeFunction::new(EndpointConfig::new(config, |_| Ok(())).unwrap())
}
