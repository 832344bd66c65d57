//! virtio-rng driven by a fake guest driver.

use super::*;
use crate::testutil::{FakeDriver, DATA, IOVA_OFFSET, OUTSIDE, TEST_RID};
use crate::{Segment, VirtioDevice};

const QSIZE: u16 = 16;

fn activated(cfg: RngConfig) -> (Rng, FakeDriver) {
    let mut dev = Rng::new(RngConfig {
        queue_size: QSIZE,
        ..cfg
    })
    .unwrap();
    let (drv, act) = FakeDriver::new(&[QSIZE], 0, false);
    dev.activate(act).unwrap();
    (dev, drv)
}

#[test]
fn test_rng_request_fills_buffer_and_reports_length() {
    let (_dev, mut drv) = activated(RngConfig::default());
    let q = &mut drv.queues[0];
    q.write(DATA, &[0u8; 256]);
    q.add_chain(&[(DATA, 256, true)]);

    drv.kick(0);
    drv.queues[0].wait_used(1);

    assert_eq!(drv.queues[0].used_elem(0), (0, 256));
    assert_ne!(drv.queues[0].read(DATA, 256), vec![0u8; 256]);
    assert_eq!(drv.signals.wait_used_calls(1), vec![0]);
}

#[test]
fn test_rng_request_larger_than_bound_is_cut() {
    let (_dev, mut drv) = activated(RngConfig {
        max_bytes: 100,
        ..RngConfig::default()
    });
    let q = &mut drv.queues[0];
    q.write(DATA, &[0u8; 200]);
    q.add_chain(&[(DATA, 64, true), (DATA + 0x1000, 64, true)]);

    drv.kick(0);
    drv.queues[0].wait_used(1);

    assert_eq!(drv.queues[0].used_elem(0).1, 100);
    assert_eq!(drv.queues[0].read(DATA + 0x1000 + 36, 28), vec![0u8; 28]);
}

#[test]
fn test_rng_buffer_outside_memory_reports_bytes_before_it() {
    let (_dev, mut drv) = activated(RngConfig::default());
    drv.queues[0].add_chain(&[(DATA, 32, true), (OUTSIDE, 32, true)]);

    drv.kick(0);
    drv.queues[0].wait_used(1);

    assert_eq!(drv.queues[0].used_elem(0).1, 32);
}

#[test]
fn test_rng_readable_descriptor_is_skipped() {
    let (_dev, mut drv) = activated(RngConfig::default());
    drv.queues[0].add_chain(&[(DATA, 32, false), (DATA + 0x100, 16, true)]);

    drv.kick(0);
    drv.queues[0].wait_used(1);

    assert_eq!(drv.queues[0].used_elem(0).1, 16);
}

#[test]
fn test_rng_looping_chain_returns_with_zero_len() {
    let (_dev, mut drv) = activated(RngConfig::default());
    let q = &mut drv.queues[0];
    q.write_desc(0, DATA, 16, 1 | 2, 0);
    q.publish(0);

    drv.kick(0);
    drv.queues[0].wait_used(1);

    assert_eq!(drv.queues[0].used_elem(0), (0, 0));
}

#[test]
fn test_rng_several_chains_get_one_interrupt() {
    let (_dev, mut drv) = activated(RngConfig::default());
    for k in 0..4 {
        drv.queues[0].add_chain(&[(DATA + 0x100 * k, 8, true)]);
    }

    drv.kick(0);
    drv.queues[0].wait_used(4);

    assert_eq!(drv.signals.wait_used_calls(1), vec![0]);
}

#[test]
fn test_rng_reset_stops_serving() {
    let (mut dev, mut drv) = activated(RngConfig::default());

    dev.reset();
    drv.queues[0].add_chain(&[(DATA, 8, true)]);
    drv.kick(0);
    std::thread::sleep(std::time::Duration::from_millis(30));

    assert_eq!(drv.queues[0].used_idx(), 0);
}

#[test]
fn test_rng_has_no_config_space_or_features() {
    let mut dev = Rng::new(RngConfig::default()).unwrap();
    let mut b = [0xffu8; 8];

    dev.write_config(0, &[1, 2, 3]);
    dev.read_config(u64::MAX, &mut b);

    assert_eq!(b, [0; 8]);
    assert_eq!(dev.features(), 0);
    assert_eq!(dev.device_id(), crate::features::ID_RNG);
}

#[test]
fn test_rng_parse_counts_readable_and_cuts_at_bound() {
    let segs = [
        Segment {
            addr: 0x1000,
            len: 10,
            writable: false,
        },
        Segment {
            addr: 0x2000,
            len: 50,
            writable: true,
        },
        Segment {
            addr: 0x3000,
            len: 50,
            writable: true,
        },
    ];

    let r = parse_segments(&segs, 60);

    assert_eq!(
        r,
        RngRequest {
            buffers: vec![(0x2000, 50), (0x3000, 10)],
            readable: 1
        }
    );
}

#[test]
fn test_rng_ring_and_buffer_go_through_the_functions_dma() {
    let mut dev = Rng::new(RngConfig {
        queue_size: QSIZE,
        ..RngConfig::default()
    })
    .unwrap();
    let (mut drv, act, iommu) = FakeDriver::translated(&[QSIZE], 0, false);
    dev.activate(act).unwrap();
    drv.queues[0].write(DATA, &[0u8; 64]);
    // A buffer the IOMMU has no mapping for, then a good one.
    drv.queues[0].add_chain(&[(DATA.wrapping_sub(IOVA_OFFSET), 64, true)]);
    drv.queues[0].add_chain(&[(DATA, 64, true)]);
    drv.kick(0);
    drv.queues[0].wait_used(2);

    assert_eq!(drv.queues[0].used_elem(0), (0, 0), "a fault fills nothing");
    assert_eq!(drv.queues[0].used_elem(1), (1, 64));
    assert_ne!(drv.queues[0].read(DATA, 64), vec![0u8; 64]);
    let q = &drv.queues[0];
    for (what, gpa, len) in [
        ("descriptor table", q.desc_table, 16 * u64::from(QSIZE)),
        ("available ring", q.avail, 4 + 2 * u64::from(QSIZE)),
        ("used ring", q.used, 4 + 8 * u64::from(QSIZE)),
        ("buffer", DATA, 64),
    ] {
        assert!(iommu.touched(gpa + IOVA_OFFSET, len), "{what}");
    }
    assert!(iommu.accesses().iter().all(|&(rid, _)| rid == TEST_RID));
}

#[test]
fn test_rng_with_bus_master_off_fills_nothing() {
    let mut dev = Rng::new(RngConfig {
        queue_size: QSIZE,
        ..RngConfig::default()
    })
    .unwrap();
    let (mut drv, act) = FakeDriver::bus_master_off(&[QSIZE], 0);
    dev.activate(act).unwrap();
    drv.queues[0].write(DATA, &[0u8; 64]);
    drv.queues[0].add_chain(&[(DATA, 64, true)]);
    drv.kick(0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(drv.queues[0].used_idx(), 0);
    assert_eq!(drv.queues[0].read(DATA, 64), vec![0u8; 64]);
}
