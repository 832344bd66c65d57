//! The worker thread: frames flow both ways without the test polling.

use std::time::{Duration, Instant};

use super::driver::*;
use crate::e1000e::desc::cmd;
use crate::e1000e::regs;

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn test_worker_moves_frames_both_ways_and_stops_on_drop() {
    let mut d = Driver::new();
    d.enable_msix();
    d.w32(regs::IMS, regs::icr::RXQ0 | regs::icr::TXQ0);
    d.setup_rx(false);
    d.setup_tx();
    d.nic.start_worker().unwrap();
    d.host_send(&frame(100, 3));
    assert!(wait_for(|| d.r32(regs::RDH) == 1));
    let f = frame(80, 4);
    d.put_legacy(&f, cmd::EOP | cmd::RS);
    d.kick_tx();
    let mut got = Vec::new();
    assert!(wait_for(|| {
        got.extend(d.host_frames());
        !got.is_empty()
    }));
    assert_eq!(got, vec![f]);
    assert!(wait_for(|| d.sent().contains(&1)));
    assert!(d.sent().contains(&0));
}

#[test]
fn test_worker_full_ring_resumes_after_rdt() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RDT, 1);
    d.nic.start_worker().unwrap();
    for i in 0..5 {
        d.host_send(&frame(60, i));
    }
    assert!(wait_for(|| d.r32(regs::RDH) == 1));
    d.w32(regs::RDT, 10);
    assert!(wait_for(|| d.r32(regs::RDH) == 5));
}

#[test]
fn test_worker_sends_interrupt_held_by_eitr_after_vcpu_unmask() {
    let mut d = Driver::new();
    d.enable_msix();
    d.w32(regs::CTRL_EXT, 0);
    // 20 ms gap on vector 1.
    d.w32(regs::EITR0 + 4, 78_125);
    d.nic.start_worker().unwrap();
    // Let the worker reach its wait with nothing to do.
    std::thread::sleep(Duration::from_millis(100));
    d.w32(regs::IMS, regs::icr::TXQ0);
    d.w32(regs::ICS, regs::icr::TXQ0);
    d.w32(regs::ICS, regs::icr::TXQ0);
    assert_eq!(d.sent(), vec![1], "the second is held");
    assert!(
        wait_for(|| d.sent() == vec![1, 1]),
        "sent when the gap ends"
    );
}
