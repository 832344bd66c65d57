//! Receive filtering and placement (82574 datasheet §7.1): which frames
//! the MAC accepts (RAL/RAH exact matches, the MTA hash, broadcast,
//! promiscuous modes, the VLAN filter table), and how an accepted frame
//! is spread over the ring's buffers in the legacy, extended or
//! packet-split format, with the descriptors written back.
//!
//! Hostile rings have a defined outcome: a head or tail outside the ring
//! or a ring length of 0 refuses the frame ([`RxError`]); a NULL buffer or
//! one outside guest memory (the device's own BARs included: DMA reaches
//! guest RAM only) is skipped, its descriptor written back with RXE so the
//! driver drops the frame. Placement touches at most the frame's
//! descriptors, so it ends.

use dma::Dma;

use super::desc::{rx_error, rx_status, RxFormat, RxWriteBack};
use super::regs::{self, rctl, rfctl, Regs};

/// Why a frame could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// RDLEN is 0.
    #[error("receive ring of length 0")]
    NoRing,
    /// RDH or RDT is not inside the ring.
    #[error("RDH {head} or RDT {tail} outside a ring of {count} 16-byte units (or odd for packet split)")]
    OutOfRing {
        /// RDH.
        head: u32,
        /// RDT.
        tail: u32,
        /// Descriptors in the ring.
        count: u32,
    },
    /// The frame needs more descriptors than the driver has given.
    #[error("no free receive descriptors")]
    NoBuffers,
    /// The frame does not fit even an empty ring (packet split: the four buffers).
    #[error("frame of {0} bytes does not fit the ring's buffers")]
    TooBig(usize),
    /// A descriptor could not be read or written back.
    #[error("descriptor at {0:#x} not in guest memory")]
    Descriptor(u64),
}

/// The receive ring as the registers describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRing {
    /// Base bus address.
    pub base: u64,
    /// Descriptors.
    pub count: u32,
    /// The next descriptor the device fills (RDH, in descriptors).
    pub head: u32,
    /// The first descriptor the device may not fill (RDT, in descriptors).
    pub tail: u32,
    /// Descriptor format.
    pub format: RxFormat,
    /// Buffer sizes: one for legacy and extended, four for packet split.
    pub sizes: [usize; 4],
}

/// The buffer size RCTL.BSIZE/BSEX select.
fn buffer_size(rctl_v: u32) -> usize {
    let code = (rctl_v >> rctl::BSIZE_SHIFT) & 3;
    let base = 2048usize >> code;
    if rctl_v & rctl::BSEX != 0 && code != 0 {
        base * 16
    } else {
        base
    }
}

impl RxRing {
    /// The ring of queue 0.
    pub fn from_regs(r: &Regs) -> Result<Self, RxError> {
        let rc = r.get(regs::RCTL);
        let format = if (rc >> rctl::DTYP_SHIFT) & 3 == 1 {
            RxFormat::PacketSplit
        } else if r.get(regs::RFCTL) & rfctl::EXSTEN != 0 {
            RxFormat::Extended
        } else {
            RxFormat::Legacy
        };
        // RDH and RDT count 16-byte units: a packet-split descriptor is two.
        let scale = (format.size() / 16) as u32;
        let count = r.get(regs::RDLEN) / format.size() as u32;
        if count == 0 {
            return Err(RxError::NoRing);
        }
        let (rdh, rdt) = (r.get(regs::RDH), r.get(regs::RDT));
        let (head, tail) = (rdh / scale, rdt / scale);
        if head >= count || tail >= count || rdh % scale != 0 || rdt % scale != 0 {
            return Err(RxError::OutOfRing {
                head: rdh,
                tail: rdt,
                count: count * scale,
            });
        }
        let sizes = match format {
            RxFormat::PacketSplit => {
                let ps = r.get(regs::PSRCTL);
                [
                    ((ps & 0x7f) as usize) * 128,
                    (((ps >> 8) & 0x3f) as usize) * 1024,
                    (((ps >> 16) & 0x3f) as usize) * 1024,
                    (((ps >> 24) & 0x3f) as usize) * 1024,
                ]
            }
            _ => [buffer_size(rc), 0, 0, 0],
        };
        Ok(Self {
            base: r.addr64(regs::RDBAL),
            count,
            head,
            tail,
            format,
            sizes,
        })
    }

    /// The head as RDH counts it (16-byte units).
    pub fn rdh(&self) -> u32 {
        self.head * (self.format.size() / 16) as u32
    }

    /// Descriptors the driver has handed to the device.
    pub fn free(&self) -> u32 {
        (self.tail + self.count - self.head) % self.count
    }

    /// Descriptors a frame of `len` bytes takes.
    pub fn needed(&self, len: usize) -> Result<u32, RxError> {
        match self.format {
            RxFormat::PacketSplit => {
                if len > self.sizes.iter().sum::<usize>() || self.sizes[0] == 0 {
                    Err(RxError::TooBig(len))
                } else {
                    Ok(1)
                }
            }
            _ => Ok(len.div_ceil(self.sizes[0].max(1)).max(1) as u32),
        }
    }

    fn desc_addr(&self, i: u32) -> u64 {
        self.base
            .wrapping_add(u64::from(i) * self.format.size() as u64)
    }
}

/// What placing a frame did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// Descriptors used.
    pub descriptors: u32,
    /// Buffers skipped (NULL, or outside guest memory).
    pub bad_buffers: u32,
}

/// Places `frame` at the ring's head, writes the descriptors back and
/// returns the new head (in `ring.head`).
pub fn place(
    ring: &mut RxRing,
    dma: &dyn Dma,
    frame: &[u8],
    vlan: Option<u16>,
) -> Result<Placed, RxError> {
    let needed = ring.needed(frame.len())?;
    if needed > ring.free() {
        return Err(RxError::NoBuffers);
    }
    let mut placed = Placed::default();
    let mut rest = frame;
    for n in 0..needed {
        let at = ring.desc_addr(ring.head);
        let mut raw = [0u8; 32];
        let raw = &mut raw[..ring.format.size()];
        dma.read(at, raw).map_err(|_| RxError::Descriptor(at))?;
        let mut wb = RxWriteBack {
            status: rx_status::DD,
            vlan: vlan.unwrap_or(0),
            ..RxWriteBack::default()
        };
        if vlan.is_some() {
            wb.status |= rx_status::VP;
        }
        let buffers = match ring.format {
            RxFormat::PacketSplit => 4,
            _ => 1,
        };
        for b in 0..buffers {
            let take = rest.len().min(ring.sizes[b]);
            if take == 0 {
                continue;
            }
            let addr = u64::from_le_bytes(raw[8 * b..8 * b + 8].try_into().unwrap_or([0; 8]));
            if addr == 0 || dma.write(addr, &rest[..take]).is_err() {
                placed.bad_buffers += 1;
                wb.errors |= rx_error::RXE;
            }
            wb.lengths[b] = take as u16;
            rest = &rest[take..];
        }
        if n + 1 == needed {
            wb.status |= rx_status::EOP;
        }
        let (off, bytes) = wb.encode(ring.format);
        dma.write(at + off as u64, &bytes)
            .map_err(|_| RxError::Descriptor(at))?;
        ring.head = (ring.head + 1) % ring.count;
        placed.descriptors += 1;
    }
    Ok(placed)
}

/// Whether the MAC accepts a frame for `dst` (the first 6 bytes), and,
/// for a tagged frame, its VLAN id.
pub fn accept(r: &Regs, frame: &[u8], vlan: Option<u16>) -> bool {
    let Some(dst) = frame.get(..6) else {
        return false;
    };
    let rc = r.get(regs::RCTL);
    if let Some(tag) = vlan {
        if rc & rctl::VFE != 0 {
            let id = usize::from(tag & 0x0fff);
            if r.get(regs::VFTA + 4 * (id >> 5)) & 1 << (id & 31) == 0 {
                return false;
            }
        }
    }
    if dst == [0xff; 6] {
        return rc & rctl::BAM != 0 || rc & rctl::MPE != 0;
    }
    if dst[0] & 1 != 0 {
        if rc & rctl::MPE != 0 {
            return true;
        }
        let mo = (rc >> rctl::MO_SHIFT) & 3;
        let hash = ((u32::from(dst[4]) >> (4 - mo)) | (u32::from(dst[5]) << (4 + mo))) & 0xfff;
        return r.get(regs::MTA + 4 * (hash >> 5) as usize) & 1 << (hash & 31) != 0;
    }
    if rc & rctl::UPE != 0 {
        return true;
    }
    (0..regs::RA_ENTRIES).any(|i| {
        let lo = r.get(regs::RA + 8 * i);
        let hi = r.get(regs::RA + 8 * i + 4);
        hi & 1 << 31 != 0 && lo.to_le_bytes() == dst[..4] && (hi as u16).to_le_bytes() == dst[4..6]
    })
}

/// The IEEE 802.3 CRC-32 of `b`, as appended to a frame (RCTL.SECRC clear).
pub fn crc32(b: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_buffer_sizes_from_rctl() {
        assert_eq!(buffer_size(0), 2048);
        assert_eq!(buffer_size(1 << 16), 1024);
        assert_eq!(buffer_size(3 << 16 | rctl::BSEX), 4096);
        assert_eq!(buffer_size(1 << 16 | rctl::BSEX), 16384);
    }

    #[test]
    fn test_crc32_of_check_string() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn test_accept_exact_broadcast_multicast_hash() {
        let mut r = Regs::new();
        r.set(
            regs::RA,
            u32::from_le_bytes([0x52, 0x54, 0, 1, 2, 3][..4].try_into().unwrap()),
        );
        r.set(regs::RA + 4, 0x0302 | 1 << 31);
        let mine = [0x52, 0x54, 0, 1, 2, 3, 0, 0];
        let other = [0x52, 0x54, 0, 1, 2, 4, 0, 0];
        assert!(accept(&r, &mine, None));
        assert!(!accept(&r, &other, None));
        assert!(!accept(&r, &[0xff; 8], None));
        r.set(regs::RCTL, rctl::BAM);
        assert!(accept(&r, &[0xff; 8], None));
        let mc = [0x01, 0x00, 0x5e, 0, 0, 0x42, 0, 0];
        assert!(!accept(&r, &mc, None));
        // MO = 0: bits 47:36 of the address (byte 4 high nibble, byte 5).
        let hash = (0x42u32 << 4) & 0xfff;
        r.set(regs::MTA + 4 * (hash >> 5) as usize, 1 << (hash & 31));
        assert!(accept(&r, &mc, None));
    }

    #[test]
    fn test_vlan_filter_drops_unlisted_vid() {
        let mut r = Regs::new();
        r.set(regs::RCTL, rctl::UPE | rctl::VFE);
        assert!(!accept(&r, &[2; 8], Some(5)));
        r.set(regs::VFTA, 1 << 5);
        assert!(accept(&r, &[2; 8], Some(5)));
    }
}
