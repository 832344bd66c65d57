//! A hostile driver: malformed chains end in a dropped request (used
//! length 0) or `DEVICE_NEEDS_RESET`, never a panic or a hang.

use super::*;

/// Serves tx 0 after `post`, returns (used ring, frames at the peer).
fn tx_after(post: impl FnOnce(&mut Guest)) -> (Vec<(u32, u32)>, usize, Vec<Sig>) {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    g.write(BUF, &frame(MAC, 64));
    post(&mut g);
    core.serve(Target::Tx(0));
    let mut n = 0;
    while recv(&peer).is_some() {
        n += 1;
    }
    (g.used(1), n, g.signals.take())
}

#[test]
fn test_hostile_tx_without_header_dropped() {
    let (used, sent, _) = tx_after(|g| {
        g.post(1, &[(BUF, 5, R)]);
    });

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_writable_descriptor_dropped() {
    let (used, sent, _) = tx_after(|g| {
        g.post(1, &[(BUF, 76, R), (BUF + 0x1000, 10, W)]);
    });

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_too_long_dropped() {
    let (used, sent, _) = tx_after(|g| {
        g.post(1, &[(BUF, 0x2_0000, R)]);
    });

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_looping_chain_dropped() {
    let (used, sent, _) = tx_after(|g| g.post_raw(1, 0, &[(BUF, 40, 1, 1), (BUF + 40, 36, 1, 0)]));

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_next_past_table_dropped() {
    let (used, sent, _) = tx_after(|g| g.post_raw(1, 0, &[(BUF, 76, 1, 500)]));

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_outside_memory_dropped() {
    let (used, sent, _) = tx_after(|g| {
        g.post(1, &[(RAM - 10, 76, R)]);
    });

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_frame_running_past_memory_after_a_good_header_dropped() {
    let (used, sent, _) = tx_after(|g| {
        g.post(1, &[(BUF, 12, R), (RAM - 30, 64, R)]);
    });

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_address_wrapping_dropped() {
    let (used, sent, _) = tx_after(|g| {
        g.post(1, &[(u64::MAX - 4, 76, R)]);
    });

    assert_eq!((used, sent), (vec![(0, 0)], 0));
}

#[test]
fn test_hostile_tx_avail_index_too_far_ahead_needs_reset() {
    let (_, _, sigs) = tx_after(|g| {
        let avail_idx = g.q(1).avail + 2;
        g.write(avail_idx, &500u16.to_le_bytes());
    });

    assert_eq!(sigs, vec![Sig::NeedsReset]);
}

#[test]
fn test_hostile_rx_readable_descriptor_chain_returned_unused_frame_kept() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    peer.send(&frame(MAC, 64)).unwrap();
    g.post(0, &[(BUF, 100, R), (BUF + 0x1000, 2000, W)]);
    g.post(0, &[(BUF + 0x2000, 2000, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0), vec![(0, 0), (2, 76)]);
}

#[test]
fn test_hostile_rx_chain_outside_memory_returned_unused() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    peer.send(&frame(MAC, 64)).unwrap();
    g.post(0, &[(RAM - 100, 2000, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0), vec![(0, 0)]);
    assert!(core.pairs[0].rx.as_ref().unwrap().has_pending());
}

#[test]
fn test_hostile_rx_buffer_too_small_without_mergeable_drops_frame_keeps_buffer() {
    let (mut g, mut core, peer, _io) = one_pair(BASE);
    peer.send(&frame(MAC, 200)).unwrap();
    peer.send(&frame(MAC, 20)).unwrap();
    g.post(0, &[(BUF, 40, W)]);

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0), vec![(0, 32)]);
}

#[test]
fn test_hostile_rx_tiny_mergeable_buffers_never_fit_frame_dropped() {
    let (mut g, mut core, peer, _io) = one_pair(BASE | F_MRG_RXBUF);
    peer.send(&frame(MAC, 1500)).unwrap();
    for i in 0..u64::from(QSIZE) {
        g.post(0, &[(BUF + i * 0x100, 12, W)]);
    }

    core.serve(Target::Rx(0));

    assert_eq!(g.used(0), vec![]);
    assert!(!core.pairs[0].rx.as_ref().unwrap().has_pending());
}

#[test]
fn test_hostile_ctrl_without_ack_byte_used_with_length_zero() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);
    g.write(BUF, &[4, 0, 1, 0]);
    g.post(2, &[(BUF, 4, R)]);

    core.serve(Target::Ctrl);

    assert_eq!(g.used(2), vec![(0, 0)]);
}

#[test]
fn test_hostile_ctrl_command_in_writable_buffer_is_err() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);
    g.write(BUF, &[0, 0, 0]);
    g.post(2, &[(BUF, 3, W)]);

    core.serve(Target::Ctrl);

    assert_eq!(g.read(BUF, 1), vec![1]);
}

#[test]
fn test_hostile_ctrl_one_byte_command_is_err() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);
    g.write(BUF, &[4]);
    g.post(2, &[(BUF, 1, R), (BUF + 0x1000, 1, W)]);

    core.serve(Target::Ctrl);

    assert_eq!(g.read(BUF + 0x1000, 1), vec![1]);
}

#[test]
fn test_hostile_random_descriptors_on_every_queue_never_panic() {
    let (mut g, mut core, peer, _io) = one_pair(BASE | F_MRG_RXBUF);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300u64 {
        let q = (round % 3) as u16;
        let start = (rand() % u64::from(QSIZE - 4)) as u16;
        let descs: Vec<(u64, u32, u16, u16)> = (0..4)
            .map(|_| {
                let addr = match rand() % 4 {
                    0 => rand(),
                    1 => RAM - rand() % 0x100,
                    _ => BUF + rand() % 0x10_0000,
                };
                let len = (rand() % 0x1_2000) as u32;
                (addr, len, (rand() % 8) as u16, (rand() % 80) as u16)
            })
            .collect();
        g.post_raw(q, start, &descs);
        let _ = peer.send(&frame(MAC, 14 + (rand() % 1500) as usize));
        core.serve_all();
    }

    assert!(g.used(1).len() <= 300);
}
