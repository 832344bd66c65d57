//! A hostile guest: rings and descriptors that make no sense must end in
//! a defined state, never a panic, a hang, or an access outside RAM.

use pci::function::PciFunction;

use super::driver::*;
use crate::e1000e::desc::cmd;
use crate::e1000e::regs;

const EOP_RS: u8 = cmd::EOP | cmd::RS;

#[test]
fn test_tdh_outside_ring_stalls_transmit() {
    let mut d = Driver::new();
    d.setup_tx();
    d.w32(regs::TDH, 0x5a5a);
    d.put_legacy(&frame(60, 0), EOP_RS);
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    assert_eq!(d.r32(regs::TDH), 0x5a5a);
    assert_eq!(d.nic.with_core(|c| c.drops.tx_ring), 1);
}

#[test]
fn test_tdt_outside_ring_stalls_transmit() {
    let mut d = Driver::new();
    d.setup_tx();
    d.w32(regs::TDT, RING + 3);
    assert_eq!(d.r32(regs::TDH), 0);
}

#[test]
fn test_rdh_outside_ring_drops_frame() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RDH, 0xffff);
    d.host_send(&frame(60, 0));
    d.poll();
    assert_eq!(d.nic.with_core(|c| c.drops.rx_ring), 1);
    assert_eq!(d.r32(0x4010), 1, "MPC");
}

#[test]
fn test_rx_ring_length_zero_drops_frame() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RDLEN, 0);
    d.host_send(&frame(60, 0));
    d.poll();
    assert_eq!(d.nic.with_core(|c| c.drops.rx_ring), 1);
}

#[test]
fn test_null_rx_buffer_skipped_with_rxe() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.set_rx_buffer(0, 0);
    d.host_send(&frame(60, 0));
    d.host_send(&frame(60, 1));
    d.poll();
    let desc = d.rx_desc(0);
    assert_eq!(desc[12] & 1, 1, "written back");
    assert_ne!(desc[13] & 0x80, 0, "RXE");
    assert_eq!(d.mem_read(0, 16), vec![0; 16], "nothing at address 0");
    assert_eq!(
        d.mem_read(RX_BUF + 0x4000 + 14, 1),
        vec![1],
        "next frame fine"
    );
}

#[test]
fn test_rx_buffer_in_own_bar_is_not_reached() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.set_rx_buffer(0, OUTSIDE);
    d.host_send(&frame(60, 0));
    d.poll();
    assert_ne!(d.rx_desc(0)[13] & 0x80, 0);
    assert_eq!(d.nic.with_core(|c| c.drops.rx_buffers), 1);
    assert_eq!(
        d.r32(regs::CTRL) & regs::ctrl::RST,
        0,
        "no re-entrant write landed"
    );
}

#[test]
fn test_tx_ring_outside_ram_is_dropped() {
    let mut d = Driver::new();
    d.setup_tx();
    d.w32(regs::TDBAL, OUTSIDE as u32);
    d.w32(regs::TDT, 3);
    assert!(d.host_frames().is_empty());
}

#[test]
fn test_tx_buffer_outside_ram_drops_packet_continues() {
    let mut d = Driver::new();
    d.setup_tx();
    let mut desc = [0u8; 16];
    desc[..8].copy_from_slice(&OUTSIDE.to_le_bytes());
    desc[8] = 60;
    desc[11] = EOP_RS;
    let bad = d.put_raw(desc);
    let f = frame(60, 1);
    d.put_legacy(&f, EOP_RS);
    d.kick_tx();
    assert_eq!(d.host_frames(), vec![f]);
    assert_eq!(d.tx_status(bad) & 1, 1);
    assert_eq!(d.nic.with_core(|c| c.drops.tx_packets), 1);
}

#[test]
fn test_ring_without_eop_sends_nothing_and_ends() {
    let mut d = Driver::new();
    d.setup_tx();
    for _ in 0..RING - 1 {
        d.put_legacy(&frame(1000, 0), cmd::RS);
    }
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    assert_eq!(d.r32(regs::TDH), RING - 1);
    // The tail wraps around; still nothing, still bounded.
    for _ in 0..RING - 1 {
        d.put_legacy(&frame(1000, 0), cmd::RS);
    }
    d.kick_tx();
    assert!(d.host_frames().is_empty());
}

#[test]
fn test_huge_packet_without_eop_dropped_at_limit() {
    let mut d = Driver::new();
    d.setup_tx();
    let mut desc = [0u8; 16];
    desc[..8].copy_from_slice(&TX_BUF.to_le_bytes());
    desc[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
    desc[11] = 0;
    for _ in 0..5 {
        d.put_raw(desc);
    }
    desc[11] = EOP_RS;
    d.put_raw(desc);
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    assert_eq!(d.nic.with_core(|c| c.drops.tx_packets), 1);
}

#[test]
fn test_tso_mss_zero_dropped() {
    let mut d = Driver::new();
    d.setup_tx();
    let mut c = [0u8; 16];
    c[0] = 14;
    c[4] = 34;
    c[5] = 50;
    c[11] = 0x07 | cmd::DEXT;
    c[13] = 54;
    d.put_raw(c);
    let mut data = [0u8; 16];
    data[..8].copy_from_slice(&TX_BUF.to_le_bytes());
    data[8..10].copy_from_slice(&3000u16.to_le_bytes());
    data[10] = 0x10;
    data[11] = cmd::EOP | cmd::RS | cmd::IC_TSE | cmd::DEXT;
    data[13] = 3;
    d.put_raw(data);
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    assert_eq!(d.r32(0x40fc), 1, "TSCTFC");
}

#[test]
fn test_unknown_descriptor_type_dropped() {
    let mut d = Driver::new();
    d.setup_tx();
    let mut c = [0u8; 16];
    c[10] = 0x70;
    c[11] = cmd::DEXT | EOP_RS;
    d.put_raw(c);
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    assert_eq!(d.nic.with_core(|c| c.drops.tx_packets), 1);
}

#[test]
fn test_odd_width_accesses_do_not_panic() {
    let mut d = Driver::new();
    let mut b = [0u8; 8];
    d.nic.bar_read(0, 0x1ffff, &mut b);
    d.nic.bar_write(0, 0x1fffe, &[1, 2, 3, 4, 5, 6, 7, 8]);
    d.nic.bar_read(0, u64::MAX - 2, &mut b);
    d.nic.bar_write(2, 7, &[1]);
    d.nic.bar_read(1, 0, &mut b);
    assert_eq!(b, [0; 8]);
}

#[test]
fn test_dma_with_bus_master_off_waits() {
    let mut d = Driver::new();
    d.setup_tx();
    use pci::testing::ConfigDriver;
    d.nic.set_command(pci::config::command::MEMORY);
    let f = frame(60, 0);
    d.put_legacy(&f, EOP_RS);
    d.kick_tx();
    assert!(d.host_frames().is_empty());
    d.nic
        .set_command(pci::config::command::MEMORY | pci::config::command::BUS_MASTER);
    assert_eq!(d.host_frames(), vec![f]);
}

#[test]
fn test_packet_split_odd_rdt_drops_frame() {
    let mut d = Driver::new();
    d.setup_rx(false);
    d.w32(regs::RCTL, regs::rctl::EN | regs::rctl::BAM | 1 << 10);
    d.w32(regs::PSRCTL, 2);
    d.w32(regs::RDT, 5);
    d.host_send(&frame(60, 0));
    d.poll();
    assert_eq!(d.nic.with_core(|c| c.drops.rx_ring), 1);
    assert_eq!(d.r32(regs::RDH), 0);
}
