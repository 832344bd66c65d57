//! Interrupts held back while the host is still consuming the previous
//! interrupt's entries (`coalesce.rs`), driven pass by pass as the worker
//! would, with a deferral set by hand.

use std::time::Duration;

use super::driver::*;
use crate::nvme::DOORBELL_BASE;

/// A controller with I/O queue pair 1 on vector 1 (MSI-X), messages held
/// back for up to `deferral`.
fn deferring(deferral: Duration) -> Driver {
    let mut d = Driver::new();
    d.bring_up();
    d.enable_msix();
    d.create_queue_pair(1, 16, 1);
    d.nvme
        .with_controller(|c| c.set_interrupt_deferral(Some(deferral)));
    d.vectors.take();
    d
}

/// Submits a one-block read on queue 1 and runs one worker pass.
fn read(d: &mut Driver, lba: u64) -> u16 {
    let cid = d.push(1, rw(false, 1, lba, 1, (DATA, 0)));
    d.ring_sq(1);
    d.nvme.poll();
    cid
}

fn deadline(d: &Driver) -> bool {
    d.nvme.with_controller(|c| c.next_deadline().is_some())
}

#[test]
fn test_nvme_first_completion_is_signalled_at_once() {
    let mut d = deferring(Duration::from_secs(3600));
    read(&mut d, 0);
    assert_eq!(d.vectors.sent_vectors(), vec![1]);
    assert!(!deadline(&d));
}

#[test]
fn test_nvme_completion_while_the_host_is_behind_waits_and_the_handler_takes_it() {
    let mut d = deferring(Duration::from_secs(3600));
    let a = read(&mut d, 0);
    let b = read(&mut d, 1);
    assert_eq!(d.vectors.sent_vectors(), vec![1], "B waits for A's handler");
    assert!(deadline(&d));
    // The handler finds both entries; B needs no message of its own.
    assert_eq!(d.pop(1).map(|c| c.cid), Some(a));
    assert_eq!(d.pop(1).map(|c| c.cid), Some(b));
    d.nvme.poll();
    assert_eq!(d.vectors.sent_vectors(), vec![1]);
    assert!(!deadline(&d), "nothing is held back any more");
}

#[test]
fn test_nvme_completion_the_handler_missed_is_signalled_at_the_next_pass() {
    let mut d = deferring(Duration::from_secs(3600));
    let a = read(&mut d, 0);
    let b = read(&mut d, 1);
    // The handler stops after A (it ran before B was posted).
    assert_eq!(d.pop(1).map(|c| c.cid), Some(a));
    d.nvme.poll();
    assert_eq!(d.vectors.sent_vectors(), vec![1, 1]);
    assert_eq!(d.pop(1).map(|c| c.cid), Some(b));
    assert!(!deadline(&d));
}

#[test]
fn test_nvme_held_back_completion_is_signalled_by_its_deadline() {
    let mut d = deferring(Duration::from_millis(2));
    read(&mut d, 0);
    read(&mut d, 1);
    assert_eq!(d.vectors.sent_vectors(), vec![1]);
    std::thread::sleep(Duration::from_millis(5));
    // The host never consumed anything: the deadline sends B's message.
    d.nvme.poll();
    assert_eq!(d.vectors.sent_vectors(), vec![1, 1]);
    assert!(!deadline(&d));
}

#[test]
fn test_nvme_coalescing_disabled_vector_is_never_held_back() {
    let mut d = deferring(Duration::from_secs(3600));
    // Interrupt Vector Configuration: vector 1, Coalescing Disable.
    assert!(d.admin(set_features(0x09, 1 | 1 << 16)).ok());
    d.vectors.take();
    read(&mut d, 0);
    read(&mut d, 1);
    assert_eq!(d.vectors.sent_vectors(), vec![1, 1]);
}

#[test]
fn test_nvme_flush_without_deferral_sends_what_was_held_back() {
    let mut d = deferring(Duration::from_secs(3600));
    read(&mut d, 0);
    read(&mut d, 1);
    d.nvme.with_controller(|c| {
        c.set_interrupt_deferral(None);
        c.flush_interrupts();
    });
    assert_eq!(d.vectors.sent_vectors(), vec![1, 1]);
    assert!(!deadline(&d));
}

#[test]
fn test_nvme_entries_after_a_lap_without_messages_are_signalled() {
    // 16-entry queues: the message for A; 14 more while the host is behind
    // (held back); the host's handler takes all 15; then 2 more land on
    // the slots right after A's, a lap later.
    let mut d = deferring(Duration::from_secs(3600));
    read(&mut d, 0);
    for lba in 1..15 {
        read(&mut d, lba);
    }
    assert_eq!(d.vectors.sent_vectors(), vec![1]);
    for _ in 0..15 {
        assert!(d.pop(1).is_some());
    }
    d.push(1, rw(false, 1, 15, 1, (DATA, 0)));
    d.push(1, rw(false, 1, 16, 1, (DATA, 0)));
    d.ring_sq(1);
    d.nvme.poll();
    assert_eq!(d.vectors.sent_vectors(), vec![1, 1], "the two new entries");
    assert!(d.pop(1).is_some() && d.pop(1).is_some());
}

#[test]
fn test_nvme_bad_head_from_a_host_that_is_behind_does_not_hold_a_message_forever() {
    let mut d = deferring(Duration::from_millis(2));
    read(&mut d, 0);
    read(&mut d, 1);
    // A head past the queue's end, then one past the tail: both refused.
    d.write32(DOORBELL_BASE + 12, 99);
    d.write32(DOORBELL_BASE + 12, 5);
    std::thread::sleep(Duration::from_millis(5));
    d.nvme.poll();
    assert_eq!(d.vectors.sent_vectors(), vec![1, 1]);
    assert!(d.pop(1).is_some() && d.pop(1).is_some());
}
