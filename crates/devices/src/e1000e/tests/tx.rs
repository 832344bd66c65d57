//! Frames from the rings to the host: legacy and extended descriptors,
//! checksum offload, TSO, write-back, loopback, statistics.

use super::driver::*;
use crate::e1000e::desc::cmd;
use crate::e1000e::regs;
use crate::e1000e::tx::{fold, ones_sum};

const EOP_RS: u8 = cmd::EOP | cmd::IFCS | cmd::RS;

#[test]
fn test_legacy_tx_sends_frame_and_writes_back_dd() {
    let mut d = Driver::new();
    d.setup_tx();
    let f = frame(100, 1);
    let i = d.put_legacy(&f, EOP_RS);
    d.kick_tx();
    assert_eq!(d.host_frames(), vec![f]);
    assert_eq!(d.tx_status(i) & 1, 1);
    assert_eq!(d.r32(regs::TDH), 1);
    assert_ne!(d.r32(regs::ICR) & regs::icr::TXDW, 0);
    assert_eq!(d.r32(0x4080), 1, "GPTC");
    assert_eq!(d.r32(0x40f4), 1, "BPTC");
    let c = d.counters.figures();
    assert_eq!(
        (c.get("tx_frames"), c.get("tx_bytes")),
        (Some(1), Some(100))
    );
    assert_eq!(c.get("tx_dropped"), Some(0));
    assert!(c.get("doorbells_trapped") >= Some(1), "the TDT write");
}

#[test]
fn test_packet_gathered_from_several_descriptors() {
    let mut d = Driver::new();
    d.setup_tx();
    let f = frame(300, 2);
    d.put_legacy(&f[..100], 0);
    d.put_legacy(&f[100..250], 0);
    d.put_legacy(&f[250..], EOP_RS);
    d.kick_tx();
    assert_eq!(d.host_frames(), vec![f]);
}

#[test]
fn test_short_frame_padded_with_psp() {
    let mut d = Driver::new();
    d.setup_tx();
    d.put_legacy(&frame(20, 0), EOP_RS);
    d.kick_tx();
    assert_eq!(d.host_frames()[0].len(), 60);
}

fn context(d: &mut Driver, hdr_len: u8, mss: u16, paylen: u32, tucmd: u8) {
    let mut c = [0u8; 16];
    c[0] = 14;
    c[1] = 24;
    c[2..4].copy_from_slice(&33u16.to_le_bytes());
    c[4] = 34;
    c[5] = 50;
    c[8..11].copy_from_slice(&paylen.to_le_bytes()[..3]);
    c[11] = tucmd | cmd::DEXT;
    c[13] = hdr_len;
    c[14..16].copy_from_slice(&mss.to_le_bytes());
    d.put_raw(c);
}

fn data_desc(d: &mut Driver, addr: u64, len: u32, dcmd: u8, popts: u8) -> u32 {
    let mut c = [0u8; 16];
    c[..8].copy_from_slice(&addr.to_le_bytes());
    c[8..11].copy_from_slice(&len.to_le_bytes()[..3]);
    c[10] |= 0x10;
    c[11] = dcmd | cmd::DEXT;
    c[13] = popts;
    d.put_raw(c)
}

/// Ethernet + IPv4 + TCP header with the pseudo-header sum the driver
/// leaves for TSO (no length).
fn tcp_header() -> Vec<u8> {
    let mut h = vec![0u8; 54];
    h[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    h[6..12].copy_from_slice(&MAC);
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    h[14] = 0x45;
    h[22] = 64;
    h[23] = 6;
    h[26..30].copy_from_slice(&[10, 0, 0, 1]);
    h[30..34].copy_from_slice(&[10, 0, 0, 2]);
    h[46] = 0x50;
    h[47] = 0x18;
    let pseudo = fold(ones_sum(&h[26..34], 6));
    h[50..52].copy_from_slice(&pseudo.to_be_bytes());
    h
}

fn tcp_ok(f: &[u8]) -> bool {
    let l4 = (f.len() - 34) as u32;
    fold(ones_sum(&f[14..34], 0)) == 0xffff
        && fold(ones_sum(&f[34..], ones_sum(&f[26..34], 6 + l4))) == 0xffff
}

#[test]
fn test_tso_through_context_and_data_descriptors() {
    let mut d = Driver::new();
    d.setup_tx();
    let mut pkt = tcp_header();
    pkt.extend((0..6000).map(|i| (i * 7) as u8));
    d.mem_write(TX_BUF, &pkt);
    context(&mut d, 54, 1448, 6000, 0x01 | 0x02 | 0x04 | cmd::RS);
    data_desc(&mut d, TX_BUF, 54, cmd::IC_TSE, 3);
    let last = data_desc(
        &mut d,
        TX_BUF + 54,
        6000,
        cmd::IC_TSE | cmd::EOP | cmd::RS,
        3,
    );
    d.kick_tx();
    let frames = d.host_frames();
    assert_eq!(frames.len(), 5);
    let mut payload = Vec::new();
    for f in &frames {
        assert!(tcp_ok(f), "checksums of a segment");
        assert!(f.len() <= 54 + 1448);
        payload.extend_from_slice(&f[54..]);
    }
    assert_eq!(payload, pkt[54..].to_vec());
    assert_eq!(d.tx_status(last) & 1, 1);
    assert_eq!(d.r32(0x40f8), 1, "TSCTC");
    assert_eq!(d.r32(0x4080), 5, "GPTC counts segments");
}

#[test]
fn test_checksum_offload_without_tso() {
    let mut d = Driver::new();
    d.setup_tx();
    let mut pkt = tcp_header();
    pkt.extend_from_slice(&[1, 2, 3, 4, 5]);
    let l4 = (pkt.len() - 34) as u32;
    let pseudo = fold(ones_sum(&pkt[26..34], 6 + l4));
    pkt[50..52].copy_from_slice(&pseudo.to_be_bytes());
    let ip_len = (pkt.len() - 14) as u16;
    pkt[16..18].copy_from_slice(&ip_len.to_be_bytes());
    d.mem_write(TX_BUF, &pkt);
    context(&mut d, 0, 0, 0, 0x01 | 0x02);
    data_desc(&mut d, TX_BUF, pkt.len() as u32, cmd::EOP | cmd::RS, 2);
    d.kick_tx();
    let f = d.host_frames().remove(0);
    assert_eq!(
        fold(ones_sum(&f[34..], ones_sum(&f[26..34], 6 + l4))),
        0xffff
    );
}

#[test]
fn test_phy_loopback_returns_frames_to_rx() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.setup_tx();
    d.phy_write(0, 0x4140);
    let f = frame(1024, 5);
    for _ in 0..4 {
        d.put_legacy(&f, EOP_RS);
    }
    d.kick_tx();
    assert!(d.host_frames().is_empty(), "nothing to the host");
    assert_eq!(d.r32(regs::RDH), 4);
    assert_eq!(d.mem_read(RX_BUF + 3 * 0x4000, 1024), f);
}

#[test]
fn test_tx_without_link_sends_nothing() {
    let mut d = Driver::new();
    d.setup_tx();
    d.phy_write(0, 0x1140 | 1 << 11);
    d.put_legacy(&frame(60, 0), EOP_RS);
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    assert_eq!(d.r32(regs::TDH), 1, "the ring still drains");
}
