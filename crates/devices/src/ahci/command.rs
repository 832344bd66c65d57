//! Command list entries and command tables (AHCI 1.3.1 §4.2.2–§4.2.3):
//! parsing of the 32-byte command header and walking the Physical Region
//! Descriptor Table, as pure functions over guest-written bytes (the fuzz
//! target `ahci_command` drives them).
//!
//! ```text
//!  PxCLB ─▶ header[slot] (32 B): DW0 CFL|A|W|P|R|B|C|PMP|PRDTL, DW1 PRDBC, DW2/3 CTBA
//!                 └─▶ command table (128-byte aligned)
//!                       0x00 CFIS (up to 64 B)   0x40 ACMD   0x80 PRDT[PRDTL] (16 B each)
//! ```
//!
//! Length rules of the PRDT walk (§4.2.3.3): an entry's Data Byte Count
//! is bits 21:0 plus one, at most 4 MiB, and must be even: bit 0 of DBC is
//! treated as 1, so every entry covers an even number of bytes (a count
//! written odd, or zero, is rounded up to the next even one); bit 0 of the
//! Data Base Address is reserved and ignored. Entries are consumed in
//! order until the transfer is covered (the last one partly); entries past
//! that are never read. A table describing fewer bytes than the transfer
//! is an overflow (PxIS.OFS).

/// Size of one command header.
pub const HEADER_SIZE: u64 = 32;
/// Offset of the PRDT in a command table.
pub const PRDT_OFFSET: u64 = 0x80;
/// Size of one PRDT entry.
pub const PRD_SIZE: usize = 16;
/// Bytes of command FIS the HBA fetches.
pub const CFIS_SIZE: usize = 64;
/// Most guest segments one command may map: what one host vectored I/O
/// takes (`UIO_MAXIOV`). Linux's `ahci` uses at most 168 entries.
pub const MAX_SEGMENTS: usize = 1024;
/// PRDT entries read from the guest at a time.
const PRD_CHUNK: usize = 64;

/// A command header (§4.2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandHeader {
    /// Command FIS Length in DWORDs (2–16 valid).
    pub cfl: u8,
    /// ATAPI.
    pub atapi: bool,
    /// Write (host to device).
    pub write: bool,
    /// Reset: part of a software reset sequence.
    pub reset: bool,
    /// Clear Busy upon R_OK.
    pub clear_busy: bool,
    /// Port Multiplier Port.
    pub pmp: u8,
    /// PRD Table Length, in entries.
    pub prdtl: u16,
    /// Command Table Base Address (bits 6:0 reserved, ignored).
    pub ctba: u64,
}

impl CommandHeader {
    /// Parses the 32 bytes of a command list entry.
    pub fn parse(b: &[u8; 32]) -> Self {
        let dw = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let dw0 = dw(0);
        Self {
            cfl: (dw0 & 0x1f) as u8,
            atapi: dw0 & (1 << 5) != 0,
            write: dw0 & (1 << 6) != 0,
            reset: dw0 & (1 << 8) != 0,
            clear_busy: dw0 & (1 << 10) != 0,
            pmp: ((dw0 >> 12) & 0xf) as u8,
            prdtl: (dw0 >> 16) as u16,
            ctba: (u64::from(dw(8)) | u64::from(dw(12)) << 32) & !0x7f,
        }
    }

    /// Whether CFL can hold a Register H2D FIS (5 DWORDs) and fits the
    /// 64-byte CFIS area.
    pub fn cfl_valid(&self) -> bool {
        (5..=16).contains(&self.cfl)
    }

    /// Encodes a header (the fake driver's and the fuzzer's side).
    pub fn to_bytes(&self) -> [u8; 32] {
        let dw0 = u32::from(self.cfl & 0x1f)
            | u32::from(self.atapi) << 5
            | u32::from(self.write) << 6
            | u32::from(self.reset) << 8
            | u32::from(self.clear_busy) << 10
            | u32::from(self.pmp & 0xf) << 12
            | u32::from(self.prdtl) << 16;
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&dw0.to_le_bytes());
        b[8..16].copy_from_slice(&self.ctba.to_le_bytes());
        b
    }
}

/// One PRDT entry (§4.2.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prd {
    /// Data Base Address (bit 0 ignored).
    pub dba: u64,
    /// Bytes this entry covers: even, 2 to 4 MiB.
    pub bytes: u64,
    /// Interrupt on Completion.
    pub interrupt: bool,
}

impl Prd {
    /// Parses 16 bytes of a PRDT.
    pub fn parse(b: &[u8]) -> Self {
        let dw = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let dbc = dw(12) & 0x3f_ffff;
        Self {
            dba: (u64::from(dw(0)) | u64::from(dw(4)) << 32) & !1,
            bytes: u64::from(dbc | 1) + 1,
            interrupt: dw(12) & (1 << 31) != 0,
        }
    }

    /// Encodes an entry covering `bytes` (its DBC is `bytes - 1`).
    pub fn encode(dba: u64, bytes: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&dba.to_le_bytes());
        b[12..].copy_from_slice(&(bytes.wrapping_sub(1) & 0x3f_ffff).to_le_bytes());
        b
    }
}

/// Why a PRDT walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrdError {
    /// The PRDT describes fewer bytes than the transfer (PxIS.OFS).
    #[error("PRDT covers {covered} of {needed} bytes")]
    TooShort {
        /// Bytes described.
        covered: u64,
        /// Bytes the command transfers.
        needed: u64,
    },
    /// The PRDT itself is not in guest memory (PxIS.HBFS).
    #[error("PRDT not readable at {0:#x}")]
    Unreadable(u64),
    /// The transfer needs more than [`MAX_SEGMENTS`] segments.
    #[error("transfer needs more than {MAX_SEGMENTS} segments")]
    TooManySegments,
}

/// The guest segments of a `len`-byte transfer described by the
/// `prdtl`-entry PRDT at `prdt`, reading entries with `read` (bus
/// address, buffer). Segments are `(address, bytes)` in transfer order
/// and cover exactly `len` bytes.
pub fn walk(
    prdt: u64,
    prdtl: u16,
    len: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), ()>,
) -> Result<Vec<(u64, u64)>, PrdError> {
    let mut segs = Vec::new();
    let mut covered = 0u64;
    let mut index = 0usize;
    let entries = usize::from(prdtl);
    let mut buf = [0u8; PRD_CHUNK * PRD_SIZE];
    while covered < len && index < entries {
        let mut n = (entries - index).min(PRD_CHUNK);
        let addr = prdt
            .checked_add((index * PRD_SIZE) as u64)
            .ok_or(PrdError::Unreadable(prdt))?;
        if read(addr, &mut buf[..n * PRD_SIZE]).is_err() {
            // The chunk may reach past readable memory although the
            // entries needed do not: one entry at a time then.
            read_one(&mut read, addr, &mut buf[..PRD_SIZE])?;
            n = 1;
        }
        for raw in buf[..n * PRD_SIZE].chunks_exact(PRD_SIZE) {
            let prd = Prd::parse(raw);
            let take = prd.bytes.min(len - covered);
            if segs.len() == MAX_SEGMENTS {
                return Err(PrdError::TooManySegments);
            }
            segs.push((prd.dba, take));
            covered += take;
            if covered == len {
                break;
            }
        }
        index += n;
    }
    if covered < len {
        return Err(PrdError::TooShort {
            covered,
            needed: len,
        });
    }
    Ok(segs)
}

fn read_one(
    read: &mut impl FnMut(u64, &mut [u8]) -> Result<(), ()>,
    addr: u64,
    out: &mut [u8],
) -> Result<(), PrdError> {
    read(addr, out).map_err(|()| PrdError::Unreadable(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[[u8; 16]]) -> Vec<u8> {
        entries.iter().flatten().copied().collect()
    }

    fn reader(t: Vec<u8>) -> impl FnMut(u64, &mut [u8]) -> Result<(), ()> {
        move |addr, out| {
            let a = usize::try_from(addr).map_err(|_| ())?;
            let src = t.get(a..a + out.len()).ok_or(())?;
            out.copy_from_slice(src);
            Ok(())
        }
    }

    #[test]
    fn test_command_header_round_trips() {
        let h = CommandHeader {
            cfl: 5,
            atapi: false,
            write: true,
            reset: false,
            clear_busy: true,
            pmp: 0,
            prdtl: 168,
            ctba: 0x1_2345_6780,
        };
        assert_eq!(CommandHeader::parse(&h.to_bytes()), h);
    }

    #[test]
    fn test_command_header_ctba_low_bits_ignored() {
        let mut b = [0u8; 32];
        b[8] = 0xff;
        assert_eq!(CommandHeader::parse(&b).ctba, 0x80);
    }

    #[test]
    fn test_prdt_walk_takes_what_the_transfer_needs() {
        let t = table(&[Prd::encode(0x1000, 512), Prd::encode(0x3000, 4096)]);
        let segs = walk(0, 2, 1024, reader(t)).unwrap();
        assert_eq!(segs, vec![(0x1000, 512), (0x3000, 512)]);
    }

    #[test]
    fn test_prdt_walk_odd_and_zero_counts_round_up_to_even() {
        let t = table(&[Prd::encode(0x1001, 3), Prd::encode(0x2000, 0)]);
        let segs = walk(0, 2, 8, reader(t)).unwrap();
        assert_eq!(segs, vec![(0x1000, 4), (0x2000, 4)]);
    }

    #[test]
    fn test_prdt_walk_short_table_is_an_overflow() {
        let t = table(&[Prd::encode(0x1000, 512)]);
        let e = walk(0, 1, 1024, reader(t)).unwrap_err();
        assert_eq!(
            e,
            PrdError::TooShort {
                covered: 512,
                needed: 1024
            }
        );
    }

    #[test]
    fn test_prdt_walk_zero_entries_for_data_is_an_overflow() {
        let e = walk(0, 0, 512, reader(Vec::new())).unwrap_err();
        assert!(matches!(e, PrdError::TooShort { covered: 0, .. }));
    }

    #[test]
    fn test_prdt_walk_huge_prdtl_reads_only_needed_entries() {
        // 65535 entries declared, one present: the walk stops after it.
        let t = table(&[Prd::encode(0x1000, 4096)]);
        let segs = walk(0, u16::MAX, 4096, reader(t)).unwrap();
        assert_eq!(segs.len(), 1);
    }

    #[test]
    fn test_prdt_walk_unreadable_table_is_reported() {
        let e = walk(0x10, 2, 512, reader(vec![0; 16])).unwrap_err();
        assert_eq!(e, PrdError::Unreadable(0x10));
    }

    #[test]
    fn test_prdt_walk_too_many_segments_refused() {
        let t: Vec<u8> = (0..1100).flat_map(|i| Prd::encode(i * 2, 2)).collect();
        let e = walk(0, 1100, 2200, reader(t)).unwrap_err();
        assert_eq!(e, PrdError::TooManySegments);
    }

    #[test]
    fn test_prdt_walk_no_transfer_reads_nothing() {
        let segs = walk(u64::MAX, u16::MAX, 0, |_, _| Err(())).unwrap();
        assert!(segs.is_empty());
    }
}
