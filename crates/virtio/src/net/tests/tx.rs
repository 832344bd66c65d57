//! Transmit: chains reach the backend whole, header first.

use super::*;

#[test]
fn test_tx_two_descriptor_chain_reaches_peer_with_header_then_frame() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    let f = frame([0xff; 6], 60);
    g.write(BUF, &f[..12]);
    g.write(BUF + 0x1000, &f[12..]);
    let head = g.post(1, &[(BUF, 12, R), (BUF + 0x1000, 60, R)]);

    core.serve(Target::Tx(0));

    assert_eq!(recv(&peer).unwrap(), f);
    assert_eq!(g.used(1), vec![(u32::from(head), 0)]);
    assert_eq!(g.signals.take(), vec![Sig::Used(1)]);
}

#[test]
fn test_tx_frame_after_header_is_intact_for_the_tap() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    let f = frame(MAC, 1500);
    g.write(BUF, &f);
    g.post(1, &[(BUF, f.len() as u32, R)]);

    core.serve(Target::Tx(0));

    let got = recv(&peer).unwrap();
    assert_eq!(&got[header::HDR_LEN..], &f[header::HDR_LEN..]);
}

#[test]
fn test_tx_header_split_across_descriptors_and_frame_in_pieces_arrive_whole() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    let f = frame(MAC, 300);
    // 5 + 7 header bytes, then the header's last descriptor also starts
    // the frame, which ends in two more pieces.
    let pieces = [(0, 5), (5, 7 + 100), (112, 150), (262, f.len() - 262)];
    let descs: Vec<(u64, u32, bool)> = pieces
        .iter()
        .enumerate()
        .map(|(i, &(at, len))| {
            let addr = BUF + i as u64 * 0x1000 + 0xff0;
            g.write(addr, &f[at..at + len]);
            (addr, len as u32, R)
        })
        .collect();
    g.post(1, &descs);

    core.serve(Target::Tx(0));

    assert_eq!(recv(&peer).unwrap(), f);
}

#[test]
fn test_tx_several_chains_all_sent_in_order() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    for i in 0..3u64 {
        let f = frame([i as u8; 6], 100);
        g.write(BUF + i * 0x1000, &f);
        g.post(1, &[(BUF + i * 0x1000, f.len() as u32, R)]);
    }

    core.serve(Target::Tx(0));

    let dsts: Vec<u8> = (0..3).map(|_| recv(&peer).unwrap()[12]).collect();
    assert_eq!(dsts, vec![0, 1, 2]);
    assert_eq!(g.used(1).len(), 3);
}

#[test]
fn test_tx_gso_header_with_host_tso4_is_sent() {
    let (mut g, mut core, peer, _io) = one_pair(BASE | F_HOST_TSO4);
    let mut f = frame(MAC, 200);
    f[0] = header::F_NEEDS_CSUM;
    f[1] = header::GSO_TCPV4;
    f[4] = 0xb4;
    f[5] = 0x05;
    g.write(BUF, &f);
    g.post(1, &[(BUF, f.len() as u32, R)]);

    core.serve(Target::Tx(0));

    assert_eq!(recv(&peer).unwrap(), f);
}
