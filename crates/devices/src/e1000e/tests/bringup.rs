//! Probe and reset as Linux's e1000e does them, and the register test of
//! `ethtool -t offline`.

use pci::testing::{BarDriver, ConfigDriver};

use super::driver::*;
use crate::e1000e::regs::{self, ctrl, status};
use crate::e1000e::{DEVICE_82574L, VENDOR_INTEL};

#[test]
fn test_identity_is_intel_82574l_with_four_bars_and_msix() {
    let mut d = Driver::new();
    assert_eq!(d.nic.config_read16(0), VENDOR_INTEL);
    assert_eq!(d.nic.config_read16(2), DEVICE_82574L);
    assert_eq!(d.nic.config_read32(8) >> 8, 0x02_00_00);
    let bars = d.nic.size_bars();
    let sizes: Vec<(usize, u64)> = bars.iter().map(|b| (b.index, b.size)).collect();
    assert_eq!(
        sizes,
        vec![(0, 0x2_0000), (1, 0x2_0000), (2, 0x20), (3, 0x4000)]
    );
    assert!(bars[2].is_io());
    assert!(d.nic.capability(0x11).is_some(), "MSI-X");
    assert!(d.nic.capability(0x05).is_some(), "MSI");
    assert!(d.nic.capability(0x10).is_some(), "PCI Express");
}

#[test]
fn test_msix_and_msi_off_leave_capabilities_out() {
    let d = Driver::with(Setup {
        msix: false,
        msi: false,
    });
    assert!(d.nic.capability(0x11).is_none());
    assert!(d.nic.capability(0x05).is_none());
}

#[test]
fn test_status_reports_link_up_1000_full_duplex() {
    let mut d = Driver::new();
    let s = d.r32(regs::STATUS);
    assert_eq!(
        s & (status::LU | status::FD | status::SPEED_1000),
        status::LU | status::FD | status::SPEED_1000
    );
    assert_ne!(s & status::GIO_MASTER_ENABLE, 0);
    d.w32(regs::CTRL, ctrl::GIO_MASTER_DISABLE);
    assert_eq!(d.r32(regs::STATUS) & status::GIO_MASTER_ENABLE, 0);
}

#[test]
fn test_nvm_through_eerd_holds_mac_and_checksum_baba() {
    let mut d = Driver::new();
    let words: Vec<u16> = (0..=0x3f).map(|a| d.nvm_read(a)).collect();
    let sum = words.iter().fold(0u16, |a, &w| a.wrapping_add(w));
    assert_eq!(sum, 0xbaba);
    assert_eq!(words[0].to_le_bytes(), [MAC[0], MAC[1]]);
    assert_eq!(words[2].to_le_bytes(), [MAC[4], MAC[5]]);
}

#[test]
fn test_reset_loads_mac_into_ral0_rah0_with_av() {
    let mut d = Driver::new();
    d.w32(regs::RA, 0);
    d.w32(regs::CTRL, ctrl::RST);
    assert_eq!(d.r32(regs::CTRL) & ctrl::RST, 0, "RST self-clears");
    assert_eq!(d.r32(regs::RA).to_le_bytes(), MAC[..4]);
    let hi = d.r32(regs::RA + 4);
    assert_eq!(hi >> 31, 1);
    assert_eq!((hi as u16).to_le_bytes(), MAC[4..]);
    assert_ne!(d.r32(regs::EECD) & regs::eecd::AUTO_RD, 0);
    assert_ne!(d.r32(regs::EEMNGCTL) & 1 << 18, 0, "configuration done");
}

#[test]
fn test_phy_id_and_link_through_mdic() {
    let mut d = Driver::new();
    assert_eq!(d.phy_read(2), 0x0141);
    assert_eq!(d.phy_read(3), 0x0cb1);
    assert_ne!(d.phy_read(1) & 0x24, 0, "link and AN complete");
    assert_eq!(d.phy_read(17) & 0xc000, 0x8000, "1000 Mb/s");
}

#[test]
fn test_mdic_other_phy_address_sets_error() {
    let mut d = Driver::new();
    d.w32(regs::MDIC, 2 << 16 | 3 << 21 | 2 << 26);
    assert_ne!(d.r32(regs::MDIC) & 1 << 30, 0);
}

#[test]
fn test_phy_power_down_drops_link_and_raises_lsc() {
    let mut d = Driver::new();
    d.r32(regs::ICR);
    d.phy_write(0, 0x1140 | 1 << 11);
    assert_eq!(d.r32(regs::STATUS) & status::LU, 0);
    assert_ne!(d.r32(regs::ICR) & regs::icr::LSC, 0);
    d.phy_write(0, 0x1140);
    assert_ne!(d.r32(regs::STATUS) & status::LU, 0);
    assert_ne!(d.r32(regs::ICR) & regs::icr::LSC, 0);
}

/// The pattern part of `ethtool -t offline`'s register test for the
/// 82574 (e1000e `e1000_reg_test`).
#[test]
fn test_ethtool_register_test_patterns_hold() {
    let mut d = Driver::new();
    let before = d.r32(regs::STATUS);
    d.w32(regs::STATUS, 0xffff_f833);
    assert_eq!(d.r32(regs::STATUS) & 0xffff_f833, before & 0xffff_f833);
    let patterns = [
        (regs::FCAL, 0xffff_ffff, 0xffff_ffff),
        (regs::FCAH, 0x0000_ffff, 0xffff_ffff),
        (regs::FCT, 0x0000_ffff, 0xffff_ffff),
        (regs::VET, 0x0000_ffff, 0xffff_ffff),
        (regs::RDTR, 0x0000_ffff, 0xffff_ffff),
        (regs::RDBAH, 0xffff_ffff, 0xffff_ffff),
        (regs::RDLEN, 0x000f_ff80, 0x000f_ffff),
        (regs::RDH, 0x0000_ffff, 0x0000_ffff),
        (regs::RDT, 0x0000_ffff, 0x0000_ffff),
        (regs::FCRTH, 0x0000_fff8, 0x0000_fff8),
        (regs::FCTTV, 0x0000_ffff, 0x0000_ffff),
        (regs::TIPG, 0x3fff_ffff, 0x3fff_ffff),
        (regs::TDBAH, 0xffff_ffff, 0xffff_ffff),
        (regs::TDLEN, 0x000f_ff80, 0x000f_ffff),
        (regs::RDBAL, 0xffff_fff0, 0xffff_ffff),
        (regs::TXCW, 0xc000_ffff, 0x0000_ffff),
        (regs::TDBAL, 0xffff_fff0, 0xffff_ffff),
        (regs::TIDV, 0x0000_ffff, 0x0000_ffff),
    ];
    let mut all: Vec<(usize, u32, u32)> = patterns.to_vec();
    all.extend((0..15).map(|i| (regs::RA + 8 * i + 4, 0x8003_ffff, 0xffff_ffff)));
    all.extend((0..128).map(|i| (regs::MTA + 4 * i, 0xffff_ffff, 0xffff_ffff)));
    for (reg, mask, write) in all {
        for pat in [0x5a5a_5a5a, 0xa5a5_a5a5, 0, 0xffff_ffff] {
            d.w32(reg, pat & write);
            assert_eq!(
                d.r32(reg),
                pat & write & mask,
                "register {reg:#x} pattern {pat:#x}"
            );
        }
    }
    for (write, mask) in [
        (0, 0xffff_ffff),
        (0x003f_fffb, 0x06df_b3fe),
        (0xffff_ffff, 0x06df_b3fe),
    ] {
        d.w32(regs::RCTL, write & mask);
        assert_eq!(d.r32(regs::RCTL) & mask, write & mask);
    }
}

#[test]
fn test_io_bar_reaches_registers_indirectly() {
    let mut d = Driver::new();
    d.nic.bar_write32(2, 0, regs::STATUS as u32);
    let s = d.nic.bar_read32(2, 4);
    assert_eq!(s, d.r32(regs::STATUS));
    d.nic.bar_write32(2, 0, regs::TIDV as u32);
    d.nic.bar_write32(2, 4, 0x1234);
    assert_eq!(d.r32(regs::TIDV), 0x1234);
}

#[test]
fn test_statistics_clear_on_read() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.host_send(&frame(100, 1));
    d.poll();
    assert_eq!(d.r32(0x4074), 1, "GPRC");
    assert_eq!(d.r32(0x4074), 0, "cleared");
}
