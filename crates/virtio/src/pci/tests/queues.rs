//! Queue setup, activation and notifications (§4.1.5.1.3, §4.1.5.2).

use virtio_queue::QueueT;

use super::driver::{cc, rig, rig_with, FakeDevice, Rig, RAM};
use crate::features::{F_RING_EVENT_IDX, F_VERSION_1};
use crate::pci::layout::Layout;
use crate::pci::signals::ISR_CONFIG;
use crate::pci::status::{ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FEATURES_OK};

const RUNNING: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;

#[test]
fn test_driver_ok_with_valid_queue_activates_device_with_configured_queue() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1 | F_RING_EVENT_IDX);
    r.setup_queue(0, 8, 1);

    r.driver_ok();

    let (desc, avail, used) = Rig::rings(0, 8);
    let log = r.device();
    assert_eq!(log.activations, vec![F_VERSION_1 | F_RING_EVENT_IDX]);
    assert_eq!(log.queues.len(), 1);
    let q = &log.queues[0];
    assert_eq!(q.index, 0);
    assert_eq!(q.queue.size(), 8);
    assert_eq!(
        (
            q.queue.desc_table(),
            q.queue.avail_ring(),
            q.queue.used_ring()
        ),
        (desc, avail, used)
    );
    assert!(q.queue.ready());
    assert!(q.queue.event_idx_enabled());
    drop(log);
    assert_eq!(r.status(), RUNNING);
}

#[test]
fn test_activated_queue_sees_chains_the_driver_adds_with_mock() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);
    let mem = r.mem.clone();
    let mut mock =
        virtio_queue::mock::MockSplitQueue::create(&*mem, vm_memory::GuestAddress(0x4_0000), 16);
    r.set_queue_addresses(
        0,
        16,
        mock.desc_table_addr().0,
        mock.avail_addr().0,
        mock.used_addr().0,
    );
    r.common_write(cc::Q_ENABLE, 2, 1);
    r.driver_ok();

    mock.add_chain(2).unwrap();

    let mut log = r.device();
    let chain = log.queues[0].queue.pop_descriptor_chain(&*mem);
    assert_eq!(chain.map(|c| c.count()), Some(2));
}

#[test]
fn test_driver_ok_with_queue_left_disabled_omits_it() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);
    r.setup_queue(1, 8, 2);

    r.driver_ok();

    let log = r.device();
    let indices: Vec<u16> = log.queues.iter().map(|q| q.index).collect();
    assert_eq!(indices, vec![1]);
}

#[test]
fn test_driver_ok_with_ring_outside_memory_sets_needs_reset_without_activation() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);
    r.set_queue_addresses(0, 16, RAM - 0x80, 0x2000, 0x3000);
    r.common_write(cc::Q_ENABLE, 2, 1);

    r.driver_ok();

    assert!(r.device().activations.is_empty());
    assert_eq!(r.status(), RUNNING | DEVICE_NEEDS_RESET);
    assert_eq!(r.common_read(cc::GENERATION, 1), 1);
    assert_eq!(r.read_isr(), ISR_CONFIG);
    assert!(!r.intx.level(), "the ISR read deasserted INTA");
}

#[test]
fn test_queue_size_not_a_power_of_two_sets_needs_reset() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);
    r.setup_queue(0, 12, 1);

    r.driver_ok();

    assert_eq!(r.common_read(cc::Q_SIZE, 2), 12);
    assert!(r.device().activations.is_empty());
    assert_eq!(r.status() & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
}

#[test]
fn test_misaligned_descriptor_table_sets_needs_reset() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);
    r.set_queue_addresses(0, 16, 0x1_0008, 0x2000, 0x3000);
    r.common_write(cc::Q_ENABLE, 2, 1);

    r.driver_ok();

    assert!(r.device().activations.is_empty());
    assert_eq!(r.status() & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
}

#[test]
fn test_queue_size_zero_or_above_max_is_ignored() {
    let mut r = rig();
    r.place_bar();

    r.common_write(cc::Q_SELECT, 2, 1);
    r.common_write(cc::Q_SIZE, 2, 0);
    let after_zero = r.common_read(cc::Q_SIZE, 2);
    r.common_write(cc::Q_SIZE, 2, 16);
    let after_big = r.common_read(cc::Q_SIZE, 2);
    r.common_write(cc::Q_SIZE, 2, 4);
    let after_ok = r.common_read(cc::Q_SIZE, 2);

    assert_eq!((after_zero, after_big, after_ok), (8, 8, 4));
}

#[test]
fn test_queue_select_past_last_queue_reads_size_zero_and_ignores_writes() {
    let mut r = rig();
    r.place_bar();

    r.common_write(cc::Q_SELECT, 2, 2);
    r.common_write(cc::Q_SIZE, 2, 4);
    r.common_write(cc::Q_ENABLE, 2, 1);
    r.common_write(cc::Q_DESC, 4, 0x1000);

    assert_eq!(r.common_read(cc::Q_SIZE, 2), 0);
    assert_eq!(r.common_read(cc::Q_ENABLE, 2), 0);
    assert_eq!(r.common_read(cc::Q_DESC, 4), 0);
}

#[test]
fn test_queue_registers_after_driver_ok_are_ignored() {
    let mut r = rig();
    r.bring_up();

    r.common_write(cc::Q_SELECT, 2, 0);
    r.common_write(cc::Q_SIZE, 2, 4);
    r.common_write(cc::Q_DESC, 4, 0x8000);
    r.common_write(cc::Q_MSIX, 2, 2);

    assert_eq!(r.common_read(cc::Q_SIZE, 2), 16);
    assert_eq!(r.common_read(cc::Q_DESC, 4), Rig::rings(0, 16).0);
    assert_eq!(r.common_read(cc::Q_MSIX, 2), 1);
}

#[test]
fn test_queue_enable_zero_is_ignored() {
    let mut r = rig();
    r.place_bar();
    r.setup_queue(0, 16, 1);

    r.common_write(cc::Q_ENABLE, 2, 0);

    assert_eq!(r.common_read(cc::Q_ENABLE, 2), 1);
}

#[test]
fn test_queue_address_as_one_64bit_access_is_accepted() {
    let mut r = rig();
    r.place_bar();

    r.common_write(cc::Q_DRIVER, 8, 0x1_2345_6780);

    assert_eq!(r.common_read(cc::Q_DRIVER + 4, 4), 1);
    assert_eq!(r.common_read(cc::Q_DRIVER, 8), 0x1_2345_6780);
}

#[test]
fn test_notify_write_makes_the_queue_eventfd_readable() {
    let mut r = rig();
    r.bring_up();
    let notify = r.at.notify + u64::from(r.at.multiplier) * r.common_read(cc::Q_NOFF, 2);

    r.bar_write(notify, 2, 0);

    let log = r.device();
    assert_eq!(log.queues[0].notify.read().unwrap(), 1);
}

#[test]
fn test_notify_write_for_a_missing_queue_or_odd_offset_is_dropped() {
    let mut r = rig();
    r.bring_up();

    r.bar_write(r.at.notify + 8, 2, 2);
    r.bar_write(r.at.notify + 2, 2, 0);

    let log = r.device();
    assert!(log.queues[0].notify.read().is_err(), "nothing to read");
}

#[test]
fn test_notify_eventfds_sit_at_per_queue_offsets_and_share_the_counter() {
    let mut r = rig();
    r.bring_up();

    let fds = r.pci.notify_eventfds();
    fds[0].2.write(3).unwrap();

    let offsets: Vec<(usize, u64)> = fds.iter().map(|(b, o, _)| (*b, *o)).collect();
    assert_eq!(
        offsets,
        vec![(0, Layout::notify_offset(0)), (0, Layout::notify_offset(1))]
    );
    assert_eq!(offsets[1].1, r.at.notify + 4);
    assert_eq!(r.device().queues[0].notify.read().unwrap(), 3);
}

#[test]
fn test_activation_error_sets_needs_reset() {
    let mut device = FakeDevice::new(vec![16]);
    device.fail_activate = true;
    let mut r = rig_with(device, |_| {});

    r.bring_up();

    assert_eq!(r.status(), RUNNING | DEVICE_NEEDS_RESET);
}

#[test]
fn test_driver_ok_without_features_ok_does_not_activate() {
    let mut r = rig();
    r.place_bar();
    r.set_status(ACKNOWLEDGE | DRIVER);
    r.setup_queue(0, 16, 1);

    r.set_status(ACKNOWLEDGE | DRIVER | DRIVER_OK);

    assert!(r.device().activations.is_empty());
    assert_eq!(r.status(), ACKNOWLEDGE | DRIVER);
}
