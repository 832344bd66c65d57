//! The NVMe encodings the driver needs (NVMe 1.4): controller register
//! offsets and fields, submission queue entries, completion queue entries,
//! PRP entries and the Identify data it reads. Pure functions on bytes, so
//! they are tested on the host.

/// Controller Capabilities (8 bytes).
pub const REG_CAP: usize = 0x00;
/// Version.
pub const REG_VS: usize = 0x08;
/// Controller Configuration.
pub const REG_CC: usize = 0x14;
/// Controller Status.
pub const REG_CSTS: usize = 0x1c;
/// Admin Queue Attributes.
pub const REG_AQA: usize = 0x24;
/// Admin Submission Queue Base Address (8 bytes).
pub const REG_ASQ: usize = 0x28;
/// Admin Completion Queue Base Address (8 bytes).
pub const REG_ACQ: usize = 0x30;
/// Offset of the first doorbell.
pub const DOORBELLS: usize = 0x1000;

/// CSTS.RDY.
pub const CSTS_RDY: u32 = 1;
/// CSTS.CFS (Controller Fatal Status).
pub const CSTS_CFS: u32 = 1 << 1;

/// The memory page size the driver uses (CC.MPS = 0).
pub const PAGE: u64 = 4096;
/// Size of a submission queue entry.
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry.
pub const CQE_SIZE: usize = 16;

/// Admin opcode: Create I/O Submission Queue.
pub const OPC_CREATE_SQ: u8 = 0x01;
/// Admin opcode: Create I/O Completion Queue.
pub const OPC_CREATE_CQ: u8 = 0x05;
/// Admin opcode: Delete I/O Submission Queue.
pub const OPC_DELETE_SQ: u8 = 0x00;
/// Admin opcode: Delete I/O Completion Queue.
pub const OPC_DELETE_CQ: u8 = 0x04;
/// Admin opcode: Identify.
pub const OPC_IDENTIFY: u8 = 0x06;
/// NVM opcode: Write.
pub const OPC_WRITE: u8 = 0x01;
/// NVM opcode: Read.
pub const OPC_READ: u8 = 0x02;

/// The fields of CAP the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Maximum Queue Entries Supported, 1-based.
    pub mqes: u32,
    /// Timeout for CSTS.RDY changes, in milliseconds.
    pub timeout_ms: u64,
    /// Doorbell stride: doorbells are `4 << dstrd` bytes apart.
    pub dstrd: u32,
    /// Smallest memory page size, in bytes.
    pub mps_min: u64,
}

impl Cap {
    /// Decodes the CAP register.
    pub fn parse(cap: u64) -> Self {
        Self {
            mqes: (cap & 0xffff) as u32 + 1,
            timeout_ms: ((cap >> 24) & 0xff) * 500,
            dstrd: ((cap >> 32) & 0xf) as u32,
            mps_min: 1 << (12 + ((cap >> 48) & 0xf)),
        }
    }

    /// The BAR offset of queue `qid`'s submission tail doorbell.
    pub fn sq_tail_doorbell(&self, qid: u16) -> usize {
        DOORBELLS + (2 * usize::from(qid)) * (4 << self.dstrd)
    }

    /// The BAR offset of queue `qid`'s completion head doorbell.
    pub fn cq_head_doorbell(&self, qid: u16) -> usize {
        DOORBELLS + (2 * usize::from(qid) + 1) * (4 << self.dstrd)
    }
}

/// CC for the NVM command set, 4 KiB pages, round robin, 64-byte SQEs and
/// 16-byte CQEs, with EN as given.
pub fn cc(enable: bool) -> u32 {
    (4 << 20) | (6 << 16) | u32::from(enable)
}

/// AQA for admin queues of `entries` entries each.
pub fn aqa(entries: u16) -> u32 {
    let n = u32::from(entries - 1);
    (n << 16) | n
}

/// A submission queue entry (64 bytes, little endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sqe(pub [u8; SQE_SIZE]);

impl Sqe {
    /// An entry with opcode `opc`, command identifier `cid` and namespace
    /// `nsid`, everything else zero.
    pub fn new(opc: u8, cid: u16, nsid: u32) -> Self {
        let mut s = Self([0; SQE_SIZE]);
        s.set_dword(0, u32::from(opc) | (u32::from(cid) << 16));
        s.set_dword(1, nsid);
        s
    }

    /// Sets command dword `n`.
    pub fn set_dword(&mut self, n: usize, value: u32) {
        self.0[n * 4..n * 4 + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Command dword `n`.
    pub fn dword(&self, n: usize) -> u32 {
        u32::from_le_bytes(self.0[n * 4..n * 4 + 4].try_into().expect("4 bytes"))
    }

    /// Sets the data pointer (PRP1 in dwords 6-7, PRP2 in dwords 8-9).
    pub fn set_prp(&mut self, prp: Prp) {
        self.0[24..32].copy_from_slice(&prp.prp1.to_le_bytes());
        self.0[32..40].copy_from_slice(&prp.prp2.to_le_bytes());
    }

    /// PRP entry 1.
    #[cfg(test)]
    pub fn prp1(&self) -> u64 {
        u64::from_le_bytes(self.0[24..32].try_into().expect("8 bytes"))
    }

    /// PRP entry 2.
    #[cfg(test)]
    pub fn prp2(&self) -> u64 {
        u64::from_le_bytes(self.0[32..40].try_into().expect("8 bytes"))
    }

    /// Identify with CNS `cns` for namespace `nsid`, data to the page at `page`.
    pub fn identify(cid: u16, cns: u8, nsid: u32, page: u64) -> Self {
        let mut s = Self::new(OPC_IDENTIFY, cid, nsid);
        s.set_prp(Prp {
            prp1: page,
            prp2: 0,
        });
        s.set_dword(10, u32::from(cns));
        s
    }

    /// Create I/O Completion Queue `qid` of `entries` entries, physically
    /// contiguous at `base`, interrupts enabled on MSI-X vector `vector`.
    pub fn create_cq(cid: u16, qid: u16, entries: u16, base: u64, vector: u16) -> Self {
        let mut s = Self::new(OPC_CREATE_CQ, cid, 0);
        s.set_prp(Prp {
            prp1: base,
            prp2: 0,
        });
        s.set_dword(10, (u32::from(entries - 1) << 16) | u32::from(qid));
        s.set_dword(11, (u32::from(vector) << 16) | 0b11);
        s
    }

    /// Create I/O Submission Queue `qid` of `entries` entries, physically
    /// contiguous at `base`, completing to CQ `cqid`.
    pub fn create_sq(cid: u16, qid: u16, entries: u16, base: u64, cqid: u16) -> Self {
        let mut s = Self::new(OPC_CREATE_SQ, cid, 0);
        s.set_prp(Prp {
            prp1: base,
            prp2: 0,
        });
        s.set_dword(10, (u32::from(entries - 1) << 16) | u32::from(qid));
        s.set_dword(11, (u32::from(cqid) << 16) | 1);
        s
    }

    /// Delete I/O Submission (`sq`) or Completion Queue `qid`.
    pub fn delete_queue(cid: u16, sq: bool, qid: u16) -> Self {
        let opc = if sq { OPC_DELETE_SQ } else { OPC_DELETE_CQ };
        let mut s = Self::new(opc, cid, 0);
        s.set_dword(10, u32::from(qid));
        s
    }

    /// Read (`write` false) or Write of `blocks` logical blocks from `slba`
    /// of namespace `nsid`, data at `prp`.
    pub fn read_write(write: bool, cid: u16, nsid: u32, slba: u64, blocks: u16, prp: Prp) -> Self {
        let opc = if write { OPC_WRITE } else { OPC_READ };
        let mut s = Self::new(opc, cid, nsid);
        s.set_prp(prp);
        s.set_dword(10, slba as u32);
        s.set_dword(11, (slba >> 32) as u32);
        s.set_dword(12, u32::from(blocks - 1));
        s
    }
}

/// A completion queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    /// Command specific result (DW0).
    pub result: u32,
    /// SQ Head Pointer.
    pub sq_head: u16,
    /// SQ Identifier.
    pub sq_id: u16,
    /// Command Identifier.
    pub cid: u16,
    /// Phase Tag.
    pub phase: bool,
    /// The Status Field (DW3 bits 31:17): SC 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14.
    pub status: u16,
}

impl Cqe {
    /// Decodes an entry's 16 bytes.
    pub fn parse(b: &[u8; CQE_SIZE]) -> Self {
        let dw = |n: usize| u32::from_le_bytes(b[n * 4..n * 4 + 4].try_into().expect("4 bytes"));
        let (dw2, dw3) = (dw(2), dw(3));
        Self {
            result: dw(0),
            sq_head: dw2 as u16,
            sq_id: (dw2 >> 16) as u16,
            cid: dw3 as u16,
            phase: dw3 & (1 << 16) != 0,
            status: (dw3 >> 17) as u16,
        }
    }

    /// Status Code.
    pub fn sc(&self) -> u8 {
        self.status as u8
    }

    /// Status Code Type.
    pub fn sct(&self) -> u8 {
        ((self.status >> 8) & 0x7) as u8
    }

    /// Do Not Retry.
    pub fn dnr(&self) -> bool {
        self.status & (1 << 14) != 0
    }

    /// True for Successful Completion.
    pub fn ok(&self) -> bool {
        self.sc() == 0 && self.sct() == 0
    }
}

/// Generic status code Data Transfer Error, what a device reports when it
/// cannot move a command's data (here: the IOMMU refused the DMA).
pub const SC_DATA_TRANSFER_ERROR: u8 = 0x04;

/// The two PRP entries of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prp {
    /// PRP entry 1: the first page (may carry an offset).
    pub prp1: u64,
    /// PRP entry 2: the second page, or 0.
    pub prp2: u64,
}

/// The PRP entries for `len` bytes in a buffer at I/O virtual address
/// `iova`, contiguous in I/O virtual space. Transfers touching more than
/// two pages would need a PRP list, which this driver never builds.
pub fn prp_for(iova: u64, len: u64) -> Result<Prp, String> {
    if len == 0 {
        return Err("a transfer of 0 bytes".into());
    }
    if !iova.is_multiple_of(4) {
        return Err(format!("PRP entry {iova:#x} is not dword aligned"));
    }
    let first_page = iova & !(PAGE - 1);
    let end = iova
        .checked_add(len)
        .ok_or_else(|| format!("{iova:#x} + {len:#x} overflows"))?;
    let pages = (end - first_page).div_ceil(PAGE);
    match pages {
        1 => Ok(Prp {
            prp1: iova,
            prp2: 0,
        }),
        2 => Ok(Prp {
            prp1: iova,
            prp2: first_page + PAGE,
        }),
        n => Err(format!(
            "{len} bytes at {iova:#x} span {n} pages; at most 2 without a PRP list"
        )),
    }
}

/// What the driver reads from Identify Controller (CNS 01h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: u16,
    /// Serial Number, trailing spaces removed.
    pub serial: String,
    /// Model Number, trailing spaces removed.
    pub model: String,
    /// Firmware Revision, trailing spaces removed.
    pub firmware: String,
    /// Maximum Data Transfer Size, a power of two in units of CAP.MPSMIN (0: no limit).
    pub mdts: u8,
    /// Number of Namespaces.
    pub nn: u32,
}

/// An ASCII field of Identify data with its space padding removed.
fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

impl IdentifyController {
    /// Decodes the 4096-byte Identify Controller data structure.
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < 4096 {
            return Err(format!("Identify Controller data is {} bytes", b.len()));
        }
        Ok(Self {
            vid: u16::from_le_bytes([b[0], b[1]]),
            serial: ascii(&b[4..24]),
            model: ascii(&b[24..64]),
            firmware: ascii(&b[64..72]),
            mdts: b[77],
            nn: u32::from_le_bytes(b[516..520].try_into().expect("4 bytes")),
        })
    }
}

/// What the driver reads from Identify Namespace (CNS 00h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Namespace Size, in logical blocks.
    pub blocks: u64,
    /// Bytes per logical block of the format in use.
    pub block_size: u32,
}

impl IdentifyNamespace {
    /// Decodes the 4096-byte Identify Namespace data structure.
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < 4096 {
            return Err(format!("Identify Namespace data is {} bytes", b.len()));
        }
        let blocks = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
        let format = usize::from(b[26] & 0xf);
        let lbaf = 128 + 4 * format;
        let lbads = b[lbaf + 2];
        if !(9..=16).contains(&lbads) {
            return Err(format!("LBA format {format} has LBADS {lbads}"));
        }
        if blocks == 0 {
            return Err("the namespace has no blocks".into());
        }
        Ok(Self {
            blocks,
            block_size: 1 << lbads,
        })
    }
}

/// The test pattern for `len` bytes: each 8-byte word holds its byte
/// offset and `seed`, so a block read from the wrong place or a stale
/// buffer never matches.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .step_by(8)
        .flat_map(|off| ((off as u64) << 32 | u64::from(seed)).to_le_bytes())
        .take(len)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cap_decodes_the_fields_the_driver_uses() {
        // MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4
        let cap = 2047 | 1 << 16 | 15 << 24 | 1 << 37 | 4 << 52;
        let c = Cap::parse(cap);
        assert_eq!(c.mqes, 2048);
        assert_eq!(c.timeout_ms, 7500);
        assert_eq!(c.dstrd, 0);
        assert_eq!(c.mps_min, 4096);
        assert_eq!(c.sq_tail_doorbell(0), 0x1000);
        assert_eq!(c.cq_head_doorbell(0), 0x1004);
        assert_eq!(c.sq_tail_doorbell(1), 0x1008);
        assert_eq!(c.cq_head_doorbell(1), 0x100c);
    }

    #[test]
    fn test_doorbells_follow_the_stride() {
        let c = Cap::parse(2 << 32);
        assert_eq!(c.dstrd, 2);
        assert_eq!(c.sq_tail_doorbell(1), 0x1000 + 2 * 16);
        assert_eq!(c.cq_head_doorbell(1), 0x1000 + 3 * 16);
    }

    #[test]
    fn test_cc_and_aqa_values() {
        assert_eq!(cc(true), 0x0046_0001);
        assert_eq!(cc(false), 0x0046_0000);
        assert_eq!(aqa(16), 0x000f_000f);
    }

    #[test]
    fn test_identify_entry_layout() {
        let s = Sqe::identify(7, 1, 0, 0x1_0000_4000);
        assert_eq!(s.dword(0), 0x0007_0006);
        assert_eq!(s.dword(1), 0);
        assert_eq!(s.prp1(), 0x1_0000_4000);
        assert_eq!(s.prp2(), 0);
        assert_eq!(s.dword(10), 1);
        assert_eq!(&s.0[24..32], &0x1_0000_4000u64.to_le_bytes());
    }

    #[test]
    fn test_queue_creation_entries() {
        let cq = Sqe::create_cq(3, 1, 16, 0x1_0000_3000, 1);
        assert_eq!(cq.dword(0) & 0xff, 0x05);
        assert_eq!(cq.dword(0) >> 16, 3);
        assert_eq!(cq.prp1(), 0x1_0000_3000);
        assert_eq!(cq.dword(10), 15 << 16 | 1);
        assert_eq!(cq.dword(11), 1 << 16 | 0b11, "vector 1, IEN, PC");
        let sq = Sqe::create_sq(4, 1, 16, 0x1_0000_2000, 1);
        assert_eq!(sq.dword(0) & 0xff, 0x01);
        assert_eq!(sq.dword(10), 15 << 16 | 1);
        assert_eq!(sq.dword(11), 1 << 16 | 1, "CQ 1, PC");
        let del = Sqe::delete_queue(5, true, 1);
        assert_eq!(del.dword(0), 5 << 16);
        assert_eq!(del.dword(10), 1);
        assert_eq!(Sqe::delete_queue(6, false, 1).dword(0) & 0xff, 0x04);
    }

    #[test]
    fn test_read_write_entries() {
        let prp = Prp {
            prp1: 0x1_0000_5000,
            prp2: 0x1_0000_6000,
        };
        let w = Sqe::read_write(true, 9, 1, 0x1_2345_6789, 16, prp);
        assert_eq!(w.dword(0), 9 << 16 | 0x01);
        assert_eq!(w.dword(1), 1);
        assert_eq!(w.dword(10), 0x2345_6789);
        assert_eq!(w.dword(11), 0x1);
        assert_eq!(w.dword(12), 15, "NLB is 0-based");
        assert_eq!((w.prp1(), w.prp2()), (prp.prp1, prp.prp2));
        let r = Sqe::read_write(false, 10, 1, 8, 1, prp);
        assert_eq!(r.dword(0) & 0xff, 0x02);
        assert_eq!(r.dword(12), 0);
    }

    #[test]
    fn test_completion_decoding() {
        let mut b = [0u8; CQE_SIZE];
        b[0..4].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        b[8..12].copy_from_slice(&(1u32 << 16 | 5).to_le_bytes());
        // CID 9, phase 1, Data Transfer Error with DNR
        let dw3 = 9 | 1 << 16 | (0x4004u32 << 17);
        b[12..16].copy_from_slice(&dw3.to_le_bytes());
        let c = Cqe::parse(&b);
        assert_eq!(c.result, 0xdead_beef);
        assert_eq!((c.sq_id, c.sq_head), (1, 5));
        assert_eq!(c.cid, 9);
        assert!(c.phase);
        assert_eq!(c.status, 0x4004);
        assert_eq!(c.sc(), SC_DATA_TRANSFER_ERROR);
        assert_eq!(c.sct(), 0);
        assert!(c.dnr());
        assert!(!c.ok());

        let ok = Cqe::parse(&[0; CQE_SIZE]);
        assert!(ok.ok());
        assert!(!ok.phase);
        // a command-specific status (SCT 1, SC 1: Invalid Queue Identifier)
        b[12..16].copy_from_slice(&(0x101u32 << 17).to_le_bytes());
        let c = Cqe::parse(&b);
        assert_eq!((c.sct(), c.sc()), (1, 1));
        assert!(!c.ok());
    }

    #[test]
    fn test_prp_entries_for_one_and_two_pages() {
        let base = 0x1_0000_5000;
        assert_eq!(
            prp_for(base, 4096),
            Ok(Prp {
                prp1: base,
                prp2: 0
            })
        );
        assert_eq!(
            prp_for(base, 8192),
            Ok(Prp {
                prp1: base,
                prp2: base + 0x1000
            })
        );
        // an offset into the first page moves the second page's need earlier
        assert_eq!(
            prp_for(base + 0x200, 4096),
            Ok(Prp {
                prp1: base + 0x200,
                prp2: base + 0x1000
            })
        );
        assert_eq!(
            prp_for(base + 0x200, 512),
            Ok(Prp {
                prp1: base + 0x200,
                prp2: 0
            })
        );
    }

    #[test]
    fn test_prp_refuses_what_needs_a_list_or_is_malformed() {
        assert!(prp_for(0x1000, 8193).unwrap_err().contains("3 pages"));
        assert!(prp_for(0x1002, 16).unwrap_err().contains("dword"));
        assert!(prp_for(0x1000, 0).is_err());
        assert!(prp_for(u64::MAX - 3, 8).unwrap_err().contains("overflows"));
    }

    #[test]
    fn test_identify_controller_fields() {
        let mut b = vec![0u8; 4096];
        b[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        b[4..24].copy_from_slice(b"IOVMVFIO            ");
        b[24..64].copy_from_slice(format!("{:<40}", "iovm NVMe").as_bytes());
        b[64..72].copy_from_slice(b"1.0     ");
        b[77] = 5;
        b[516..520].copy_from_slice(&1u32.to_le_bytes());
        let id = IdentifyController::parse(&b).unwrap();
        assert_eq!(id.vid, 0x1b36);
        assert_eq!(id.serial, "IOVMVFIO");
        assert_eq!(id.model, "iovm NVMe");
        assert_eq!(id.firmware, "1.0");
        assert_eq!(id.mdts, 5);
        assert_eq!(id.nn, 1);
        assert!(IdentifyController::parse(&b[..100]).is_err());
    }

    #[test]
    fn test_identify_namespace_uses_the_selected_format() {
        let mut b = vec![0u8; 4096];
        b[0..8].copy_from_slice(&131072u64.to_le_bytes());
        b[26] = 1; // FLBAS: format 1
        b[128 + 2] = 9; // format 0: 512 bytes
        b[132 + 2] = 12; // format 1: 4096 bytes
        let ns = IdentifyNamespace::parse(&b).unwrap();
        assert_eq!(ns.blocks, 131072);
        assert_eq!(ns.block_size, 4096);
        b[26] = 0;
        assert_eq!(IdentifyNamespace::parse(&b).unwrap().block_size, 512);
        b[128 + 2] = 0;
        assert!(IdentifyNamespace::parse(&b).unwrap_err().contains("LBADS"));
        b[128 + 2] = 9;
        b[0..8].copy_from_slice(&0u64.to_le_bytes());
        assert!(IdentifyNamespace::parse(&b).is_err());
    }

    #[test]
    fn test_pattern_words_name_their_offset_and_seed() {
        let p = pattern(24, 0xabcd);
        assert_eq!(p.len(), 24);
        assert_eq!(&p[0..8], &0xabcdu64.to_le_bytes());
        assert_eq!(&p[8..16], &(8u64 << 32 | 0xabcd).to_le_bytes());
        assert_eq!(&p[16..24], &(16u64 << 32 | 0xabcd).to_le_bytes());
        assert_ne!(pattern(4096, 1), pattern(4096, 2));
        assert_eq!(pattern(5, 1).len(), 5);
    }
}
