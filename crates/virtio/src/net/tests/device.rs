//! The whole device: configuration space, features, and the worker
//! thread serving a frame each way, reset and activation again.

use std::time::{Duration, Instant};

use super::*;
use crate::device::VirtioDevice;

fn net(pairs: usize) -> (Net, Vec<UnixDatagram>) {
    let (ios, peers): (Vec<Arc<dyn FrameIo>>, Vec<UnixDatagram>) = (0..pairs)
        .map(|_| {
            let (io, peer) = pipe();
            (io as Arc<dyn FrameIo>, peer)
        })
        .unzip();
    (Net::new(NetConfig::new(MAC, ios)).unwrap(), peers)
}

/// Waits up to two seconds for `cond`.
fn wait(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn wait_frame(peer: &UnixDatagram) -> Option<Vec<u8>> {
    let mut got = None;
    wait(|| {
        got = recv(peer);
        got.is_some()
    });
    got
}

#[test]
fn test_device_config_space_has_mac_link_up_and_pairs() {
    let (dev, _peers) = net(2);
    let mut c = [0u8; CONFIG_LEN];

    dev.read_config(0, &mut c);

    assert_eq!(c[..6], MAC);
    assert_eq!(c[6..8], [1, 0]);
    assert_eq!(c[8..10], [2, 0]);
}

#[test]
fn test_device_config_read_past_end_is_zero() {
    let (dev, _peers) = net(1);
    let mut c = [0xffu8; 4];

    dev.read_config(u64::MAX - 1, &mut c);

    assert_eq!(c, [0; 4]);
}

#[test]
fn test_device_features_mq_only_with_several_pairs() {
    let (one, _p1) = net(1);
    let (two, _p2) = net(2);

    assert_eq!(one.features() & F_MQ, 0);
    assert_eq!(two.features() & F_MQ, F_MQ);
    assert_eq!(two.queue_max_sizes().len(), 5);
}

#[test]
fn test_device_new_without_backends_is_refused() {
    let r = Net::new(NetConfig::new(MAC, Vec::new()));

    assert!(matches!(r, Err(NetError::QueuePairs(0))));
}

#[test]
fn test_device_activate_without_tx0_is_refused() {
    let (mut dev, _peers) = net(1);
    let mut g = Guest::new();
    let (act, _) = g.activation(BASE, &[0, 2]);

    let r = dev.activate(act);

    assert!(matches!(r, Err(ActivateError::MissingQueue(1))));
}

#[test]
fn test_device_worker_moves_frames_both_ways_and_survives_reset() {
    let (mut dev, peers) = net(1);
    let mut g = Guest::new();
    for round in 0..2u64 {
        if round == 1 {
            g = Guest::new();
        }
        let (act, kicks) = g.activation(BASE | F_MRG_RXBUF, &[0, 1, 2]);
        dev.activate(act).unwrap();
        // TX: the driver posts a frame and kicks queue 1.
        let f = frame([0xff; 6], 100);
        g.write(BUF, &f);
        g.post(1, &[(BUF, f.len() as u32, R)]);
        kicks[1].write(1).unwrap();
        let sent = wait_frame(&peers[0]);
        // RX: a frame arrives before any buffer; then the driver posts one.
        let incoming = frame(MAC, 300);
        peers[0].send(&incoming).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let early = g.used(0).len();
        g.post(0, &[(BUF + 0x10_000, 4096, W)]);
        kicks[0].write(1).unwrap();
        let delivered = wait(|| g.used(0).len() == 1);
        dev.reset();

        assert_eq!(sent.as_deref(), Some(&f[..]), "round {round}");
        assert_eq!(early, 0);
        assert!(delivered, "round {round}");
        assert_eq!(g.read(BUF + 0x10_000 + 12, 300), incoming[12..]);
        assert!(!dev.is_active());
    }
    let f = dev.counters().figures();
    assert_eq!(
        (f.get("tx_frames"), f.get("tx_bytes")),
        (Some(2), Some(200))
    );
    assert_eq!(
        (f.get("rx_frames"), f.get("rx_bytes")),
        (Some(2), Some(600))
    );
    assert_eq!(
        (f.get("rx_dropped"), f.get("tx_dropped")),
        (Some(0), Some(0))
    );
    assert_eq!(
        f.get("read_ops"),
        None,
        "a network device reports no block figures"
    );
}

#[test]
fn test_device_reset_joins_worker_and_stops_guest_access() {
    let (mut dev, peers) = net(1);
    let mut g = Guest::new();
    let (act, kicks) = g.activation(BASE, &[0, 1, 2]);
    dev.activate(act).unwrap();

    dev.reset();
    g.post(0, &[(BUF, 4096, W)]);
    peers[0].send(&frame(MAC, 64)).unwrap();
    kicks[0].write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));

    assert!(g.used(0).is_empty());
}
