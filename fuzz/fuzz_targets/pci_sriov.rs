//! Fuzzes the SR-IOV capability of a physical function (`pci::caps::sriov`)
//! and the Function Level Reset of its endpoint: configuration writes of
//! any width at any offset, most of them into the SR-IOV capability.
//!
//! Input layout: records of 7 bytes: a 2-byte offset (bit 15 set: relative
//! to the SR-IOV capability, else anywhere in the 4 KiB space), a width
//! selector (1, 2, 4 or 8 bytes, or an odd 3), then 4 bytes of value.
//! Nothing may panic, and after every write: VF Enable implies NumVFs ≤
//! TotalVFs, System Page Size is one supported bit, TotalVFs, InitialVFs,
//! First VF Offset and VF Stride keep their values, the VF BAR's type bits
//! stay, and no VF at or past NumVFs decodes.

#![no_main]

mod pci_common;

use libfuzzer_sys::fuzz_target;
use pci::bar::{BarKind, BarSpec};
use pci::caps::ari::Ari;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::sriov::SriovConfig;
use pci::caps::sriov_regs::{page_size, FIRST_VF_OFFSET, INITIAL_VFS, TOTAL_VFS, VF_BAR0, VF_STRIDE};
use pci::config::{Identity, Type0Config};

const TOTAL: u16 = 7;

fn bar() -> BarSpec {
    BarSpec {
        index: 0,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: 0x4000,
    }
}

fn pf() -> EndpointConfig {
    let id = Identity {
        vendor: 0x1b36,
        device: 0x0010,
        class: 0x01_08_02,
        revision: 2,
        subsystem_vendor: 0x1b36,
        subsystem: 0x0010,
    };
    let config = Type0Config::new(id, &[bar()], 1).expect("header");
    EndpointConfig::new(config, |list| {
        list.msix(pci_common::msix_in_bar0(4))?;
        list.pci_express(pci_common::pcie_endpoint())?;
        list.function_level_reset()?;
        list.add_extended(&Ari { next_function: 0 })?;
        list.sriov(SriovConfig {
            total_vfs: TOTAL,
            pf_function: 0,
            vf_device_id: 0x0010,
            vf_bars: vec![bar()],
            supported_page_sizes: page_size::REQUIRED,
        })
        .map(|_| ())
    })
    .expect("PF")
}

fn read16(ep: &EndpointConfig, offset: usize) -> u16 {
    let mut d = [0u8; 2];
    ep.read(offset, &mut d);
    u16::from_le_bytes(d)
}

fuzz_target!(|data: &[u8]| {
    let mut ep = pf();
    let at = ep.caps().sriov().expect("SR-IOV").offset();
    for r in data.chunks_exact(7) {
        let raw = usize::from(u16::from_le_bytes([r[0], r[1]]));
        let offset = if raw & 0x8000 != 0 {
            at + (raw & 0x3f)
        } else {
            raw & 0xfff
        };
        let width = [1usize, 2, 4, 8, 3][usize::from(r[2]) % 5];
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&r[3..7]);
        bytes[4..].copy_from_slice(&r[3..7]);
        ep.write(offset, &bytes[..width]);

        let sriov = ep.caps().sriov().expect("SR-IOV");
        let st = sriov.state(ep.config().regs());
        assert!(!st.vf_enabled() || st.num_vfs <= TOTAL);
        assert_eq!(st.system_page_size.count_ones(), 1);
        assert_ne!(st.system_page_size & page_size::REQUIRED, 0);
        assert_eq!(read16(&ep, at + TOTAL_VFS), TOTAL);
        assert_eq!(read16(&ep, at + INITIAL_VFS), TOTAL);
        assert_eq!(read16(&ep, at + FIRST_VF_OFFSET), 1);
        assert_eq!(read16(&ep, at + VF_STRIDE), 1);
        assert_eq!(read16(&ep, at + VF_BAR0) & 0xf, 0x4);
        let past = ep.vf_bar_windows(st.num_vfs.min(TOTAL));
        assert!(past.iter().all(|(_, w)| w.is_none()));
    }
});
