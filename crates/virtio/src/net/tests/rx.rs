//! Receive: frames land in the driver's buffers with a correct header;
//! without buffers they wait.

use super::*;

#[test]
fn test_rx_frame_lands_with_header_and_one_buffer() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    let f = frame(MAC, 100);
    peer.send(&f).unwrap();
    let head = g.post(0, &[(BUF, 12, W), (BUF + 0x1000, 2000, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0), vec![(u32::from(head), f.len() as u32)]);
    let hdr = g.read(BUF, 12);
    assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 1, "num_buffers");
    assert_eq!(g.read(BUF + 0x1000, 100), f[12..]);
    assert_eq!(g.signals.take(), vec![Sig::Used(0)]);
}

#[test]
fn test_rx_mergeable_frame_spans_three_chains_with_num_buffers() {
    let (mut g, mut core, peer, _io) = one_pair(BASE | F_MRG_RXBUF);
    let f = frame(MAC, 100);
    peer.send(&f).unwrap();
    let heads: Vec<u16> = (0..4u64)
        .map(|i| g.post(0, &[(BUF + i * 0x1000, 40, W)]))
        .collect();

    core.serve(Target::Rx(0));

    let used = g.used(0);
    let expect: Vec<(u32, u32)> = vec![
        (u32::from(heads[0]), 40),
        (u32::from(heads[1]), 40),
        (u32::from(heads[2]), 32),
    ];
    assert_eq!(used, expect);
    let hdr = g.read(BUF, 12);
    assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 3, "num_buffers");
    let mut got = g.read(BUF, 40);
    got.extend(g.read(BUF + 0x1000, 40));
    got.extend(g.read(BUF + 0x2000, 32));
    assert_eq!(got[12..], f[12..]);
}

#[test]
fn test_rx_no_buffers_frame_held_until_buffers_arrive() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    let first = frame(MAC, 64);
    let second = frame(MAC, 80);
    peer.send(&first).unwrap();
    peer.send(&second).unwrap();

    core.serve(Target::Rx(0));
    let waiting = core.pairs[0].rx.as_ref().unwrap().has_pending();
    let polls = core.wants_frames(0);
    g.post(0, &[(BUF, 2000, W)]);
    core.serve(Target::Rx(0));

    assert!(waiting);
    assert!(!polls, "the backend is not polled while a frame waits");
    assert_eq!(g.used(0), vec![(0, first.len() as u32)]);
    assert_eq!(g.read(BUF + 12, 64), first[12..]);
    assert!(
        core.pairs[0].rx.as_ref().unwrap().has_pending(),
        "second held"
    );
}

#[test]
fn test_rx_held_frame_then_both_frames_delivered_in_order() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    peer.send(&frame([1; 6], 64)).unwrap();
    peer.send(&frame([3; 6], 64)).unwrap();
    core.state.filter.promisc = true;
    core.serve(Target::Rx(0));
    g.post(0, &[(BUF, 2000, W)]);
    g.post(0, &[(BUF + 0x1000, 2000, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0).len(), 2);
    assert_eq!(g.read(BUF + 12, 1), vec![1]);
    assert_eq!(g.read(BUF + 0x1000 + 12, 1), vec![3]);
    assert!(core.wants_frames(0));
}

#[test]
fn test_rx_without_guest_csum_clears_data_valid() {
    let (mut g, mut core, peer, _io) = one_pair(F_MAC);
    let mut f = frame(MAC, 64);
    f[0] = header::F_DATA_VALID;
    peer.send(&f).unwrap();
    g.post(0, &[(BUF, 2000, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.read(BUF, 1), vec![0]);
}

#[test]
fn test_rx_filter_off_promisc_drops_foreign_unicast_keeps_broadcast() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    core.state.filter.promisc = false;
    peer.send(&frame([0x52, 0, 0, 0, 0, 9], 64)).unwrap();
    peer.send(&frame([0xff; 6], 64)).unwrap();
    g.post(0, &[(BUF, 2000, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0).len(), 1);
    assert_eq!(g.read(BUF + 12, 6), vec![0xff; 6]);
}

#[test]
fn test_rx_activation_applies_guest_offloads_to_backend() {
    let (_g, _core, _peer, io) = one_pair(BASE | F_GUEST_TSO4 | F_GUEST_TSO6);

    let set = io.offloads.lock().unwrap().clone();

    let expect = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        ..Offloads::default()
    };
    assert_eq!(set, vec![expect]);
}

#[test]
fn test_inline_net_serves_receive_and_control_on_the_callers_thread() {
    let mut g = Guest::new();
    let (io, peer) = pipe();
    let cfg = NetConfig::new(MAC, vec![io]);
    let (act, _) = g.activation(BASE, &[0, 1, 2]);
    let mut net = InlineNet::new(act, &cfg, Arc::default()).unwrap();
    let f = frame(MAC, 64);
    peer.send(&f).unwrap();
    g.post(0, &[(BUF, 2000, W)]);
    g.write(BUF + 0x4000, &[0, 0, 0]);
    g.post(2, &[(BUF + 0x4000, 3, R), (BUF + 0x5000, 1, W)]);

    net.serve_rx(0);
    net.serve_ctrl();

    assert_eq!(g.used(0), vec![(0, f.len() as u32)]);
    assert_eq!(g.read(BUF + 12, 64), f[12..]);
    assert_eq!(
        g.read(BUF + 0x5000, 1),
        vec![0],
        "promiscuous off acknowledged"
    );
    assert!(!net.state().filter.promisc);
}
