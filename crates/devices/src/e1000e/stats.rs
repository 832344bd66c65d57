//! Statistics registers (82574 datasheet §10.2.7): counted from the
//! traffic the device really moves, cleared when read. Octet counters
//! include the 4-byte FCS, as on the wire.

use super::regs::Regs;

/// Missed packets (no room, ring unusable).
pub const MPC: usize = 0x4010;
/// Good packets received.
pub const GPRC: usize = 0x4074;
/// Broadcast packets received.
pub const BPRC: usize = 0x4078;
/// Multicast packets received.
pub const MPRC: usize = 0x407c;
/// Good packets transmitted.
pub const GPTC: usize = 0x4080;
/// Good octets received (low; high at +4).
pub const GORCL: usize = 0x4088;
/// Good octets transmitted (low; high at +4).
pub const GOTCL: usize = 0x4090;
/// Receive no buffers count.
pub const RNBC: usize = 0x40a0;
/// Oversize frames received.
pub const ROC: usize = 0x40ac;
/// Total octets received (low; high at +4).
pub const TORL: usize = 0x40c0;
/// Total octets transmitted (low; high at +4).
pub const TOTL: usize = 0x40c8;
/// Total packets received.
pub const TPR: usize = 0x40d0;
/// Total packets transmitted.
pub const TPT: usize = 0x40d4;
/// Multicast packets transmitted.
pub const MPTC: usize = 0x40f0;
/// Broadcast packets transmitted.
pub const BPTC: usize = 0x40f4;
/// TCP segmentation contexts transmitted.
pub const TSCTC: usize = 0x40f8;
/// TCP segmentation contexts that failed.
pub const TSCTFC: usize = 0x40fc;
/// Received size buckets: 64, 65–127, ..., 1024–max.
const PRC64: usize = 0x405c;
/// Transmitted size buckets.
const PTC64: usize = 0x40d8;

/// Adds `n` to a 32-bit counter, saturating.
pub fn add(r: &mut Regs, reg: usize, n: u32) {
    let v = r.get(reg).saturating_add(n);
    r.set(reg, v);
}

/// Adds `n` to a 64-bit counter pair.
pub fn add64(r: &mut Regs, low: usize, n: u64) {
    let v = r.addr64(low).saturating_add(n);
    r.set(low, v as u32);
    r.set(low + 4, (v >> 32) as u32);
}

fn bucket(len: usize) -> usize {
    match len {
        0..=64 => 0,
        65..=127 => 1,
        128..=255 => 2,
        256..=511 => 3,
        512..=1023 => 4,
        _ => 5,
    }
}

/// A frame of `len` bytes (without FCS) was delivered to the host.
pub fn received(r: &mut Regs, frame: &[u8]) {
    let octets = frame.len() as u64 + 4;
    add(r, GPRC, 1);
    add(r, TPR, 1);
    add64(r, GORCL, octets);
    add64(r, TORL, octets);
    add(r, PRC64 + 4 * bucket(frame.len() + 4), 1);
    count_cast(r, frame, BPRC, MPRC);
}

/// A frame of `len` bytes (without FCS) went out.
pub fn transmitted(r: &mut Regs, frame: &[u8]) {
    let octets = frame.len() as u64 + 4;
    add(r, GPTC, 1);
    add(r, TPT, 1);
    add64(r, GOTCL, octets);
    add64(r, TOTL, octets);
    add(r, PTC64 + 4 * bucket(frame.len() + 4), 1);
    count_cast(r, frame, BPTC, MPTC);
}

fn count_cast(r: &mut Regs, frame: &[u8], bcast: usize, mcast: usize) {
    match frame.get(..6) {
        Some(d) if d == [0xff; 6] => add(r, bcast, 1),
        Some(d) if d[0] & 1 != 0 => add(r, mcast, 1),
        _ => {}
    }
}
