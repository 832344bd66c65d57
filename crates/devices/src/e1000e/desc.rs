//! Descriptor formats (82574 datasheet §7.1.4–7.1.5 receive, §7.2.10
//! transmit): pure parsing of the 16-byte transmit descriptors a guest
//! writes, and the write-back images of the three receive formats.

/// Bytes of a transmit, legacy or extended receive descriptor.
pub const DESC_SIZE: usize = 16;
/// Bytes of a packet-split receive descriptor.
pub const PS_DESC_SIZE: usize = 32;

/// Transmit command bits shared by legacy CMD and extended DCMD/TUCMD.
pub mod cmd {
    /// End of packet.
    pub const EOP: u8 = 1 << 0;
    /// Insert FCS.
    pub const IFCS: u8 = 1 << 1;
    /// Insert checksum (legacy) / TCP segmentation enable (extended).
    pub const IC_TSE: u8 = 1 << 2;
    /// Report status (write DD back).
    pub const RS: u8 = 1 << 3;
    /// Extended descriptor.
    pub const DEXT: u8 = 1 << 5;
    /// VLAN packet enable.
    pub const VLE: u8 = 1 << 6;
}

/// Context TUCMD bits.
pub mod tucmd {
    /// The L4 protocol is TCP (else UDP).
    pub const TCP: u8 = 1 << 0;
    /// The L3 protocol is IPv4 (else IPv6).
    pub const IP: u8 = 1 << 1;
    /// TCP segmentation.
    pub const TSE: u8 = 1 << 2;
}

/// Data descriptor POPTS bits.
pub mod popts {
    /// Insert the IP checksum.
    pub const IXSM: u8 = 1 << 0;
    /// Insert the TCP/UDP checksum.
    pub const TXSM: u8 = 1 << 1;
}

/// Offload parameters of a context descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxContext {
    /// IP checksum start.
    pub ipcss: u8,
    /// IP checksum offset.
    pub ipcso: u8,
    /// IP checksum end, inclusive (0: end of packet).
    pub ipcse: u16,
    /// TCP/UDP checksum start.
    pub tucss: u8,
    /// TCP/UDP checksum offset.
    pub tucso: u8,
    /// TCP/UDP checksum end, inclusive (0: end of packet).
    pub tucse: u16,
    /// Payload bytes of a TSO packet (bits 19:0).
    pub paylen: u32,
    /// TUCMD.
    pub tucmd: u8,
    /// Header bytes of a TSO packet.
    pub hdr_len: u8,
    /// Maximum segment size of a TSO packet.
    pub mss: u16,
}

/// A transmit descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDesc {
    /// Legacy: a buffer with optional simple checksum insertion.
    Legacy {
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u16,
        /// Checksum offset.
        cso: u8,
        /// CMD.
        cmd: u8,
        /// Checksum start.
        css: u8,
        /// VLAN tag.
        special: u16,
    },
    /// Extended context (DTYP 0).
    Context(TxContext),
    /// Extended data (DTYP 1).
    Data {
        /// Buffer address.
        addr: u64,
        /// Buffer length (20 bits).
        len: u32,
        /// DCMD.
        dcmd: u8,
        /// POPTS.
        popts: u8,
        /// VLAN tag.
        special: u16,
    },
    /// Extended with a descriptor type the device does not know.
    Unknown {
        /// DTYP.
        dtyp: u8,
        /// Command byte (RS may be set).
        cmd: u8,
    },
}

impl TxDesc {
    /// Parses 16 descriptor bytes.
    pub fn parse(b: &[u8; DESC_SIZE]) -> Self {
        let cmd = b[11];
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        if cmd & cmd::DEXT == 0 {
            return TxDesc::Legacy {
                addr: u64_at(0),
                len: u16_at(8),
                cso: b[10],
                cmd,
                css: b[13],
                special: u16_at(14),
            };
        }
        let dtyp = b[10] >> 4;
        match dtyp {
            0 => TxDesc::Context(TxContext {
                ipcss: b[0],
                ipcso: b[1],
                ipcse: u16_at(2),
                tucss: b[4],
                tucso: b[5],
                tucse: u16_at(6),
                paylen: u32::from_le_bytes([b[8], b[9], b[10] & 0x0f, 0]),
                tucmd: cmd,
                hdr_len: b[13],
                mss: u16_at(14),
            }),
            1 => TxDesc::Data {
                addr: u64_at(0),
                len: u32::from_le_bytes([b[8], b[9], b[10] & 0x0f, 0]),
                dcmd: cmd,
                popts: b[13],
                special: u16_at(14),
            },
            _ => TxDesc::Unknown { dtyp, cmd },
        }
    }

    /// The command byte (RS, EOP, ...).
    pub fn cmd(&self) -> u8 {
        match *self {
            TxDesc::Legacy { cmd, .. } | TxDesc::Unknown { cmd, .. } => cmd,
            TxDesc::Context(c) => c.tucmd,
            TxDesc::Data { dcmd, .. } => dcmd,
        }
    }
}

/// Offset of the status byte a transmit write-back sets DD in.
pub const TX_STATUS: usize = 12;
/// Descriptor Done.
pub const STAT_DD: u8 = 1 << 0;

/// Receive status bits.
pub mod rx_status {
    /// Descriptor done.
    pub const DD: u32 = 1 << 0;
    /// End of packet.
    pub const EOP: u32 = 1 << 1;
    /// The frame carried an 802.1Q tag (stripped into the VLAN field).
    pub const VP: u32 = 1 << 3;
}

/// Receive error bits (legacy byte; extended: bits 31:24).
pub mod rx_error {
    /// RX data error (the frame could not be stored).
    pub const RXE: u8 = 1 << 7;
}

/// Which receive descriptor format the ring uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxFormat {
    /// Legacy (RFCTL.EXSTEN clear).
    Legacy,
    /// Extended, one buffer (RFCTL.EXSTEN).
    Extended,
    /// Packet split, four buffers (RCTL.DTYP = 01).
    PacketSplit,
}

impl RxFormat {
    /// Bytes of one descriptor.
    pub fn size(self) -> usize {
        match self {
            RxFormat::PacketSplit => PS_DESC_SIZE,
            _ => DESC_SIZE,
        }
    }
}

/// What one receive descriptor reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxWriteBack {
    /// Bytes in each buffer (only the first for one-buffer formats).
    pub lengths: [u16; 4],
    /// Status bits ([`rx_status`]).
    pub status: u32,
    /// Error bits ([`rx_error`]).
    pub errors: u8,
    /// VLAN tag.
    pub vlan: u16,
}

impl RxWriteBack {
    /// The bytes written back, and where in the descriptor they go.
    pub fn encode(&self, format: RxFormat) -> (usize, Vec<u8>) {
        match format {
            RxFormat::Legacy => {
                let mut b = Vec::with_capacity(8);
                b.extend_from_slice(&self.lengths[0].to_le_bytes());
                b.extend_from_slice(&[0, 0]);
                b.push(self.status as u8);
                b.push(self.errors);
                b.extend_from_slice(&self.vlan.to_le_bytes());
                (8, b)
            }
            RxFormat::Extended | RxFormat::PacketSplit => {
                let staterr = (self.status & 0xf_ffff) | u32::from(self.errors) << 24;
                let mut b = vec![0u8; 8];
                b.extend_from_slice(&staterr.to_le_bytes());
                b.extend_from_slice(&self.lengths[0].to_le_bytes());
                b.extend_from_slice(&self.vlan.to_le_bytes());
                if format == RxFormat::PacketSplit {
                    b.extend_from_slice(&[0, 0]);
                    for l in &self.lengths[1..] {
                        b.extend_from_slice(&l.to_le_bytes());
                    }
                    b.extend_from_slice(&[0u8; 8]);
                }
                (0, b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(words: [u64; 2]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&words[0].to_le_bytes());
        b[8..].copy_from_slice(&words[1].to_le_bytes());
        b
    }

    #[test]
    fn test_parse_legacy_descriptor_fields() {
        let d = TxDesc::parse(&raw([0x1000, 0x0005_2200_0b00_0040]));
        assert_eq!(
            d,
            TxDesc::Legacy {
                addr: 0x1000,
                len: 0x40,
                cso: 0,
                cmd: 0x0b,
                css: 0x22,
                special: 5
            }
        );
    }

    #[test]
    fn test_parse_context_and_data_descriptors() {
        let ctx = TxDesc::parse(&raw([0x0000_3222_0000_180e, 0x05b4_3600_2d00_0400]));
        let TxDesc::Context(c) = ctx else {
            panic!("not a context: {ctx:?}")
        };
        assert_eq!(
            (c.ipcss, c.ipcso, c.tucss, c.tucso),
            (0x0e, 0x18, 0x22, 0x32)
        );
        assert_eq!((c.hdr_len, c.mss, c.paylen), (0x36, 0x5b4, 0x400));
        assert_eq!(c.tucmd & tucmd::TSE, tucmd::TSE);
        let data = TxDesc::parse(&raw([0x2000, 0x0000_0300_2d10_05ea]));
        assert_eq!(
            data,
            TxDesc::Data {
                addr: 0x2000,
                len: 0x5ea,
                dcmd: 0x2d,
                popts: 3,
                special: 0
            }
        );
    }

    #[test]
    fn test_parse_unknown_dtyp_is_unknown() {
        let d = TxDesc::parse(&raw([0, 0x0000_0000_2850_0000]));
        assert_eq!(d, TxDesc::Unknown { dtyp: 5, cmd: 0x28 });
    }

    #[test]
    fn test_extended_write_back_puts_status_and_length_at_8() {
        let wb = RxWriteBack {
            lengths: [60, 0, 0, 0],
            status: rx_status::DD | rx_status::EOP,
            errors: 0,
            vlan: 0,
        };
        let (at, b) = wb.encode(RxFormat::Extended);
        assert_eq!(at, 0);
        assert_eq!(&b[8..14], &[3, 0, 0, 0, 60, 0]);
    }
}
