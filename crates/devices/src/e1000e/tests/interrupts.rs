//! Interrupt causes, masks, MSI-X routing through IVAR with auto-clear
//! and auto-mask, MSI, INTx, and ITR/EITR moderation.

use std::time::Duration;

use super::driver::*;
use crate::e1000e::desc::cmd;
use crate::e1000e::regs::{self, icr};

#[test]
fn test_icr_read_clears_and_ics_sets() {
    let mut d = Driver::new();
    d.r32(regs::ICR);
    d.w32(regs::ICS, icr::RXSEQ);
    assert_eq!(d.r32(regs::ICR) & icr::RXSEQ, icr::RXSEQ);
    assert_eq!(d.r32(regs::ICR), 0);
}

#[test]
fn test_intx_level_follows_icr_and_ims_and_int_asserted() {
    let mut d = Driver::with(Setup {
        msix: false,
        msi: false,
    });
    d.r32(regs::ICR);
    d.w32(regs::ICS, icr::TXDW);
    assert!(!d.line.level(), "masked");
    d.w32(regs::IMS, icr::TXDW);
    assert!(d.line.level());
    let v = d.r32(regs::ICR);
    assert_eq!(v, icr::TXDW | icr::INT_ASSERTED);
    assert!(!d.line.level());
    d.w32(regs::IMC, icr::TXDW);
    d.w32(regs::ICS, icr::TXDW);
    assert!(!d.line.level());
}

/// What `ethtool -t`'s interrupt test does for bits 0–9 over INTx.
#[test]
fn test_ethtool_interrupt_test_sequence_over_intx() {
    let mut d = Driver::new();
    d.w32(regs::IMC, 0xffff_ffff);
    d.r32(regs::ICR);
    for i in 0..10 {
        let mask = 1u32 << i;
        d.w32(regs::IMC, mask);
        d.w32(regs::ICS, mask);
        assert!(!d.line.level(), "bit {i} masked");
        d.r32(regs::ICR);
        d.w32(regs::IMS, mask);
        d.w32(regs::ICS, mask);
        assert!(d.line.level(), "bit {i} raised");
        assert_ne!(d.r32(regs::ICR) & mask, 0);
        d.w32(regs::IMC, !mask & 0x7fff);
        d.w32(regs::ICS, !mask & 0x7fff);
        assert!(!d.line.level(), "other bits masked");
        d.r32(regs::ICR);
    }
}

#[test]
fn test_iame_masks_on_icr_read() {
    let mut d = Driver::with(Setup {
        msix: false,
        msi: false,
    });
    d.w32(regs::CTRL_EXT, regs::ctrl_ext::IAME);
    d.w32(regs::IAM, 0xffff_ffff);
    d.w32(regs::IMS, icr::RXT0);
    d.w32(regs::ICS, icr::RXT0);
    d.r32(regs::ICR);
    assert_eq!(d.r32(regs::IMS), 0);
}

#[test]
fn test_msi_sent_once_per_assertion() {
    let mut d = Driver::new();
    d.enable_msi();
    d.r32(regs::ICR);
    d.w32(regs::IMS, icr::RXT0 | icr::TXDW);
    d.w32(regs::ICS, icr::RXT0);
    d.w32(regs::ICS, icr::TXDW);
    assert_eq!(d.sent(), vec![0]);
    d.r32(regs::ICR);
    d.w32(regs::ICS, icr::TXDW);
    assert_eq!(d.sent(), vec![0, 0]);
    assert!(!d.line.level());
}

#[test]
fn test_msix_routes_rx_tx_other_through_ivar() {
    let mut d = Driver::new();
    d.enable_msix();
    d.r32(regs::ICR);
    d.w32(regs::IMS, icr::RXQ0 | icr::TXQ0 | icr::OTHER | icr::LSC);
    d.setup_rx(false);
    d.setup_tx();
    d.host_send(&frame(60, 0));
    d.poll();
    d.put_legacy(&frame(60, 1), cmd::EOP | cmd::RS);
    d.kick_tx();
    d.w32(regs::ICS, icr::LSC);
    assert_eq!(d.sent(), vec![0, 1, 2]);
    assert_eq!(
        d.r32(regs::ICR) & (icr::RXQ0 | icr::TXQ0),
        0,
        "EIAC auto-cleared"
    );
}

#[test]
fn test_msix_auto_mask_holds_next_until_ims() {
    let mut d = Driver::new();
    d.enable_msix();
    d.w32(regs::IMS, icr::RXQ0);
    d.setup_rx(false);
    d.host_send(&frame(60, 0));
    d.poll();
    d.host_send(&frame(60, 1));
    d.poll();
    assert_eq!(d.sent(), vec![0], "second frame held: RXQ0 auto-masked");
    assert_eq!(d.r32(regs::IMS) & icr::RXQ0, 0);
    d.w32(regs::IMS, icr::RXQ0);
    assert_eq!(d.sent(), vec![0, 0]);
}

#[test]
fn test_ivar_without_valid_bit_sends_nothing() {
    let mut d = Driver::new();
    d.enable_msix();
    d.w32(regs::IVAR, 0x7);
    d.w32(regs::IMS, icr::RXQ0);
    d.w32(regs::ICS, icr::RXQ0);
    assert!(d.sent().is_empty());
    assert_eq!(d.nic.with_core(|c| c.intr.bad_ivar), 1);
}

#[test]
fn test_eitr_holds_second_interrupt_until_gap_elapses() {
    let mut d = Driver::new();
    d.enable_msix();
    d.w32(regs::CTRL_EXT, 0);
    // 20 ms gap on vector 1.
    d.w32(regs::EITR0 + 4, 78_125);
    d.w32(regs::IMS, icr::TXQ0);
    d.w32(regs::ICS, icr::TXQ0);
    d.w32(regs::ICS, icr::TXQ0);
    assert_eq!(d.sent(), vec![1]);
    assert!(d.nic.with_core(|c| c.deadline()).is_some());
    std::thread::sleep(Duration::from_millis(25));
    d.nic.with_core(|c| c.flush_interrupts());
    assert_eq!(d.sent(), vec![1, 1]);
}

#[test]
fn test_itr_moderates_msi() {
    let mut d = Driver::new();
    d.enable_msi();
    d.w32(regs::ITR, 78_125);
    d.w32(regs::IMS, icr::RXT0);
    d.w32(regs::ICS, icr::RXT0);
    d.r32(regs::ICR);
    d.w32(regs::ICS, icr::RXT0);
    assert_eq!(d.sent(), vec![0], "held by ITR");
    std::thread::sleep(Duration::from_millis(25));
    d.nic.with_core(|c| c.flush_interrupts());
    assert_eq!(d.sent(), vec![0, 0]);
}
