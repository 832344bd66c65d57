//! Fuzzes the virtio-net control queue end to end (`virtio::net`, served
//! inline by `InlineNet`): chains of any shape over guest-written
//! descriptor tables, their commands (receive mode, MAC tables, queue
//! pairs) read from guest memory, executed, and acknowledged, with one or
//! two queue pairs and any negotiated features; `virtio_chains` covers the
//! command parser alone.
//!
//! Input layout: 8 bytes of parameters (4 bytes of feature bits, masked
//! with what the device offers; chains offered on the control queue; bit 0
//! of the next byte: two queue pairs), then guest RAM from address 0: two
//! 64 KiB regions with a hole between them. Queue `q`'s descriptor table
//! is at 0x400 * q, its available ring 0x100 and its used ring 0x200
//! after it; the control queue is queue 2 (4 with `MQ`).
//!
//! Properties: nothing panics; no byte of guest RAM changes outside the
//! control queue's device-writable buffers and used ring (unless buffers
//! overlap its rings or indirect tables); no more chains
//! are used than offered, each with a used length of 0 or 1 (the ack);
//! where the used chains are direct and apart from each other and the
//! rings, each ack is `OK` or `ERR`, `ERR` for every command the parser
//! refuses, and the receive mode and queue pairs the device ends with are
//! those the commands it acknowledged with `OK` set, in order; the pairs
//! in use never exceed those set up.

#![no_main]

mod net_common;

use std::sync::Arc;

use backend::net::FrameIo;
use libfuzzer_sys::fuzz_target;
use net_common::{activation, chain, guest_ram, read_segs, snapshot, used, Frames};
use virtio::net::{check_ctrl_command, InlineNet, Net, NetConfig, F_CTRL_VQ, F_MQ};
use virtio::VirtioDevice;

/// `VIRTIO_F_VERSION_1`.
const VERSION_1: u64 = 1 << 32;
const OK: u8 = 0;
const ERR: u8 = 1;

fuzz_target!(|data: &[u8]| {
    let Some((params, ram)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some(mem) = guest_ram(ram) else {
        return;
    };
    let pairs = 1 + usize::from(params[5] & 1);
    let backends: Vec<Arc<dyn FrameIo>> = (0..pairs)
        .map(|_| Arc::new(Frames::default()) as Arc<dyn FrameIo>)
        .collect();
    let cfg = NetConfig::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], backends.clone());
    let Ok(device) = Net::new(NetConfig::new(cfg.mac, backends)) else {
        return;
    };
    let features = (u64::from(u32::from_le_bytes([
        params[0], params[1], params[2], params[3],
    ])) & device.features())
        | VERSION_1
        | F_CTRL_VQ;
    let on_offer = if features & F_MQ != 0 { pairs } else { 1 };
    let ctrl = (2 * on_offer) as u16;
    let offered = u16::from(params[4]) % (net_common::QSIZE + 1);
    let mut counts = vec![0u16; usize::from(ctrl) + 1];
    counts[usize::from(ctrl)] = offered;
    let Some(act) = activation(&mem, features, &counts) else {
        return;
    };
    let before = snapshot(&mem);
    let Ok(mut net) = InlineNet::new(act, &cfg, Arc::default()) else {
        return;
    };

    net.serve_ctrl();

    let after = snapshot(&mem);
    net_common::assert_writes_within(&before, &after, ctrl);
    let used = used(&after, ctrl);
    assert!(used.len() <= usize::from(offered));
    assert!(used.iter().all(|&(_, len)| len <= 1), "{used:?}");
    let state = net.state();
    assert!(
        (1..=on_offer).contains(&usize::from(state.active_pairs)),
        "{} pairs in use, {on_offer} set up",
        state.active_pairs
    );
    let Some(acked) = commands(&before, &after, ctrl, &used) else {
        return;
    };
    let (mut promisc, mut allmulti, mut active) = (true, false, 1u16);
    for (command, ack) in acked {
        assert!(ack == OK || ack == ERR, "ack {ack}");
        if !check_ctrl_command(&command, features) {
            assert_eq!(ack, ERR, "a refused command {command:x?} acknowledged");
        }
        if ack != OK {
            continue;
        }
        match (command[0], command[1]) {
            (0, 0) => promisc = command[2] != 0,
            (0, 1) => allmulti = command[2] != 0,
            (4, 0) => active = u16::from_le_bytes([command[2], command[3]]),
            _ => {}
        }
    }
    assert_eq!(state.filter.promisc, promisc, "promiscuous mode");
    assert_eq!(state.filter.allmulti, allmulti, "all-multicast mode");
    assert_eq!(state.active_pairs, active, "queue pairs");
});

/// Each acknowledged command's bytes and its ack, in order; `None` unless
/// every used chain is direct and its buffers lie apart from each other's
/// and from the rings (so what `before` shows is what the device read).
fn commands(
    before: &[u8],
    after: &[u8],
    q: u16,
    used: &[(u32, u32)],
) -> Option<Vec<(Vec<u8>, u8)>> {
    let rings_end = 0x400 * (u64::from(q) + 1);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::new();
    for &(id, len) in used {
        let (readable, writable) = chain(before, q, u16::try_from(id).ok()?)?;
        for &(a, l) in readable.iter().chain(&writable) {
            let end = a.saturating_add(u64::from(l));
            if a < rings_end || spans.iter().any(|&(s, e)| a < e && s < end) {
                return None;
            }
            spans.push((a, end));
        }
        if len == 0 {
            continue;
        }
        let total: usize = readable.iter().map(|&(_, l)| l as usize).sum();
        let command = read_segs(before, &readable, total)?;
        let ack = read_segs(after, &writable[..1], 1)?[0];
        out.push((command, ack));
    }
    Some(out)
}
