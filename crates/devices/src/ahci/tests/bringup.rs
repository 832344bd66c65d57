//! PCI identity, HBA registers and the libahci bring-up sequence.

use pci::testing::{BarDriver, ConfigDriver};

use super::driver::{fb, DiskSpec, Driver, Setup, TFD_OK};
use crate::ahci::regs::{self, ghc, pcmd, pis, port};
use crate::ahci::{ABAR, ABAR_SIZE};

#[test]
fn test_bringup_pci_identity_and_abar() {
    let mut d = Driver::new();
    assert_eq!(d.ahci.config_read32(0), 0x2922_8086);
    assert_eq!(d.ahci.config_read32(8) >> 8, 0x01_06_01);
    let bars = d.ahci.size_bars();
    assert_eq!(bars.len(), 1);
    assert_eq!((bars[0].index, bars[0].size), (ABAR, ABAR_SIZE));
    assert!(d.ahci.capability(pci::caps::id::MSI).is_some());
}

#[test]
fn test_bringup_host_registers() {
    let mut d = Driver::new();
    let cap = d.r32(regs::CAP as u64);
    assert_eq!(cap & 0x1f, 1, "two ports");
    assert_eq!((cap >> 8) & 0x1f, 31, "32 slots");
    assert_ne!(cap & regs::cap::SNCQ, 0);
    assert_ne!(cap & regs::cap::S64A, 0);
    assert_eq!(d.r32(regs::PI as u64), 0b11);
    assert_eq!(d.r32(regs::VS as u64), 0x0001_0301);
    assert_eq!(d.r32(regs::GHC as u64), ghc::AE);
}

#[test]
fn test_bringup_linux_sequence_finds_a_disk_and_an_empty_port() {
    let mut d = Driver::new();
    d.bring_up();
    assert_eq!(d.pr(0, port::SSTS), 0x133);
    assert_eq!(d.pr(0, port::SIG), 0x101);
    assert_eq!(d.pr(0, port::TFD) & 0xff, TFD_OK);
    assert_eq!(d.pr(1, port::SSTS) & 0xf, 0, "no device on port 1");
    assert_eq!(d.hardreset(1), None);
    assert_eq!(d.hardreset(0), Some(0x101));
    let cmd = d.pr(0, port::CMD);
    assert_eq!(
        cmd & (pcmd::ST | pcmd::CR | pcmd::FRE | pcmd::FR),
        pcmd::ST | pcmd::CR | pcmd::FRE | pcmd::FR
    );
    // The signature FIS sits in the received-FIS area.
    let r = d.rfis(0);
    assert_eq!(&r[0x40..0x44], &[0x34, 0x00, 0x50, 0x01]);
}

#[test]
fn test_bringup_comreset_sets_serr_and_change_bits() {
    let mut d = Driver::new();
    d.bring_up();
    d.stop_port(0);
    d.pw(0, port::SCTL, 0x301);
    assert_eq!(d.pr(0, port::TFD) & 0x80, 0x80, "BSY while in COMRESET");
    assert_eq!(d.pr(0, port::SSTS) & 0xf, 0);
    d.pw(0, port::SCTL, 0x300);
    assert_eq!(d.pr(0, port::SSTS), 0x133);
    let serr = d.pr(0, port::SERR);
    assert_eq!(serr & (1 << 26 | 1 << 16), 1 << 26 | 1 << 16);
    assert_eq!(
        d.pr(0, port::IS) & (pis::PCS | pis::PRCS),
        pis::PCS | pis::PRCS
    );
    d.pw(0, port::SERR, serr);
    assert_eq!(
        d.pr(0, port::IS) & (pis::PCS | pis::PRCS),
        0,
        "mirrors SERR"
    );
}

#[test]
fn test_bringup_identify_by_pio_with_e_status() {
    let mut d = Driver::new();
    d.bring_up();
    let before = d.msi_count();
    let (tfd, id) = d.identify(0);
    assert_eq!(tfd & 0xff, TFD_OK);
    assert_eq!(d.pr(0, port::CI), 0);
    assert_eq!(u16::from_le_bytes([id[150], id[151]]), 31, "queue depth 32");
    let sectors = u64::from_le_bytes(id[200..208].try_into().unwrap());
    assert_eq!(sectors, (4 << 20) / 512);
    assert_eq!(&id[54..58], b"oimv", "model, byte-swapped");
    let r = d.rfis(0);
    assert_eq!(r[0x20], 0x5f, "PIO Setup FIS");
    assert_eq!(r[0x20 + 15], 0x50, "E_Status");
    assert_ne!(d.pr(0, port::IS) & pis::PSS, 0);
    assert_eq!(d.prdbc(0, 0), 512);
    assert_eq!(d.msi_count(), before + 1, "one message");
    assert_eq!(d.vectors.sent_vectors(), vec![0; d.msi_count()]);
}

#[test]
fn test_bringup_intx_without_msi() {
    let mut d = Driver::with(Setup {
        msi: false,
        ..Setup::default()
    });
    d.bring_up();
    assert!(!d.line.level());
    d.identify(0);
    assert!(d.line.level(), "INTx asserted");
    let is = d.pr(0, port::IS);
    d.pw(0, port::IS, is);
    assert!(d.line.level(), "still set in IS");
    d.w32(regs::IS as u64, 1);
    assert!(!d.line.level(), "deasserted once IS is clear");
}

#[test]
fn test_bringup_host_is_stays_set_while_port_pending() {
    let mut d = Driver::with(Setup {
        msi: false,
        ..Setup::default()
    });
    d.bring_up();
    d.identify(0);
    d.w32(regs::IS as u64, 1);
    assert_eq!(d.r32(regs::IS as u64), 1, "PxIS not cleared yet");
    assert!(d.line.level());
}

#[test]
fn test_bringup_hba_reset_returns_ports_to_reset() {
    let mut d = Driver::new();
    d.bring_up();
    d.reset_hba();
    assert_eq!(d.pr(0, port::CMD) & (pcmd::ST | pcmd::FRE), 0);
    assert_eq!(d.pr(0, port::CLB), 0);
    assert_eq!(d.r32(regs::GHC as u64), ghc::AE, "IE cleared");
    assert_eq!(d.pr(0, port::SIG), 0x101, "the link came up again");
    // The signature waits for FRE; FB was reset, so program it again.
    d.dma.write(fb(0), &[0u8; 256]).unwrap();
    d.start_port(0);
    assert_eq!(d.rfis(0)[0x40], 0x34);
}

#[test]
fn test_bringup_six_ports_two_disks() {
    let mut d = Driver::with(Setup {
        ports: 6,
        disks: vec![Some(DiskSpec::default()), None, Some(DiskSpec::default())],
        ..Setup::default()
    });
    d.bring_up();
    assert_eq!(d.r32(regs::PI as u64), 0x3f);
    assert_eq!(d.pr(0, port::SIG), 0x101);
    assert_eq!(d.pr(2, port::SIG), 0x101);
    for p in [1, 3, 4, 5] {
        assert_eq!(d.pr(p, port::SSTS), 0, "port {p} empty");
    }
    assert_eq!(d.identify(2).0 & 0xff, TFD_OK);
}
