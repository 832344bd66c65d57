//! The worker thread: I/O doorbells wake it, and so do the per-SQ eventfds
//! the VMM registers as ioeventfds once shadow doorbells are on.

use std::time::{Duration, Instant};

use backend::EngineKind;

use super::driver::*;

fn wait_cqe(d: &mut Driver, qid: u16) -> Cqe {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = d.pop(qid) {
            return c;
        }
        assert!(Instant::now() < deadline, "no completion from the worker");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn test_nvme_worker_runs_io_queues_with_io_uring() {
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.nvme.start_worker().unwrap();
    d.bring_up_with_queues(2);
    d.vectors.take();
    d.dma.write(DATA, &[0x61; 4096]).unwrap();
    let cid = d.push(2, rw(true, 1, 40, 8, (DATA, 0)));
    d.ring_sq(2);
    let c = wait_cqe(&mut d, 2);
    assert_eq!(c.cid, cid);
    assert!(c.ok());
    assert!(d.files[0].read_at(40 * 512, 4096) == vec![0x61; 4096]);
    assert_eq!(d.vectors.sent_vectors(), vec![2]);
}

#[test]
fn test_nvme_worker_wakes_on_sq_eventfd_with_shadow_doorbells() {
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.nvme.start_worker().unwrap();
    d.bring_up();
    let c = d.admin(sqe(0x7c, 0, (0x7_0000, 0x7_1000), [0; 6]));
    assert!(c.ok());
    assert_eq!(d.nvme.take_doorbell_mode_change(), Some(true));
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    d.dma.write(0x7_0008, &1u32.to_le_bytes()).unwrap();
    // What KVM does with an ioeventfd on the SQ 1 doorbell.
    let (slot, fd) = d.nvme.sq_doorbell_eventfds().next().unwrap();
    assert_eq!(slot.qid, 1);
    fd.write(1).unwrap();
    let c = wait_cqe(&mut d, 1);
    assert!(c.ok());
}

#[test]
fn test_nvme_worker_driver_that_reaps_only_on_interrupts_never_stalls() {
    // Like Linux's driver: 15 reads in flight on a 16-entry queue pair,
    // completions looked for only after an MSI-X message, the head written
    // once per batch, so the worker holds messages back while this driver
    // is behind, and the driver often consumes more than a lap of entries
    // between two messages. Any lost message ends in a stall.
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.nvme.start_worker().unwrap();
    d.bring_up();
    d.enable_msix();
    d.create_queue_pair(1, 16, 1);
    d.vectors.take();
    const TOTAL: u64 = 3000;
    let (mut issued, mut done) = (0u64, 0u64);
    while issued < 15 {
        d.push(1, rw(false, 1, issued % 64, 1, (DATA, 0)));
        issued += 1;
    }
    d.ring_sq(1);
    while done < TOTAL {
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.vectors.take().is_empty() {
            assert!(
                Instant::now() < deadline,
                "no interrupt with {} reads in flight ({done} done)",
                issued - done
            );
            std::thread::yield_now();
        }
        let mut refill = 0;
        while let Some(c) = d.take_cqe(1) {
            assert!(c.ok());
            done += 1;
            if issued < TOTAL {
                d.push(1, rw(false, 1, issued % 64, 1, (DATA, 0)));
                issued += 1;
                refill += 1;
            }
        }
        d.ring_cq(1);
        if refill > 0 {
            d.ring_sq(1);
        }
    }
}
