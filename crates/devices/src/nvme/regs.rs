//! Controller registers (NVMe 1.4 §3.1): CAP, VS, INTMS/INTMC, CC, CSTS,
//! AQA, ASQ, ACQ, as data.
//!
//! The block is a [`RegisterMask`] (reset value, writable bits and
//! write-1-to-clear bits per byte, STYLE point 5); the only registers with
//! other semantics are INTMS and INTMC, which set and clear one hidden mask
//! (IVMS) and read it back. CSTS is written by the device only.
//!
//! ```text
//!   CC.EN 0→1 ──valid config──▶ CSTS.RDY=1 ──CC.SHN≠0──▶ SHST=01 ──drained,flushed──▶ SHST=10
//!       ▲        └─invalid──▶ CSTS.CFS=1                                               │
//!       └────── CC.EN 1→0: reset (queues deleted, RDY=0 once in-flight I/O drained) ◀──┘
//! ```

use pci::regs::RegisterMask;

/// Controller Capabilities (8 bytes).
pub const CAP: usize = 0x00;
/// Version (4 bytes).
pub const VS: usize = 0x08;
/// Interrupt Mask Set.
pub const INTMS: usize = 0x0c;
/// Interrupt Mask Clear.
pub const INTMC: usize = 0x10;
/// Controller Configuration.
pub const CC: usize = 0x14;
/// Controller Status.
pub const CSTS: usize = 0x1c;
/// NVM Subsystem Reset (not supported: CAP.NSSRS = 0, reads 0).
pub const NSSR: usize = 0x20;
/// Admin Queue Attributes.
pub const AQA: usize = 0x24;
/// Admin Submission Queue Base Address (8 bytes).
pub const ASQ: usize = 0x28;
/// Admin Completion Queue Base Address (8 bytes).
pub const ACQ: usize = 0x30;
/// Size of the register block before the doorbells.
pub const REGS_SIZE: usize = 0x1000;

/// Version 1.4.0.
pub const VERSION: u32 = 0x0001_0400;

/// CC fields.
pub mod cc {
    /// Enable.
    pub const EN: u32 = 1;
    /// I/O Command Set Selected (bits 6:4).
    pub const CSS_SHIFT: u32 = 4;
    /// Memory Page Size (bits 10:7), 2^(12+MPS).
    pub const MPS_SHIFT: u32 = 7;
    /// Arbitration Mechanism Selected (bits 13:11).
    pub const AMS_SHIFT: u32 = 11;
    /// Shutdown Notification (bits 15:14).
    pub const SHN_SHIFT: u32 = 14;
    /// I/O Submission Queue Entry Size (bits 19:16), 2^n bytes.
    pub const IOSQES_SHIFT: u32 = 16;
    /// I/O Completion Queue Entry Size (bits 23:20), 2^n bytes.
    pub const IOCQES_SHIFT: u32 = 20;
    /// Bits the guest may write.
    pub const WRITABLE: u32 = 0x00ff_fff1;
}

/// CSTS fields.
pub mod csts {
    /// Ready.
    pub const RDY: u32 = 1;
    /// Controller Fatal Status.
    pub const CFS: u32 = 1 << 1;
    /// Shutdown Status (bits 3:2).
    pub const SHST_MASK: u32 = 0b11 << 2;
    /// Shutdown processing occurring.
    pub const SHST_OCCURRING: u32 = 0b01 << 2;
    /// Shutdown processing complete.
    pub const SHST_COMPLETE: u32 = 0b10 << 2;
}

/// What the controller advertises in CAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Maximum Queue Entries Supported, 0-based (so at least 1).
    pub mqes: u16,
    /// Worst-case time to become ready, in 500 ms units.
    pub timeout: u8,
}

impl Capabilities {
    /// The CAP value: MQES, CQR=1 (contiguous queues required), AMS=0
    /// (round robin only), TO, DSTRD=0 (4-byte doorbell stride),
    /// NSSRS=0, CSS=NVM command set, MPSMIN=MPSMAX=0 (4 KiB pages).
    pub fn value(self) -> u64 {
        u64::from(self.mqes) | 1 << 16 | u64::from(self.timeout) << 24 | 1 << 37
    }
}

/// The register block of one controller (plain data).
#[derive(Clone, Debug)]
pub struct Registers {
    regs: RegisterMask,
    /// Interrupt Vector Mask Set: what INTMS and INTMC read.
    ivms: u32,
}

/// What a guest register write changed that the controller must act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegWrite {
    /// CC before and after, when CC was written.
    pub cc: Option<(u32, u32)>,
    /// Bits of IVMS cleared by an INTMC write.
    pub unmasked: u32,
}

fn install(regs: &mut RegisterMask, offset: usize, len: usize, value: u64, writable: u64) {
    let ok = regs
        .set_value(offset, len, value)
        .and_then(|()| regs.set_masks(offset, len, writable, 0));
    if let Err(e) = ok {
        unreachable!("NVMe register table is inside the block: {e}");
    }
}

impl Registers {
    /// Registers at reset for a controller with `cap`.
    pub fn new(cap: Capabilities) -> Self {
        let mut regs = RegisterMask::new(REGS_SIZE);
        // offset, size, reset value, writable bits
        let table: [(usize, usize, u64, u64); 8] = [
            (CAP, 8, cap.value(), 0),
            (VS, 4, u64::from(VERSION), 0),
            (CC, 4, 0, u64::from(cc::WRITABLE)),
            (CSTS, 4, 0, 0),
            (NSSR, 4, 0, 0),
            (AQA, 4, 0, 0x0fff_0fff),
            (ASQ, 8, 0, !0xfff),
            (ACQ, 8, 0, !0xfff),
        ];
        for (offset, len, value, writable) in table {
            install(&mut regs, offset, len, value, writable);
        }
        Self { regs, ivms: 0 }
    }

    /// A guest read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        if offset == INTMS || offset == INTMC {
            let v = self.ivms.to_le_bytes();
            let n = data.len().min(4);
            data[..n].copy_from_slice(&v[..n]);
            data[n..].fill(0);
        } else {
            self.regs.read(offset, data);
        }
    }

    /// A guest write at `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> RegWrite {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(v);
        match offset {
            INTMS => {
                self.ivms |= value;
                RegWrite::default()
            }
            INTMC => {
                let unmasked = self.ivms & value;
                self.ivms &= !value;
                RegWrite { cc: None, unmasked }
            }
            _ => {
                let before = self.cc();
                self.regs.write(offset, data);
                let touches_cc = offset < CC + 4 && offset + data.len() > CC;
                RegWrite {
                    cc: touches_cc.then(|| (before, self.cc())),
                    unmasked: 0,
                }
            }
        }
    }

    fn get32(&self, offset: usize) -> u32 {
        self.regs.read_le(offset, 4) as u32
    }

    /// CAP.
    pub fn cap(&self) -> u64 {
        self.regs.read_le(CAP, 8)
    }

    /// CC.
    pub fn cc(&self) -> u32 {
        self.get32(CC)
    }

    /// CSTS.
    pub fn csts(&self) -> u32 {
        self.get32(CSTS)
    }

    /// Sets CSTS (device side).
    pub fn set_csts(&mut self, value: u32) {
        install(&mut self.regs, CSTS, 4, u64::from(value), 0);
    }

    /// AQA: (admin SQ entries, admin CQ entries), 1-based.
    pub fn admin_queue_sizes(&self) -> (u32, u32) {
        let aqa = self.get32(AQA);
        ((aqa & 0xfff) + 1, ((aqa >> 16) & 0xfff) + 1)
    }

    /// ASQ.
    pub fn asq(&self) -> u64 {
        self.regs.read_le(ASQ, 8)
    }

    /// ACQ.
    pub fn acq(&self) -> u64 {
        self.regs.read_le(ACQ, 8)
    }

    /// IVMS (the interrupt mask INTMS/INTMC maintain).
    pub fn ivms(&self) -> u32 {
        self.ivms
    }

    /// Controller reset: CSTS and IVMS return to 0 (CC is the guest's,
    /// AQA/ASQ/ACQ survive a reset, NVMe 1.4 §7.3.2).
    pub fn reset(&mut self) {
        self.set_csts(0);
        self.ivms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Registers {
        Registers::new(Capabilities {
            mqes: 1023,
            timeout: 20,
        })
    }

    fn read32(r: &Registers, offset: usize) -> u32 {
        let mut d = [0u8; 4];
        r.read(offset, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn test_regs_cap_encodes_mqes_cqr_to_css_and_pages() {
        let cap = regs().cap();
        assert_eq!(cap & 0xffff, 1023);
        assert_eq!((cap >> 16) & 1, 1, "CQR");
        assert_eq!((cap >> 24) & 0xff, 20, "TO");
        assert_eq!((cap >> 32) & 0xf, 0, "DSTRD");
        assert_eq!((cap >> 37) & 0xff, 1, "CSS: NVM");
        assert_eq!((cap >> 48) & 0xff, 0, "MPSMIN/MPSMAX 4 KiB");
    }

    #[test]
    fn test_regs_read_only_registers_ignore_writes() {
        let mut r = regs();
        r.write(CAP, &[0xff; 8]);
        r.write(VS, &[0xff; 4]);
        r.write(CSTS, &[0xff; 4]);
        assert_eq!(r.cap() & 0xffff, 1023);
        assert_eq!(read32(&r, VS), VERSION);
        assert_eq!(r.csts(), 0);
    }

    #[test]
    fn test_regs_cc_keeps_only_defined_bits_and_reports_the_change() {
        let mut r = regs();
        let w = r.write(CC, &u32::MAX.to_le_bytes());
        assert_eq!(w.cc, Some((0, cc::WRITABLE)));
        assert_eq!(r.cc(), cc::WRITABLE);
    }

    #[test]
    fn test_regs_admin_queue_bases_are_page_aligned() {
        let mut r = regs();
        r.write(ASQ, &0x1234_5678_9abc_def0u64.to_le_bytes());
        r.write(ACQ, &0x0000_0001_0000_0fffu64.to_le_bytes());
        r.write(AQA, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(r.asq(), 0x1234_5678_9abc_d000);
        assert_eq!(r.acq(), 0x0000_0001_0000_0000);
        assert_eq!(r.admin_queue_sizes(), (4096, 4096));
    }

    #[test]
    fn test_regs_intms_sets_and_intmc_clears_one_mask() {
        let mut r = regs();
        r.write(INTMS, &0b1011u32.to_le_bytes());
        assert_eq!(read32(&r, INTMS), 0b1011);
        assert_eq!(read32(&r, INTMC), 0b1011);
        let w = r.write(INTMC, &0b0110u32.to_le_bytes());
        assert_eq!(w.unmasked, 0b0010);
        assert_eq!(r.ivms(), 0b1001);
    }

    #[test]
    fn test_regs_reset_clears_status_and_mask_keeps_admin_queue() {
        let mut r = regs();
        r.write(ASQ, &0x10_0000u64.to_le_bytes());
        r.write(INTMS, &1u32.to_le_bytes());
        r.set_csts(csts::RDY);
        r.reset();
        assert_eq!(r.csts(), 0);
        assert_eq!(r.ivms(), 0);
        assert_eq!(r.asq(), 0x10_0000);
    }
}
