//! Fuzzes virtio-net receive (`virtio::net`, served inline by
//! `InlineNet`): frames from the backend placed into the driver's
//! device-writable chains, with or without mergeable receive buffers, over
//! guest-written descriptor tables (short chains, readable descriptors,
//! indirect tables, chains across the RAM hole or past its end) and any
//! negotiated checksum and segmentation features.
//!
//! Input layout: 8 bytes of parameters (4 bytes of feature bits, masked
//! with what the device offers; chains offered on the receive queue; the
//! number of frames; 2 bytes that set the frames' lengths), then guest RAM
//! from address 0: two 64 KiB regions with a hole between them; the
//! receive queue's descriptor table is at 0, its available ring at 0x100
//! (entries from the input) and its used ring at 0x200.
//!
//! Properties: nothing panics; no byte of guest RAM changes outside the
//! device-writable buffers the descriptor tables name and the used ring
//! (checked unless the guest points buffers at its own rings or indirect
//! tables, when the device follows descriptors it rewrote itself); no more chains are used than were offered; and
//! wherever the used chains are plain direct chains outside the rings,
//! each run of used chains that took a frame holds exactly the payload of
//! one frame the backend gave, in the order it gave them, with
//! `num_buffers` equal to the number of chains it took (1 without
//! `MRG_RXBUF`).

#![no_main]

mod net_common;

use std::sync::Arc;

use backend::net::FrameIo;
use libfuzzer_sys::fuzz_target;
use net_common::{activation, chain, guest_ram, read_segs, snapshot, used, Frames, QSIZE};
use virtio::net::{InlineNet, Net, NetConfig, F_MRG_RXBUF};
use virtio::VirtioDevice;

/// The virtio header the device puts before each frame.
const HDR: usize = 12;
/// `VIRTIO_F_VERSION_1`.
const VERSION_1: u64 = 1 << 32;
/// The rings of the receive queue; a buffer over them may rewrite them.
const RINGS: u64 = 0x300;

/// Frame `k` of `n`: a header, then a broadcast Ethernet frame whose bytes
/// name the frame.
fn frame(k: usize, seed: u16) -> Vec<u8> {
    let payload = 14 + (usize::from(seed) * (k + 1) * 37) % 1600;
    let mut f = vec![0u8; HDR + payload];
    f[HDR..HDR + 6].fill(0xff);
    for (i, b) in f[HDR + 6..].iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(31) ^ (i as u8);
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((params, ram)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some(mem) = guest_ram(ram) else {
        return;
    };
    let frames = Arc::new(Frames::default());
    let io: Arc<dyn FrameIo> = frames.clone();
    let cfg = NetConfig::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], vec![io]);
    let Ok(device) = Net::new(NetConfig::new(cfg.mac, cfg.backends.clone())) else {
        return;
    };
    let features = (u64::from(u32::from_le_bytes([
        params[0], params[1], params[2], params[3],
    ])) & device.features())
        | VERSION_1;
    let offered = u16::from(params[4]) % (QSIZE + 1);
    let seed = u16::from_le_bytes([params[6], params[7]]);
    let sent: Vec<Vec<u8>> = (0..usize::from(params[5] % 9))
        .map(|k| frame(k, seed))
        .collect();
    frames.0.lock().unwrap().extend(sent.iter().cloned());
    let Some(act) = activation(&mem, features, &[offered, 0]) else {
        return;
    };
    let before = snapshot(&mem);
    let Ok(mut net) = InlineNet::new(act, &cfg, Arc::default()) else {
        return;
    };

    net.serve_rx(0);
    net.serve_rx(0);

    let after = snapshot(&mem);
    net_common::assert_writes_within(&before, &after, 0);
    let used = used(&after, 0);
    assert!(
        used.len() <= usize::from(offered),
        "{} used, {offered} offered",
        used.len()
    );
    check_frames(&before, &after, &used, &sent, features & F_MRG_RXBUF != 0);
});

/// Each run of used chains that took a frame holds one of `sent`, in
/// order; checked only where every used chain is direct, clear of the
/// rings and of the other used chains (so the descriptors `before` shows
/// are the ones the device read, and no frame overwrote another).
fn check_frames(
    before: &[u8],
    after: &[u8],
    used: &[(u32, u32)],
    sent: &[Vec<u8>],
    mergeable: bool,
) {
    let mut chains = Vec::new();
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for &(id, len) in used {
        let Some((_, segs)) = u16::try_from(id).ok().and_then(|h| chain(before, 0, h)) else {
            return;
        };
        for &(a, l) in &segs {
            let end = a.saturating_add(u64::from(l));
            if a < RINGS || spans.iter().any(|&(s, e)| a < e && s < end) {
                return;
            }
            spans.push((a, end));
        }
        chains.push((segs, len as usize));
    }
    let mut frames = sent.iter();
    let mut k = 0;
    while k < chains.len() {
        if chains[k].1 == 0 {
            k += 1;
            continue;
        }
        let Some(first) = read_segs(after, &chains[k].0, chains[k].1) else {
            return;
        };
        assert!(first.len() >= HDR, "a frame's first chain holds its header");
        let n = usize::from(u16::from_le_bytes([first[10], first[11]]));
        if !mergeable {
            assert_eq!(n, 1, "num_buffers without MRG_RXBUF");
        }
        assert!(
            n >= 1 && k + n <= chains.len(),
            "num_buffers {n}, {} chains",
            chains.len() - k
        );
        let mut got = Vec::new();
        for (segs, len) in &chains[k..k + n] {
            assert!(*len > 0, "a chain of a frame left empty");
            match read_segs(after, segs, *len) {
                Some(bytes) => got.extend(bytes),
                None => return,
            }
        }
        let found = frames.any(|f| f.len() == got.len() && f[HDR..] == got[HDR..]);
        assert!(found, "chains {k}..{} hold no frame sent, in order", k + n);
        k += n;
    }
}
