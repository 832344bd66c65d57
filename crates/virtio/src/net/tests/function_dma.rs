//! The whole device behind its function's DMA context: rings and frames go
//! through a translating IOMMU with the function's requester ID; a frame
//! whose buffer the IOMMU refuses is dropped and counted (a receive chain
//! it refuses is returned unused and counted); with Bus Master
//! Enable off nothing moves.

use std::time::{Duration, Instant};

use super::*;
use crate::device::VirtioDevice;
use crate::testutil::{FakeDriver, IOVA_OFFSET, TEST_RID};

/// Features without a control queue: queue 0 receives, queue 1 sends.
const FEATURES: u64 = F_MAC | F_STATUS;
const RXQ: usize = 0;
const TXQ: usize = 1;
const DATA: u64 = crate::testutil::DATA;

fn until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn test_net_frames_and_rings_go_through_the_functions_dma_and_faults_are_counted() {
    let (io, peer) = pipe();
    let mut dev = Net::new(NetConfig::new(MAC, vec![io as Arc<dyn FrameIo>])).unwrap();
    let counters = dev.counters();
    let (mut drv, act, iommu) = FakeDriver::translated(&[QSIZE, QSIZE], FEATURES, false);
    dev.activate(act).unwrap();

    // Transmit: one frame the IOMMU cannot reach, then a good one.
    let f = frame([0xff; 6], 100);
    drv.queues[TXQ].write(DATA, &f);
    let unmapped = DATA.wrapping_sub(IOVA_OFFSET);
    drv.queues[TXQ].add_chain(&[(unmapped, f.len() as u32, false)]);
    drv.queues[TXQ].add_chain(&[(DATA, f.len() as u32, false)]);
    drv.kick(TXQ);
    drv.queues[TXQ].wait_used(2);
    let mut got = None;
    assert!(until(|| {
        got = recv(&peer);
        got.is_some()
    }));
    assert_eq!(got.unwrap(), f, "the good frame, whole");
    assert!(recv(&peer).is_none(), "the refused one never left");
    assert_eq!(counters.net.tx_dropped.get(), 1);

    // Receive: a buffer the IOMMU refuses, then a good one.
    let rx_buf = DATA + 0x10_000;
    drv.queues[RXQ].add_chain(&[(rx_buf.wrapping_sub(IOVA_OFFSET), 2048, true)]);
    drv.kick(RXQ);
    peer.send(&frame(MAC, 200)).unwrap();
    drv.queues[RXQ].wait_used(1);
    assert_eq!(drv.queues[RXQ].used_elem(0).1, 0, "nothing written");
    assert_eq!(counters.net.rx_refused.get(), 1);
    drv.queues[RXQ].add_chain(&[(rx_buf, 2048, true)]);
    drv.kick(RXQ);
    peer.send(&frame(MAC, 200)).unwrap();
    drv.queues[RXQ].wait_used(2);
    let sent = frame(MAC, 200);
    let arrived = drv.queues[RXQ].read(
        rx_buf + header::HDR_LEN as u64,
        sent.len() - header::HDR_LEN,
    );
    assert_eq!(arrived, &sent[header::HDR_LEN..]);

    assert!(iommu.accesses().iter().all(|&(rid, _)| rid == TEST_RID));
    for q in [RXQ, TXQ] {
        let q = &drv.queues[q];
        for (what, gpa, len) in [
            ("descriptor table", q.desc_table, 16 * u64::from(QSIZE)),
            ("available ring", q.avail, 4 + 2 * u64::from(QSIZE)),
            ("used ring", q.used, 4 + 8 * u64::from(QSIZE)),
        ] {
            assert!(iommu.touched(gpa + IOVA_OFFSET, len), "{what}");
        }
    }
    assert!(
        iommu.touched(DATA + IOVA_OFFSET, f.len() as u64),
        "sent frame"
    );
    assert!(iommu.touched(rx_buf + IOVA_OFFSET, 2048), "received frame");
}

#[test]
fn test_net_with_bus_master_off_sends_nothing() {
    let (io, peer) = pipe();
    let mut dev = Net::new(NetConfig::new(MAC, vec![io as Arc<dyn FrameIo>])).unwrap();
    let (mut drv, act) = FakeDriver::bus_master_off(&[QSIZE, QSIZE], FEATURES);
    dev.activate(act).unwrap();
    let f = frame([0xff; 6], 100);
    drv.queues[TXQ].write(DATA, &f);
    drv.queues[TXQ].add_chain(&[(DATA, f.len() as u32, false)]);
    drv.kick(TXQ);
    std::thread::sleep(Duration::from_millis(100));
    assert!(recv(&peer).is_none());
    assert_eq!(drv.queues[TXQ].used_idx(), 0);
}
