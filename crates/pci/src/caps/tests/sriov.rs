//! The SR-IOV capability of a PF, ARI and Function Level Reset, driven
//! through the fake function as Linux's `iov.c` drives them, and with
//! hostile values.

use super::util::{endpoint_pcie, msix_config, Rng};
use crate::bar::{BarKind, BarSpec};
use crate::caps::ari::{Ari, ARI_ID};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::pcie_regs::{devcap, devctl, DEVCAP, DEVCTL};
use crate::caps::sriov::{SriovConfig, SriovEffect, VfChange};
use crate::caps::sriov_regs::{control, page_size, *};
use crate::caps::{id, CapError};
use crate::config::{BarWindow, Identity, Type0Config};
use crate::function::PciFunction;
use crate::testing::function::FakeFunction;
use crate::testing::ConfigDriver;

const TOTAL: u16 = 8;
const VF_BAR_SIZE: u64 = 0x4000;

fn vf_bars() -> Vec<BarSpec> {
    vec![BarSpec {
        index: 0,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: VF_BAR_SIZE,
    }]
}

fn sriov_config() -> SriovConfig {
    SriovConfig {
        total_vfs: TOTAL,
        pf_function: 0,
        vf_device_id: 0x0011,
        vf_bars: vf_bars(),
        supported_page_sizes: page_size::REQUIRED,
    }
}

/// A PF: 16 KiB BAR 0, MSI-X, PCIe with FLR, ARI and SR-IOV.
fn pf() -> FakeFunction {
    let id = Identity {
        vendor: 0x1b36,
        device: 0x0010,
        class: 0x01_08_02,
        revision: 2,
        subsystem_vendor: 0x1b36,
        subsystem: 0x0010,
    };
    let config = Type0Config::new(id, &vf_bars(), 1).unwrap();
    let ep = EndpointConfig::new(config, |list| {
        list.msix(msix_config(4))?;
        list.pci_express(endpoint_pcie())?;
        list.function_level_reset()?;
        list.add_extended(&Ari { next_function: 0 })?;
        list.sriov(sriov_config()).map(|_| ())
    })
    .unwrap();
    FakeFunction::new(ep)
}

fn cap(f: &FakeFunction) -> usize {
    f.extended_capability(SRIOV_ID).expect("SR-IOV capability")
}

fn ctl(f: &mut FakeFunction, bits: u16) -> Option<SriovEffect> {
    let at = cap(f) + CONTROL;
    f.config_write16(at, bits).sriov
}

fn num_vfs(f: &mut FakeFunction, n: u16) -> Option<SriovEffect> {
    let at = cap(f) + NUM_VFS;
    f.config_write16(at, n).sriov
}

fn r16(f: &FakeFunction, reg: usize) -> u16 {
    f.config_read16(cap(f) + reg)
}

fn r32(f: &FakeFunction, reg: usize) -> u32 {
    f.config_read32(cap(f) + reg)
}

/// Places VF BAR 0 at `addr` (both halves).
fn place_vf_bar(f: &mut FakeFunction, addr: u64) -> Option<SriovEffect> {
    let at = cap(f) + VF_BAR0;
    f.config_write32(at, addr as u32);
    f.config_write32(at + 4, (addr >> 32) as u32).sriov
}

fn vf_windows(f: &FakeFunction, vf: u16) -> Vec<Option<BarWindow>> {
    f.ep.vf_bar_windows(vf)
        .into_iter()
        .map(|(_, w)| w)
        .collect()
}

#[test]
fn test_sriov_identity_registers_read_as_linux_requires() {
    let f = pf();

    assert_eq!(r16(&f, INITIAL_VFS), TOTAL, "InitialVFs = TotalVFs");
    assert_eq!(r16(&f, TOTAL_VFS), TOTAL);
    assert_eq!(r16(&f, FIRST_VF_OFFSET), 1);
    assert_eq!(r16(&f, VF_STRIDE), 1);
    assert_eq!(r16(&f, VF_DEVICE_ID), 0x0011);
    assert_eq!(r32(&f, SUPPORTED_PAGE_SIZES), 0x553);
    assert_eq!(r32(&f, SYSTEM_PAGE_SIZE), 1);
    assert_eq!(f.config_read32(cap(&f)) & 0xf_ffff, 0x1_0010, "ID 0x10, v1");
}

#[test]
fn test_sriov_read_only_fields_ignore_writes() {
    let mut f = pf();
    let at = cap(&f);

    for reg in [CAPABILITIES, INITIAL_VFS, FIRST_VF_OFFSET, VF_DEVICE_ID - 2] {
        f.config_write32(at + reg, u32::MAX);
    }
    f.config_write32(at + SUPPORTED_PAGE_SIZES, u32::MAX);
    f.config_write32(at + MIGRATION_STATE, u32::MAX);

    assert_eq!(r32(&f, CAPABILITIES), 0);
    assert_eq!(r16(&f, INITIAL_VFS), TOTAL);
    assert_eq!(r16(&f, TOTAL_VFS), TOTAL);
    assert_eq!(r16(&f, FIRST_VF_OFFSET), 1);
    assert_eq!(r16(&f, VF_STRIDE), 1);
    assert_eq!(r16(&f, VF_DEVICE_ID), 0x0011);
    assert_eq!(r32(&f, SUPPORTED_PAGE_SIZES), 0x553);
    assert_eq!(r32(&f, MIGRATION_STATE), 0);
    assert_eq!(r16(&f, STATUS), 0);
}

#[test]
fn test_sriov_control_keeps_only_enable_mse_and_ari_bits() {
    let mut f = pf();

    ctl(&mut f, 0xffff);

    let expected = control::VF_ENABLE | control::VF_MSE | control::ARI_CAPABLE_HIERARCHY;
    assert_eq!(r16(&f, CONTROL), expected);
}

#[test]
fn test_sriov_enable_with_mse_in_one_write_reports_vfs_and_decoding() {
    let mut f = pf();
    place_vf_bar(&mut f, 0x1_0000_0000);
    num_vfs(&mut f, 2);

    let e = ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    assert_eq!(
        e,
        Some(SriovEffect {
            vfs: Some(VfChange::Enabled(2)),
            memory_space: Some(true),
            bars_moved: false,
        })
    );
    let window = |addr| Some(BarWindow { addr, size: 0x4000 });
    assert_eq!(vf_windows(&f, 0), vec![window(0x1_0000_0000)]);
    assert_eq!(vf_windows(&f, 1), vec![window(0x1_0000_4000)]);
    assert_eq!(vf_windows(&f, 2), vec![None], "VF 2 >= NumVFs");
}

#[test]
fn test_sriov_disable_reports_vfs_gone_and_no_window_remains() {
    let mut f = pf();
    num_vfs(&mut f, 2);
    ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    let e = ctl(&mut f, 0);

    assert_eq!(
        e,
        Some(SriovEffect {
            vfs: Some(VfChange::Disabled),
            memory_space: Some(false),
            bars_moved: false,
        })
    );
    assert_eq!(vf_windows(&f, 0), vec![None]);
}

#[test]
fn test_sriov_num_vfs_above_total_enables_nothing() {
    let mut f = pf();
    num_vfs(&mut f, TOTAL + 1);

    let e = ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    assert_eq!(
        r16(&f, CONTROL) & control::VF_ENABLE,
        0,
        "VF Enable refused"
    );
    assert_eq!(e.and_then(|e| e.vfs), None);
    assert_eq!(vf_windows(&f, 0), vec![None]);
    assert_eq!(r16(&f, NUM_VFS), TOTAL + 1, "NumVFs itself is stored");
}

#[test]
fn test_sriov_num_vfs_0xffff_then_enable_enables_nothing() {
    let mut f = pf();
    num_vfs(&mut f, 0xffff);

    let e = ctl(&mut f, control::VF_ENABLE);

    assert_eq!(e, None);
    assert_eq!(vf_windows(&f, 0xfffe), vec![None]);
}

#[test]
fn test_sriov_num_vfs_ari_and_page_size_locked_while_enabled() {
    let mut f = pf();
    num_vfs(&mut f, 2);
    ctl(&mut f, control::VF_ENABLE | control::ARI_CAPABLE_HIERARCHY);
    let at = cap(&f);

    let e = num_vfs(&mut f, 5);
    f.config_write16(at + CONTROL, control::VF_ENABLE);
    f.config_write32(at + SYSTEM_PAGE_SIZE, 0x10);

    assert_eq!(e, None);
    assert_eq!(r16(&f, NUM_VFS), 2);
    assert_ne!(r16(&f, CONTROL) & control::ARI_CAPABLE_HIERARCHY, 0);
    assert_eq!(r32(&f, SYSTEM_PAGE_SIZE), 1);
}

#[test]
fn test_sriov_enable_without_mse_creates_vfs_that_do_not_decode() {
    let mut f = pf();
    place_vf_bar(&mut f, 0xc000_0000);
    num_vfs(&mut f, 1);

    let e = ctl(&mut f, control::VF_ENABLE);
    let windows = vf_windows(&f, 0);
    let mse = ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    assert_eq!(e.unwrap().vfs, Some(VfChange::Enabled(1)));
    assert_eq!(windows, vec![None], "VF MSE clear: nothing decodes");
    assert_eq!(
        mse,
        Some(SriovEffect {
            vfs: None,
            memory_space: Some(true),
            bars_moved: false,
        })
    );
    assert!(vf_windows(&f, 0)[0].is_some());
}

#[test]
fn test_sriov_mse_without_enable_decodes_nothing() {
    let mut f = pf();
    num_vfs(&mut f, 1);

    let e = ctl(&mut f, control::VF_MSE);

    assert_eq!(e.unwrap().vfs, None);
    assert_eq!(vf_windows(&f, 0), vec![None]);
}

#[test]
fn test_sriov_vf_bar_sizes_as_a_64_bit_bar() {
    let mut f = pf();
    let at = cap(&f) + VF_BAR0;

    f.config_write32(at, u32::MAX);
    f.config_write32(at + 4, u32::MAX);

    assert_eq!(f.config_read32(at), 0xffff_c004, "64-bit, 16 KiB");
    assert_eq!(f.config_read32(at + 4), u32::MAX);
    assert_eq!(f.config_read32(at + 8), 0, "VF BAR 2 is not implemented");
}

#[test]
fn test_sriov_vf_bar_odd_sizing_writes_keep_type_bits_and_granule() {
    let mut f = pf();
    let at = cap(&f) + VF_BAR0;

    f.config_write8(at, 0xff);
    f.config_write16(at + 1, 0x1234);
    f.config_write(at + 3, &[0xab, 0xcd, 0xef]);

    let low = f.config_read32(at);
    assert_eq!(low & 0xf, 0x4, "type bits stay 64-bit memory");
    assert_eq!(low & 0x3ff0, 0, "address bits below 16 KiB read 0");
    assert_eq!(low, 0xab12_0004 & 0xffff_c00f);
    assert_eq!(f.config_read32(at + 4), 0x0000_efcd);
}

#[test]
fn test_sriov_system_page_size_64k_widens_the_vf_bar_granule() {
    let mut f = pf();
    let at = cap(&f);

    f.config_write32(at + SYSTEM_PAGE_SIZE, 1 << 4);
    f.config_write32(at + VF_BAR0, u32::MAX);
    let sized = f.config_read32(at + VF_BAR0);
    place_vf_bar(&mut f, 0x1_0000_0000);
    num_vfs(&mut f, 2);
    ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    assert_eq!(sized, 0xffff_0004, "64 KiB granule");
    assert_eq!(
        vf_windows(&f, 1),
        vec![Some(BarWindow {
            addr: 0x1_0001_0000,
            size: 0x1_0000
        })]
    );
}

#[test]
fn test_sriov_system_page_size_refuses_unsupported_and_multiple_bits() {
    let mut f = pf();
    let at = cap(&f) + SYSTEM_PAGE_SIZE;

    for bad in [0, 0x3, 1 << 2, 1 << 31, 0x553] {
        f.config_write32(at, bad);
        assert_eq!(f.config_read32(at), 1, "{bad:#x} discarded");
    }
    f.config_write32(at, 1 << 1);
    assert_eq!(f.config_read32(at), 1 << 1, "8 KiB is supported");
}

#[test]
fn test_sriov_moving_vf_bar_while_decoding_reports_it() {
    let mut f = pf();
    num_vfs(&mut f, 1);
    ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    let e = place_vf_bar(&mut f, 0x2_0000_0000);

    assert!(e.unwrap().bars_moved);
    assert_eq!(vf_windows(&f, 0)[0].unwrap().addr, 0x2_0000_0000);
}

#[test]
fn test_sriov_linux_probe_sequence_reads_nonzero_offset_and_stride() {
    let mut f = pf();
    ctl(&mut f, control::ARI_CAPABLE_HIERARCHY);
    f.config_write32(cap(&f) + SYSTEM_PAGE_SIZE, 1);

    let mut seen = Vec::new();
    for n in (1..=TOTAL).rev() {
        num_vfs(&mut f, n);
        seen.push((r16(&f, FIRST_VF_OFFSET), r16(&f, VF_STRIDE)));
    }
    num_vfs(&mut f, 0);

    assert!(seen.iter().all(|&(o, s)| o != 0 && s != 0));
    assert_eq!(
        f.ep.caps()
            .sriov()
            .unwrap()
            .vf_function(f.ep.config().regs(), 7),
        Some(8)
    );
}

#[test]
fn test_sriov_toggling_enable_with_every_width_never_panics_and_stays_consistent() {
    let mut f = pf();
    let at = cap(&f);
    num_vfs(&mut f, 3);
    let mut enabled = false;

    for width in [1usize, 2, 4, 8] {
        for round in 0..4u16 {
            let bits = if round % 2 == 0 {
                control::VF_ENABLE | control::VF_MSE
            } else {
                0
            };
            let mut data = vec![0u8; width];
            data[0] = bits as u8;
            if width >= 4 {
                // the Status half of the DWORD, and more: read-only or RW1C
                data[2..].fill(0xff);
            }
            let e = f.config_write(at + CONTROL, &data).sriov;
            let now = r16(&f, CONTROL) & control::VF_ENABLE != 0;
            match e.and_then(|e| e.vfs) {
                Some(VfChange::Enabled(n)) => assert!(!enabled && now && n == 3),
                Some(VfChange::Disabled) => assert!(enabled && !now),
                None => assert_eq!(enabled, now),
            }
            enabled = now;
        }
    }
    assert_eq!(r16(&f, NUM_VFS), 3);
}

#[test]
fn test_sriov_hostile_sweep_keeps_invariants() {
    let mut f = pf();
    let at = cap(&f);
    let mut rng = Rng::new(0x5eed_0010);

    for _ in 0..20_000 {
        let off = at + rng.below(SIZE as u64 + 4) as usize;
        let data = rng.data();
        f.config_write(off, &data);
        let st = f.ep.caps().sriov().unwrap().state(f.ep.config().regs());
        assert!(!st.vf_enabled() || st.num_vfs <= TOTAL, "{st:?}");
        assert_eq!(st.system_page_size.count_ones(), 1);
        assert_eq!(r16(&f, TOTAL_VFS), TOTAL);
        assert_eq!(r16(&f, INITIAL_VFS), TOTAL);
        assert_eq!(r16(&f, FIRST_VF_OFFSET), 1);
        assert_eq!(f.config_read32(at + VF_BAR0) & 0xf, 0x4);
    }
}

#[test]
fn test_sriov_reset_disables_vfs_and_clears_fields() {
    let mut f = pf();
    place_vf_bar(&mut f, 0x1_0000_0000);
    num_vfs(&mut f, 4);
    ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    let e = f.ep.reset_sriov();

    assert_eq!(e.unwrap().vfs, Some(VfChange::Disabled));
    assert_eq!(r16(&f, CONTROL), 0);
    assert_eq!(r16(&f, NUM_VFS), 0);
    assert_eq!(f.config_read32(cap(&f) + VF_BAR0), 0x4);
}

#[test]
fn test_sriov_config_refuses_bad_descriptions() {
    let mut regs = crate::regs::RegisterMask::new(4096);
    let mut list = crate::caps::CapabilityList::new(&mut regs);
    let io_bar = SriovConfig {
        vf_bars: vec![BarSpec {
            index: 0,
            kind: BarKind::Io,
            size: 0x20,
        }],
        ..sriov_config()
    };

    let zero = list.sriov(SriovConfig {
        total_vfs: 0,
        ..sriov_config()
    });
    let too_many = list.sriov(SriovConfig {
        total_vfs: 256,
        ..sriov_config()
    });
    let no_4k = list.sriov(SriovConfig {
        supported_page_sizes: 0x2,
        ..sriov_config()
    });

    assert!(matches!(zero, Err(CapError::Sriov(_))));
    assert!(matches!(too_many, Err(CapError::Sriov(_))));
    assert!(matches!(no_4k, Err(CapError::Sriov(_))));
    assert!(matches!(list.sriov(io_bar), Err(CapError::Sriov(_))));
    assert!(list.sriov(sriov_config()).is_ok());
    assert!(matches!(
        list.sriov(sriov_config()),
        Err(CapError::Duplicate { .. })
    ));
}

#[test]
fn test_ari_next_function_is_zero_and_read_only() {
    let mut f = pf();
    let at = f.extended_capability(ARI_ID).expect("ARI capability");

    f.config_write32(at + 4, u32::MAX);

    assert_eq!(f.config_read32(at + 4), 0, "no next function, no groups");
}

#[test]
fn test_flr_is_advertised_and_initiate_returns_an_effect_and_reads_zero() {
    let mut f = pf();
    let pcie = f.capability(id::PCIE).unwrap();

    let before = f.config_read16(pcie + DEVCTL);
    f.config_write16(pcie + DEVCTL, before | devctl::INITIATE_FLR);

    assert_ne!(f.config_read32(pcie + DEVCAP) & devcap::FLR, 0);
    assert!(f.last_caps.flr);
    assert_eq!(f.config_read16(pcie + DEVCTL), before, "reads 0 again");
    f.config_write16(pcie + DEVCTL, before);
    assert!(!f.last_caps.flr, "a write without the bit is no FLR");
}

#[test]
fn test_flr_without_capability_is_ignored() {
    let mut f = FakeFunction::new(super::util::endpoint());
    let pcie = f.capability(id::PCIE).unwrap();

    f.config_write16(pcie + DEVCTL, devctl::INITIATE_FLR);

    assert!(!f.last_caps.flr);
    assert_eq!(f.config_read32(pcie + DEVCAP) & devcap::FLR, 0);
}

#[test]
fn test_flr_of_a_pf_restores_the_header_and_disables_its_vfs() {
    let mut f = pf();
    let pcie = f.capability(id::PCIE).unwrap();
    let msix = f.capability(id::MSIX).unwrap();
    f.config_write32(0x10, 0xfebf_0000);
    f.config_write16(crate::config::COMMAND, 0x6);
    f.config_write16(msix + 2, 0x8000);
    num_vfs(&mut f, 2);
    ctl(&mut f, control::VF_ENABLE | control::VF_MSE);

    let e = f.config_write16(pcie + DEVCTL, devctl::INITIATE_FLR);

    assert!(f.last_caps.flr);
    assert_eq!(e.bus_master, Some(false));
    assert_eq!(e.bars.len(), 1);
    assert_eq!(e.bars[0].new, None, "memory decoding off");
    assert_eq!(e.sriov.unwrap().vfs, Some(VfChange::Disabled));
    assert_eq!(f.config_read16(crate::config::COMMAND), 0);
    assert_eq!(f.config_read16(msix + 2) & 0x8000, 0, "MSI-X disabled");
    assert_eq!(f.config_read32(0x10), 0x4, "BAR back to reset");
    assert_eq!(r16(&f, CONTROL), 0);
}

#[test]
fn test_flr_of_a_vf_keeps_the_windows_its_pf_gave_it() {
    let id = Identity {
        vendor: 0x1b36,
        device: 0x0010,
        class: 0x01_08_02,
        revision: 2,
        subsystem_vendor: 0x1b36,
        subsystem: 0x0010,
    };
    let config = Type0Config::virtual_function(id, &vf_bars()).unwrap();
    let mut ep = EndpointConfig::new(config, |list| {
        list.msix(msix_config(4))?;
        list.pci_express(endpoint_pcie())?;
        list.function_level_reset()
    })
    .unwrap();
    let window = Some(BarWindow {
        addr: 0x1_0000_4000,
        size: VF_BAR_SIZE,
    });
    ep.config_mut()
        .set_vf_bar_windows(vec![(vf_bars()[0], window)]);
    ep.write(crate::config::COMMAND, &4u16.to_le_bytes());
    let mut f = FakeFunction::new(ep);
    let pcie = f.capability(id::PCIE).unwrap();

    let e = f.config_write16(pcie + DEVCTL, devctl::INITIATE_FLR);

    assert_eq!(e.bus_master, Some(false));
    assert_eq!(f.bar_windows(), vec![(vf_bars()[0], window)]);
}

#[test]
fn test_root_port_offers_acs_whose_enables_read_back() {
    use crate::bridge::{RootPort, RootPortConfig};
    use crate::caps::acs::{bits, ACS_ID, CAPABILITY, CONTROL};
    let mut port = RootPort::new(RootPortConfig::default()).unwrap();
    let at = port.extended_capability(ACS_ID).expect("ACS capability");

    port.config_write16(at + CAPABILITY, 0);
    port.config_write16(at + CONTROL, 0xffff);

    assert_eq!(port.config_read16(at + CAPABILITY), bits::OFFERED);
    assert_eq!(
        port.config_read16(at + CONTROL),
        bits::OFFERED,
        "only offered bits"
    );
    assert_eq!(bits::OFFERED & bits::TRANSLATION_BLOCKING, 0);
}
