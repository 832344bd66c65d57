//! The function's I/O counters follow what the driver did: commands and
//! bytes by kind, errors by kind, doorbells trapped or through an
//! ioeventfd, and the interrupts sent.

use std::time::{Duration, Instant};

use backend::EngineKind;

use super::driver::*;
use crate::nvme::status::Status;

#[test]
fn test_nvme_counters_count_commands_bytes_and_errors_by_kind() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let trapped_before = d.counters.doorbells.doorbells_trapped.get();
    for _ in 0..3 {
        assert!(d.io(1, rw(true, 1, 0, 8, (DATA, 0))).ok());
    }
    assert!(d.io(1, rw(false, 1, 0, 16, (DATA, DATA + 0x1000))).ok());
    assert!(d.io(1, sqe(0x00, 1, (0, 0), [0; 6])).ok(), "flush");
    assert!(
        d.io(1, sqe(0x08, 1, (0, 0), [0, 0, 7, 0, 0, 0])).ok(),
        "write zeroes"
    );
    let past_end = rw(false, 1, u64::MAX - 1, 8, (DATA, 0));
    assert!(d.io(1, past_end).is(Status::LBA_OUT_OF_RANGE));
    let outside_ram = rw(true, 1, 0, 8, (RAM + 0x1000, 0));
    assert!(d.io(1, outside_ram).is(Status::DATA_TRANSFER_ERROR));

    let b = &d.counters.block;
    assert_eq!((b.write_ops.get(), b.write_bytes.get()), (3, 3 * 4096));
    assert_eq!((b.read_ops.get(), b.read_bytes.get()), (1, 8192));
    assert_eq!((b.flush_ops.get(), b.discard_ops.get()), (1, 1));
    assert_eq!(b.errors_invalid.get(), 1);
    assert_eq!(b.errors_dma.get(), 1);
    assert_eq!(b.errors_io.get(), 0);
    // Each command: one SQ tail and one CQ head doorbell.
    let trapped = d.counters.doorbells.doorbells_trapped.get() - trapped_before;
    assert_eq!(trapped, 8 * 2);
    let figures = d.counters.figures();
    assert_eq!(figures.get("write_bytes"), Some(3 * 4096));
    assert_eq!(
        figures.get("rx_frames"),
        None,
        "a block device reports no frames"
    );
}

#[test]
fn test_nvme_counters_count_backend_failures_as_io_errors() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    std::fs::File::options()
        .write(true)
        .open(&d.files[0].0)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(!d.io(1, rw(false, 1, 16, 8, (DATA, 0))).ok());
    assert_eq!(d.counters.block.errors_io.get(), 1);
    assert_eq!(d.counters.block.read_ops.get(), 0);
}

#[test]
fn test_nvme_counters_count_the_messages_sent() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let before = d.vectors.interrupt_counters().irq_msix.get();
    for _ in 0..4 {
        assert!(d.io(1, rw(false, 1, 0, 1, (DATA, 0))).ok());
    }
    let sent = d.vectors.interrupt_counters().irq_msix.get() - before;
    assert_eq!(
        sent, 4,
        "one MSI-X message per completion when the driver waits for each"
    );
    assert_eq!(d.vectors.interrupt_counters().irq_msi.get(), 0);
}

#[test]
fn test_nvme_counters_count_ioeventfd_doorbells_apart_from_trapped_ones() {
    let mut d = Driver::with(Setup {
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.nvme.start_worker().unwrap();
    d.bring_up();
    assert!(d.admin(sqe(0x7c, 0, (0x7_0000, 0x7_1000), [0; 6])).ok());
    d.create_queue_pair(1, 16, 1);
    let trapped = d.counters.doorbells.doorbells_trapped.get();
    d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    d.dma.write(0x7_0008, &1u32.to_le_bytes()).unwrap();
    let (_, fd) = d.nvme.sq_doorbell_eventfds().next().unwrap();
    // KVM signals the ioeventfd once per guest write.
    fd.write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.take_cqe(1).is_none() {
        assert!(Instant::now() < deadline, "no completion from the worker");
        std::thread::sleep(Duration::from_millis(1));
    }
    let doorbells = &d.counters.doorbells;
    assert_eq!(doorbells.doorbells_ioeventfd.get(), 1);
    assert_eq!(doorbells.doorbells_trapped.get(), trapped);
    assert_eq!(d.counters.block.read_ops.get(), 1);
}
