//! The pure parts: chain layout, header checks, control parsing.

use virtio_queue::desc::split::Descriptor;

use super::super::chain::{layout, ChainError};
use super::super::ctrl::{execute, parse, Command, CtrlError, CtrlState, ERR, OK};
use super::super::header::{check_tx, fix_rx, HdrError, GSO_ECN, GSO_TCPV4, GSO_UDP};
use super::*;

fn d(addr: u64, len: u32, write: bool, next: bool) -> Descriptor {
    let flags = u16::from(write) * 2 + u16::from(next);
    Descriptor::new(addr, len, flags, 0)
}

#[test]
fn test_layout_readable_then_writable_splits() {
    let l = layout([d(0, 10, R, true), d(100, 1, W, false)].into_iter(), 100).unwrap();

    assert_eq!((l.readable_len, l.writable_len), (10, 1));
}

#[test]
fn test_layout_readable_after_writable_is_refused() {
    let r = layout([d(0, 1, W, true), d(10, 1, R, false)].into_iter(), 100);

    assert_eq!(r, Err(ChainError::ReadableAfterWritable));
}

#[test]
fn test_layout_cut_short_chain_is_broken() {
    let r = layout([d(0, 1, R, true)].into_iter(), 100);

    assert_eq!(r, Err(ChainError::Broken));
}

#[test]
fn test_layout_empty_chain_is_refused() {
    let r = layout(std::iter::empty(), 100);

    assert_eq!(r, Err(ChainError::Empty));
}

#[test]
fn test_layout_over_limit_is_too_long() {
    let r = layout([d(0, 60, R, true), d(0, 60, R, false)].into_iter(), 100);

    assert_eq!(r, Err(ChainError::TooLong(100)));
}

#[test]
fn test_check_tx_csum_without_feature_is_refused() {
    let mut h = [0u8; 12];
    h[0] = 1;

    assert_eq!(check_tx(&h, 0), Err(HdrError::Flags(1)));
}

#[test]
fn test_check_tx_tso4_without_host_tso4_is_refused() {
    let mut h = [0u8; 12];
    h[1] = GSO_TCPV4;
    h[4] = 1;

    assert_eq!(check_tx(&h, F_CSUM), Err(HdrError::Gso(GSO_TCPV4)));
}

#[test]
fn test_check_tx_ecn_without_host_ecn_is_refused() {
    let mut h = [0u8; 12];
    h[1] = GSO_TCPV4 | GSO_ECN;
    h[4] = 1;

    assert!(check_tx(&h, F_CSUM | F_HOST_TSO4).is_err());
}

#[test]
fn test_check_tx_udp_not_offered_is_refused() {
    let mut h = [0u8; 12];
    h[1] = GSO_UDP;
    h[4] = 1;

    assert!(check_tx(&h, !F_HOST_UFO).is_err());
}

#[test]
fn test_check_tx_gso_without_size_is_refused() {
    let mut h = [0u8; 12];
    h[1] = GSO_TCPV4;

    assert_eq!(check_tx(&h, F_HOST_TSO4), Err(HdrError::GsoSize));
}

#[test]
fn test_fix_rx_sets_num_buffers() {
    let mut h = [0u8; 12];

    fix_rx(&mut h, 0, 5).unwrap();

    assert_eq!(h[10..12], [5, 0]);
}

#[test]
fn test_fix_rx_gso_not_negotiated_is_refused() {
    let mut h = [0u8; 12];
    h[1] = GSO_TCPV4;
    h[4] = 1;

    assert!(fix_rx(&mut h, F_GUEST_CSUM, 1).is_err());
}

#[test]
fn test_parse_short_command_is_short() {
    assert_eq!(parse(&[4], u64::MAX), Err(CtrlError::Short));
}

#[test]
fn test_parse_mq_with_three_data_bytes_is_malformed() {
    assert_eq!(
        parse(&[4, 0, 1, 0, 0], F_MQ),
        Err(CtrlError::Malformed(4, 0))
    );
}

#[test]
fn test_parse_mac_table_overlong_count_is_malformed() {
    let cmd = [1, 0, 0xff, 0xff, 0xff, 0xff];

    assert_eq!(parse(&cmd, F_CTRL_RX), Err(CtrlError::Malformed(1, 0)));
}

#[test]
fn test_parse_allmulti_on() {
    assert_eq!(parse(&[0, 1, 1], F_CTRL_RX), Ok(Command::AllMulti(true)));
}

#[test]
fn test_execute_pairs_within_usable_is_ok() {
    let mut s = CtrlState::default();

    let (ack, _) = execute(&[4, 0, 3, 0], F_MQ, &mut s, 4);

    assert_eq!((ack, s.active_pairs), (OK, 3));
}

#[test]
fn test_execute_pairs_beyond_usable_is_err() {
    let mut s = CtrlState::default();

    let (ack, err) = execute(&[4, 0, 5, 0], F_MQ, &mut s, 4);

    assert_eq!((ack, err), (ERR, Some(CtrlError::Pairs(5, 4))));
}

#[test]
fn test_filter_multicast_listed_accepted_unlisted_refused() {
    let f = RxFilter {
        promisc: false,
        multicast: vec![[1, 0, 0x5e, 0, 0, 1]],
        ..RxFilter::default()
    };

    assert!(f.accepts(&MAC, &[1, 0, 0x5e, 0, 0, 1]));
    assert!(!f.accepts(&MAC, &[1, 0, 0x5e, 0, 0, 2]));
    assert!(f.accepts(&MAC, &MAC));
}
