//! virtio-console driven by a fake guest driver.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::testutil::{FakeDriver, DATA, IOVA_OFFSET, OUTSIDE, TEST_RID};
use crate::VirtioDevice;

const QSIZE: u16 = 16;

/// An output that keeps what it is given.
#[derive(Clone, Debug, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

fn console(capacity: usize) -> (Console, Captured) {
    let out = Captured::default();
    let mut cfg = ConsoleConfig::new(Box::new(out.clone()));
    cfg.queue_size = QSIZE;
    cfg.input_capacity = capacity;
    (Console::new(cfg).unwrap(), out)
}

fn activated(capacity: usize) -> (Console, Captured, FakeDriver) {
    let (mut dev, out) = console(capacity);
    let (drv, act) = FakeDriver::new(&[QSIZE, QSIZE], 0, false);
    dev.activate(act).unwrap();
    (dev, out, drv)
}

const RXQ: usize = RECEIVEQ as usize;
const TXQ: usize = TRANSMITQ as usize;

#[test]
fn test_console_transmitted_bytes_reach_the_output() {
    let (_dev, out, mut drv) = activated(1024);
    drv.queues[TXQ].write(DATA, b"hello, ");
    drv.queues[TXQ].write(DATA + 0x100, b"world\n");
    drv.queues[TXQ].add_chain(&[(DATA, 7, false), (DATA + 0x100, 6, false)]);

    drv.kick(TXQ);
    drv.queues[TXQ].wait_used(1);

    assert_eq!(out.bytes(), b"hello, world\n");
    assert_eq!(drv.queues[TXQ].used_elem(0), (0, 0));
    assert_eq!(drv.signals.wait_used_calls(1), vec![TRANSMITQ]);
}

#[test]
fn test_console_large_transmit_is_copied_whole() {
    let (_dev, out, mut drv) = activated(1024);
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    drv.queues[TXQ].write(DATA, &data);
    drv.queues[TXQ].add_chain(&[(DATA, 10_000, false)]);

    drv.kick(TXQ);
    drv.queues[TXQ].wait_used(1);

    assert_eq!(out.bytes(), data);
}

#[test]
fn test_console_transmit_outside_memory_returns_the_chain() {
    let (_dev, out, mut drv) = activated(1024);
    drv.queues[TXQ].write(DATA, b"ok");
    drv.queues[TXQ].add_chain(&[(OUTSIDE, 64, false), (DATA, 2, false)]);

    drv.kick(TXQ);
    drv.queues[TXQ].wait_used(1);

    assert_eq!(out.bytes(), b"ok");
}

#[test]
fn test_console_input_is_delivered_into_posted_buffer() {
    let (dev, _out, mut drv) = activated(1024);
    drv.queues[RXQ].add_chain(&[(DATA, 64, true)]);
    drv.kick(RXQ);

    let accepted = dev.input().push(b"ls -l\n");
    drv.queues[RXQ].wait_used(1);

    assert_eq!(accepted, 6);
    assert_eq!(drv.queues[RXQ].used_elem(0), (0, 6));
    assert_eq!(drv.queues[RXQ].read(DATA, 6), b"ls -l\n");
    assert_eq!(drv.signals.wait_used_calls(1), vec![RECEIVEQ]);
}

#[test]
fn test_console_input_without_buffer_waits_until_one_is_posted() {
    let (dev, _out, mut drv) = activated(1024);
    let input = dev.input();

    input.push(b"abc");
    std::thread::sleep(Duration::from_millis(20));
    let pending = input.pending();
    drv.queues[RXQ].add_chain(&[(DATA, 64, true)]);
    drv.kick(RXQ);
    drv.queues[RXQ].wait_used(1);

    assert_eq!(pending, 3);
    assert_eq!(drv.queues[RXQ].read(DATA, 3), b"abc");
    assert_eq!(input.pending(), 0);
}

#[test]
fn test_console_input_larger_than_buffer_spans_chains() {
    let (dev, _out, mut drv) = activated(1024);
    drv.queues[RXQ].add_chain(&[(DATA, 4, true)]);
    drv.queues[RXQ].add_chain(&[(DATA + 0x100, 4, true)]);
    drv.kick(RXQ);

    dev.input().push(b"123456");
    drv.queues[RXQ].wait_used(2);

    assert_eq!(drv.queues[RXQ].used_elem(0).1, 4);
    assert_eq!(drv.queues[RXQ].used_elem(1).1, 2);
    assert_eq!(drv.queues[RXQ].read(DATA, 4), b"1234");
    assert_eq!(drv.queues[RXQ].read(DATA + 0x100, 2), b"56");
}

#[test]
fn test_console_input_beyond_capacity_is_refused() {
    let (dev, _out) = console(4);
    let input = dev.input();

    let first = input.push(b"abc");
    let second = input.push(b"def");

    assert_eq!((first, second), (3, 1));
    assert_eq!(input.pending(), 4);
}

#[test]
fn test_console_input_pushed_before_activation_is_delivered() {
    let (mut dev, _out) = console(1024);
    dev.input().push(b"early");
    let (mut drv, act) = FakeDriver::new(&[QSIZE, QSIZE], 0, false);
    drv.queues[RXQ].add_chain(&[(DATA, 64, true)]);

    dev.activate(act).unwrap();
    drv.queues[RXQ].wait_used(1);

    assert_eq!(drv.queues[RXQ].read(DATA, 5), b"early");
}

#[test]
fn test_console_input_with_event_index_wakes_on_next_buffer() {
    let (mut dev, _out) = console(1024);
    let (mut drv, act) = FakeDriver::new(&[QSIZE, QSIZE], 0, true);
    dev.activate(act).unwrap();
    let input = dev.input();
    drv.queues[RXQ].add_chain(&[(DATA, 2, true)]);
    drv.kick(RXQ);
    input.push(b"xy");
    drv.queues[RXQ].wait_used(1);

    input.push(b"z");
    drv.queues[RXQ].add_chain(&[(DATA + 0x100, 2, true)]);
    drv.kick(RXQ);
    drv.queues[RXQ].wait_used(2);

    assert_eq!(drv.queues[RXQ].read(DATA + 0x100, 1), b"z");
}

#[test]
fn test_console_reset_keeps_pending_input() {
    let (mut dev, _out, _drv) = activated(1024);
    let input = dev.input();

    dev.reset();
    input.push(b"kept");

    assert_eq!(input.pending(), 4);
}

#[test]
fn test_console_activate_without_transmitq_fails() {
    let (mut dev, _out) = console(1024);
    let (_drv, mut act) = FakeDriver::new(&[QSIZE, QSIZE], 0, false);
    act.queues.truncate(1);

    let r = dev.activate(act);

    assert!(matches!(
        r,
        Err(crate::ActivateError::MissingQueue(TRANSMITQ))
    ));
}

#[test]
fn test_console_size_is_offered_and_reported() {
    let mut cfg = ConsoleConfig::new(Box::new(std::io::sink()));
    cfg.size = Some((120, 40));
    let dev = Console::new(cfg).unwrap();
    let mut b = [0u8; 12];

    dev.read_config(0, &mut b);

    assert_eq!(dev.features(), F_SIZE);
    assert_eq!(&b[..4], &[120, 0, 40, 0]);
    assert_eq!(&b[4..], &[0; 8]);
}

#[test]
fn test_console_without_size_offers_no_feature() {
    let (dev, _out) = console(16);
    let mut b = [0xffu8; 4];

    dev.read_config(1 << 40, &mut b);

    assert_eq!(dev.features(), 0);
    assert_eq!(b, [0; 4]);
    assert_eq!(dev.queue_max_sizes(), vec![QSIZE; 2]);
}

#[test]
fn test_console_parse_skips_wrong_direction() {
    let segs = [
        crate::Segment {
            addr: 0x1000,
            len: 8,
            writable: true,
        },
        crate::Segment {
            addr: 0x2000,
            len: 8,
            writable: false,
        },
    ];

    let r = parse_segments(&segs, Port::Transmit);

    assert_eq!(r.buffers, vec![(0x2000, 8)]);
    assert_eq!(r.skipped, 1);
}

#[test]
fn test_console_rings_and_buffers_go_through_the_functions_dma() {
    let (mut dev, out) = console(1024);
    let (mut drv, act, iommu) = FakeDriver::translated(&[QSIZE, QSIZE], 0, false);
    dev.activate(act).unwrap();
    drv.queues[TXQ].write(DATA, b"through the iommu\n");
    // A buffer the IOMMU has no mapping for sends nothing.
    drv.queues[TXQ].add_chain(&[(DATA.wrapping_sub(IOVA_OFFSET), 18, false)]);
    drv.queues[TXQ].add_chain(&[(DATA, 18, false)]);
    drv.kick(TXQ);
    drv.queues[TXQ].wait_used(2);

    assert_eq!(out.bytes(), b"through the iommu\n");
    let q = &drv.queues[TXQ];
    for (what, gpa, len) in [
        ("descriptor table", q.desc_table, 16 * u64::from(QSIZE)),
        ("available ring", q.avail, 4 + 2 * u64::from(QSIZE)),
        ("used ring", q.used, 4 + 8 * u64::from(QSIZE)),
        ("buffer", DATA, 18),
    ] {
        assert!(iommu.touched(gpa + IOVA_OFFSET, len), "{what}");
    }
    assert!(iommu.accesses().iter().all(|&(rid, _)| rid == TEST_RID));
}

#[test]
fn test_console_with_bus_master_off_sends_nothing() {
    let (mut dev, out) = console(1024);
    let (mut drv, act) = FakeDriver::bus_master_off(&[QSIZE, QSIZE], 0);
    dev.activate(act).unwrap();
    drv.queues[TXQ].write(DATA, b"never\n");
    drv.queues[TXQ].add_chain(&[(DATA, 6, false)]);
    drv.kick(TXQ);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(out.bytes(), b"");
    assert_eq!(drv.queues[TXQ].used_idx(), 0);
}
