//! Device reset (§2.4) and status rules (§2.1).

use super::driver::{cc, rig, FakeDevice, Rig};
use crate::features::F_VERSION_1;
use crate::pci::signals::NO_VECTOR;
use crate::pci::status::{ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK};

#[test]
fn test_status_zero_resets_the_device_and_every_virtio_register() {
    let mut r = rig();
    r.enable_msix();
    r.bring_up();
    r.signals().config_changed();
    let resets_before = r.device().resets;

    r.set_status(0);

    assert_eq!(r.device().resets, resets_before + 1);
    assert_eq!(r.status(), 0);
    assert_eq!(r.read_isr(), 0);
    r.common_write(cc::GFSELECT, 4, 1);
    assert_eq!(r.common_read(cc::GF, 4), 0, "driver features cleared");
    r.common_write(cc::Q_SELECT, 2, 0);
    assert_eq!(r.common_read(cc::Q_SIZE, 2), 16, "size back to the maximum");
    assert_eq!(r.common_read(cc::Q_ENABLE, 2), 0);
    assert_eq!(r.common_read(cc::Q_DESC, 8), 0);
    assert_eq!(r.common_read(cc::Q_MSIX, 2), u64::from(NO_VECTOR));
    assert_eq!(r.common_read(cc::MSIX_CONFIG, 2), u64::from(NO_VECTOR));
    assert_eq!(
        r.common_read(cc::GENERATION, 1),
        1,
        "generation keeps counting"
    );
}

#[test]
fn test_reset_deasserts_inta() {
    let mut r = rig();
    r.bring_up();
    r.signals().used(0);

    r.set_status(0);

    assert!(!r.intx.level());
}

#[test]
fn test_signals_of_an_activation_before_reset_are_inert() {
    let mut r = rig();
    r.bring_up();
    let old = r.signals();
    r.set_status(0);
    r.bring_up();

    old.used(0);
    old.needs_reset();

    assert!(!r.intx.level());
    assert_eq!(r.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
}

#[test]
fn test_reset_then_bring_up_activates_again() {
    let mut r = rig();
    r.bring_up();

    r.set_status(0);
    r.bring_up();

    assert_eq!(r.device().activations.len(), 2);
}

#[test]
fn test_reset_drains_pending_notifications() {
    let mut r = rig();
    r.bring_up();
    let fds = r.pci.notify_eventfds();
    r.bar_write(r.at.notify, 2, 0);

    r.set_status(0);

    assert!(fds[0].2.read().is_err(), "the old kick is gone");
}

#[test]
fn test_status_write_clearing_bits_is_ignored() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);

    r.set_status(ACKNOWLEDGE);

    assert_eq!(r.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK);
}

#[test]
fn test_reset_while_a_worker_signals_does_not_deadlock() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut device = FakeDevice::new(vec![16]);
        device.worker = true;
        let mut r: Rig = super::driver::rig_with(device, |_| {});
        r.enable_msix();
        for _ in 0..20 {
            r.bring_up();
            std::thread::yield_now();
            r.set_status(0);
        }
        done_tx.send(r.device().resets).ok();
    });

    let resets = done_rx.recv_timeout(std::time::Duration::from_secs(20));

    assert!(resets.is_ok_and(|n| n >= 20), "reset hung or failed");
}
