//! Interrupts: MSI-X vectors, masking, ISR and INTx (§4.1.4.5, §4.1.5.3–4).

use pci::config::{command, status, STATUS};
use pci::testing::{ConfigDriver, MsixDriver};

use super::driver::{cc, rig, Rig};
use crate::pci::signals::{ISR_CONFIG, ISR_QUEUE, NO_VECTOR};
use crate::pci::status::DEVICE_NEEDS_RESET;

fn running_with_msix() -> Rig {
    let mut r = rig();
    r.place_bar();
    r.enable_msix();
    r.bring_up();
    r
}

#[test]
fn test_used_with_msix_sends_the_queue_vector() {
    let r = running_with_msix();

    r.signals().used(0);

    let sent = r.vectors.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 1, "queue 0 was given vector 1");
    assert_eq!(sent[0].1.data, 0x31);
    assert!(!r.intx.level());
}

#[test]
fn test_used_with_no_vector_sends_nothing() {
    let mut r = rig();
    r.place_bar();
    r.enable_msix();
    r.negotiate(crate::features::F_VERSION_1);
    r.setup_queue(0, 16, NO_VECTOR);
    r.driver_ok();

    r.signals().used(0);

    assert!(r.vectors.take().is_empty());
    assert_eq!(r.read_isr(), 0, "with MSI-X on, the queue bit stays clear");
}

#[test]
fn test_msix_vector_beyond_the_table_reads_back_no_vector() {
    let mut r = rig();
    r.place_bar();

    r.common_write(cc::Q_SELECT, 2, 0);
    r.common_write(cc::Q_MSIX, 2, 3);
    r.common_write(cc::MSIX_CONFIG, 2, 7);

    assert_eq!(r.common_read(cc::Q_MSIX, 2), u64::from(NO_VECTOR));
    assert_eq!(r.common_read(cc::MSIX_CONFIG, 2), u64::from(NO_VECTOR));
}

#[test]
fn test_used_with_masked_vector_is_pending_then_delivered_on_unmask() {
    let mut r = running_with_msix();
    r.pci.mask_msix_vector(1, true);

    r.signals().used(0);
    let while_masked = r.vectors.take();
    let pba = r.pci.msix_pending_bits();
    r.pci.mask_msix_vector(1, false);

    assert!(while_masked.is_empty());
    assert_eq!(pba, 1 << 1);
    assert_eq!(r.vectors.sent_vectors(), vec![1]);
    assert_eq!(r.pci.msix_pending_bits(), 0);
}

#[test]
fn test_used_without_msix_sets_isr_and_asserts_inta_until_isr_read() {
    let mut r = rig();
    r.bring_up();

    r.signals().used(0);
    let level = r.intx.level();
    let status_bit = r.pci.config_read16(STATUS) & status::INTERRUPT;
    let isr = r.read_isr();

    assert!(level);
    assert_ne!(status_bit, 0);
    assert_eq!(isr, ISR_QUEUE);
    assert!(!r.intx.level());
    assert_eq!(r.read_isr(), 0, "reading cleared it");
    assert!(r.vectors.take().is_empty());
}

#[test]
fn test_intx_disable_keeps_the_line_low_but_status_pending() {
    let mut r = rig();
    r.bring_up();
    let cmd = command::MEMORY | command::BUS_MASTER | command::INTX_DISABLE;
    r.pci.set_command(cmd);

    r.signals().used(0);

    assert!(!r.intx.level());
    assert_ne!(r.pci.config_read16(STATUS) & status::INTERRUPT, 0);
}

#[test]
fn test_config_changed_bumps_generation_and_sends_the_config_vector() {
    let mut r = running_with_msix();
    let before = r.common_read(cc::GENERATION, 1);

    r.signals().config_changed();

    assert_eq!(r.common_read(cc::GENERATION, 1), before + 1);
    assert_eq!(r.vectors.sent_vectors(), vec![0]);
    assert_eq!(r.read_isr(), ISR_CONFIG);
}

#[test]
fn test_needs_reset_sets_the_status_bit_and_signals_a_config_change() {
    let mut r = running_with_msix();

    r.signals().needs_reset();

    assert_eq!(r.status() & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
    assert_eq!(r.vectors.sent_vectors(), vec![0]);
}

#[test]
fn test_used_of_a_missing_queue_sends_nothing() {
    let mut r = running_with_msix();

    r.signals().used(9);

    assert!(r.vectors.take().is_empty());
    assert_eq!(r.read_isr(), 0);
}

#[test]
fn test_used_with_bus_mastering_off_is_lost() {
    let mut r = running_with_msix();
    r.pci.set_command(command::MEMORY);

    r.signals().used(0);

    assert!(r.vectors.take().is_empty());
}

#[test]
fn test_msix_routes_follow_the_table_once_enabled() {
    let r = running_with_msix();

    let routes: Vec<Option<u32>> = (0..3).map(|v| r.vectors.route(v).map(|m| m.data)).collect();

    assert_eq!(routes, vec![Some(0x30), Some(0x31), Some(0x32)]);
}
