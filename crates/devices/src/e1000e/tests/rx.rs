//! Frames from the host into the rings: the three descriptor formats,
//! filtering, VLAN stripping, a full ring, statistics.

use super::driver::*;
use crate::e1000e::regs::{self, ctrl, rctl};

#[test]
fn test_legacy_rx_places_frame_and_writes_back_dd_eop_length() {
    let mut d = Driver::new();
    d.setup_rx(false);
    let f = frame(200, 3);
    d.host_send(&f);
    assert_eq!(d.poll(), 1);
    let desc = d.rx_desc(0);
    assert_eq!(u16::from_le_bytes([desc[8], desc[9]]), 200);
    assert_eq!(desc[12] & 3, 3, "DD and EOP");
    assert_eq!(d.mem_read(RX_BUF, 200), f);
    assert_eq!(d.r32(regs::RDH), 1);
    assert_ne!(d.r32(regs::ICR) & regs::icr::RXT0, 0);
    let c = d.counters.figures();
    assert_eq!(
        (c.get("rx_frames"), c.get("rx_bytes")),
        (Some(1), Some(200))
    );
    assert_eq!(c.get("rx_dropped"), Some(0));
}

#[test]
fn test_extended_rx_write_back_format() {
    let mut d = Driver::new();
    d.setup_rx(true);
    d.host_send(&frame(64, 0));
    d.poll();
    let desc = d.rx_desc(0);
    assert_eq!(u32::from_le_bytes(desc[8..12].try_into().unwrap()) & 3, 3);
    assert_eq!(u16::from_le_bytes([desc[12], desc[13]]), 64);
}

#[test]
fn test_packet_split_spreads_jumbo_frame_over_four_buffers() {
    let mut d = Driver::new();
    d.w32(regs::RDBAL, RX_RING as u32);
    d.w32(regs::RDLEN, RING * 32);
    for i in 0..RING {
        let mut desc = [0u8; 32];
        for b in 0..4u64 {
            let a = RX_BUF + u64::from(i) * 0x4000 * 4 + b * 0x4000;
            desc[8 * b as usize..8 * b as usize + 8].copy_from_slice(&a.to_le_bytes());
        }
        d.mem_write(RX_RING + u64::from(i) * 32, &desc);
    }
    d.w32(regs::PSRCTL, 1 | 4 << 8 | 4 << 16 | 4 << 24);
    d.w32(
        regs::RCTL,
        rctl::EN | rctl::BAM | rctl::SECRC | rctl::LPE | 1 << 10,
    );
    // RDT counts 16-byte units: two per packet-split descriptor.
    d.w32(regs::RDT, 2 * (RING - 1));
    let f = frame(9014, 9);
    d.host_send(&f);
    d.poll();
    let desc = d.mem_read(RX_RING, 32);
    let l0 = u16::from_le_bytes([desc[12], desc[13]]) as usize;
    let l: Vec<usize> = (0..3)
        .map(|j| u16::from_le_bytes([desc[18 + 2 * j], desc[19 + 2 * j]]) as usize)
        .collect();
    assert_eq!((l0, l[0], l[1], l[2]), (128, 4096, 4096, 9014 - 128 - 8192));
    assert_eq!(u32::from_le_bytes(desc[8..12].try_into().unwrap()) & 3, 3);
    let mut got = d.mem_read(RX_BUF, 128);
    for b in 1..4u64 {
        got.extend(d.mem_read(RX_BUF + b * 0x4000, l[b as usize - 1]));
    }
    assert_eq!(got, f);
    assert_eq!(d.r32(regs::RDH), 2, "one descriptor, two units");
}

#[test]
fn test_frame_longer_than_buffer_spans_descriptors_eop_on_last() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(
        regs::RCTL,
        rctl::EN | rctl::BAM | rctl::SECRC | rctl::LPE | 1 << 16,
    );
    let f = frame(2500, 4);
    d.host_send(&f);
    d.poll();
    let (a, b, c) = (d.rx_desc(0), d.rx_desc(1), d.rx_desc(2));
    assert_eq!(u16::from_le_bytes([a[8], a[9]]), 1024);
    assert_eq!(a[12] & 3, 1, "DD, no EOP");
    assert_eq!(b[12] & 3, 1);
    assert_eq!(u16::from_le_bytes([c[8], c[9]]), 2500 - 2048);
    assert_eq!(c[12] & 3, 3);
}

#[test]
fn test_filter_takes_own_unicast_refuses_other_unicast() {
    let mut d = Driver::new();
    d.setup_rx(false);
    let mut other = unicast(80);
    other[5] ^= 1;
    d.host_send(&other);
    d.host_send(&unicast(80));
    d.poll();
    assert_eq!(d.r32(regs::RDH), 1);
    assert_eq!(d.mem_read(RX_BUF, 6), MAC.to_vec());
}

#[test]
fn test_crc_appended_without_secrc() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RCTL, rctl::EN | rctl::BAM);
    d.host_send(&frame(100, 0));
    d.poll();
    assert_eq!(u16::from_le_bytes([d.rx_desc(0)[8], d.rx_desc(0)[9]]), 104);
}

#[test]
fn test_vlan_tag_stripped_with_vme() {
    let mut d = Driver::new();
    d.setup_rx(false);
    let c = d.r32(regs::CTRL);
    d.w32(regs::CTRL, c | ctrl::VME);
    let mut f = frame(100, 0);
    f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    d.host_send(&f);
    d.poll();
    let desc = d.rx_desc(0);
    assert_eq!(u16::from_le_bytes([desc[8], desc[9]]), 100);
    assert_ne!(desc[12] & 0x08, 0, "VP");
    assert_eq!(u16::from_le_bytes([desc[14], desc[15]]), 7);
}

#[test]
fn test_full_ring_leaves_frames_in_host_queue_until_rdt_moves() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RDT, 2);
    for i in 0..4 {
        d.host_send(&frame(60, i));
    }
    assert_eq!(
        d.poll(),
        2,
        "the backend is not read while the ring is full"
    );
    assert_eq!(d.r32(regs::RDH), 2);
    d.w32(regs::RDT, 8);
    assert_eq!(d.poll(), 2);
    assert_eq!(d.r32(regs::RDH), 4);
    assert_eq!(d.mem_read(RX_BUF + 3 * 0x4000 + 14, 1), vec![3]);
}

#[test]
fn test_frame_needing_more_descriptors_than_free_is_held() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RCTL, rctl::EN | rctl::BAM | rctl::SECRC | 1 << 16);
    d.w32(regs::RDT, 1);
    d.host_send(&frame(1500, 9));
    d.poll();
    assert!(d.nic.with_core(|c| c.has_pending()));
    assert_eq!(d.r32(0x40a0), 1, "RNBC");
    d.w32(regs::RDT, 5);
    assert!(!d.nic.with_core(|c| c.has_pending()));
    assert_eq!(d.r32(regs::RDH), 2);
}

#[test]
fn test_short_frame_padded_and_counted() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.host_send(&frame(42, 0));
    d.poll();
    assert_eq!(u16::from_le_bytes([d.rx_desc(0)[8], d.rx_desc(0)[9]]), 60);
    assert_eq!(d.r32(0x4074), 1, "GPRC");
    assert_eq!(d.r32(0x4078), 1, "BPRC");
    assert_eq!(d.r32(0x4088), 64, "GORCL with FCS");
}

#[test]
fn test_receiver_off_drops_and_does_not_hold() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RCTL, 0);
    d.host_send(&frame(60, 0));
    assert_eq!(d.poll(), 1);
    assert!(!d.nic.with_core(|c| c.has_pending()));
    assert_eq!(d.r32(regs::RDH), 0);
}

#[test]
fn test_oversize_without_lpe_dropped() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.host_send(&frame(2000, 0));
    d.poll();
    assert_eq!(d.r32(regs::RDH), 0);
    assert_eq!(d.r32(0x40ac), 1, "ROC");
}
