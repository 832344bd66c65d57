//! Transmit packet assembly and offloads (82574 datasheet §7.2): data
//! from legacy or data descriptors gathers until EOP; the context
//! descriptor's offsets then drive checksum insertion and TCP
//! segmentation. Pure functions of the descriptors and bytes, so the
//! whole path is fuzzed (`fuzz_targets/e1000e_tx.rs`).
//!
//! Hostile input has a defined outcome, never a panic or a loop without
//! end: a packet past [`MAX_PACKET`] bytes, a TSO packet with MSS 0, a
//! header longer than the packet, checksum offsets outside it, or more
//! than [`MAX_SEGMENTS`] segments are dropped with a [`TxError`].

use super::desc::{cmd, popts, tucmd, TxContext, TxDesc};

/// Largest packet gathered from descriptors (TSO payloads included).
pub const MAX_PACKET: usize = 256 * 1024;
/// Most frames one TSO packet may become.
pub const MAX_SEGMENTS: usize = 1024;
/// Shortest frame on the wire without FCS (TCTL.PSP pads to it).
pub const MIN_FRAME: usize = 60;

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// More than [`MAX_PACKET`] bytes before EOP.
    #[error("packet longer than {MAX_PACKET} bytes")]
    TooLong,
    /// TSO with MSS 0.
    #[error("TSO with MSS 0")]
    ZeroMss,
    /// TSO header length 0 or past the packet.
    #[error("TSO header of {hdr} bytes in a packet of {len}")]
    BadHeader {
        /// HDRLEN.
        hdr: usize,
        /// Packet bytes.
        len: usize,
    },
    /// A checksum start or offset outside the packet or header.
    #[error("checksum offsets outside the packet")]
    BadOffsets,
    /// The segments would exceed [`MAX_SEGMENTS`].
    #[error("TSO packet would make more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    /// A buffer could not be read from guest memory.
    #[error("buffer not in guest memory")]
    Dma,
    /// A descriptor type the device does not know.
    #[error("unknown descriptor type")]
    UnknownType,
}

/// A packet ready for the wire, before its offloads ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// The bytes gathered.
    pub bytes: Vec<u8>,
    /// Segment it (TSE in the data descriptors).
    pub tse: bool,
    /// POPTS of the first data descriptor.
    pub popts: u8,
    /// Legacy checksum: (CSS, CSO) when CMD.IC was set.
    pub legacy_csum: Option<(u8, u8)>,
    /// Insert this 802.1Q tag (CMD.VLE).
    pub vlan: Option<u16>,
    /// The context in force.
    pub ctx: TxContext,
}

/// The transmit engine's state between descriptors.
#[derive(Clone, Debug, Default)]
pub struct TxMachine {
    /// The last context descriptor.
    pub ctx: TxContext,
    pkt: Option<Packet>,
    failed: Option<TxError>,
}

/// What one descriptor produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet (mid packet, or a context).
    More,
    /// A packet ended.
    Done(Packet),
    /// A packet ended and was dropped.
    Dropped(TxError),
}

impl TxMachine {
    /// Whether a packet is half gathered.
    pub fn in_packet(&self) -> bool {
        self.pkt.is_some() || self.failed.is_some()
    }

    /// Forgets any half-gathered packet (reset, ring change).
    pub fn abort(&mut self) {
        self.pkt = None;
        self.failed = None;
    }

    /// Feeds one descriptor; `data` is its buffer's bytes (`Err` if they
    /// could not be read; ignored for contexts).
    pub fn push(&mut self, desc: &TxDesc, data: Result<&[u8], TxError>) -> Step {
        let (eop, vlan) = match *desc {
            TxDesc::Context(c) => {
                self.ctx = c;
                return Step::More;
            }
            TxDesc::Unknown { cmd: c, .. } => {
                self.failed.get_or_insert(TxError::UnknownType);
                (c & cmd::EOP != 0, None)
            }
            TxDesc::Legacy {
                cmd: c,
                css,
                cso,
                special,
                ..
            } => {
                let p = self.pkt.get_or_insert_with(Packet::default);
                if c & cmd::IC_TSE != 0 && p.legacy_csum.is_none() {
                    p.legacy_csum = Some((css, cso));
                }
                (c & cmd::EOP != 0, (c & cmd::VLE != 0).then_some(special))
            }
            TxDesc::Data {
                dcmd,
                popts: po,
                special,
                ..
            } => {
                let first = self.pkt.is_none();
                let p = self.pkt.get_or_insert_with(Packet::default);
                if first {
                    p.popts = po;
                    p.tse = dcmd & cmd::IC_TSE != 0;
                }
                (
                    dcmd & cmd::EOP != 0,
                    (dcmd & cmd::VLE != 0).then_some(special),
                )
            }
        };
        let p = self.pkt.get_or_insert_with(Packet::default);
        if vlan.is_some() {
            p.vlan = vlan;
        }
        match data {
            Ok(d) if p.bytes.len() + d.len() <= MAX_PACKET => p.bytes.extend_from_slice(d),
            Ok(_) => {
                self.failed.get_or_insert(TxError::TooLong);
                p.bytes.clear();
            }
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
        if !eop {
            return Step::More;
        }
        let mut p = self.pkt.take().unwrap_or_default();
        p.ctx = self.ctx;
        match self.failed.take() {
            Some(e) => Step::Dropped(e),
            None => Step::Done(p),
        }
    }
}

/// The 16-bit ones' complement sum of `b` (odd length padded with 0).
pub fn ones_sum(b: &[u8], mut acc: u32) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn put16(f: &mut [u8], at: usize, v: u16) -> Result<(), TxError> {
    f.get_mut(at..at + 2)
        .ok_or(TxError::BadOffsets)?
        .copy_from_slice(&v.to_be_bytes());
    Ok(())
}

fn get16(f: &[u8], at: usize) -> Result<u16, TxError> {
    f.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(TxError::BadOffsets)
}

/// Inserts the checksum of `f[start..=end]` (end 0: to the end) at `at`,
/// adding `extra` to the sum first.
fn insert_csum(
    f: &mut [u8],
    start: usize,
    end: usize,
    at: usize,
    extra: u32,
) -> Result<(), TxError> {
    let stop = if end == 0 || end >= f.len() {
        f.len()
    } else {
        end + 1
    };
    if start >= stop || at + 2 > f.len() {
        return Err(TxError::BadOffsets);
    }
    let sum = !fold(ones_sum(&f[start..stop], extra));
    put16(f, at, sum)
}

/// Turns a gathered packet into the frames to send: segmentation,
/// checksums, VLAN tag (`vet` is its Ethernet type), padding with `pad`.
pub fn finish(p: &Packet, vet: u16, pad: bool) -> Result<Vec<Vec<u8>>, TxError> {
    let mut frames = if p.tse {
        segment(p)?
    } else {
        let mut f = p.bytes.clone();
        if let Some((css, cso)) = p.legacy_csum {
            insert_csum(&mut f, css.into(), 0, cso.into(), 0)?;
        }
        let c = &p.ctx;
        if p.popts & popts::IXSM != 0 {
            put16(&mut f, c.ipcso.into(), 0)?;
            insert_csum(&mut f, c.ipcss.into(), c.ipcse.into(), c.ipcso.into(), 0)?;
        }
        if p.popts & popts::TXSM != 0 {
            insert_csum(&mut f, c.tucss.into(), c.tucse.into(), c.tucso.into(), 0)?;
        }
        vec![f]
    };
    for f in &mut frames {
        if let Some(tag) = p.vlan {
            if f.len() >= 12 {
                let mut t = vet.to_be_bytes().to_vec();
                t.extend_from_slice(&tag.to_be_bytes());
                f.splice(12..12, t);
            }
        }
        if pad && f.len() < MIN_FRAME {
            f.resize(MIN_FRAME, 0);
        }
    }
    Ok(frames)
}

/// TCP (or UDP) segmentation of a TSE packet by its context.
fn segment(p: &Packet) -> Result<Vec<Vec<u8>>, TxError> {
    let c = &p.ctx;
    let hdr = usize::from(c.hdr_len);
    let mss = usize::from(c.mss);
    if mss == 0 {
        return Err(TxError::ZeroMss);
    }
    if hdr == 0 || hdr > p.bytes.len() {
        return Err(TxError::BadHeader {
            hdr,
            len: p.bytes.len(),
        });
    }
    let (ipcss, tucss, tucso) = (
        usize::from(c.ipcss),
        usize::from(c.tucss),
        usize::from(c.tucso),
    );
    let ipv4 = c.tucmd & tucmd::IP != 0;
    let tcp = c.tucmd & tucmd::TCP != 0;
    let l3_min = if ipv4 { 20 } else { 40 };
    let l4_min = if tcp { 20 } else { 8 };
    if ipcss + l3_min > tucss || tucss + l4_min > hdr || tucso + 2 > hdr {
        return Err(TxError::BadOffsets);
    }
    let payload = &p.bytes[hdr..];
    let count = payload.len().div_ceil(mss).max(1);
    if count > MAX_SEGMENTS {
        return Err(TxError::TooManySegments);
    }
    let header = &p.bytes[..hdr];
    let ip_id = get16(header, ipcss + 4)?;
    let seq = header
        .get(tucss + 4..tucss + 8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(TxError::BadOffsets)?;
    let flags = header[tucss + 13];
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        let mut f = Vec::with_capacity(hdr + chunk.len());
        f.extend_from_slice(header);
        f.extend_from_slice(chunk);
        let last = i + 1 == count;
        let len = f.len();
        if ipv4 {
            put16(&mut f, ipcss + 2, (len - ipcss) as u16)?;
            put16(&mut f, ipcss + 4, ip_id.wrapping_add(i as u16))?;
            if p.popts & popts::IXSM != 0 {
                let ihl = usize::from(f[ipcss] & 0x0f) * 4;
                put16(&mut f, usize::from(c.ipcso), 0)?;
                insert_csum(&mut f, ipcss, ipcss + ihl.max(20) - 1, c.ipcso.into(), 0)?;
            }
        } else {
            put16(&mut f, ipcss + 4, (len - ipcss - 40) as u16)?;
        }
        let l4_len = (len - tucss) as u32;
        if tcp {
            let s = seq.wrapping_add((i * mss) as u32);
            f[tucss + 4..tucss + 8].copy_from_slice(&s.to_be_bytes());
            if !last {
                f[tucss + 13] = flags & !(0x01 | 0x08);
            }
        } else {
            put16(&mut f, tucss + 4, l4_len as u16)?;
        }
        if p.popts & popts::TXSM != 0 {
            // The driver left the pseudo-header sum without the length.
            insert_csum(&mut f, tucss, 0, tucso, l4_len)?;
        }
        frames.push(f);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + TCP headers (54 bytes), pseudo-header sum in
    /// the TCP checksum without the length, as the driver leaves it.
    pub(crate) fn tcp_header(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0u8; 54];
        h[12..14].copy_from_slice(&[0x08, 0x00]);
        h[14] = 0x45;
        h[22] = 64;
        h[23] = 6;
        h[26..30].copy_from_slice(&src);
        h[30..34].copy_from_slice(&dst);
        h[38..42].copy_from_slice(&1000u32.to_be_bytes());
        h[46] = 0x50;
        h[47] = 0x18 | 0x01;
        let pseudo = fold(ones_sum(&h[26..34], 6));
        h[50..52].copy_from_slice(&pseudo.to_be_bytes());
        h
    }

    fn tso_packet(payload: usize, mss: u16) -> Packet {
        let mut bytes = tcp_header([10, 0, 0, 1], [10, 0, 0, 2]);
        bytes.extend((0..payload).map(|i| i as u8));
        Packet {
            bytes,
            tse: true,
            popts: popts::TXSM | popts::IXSM,
            ctx: TxContext {
                ipcss: 14,
                ipcso: 24,
                ipcse: 33,
                tucss: 34,
                tucso: 50,
                tucse: 0,
                paylen: payload as u32,
                tucmd: tucmd::TCP | tucmd::IP | tucmd::TSE,
                hdr_len: 54,
                mss,
            },
            ..Packet::default()
        }
    }

    /// Checks a frame's IPv4 and TCP checksums the way a receiver does.
    fn checksums_ok(f: &[u8]) -> bool {
        let ip = fold(ones_sum(&f[14..34], 0)) == 0xffff;
        let l4 = (f.len() - 34) as u32;
        let pseudo = ones_sum(&f[26..34], 6 + l4);
        ip && fold(ones_sum(&f[34..], pseudo)) == 0xffff
    }

    #[test]
    fn test_tso_splits_payload_by_mss_with_valid_checksums() {
        let frames = finish(&tso_packet(3000, 1448), 0x8100, true).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].len(), 54 + 1448);
        assert_eq!(frames[2].len(), 54 + 104);
        for f in &frames {
            assert!(checksums_ok(f));
        }
        let seq = |f: &Vec<u8>| u32::from_be_bytes(f[38..42].try_into().unwrap());
        assert_eq!(seq(&frames[1]), 1000 + 1448);
        assert_eq!(frames[0][47] & 0x09, 0, "FIN and PSH only on the last");
        assert_eq!(frames[2][47] & 0x09, 0x09);
        assert_eq!(u16::from_be_bytes([frames[1][18], frames[1][19]]), 1);
    }

    #[test]
    fn test_tso_mss_zero_is_dropped() {
        assert_eq!(
            finish(&tso_packet(3000, 0), 0x8100, true),
            Err(TxError::ZeroMss)
        );
    }

    #[test]
    fn test_tso_header_past_packet_is_dropped() {
        let mut p = tso_packet(0, 100);
        p.ctx.hdr_len = 200;
        assert!(matches!(
            finish(&p, 0x8100, true),
            Err(TxError::BadHeader { .. })
        ));
    }

    #[test]
    fn test_tso_tiny_mss_too_many_segments_is_dropped() {
        assert_eq!(
            finish(&tso_packet(4000, 1), 0x8100, true),
            Err(TxError::TooManySegments)
        );
    }

    #[test]
    fn test_checksum_offload_offset_outside_packet_is_dropped() {
        let mut p = tso_packet(10, 100);
        p.tse = false;
        p.ctx.tucso = 250;
        assert_eq!(finish(&p, 0x8100, true), Err(TxError::BadOffsets));
    }

    #[test]
    fn test_vlan_tag_inserted_after_addresses_and_short_frame_padded() {
        let p = Packet {
            bytes: vec![0xaa; 20],
            vlan: Some(0x0123),
            ..Packet::default()
        };
        let f = finish(&p, 0x8100, true).unwrap().remove(0);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x01, 0x23]);
        assert_eq!(f.len(), MIN_FRAME);
    }

    #[test]
    fn test_machine_gathers_until_eop_and_reports_dma_failure() {
        let mut m = TxMachine::default();
        let d = |eop: bool| TxDesc::Legacy {
            addr: 0,
            len: 4,
            cso: 0,
            cmd: if eop { cmd::EOP } else { 0 },
            css: 0,
            special: 0,
        };
        assert_eq!(m.push(&d(false), Ok(&[1, 2])), Step::More);
        let Step::Done(p) = m.push(&d(true), Ok(&[3])) else {
            panic!("no packet")
        };
        assert_eq!(p.bytes, vec![1, 2, 3]);
        assert_eq!(m.push(&d(false), Err(TxError::Dma)), Step::More);
        assert_eq!(m.push(&d(true), Ok(&[3])), Step::Dropped(TxError::Dma));
        assert!(!m.in_packet());
    }
}
