//! The ABAR register blocks (AHCI 1.3.1 §3): the generic host control
//! registers (§3.1) and one port register block per port (§3.3), as data.
//!
//! Each block is a [`RegisterMask`]: reset value, writable bits,
//! write-1-to-clear bits (PxIS, PxSERR, IS) and write-1-to-set bits
//! (PxSACT, PxCI) per register (STYLE point 5). What a write *does*
//! beyond storing bits (the PxCMD state machine, COMRESET through
//! PxSCTL.DET, HBA reset) is the port's and the HBA's business
//! (`port.rs`, `hba.rs`), driven by the values before and after.

use pci::regs::RegisterMask;

/// Size of the generic host control block; port 0 starts here.
pub const HBA_SIZE: usize = 0x100;
/// Size of one port's register block.
pub const PORT_SIZE: usize = 0x80;

/// Host Capabilities (§3.1.1), read-only.
pub const CAP: usize = 0x00;
/// Global HBA Control (§3.1.2).
pub const GHC: usize = 0x04;
/// Interrupt Status, one bit per port, write-1-to-clear (§3.1.3).
pub const IS: usize = 0x08;
/// Ports Implemented (§3.1.4).
pub const PI: usize = 0x0c;
/// AHCI Version (§3.1.5).
pub const VS: usize = 0x10;
/// Host Capabilities Extended (§3.1.10).
pub const CAP2: usize = 0x24;

/// AHCI 1.3.1 (`AHCI 0001.0301` in Linux's banner).
pub const VERSION: u32 = 0x0001_0301;

/// CAP bits.
pub mod cap {
    /// Number of Ports, 0-based (bits 4:0).
    pub const NP_MASK: u32 = 0x1f;
    /// Number of Command Slots, 0-based (bits 12:8).
    pub const NCS_SHIFT: u32 = 8;
    /// Interface Speed Support (bits 23:20): 3 = 6 Gbps.
    pub const ISS_SHIFT: u32 = 20;
    /// Supports AHCI mode only (GHC.AE reads 1).
    pub const SAM: u32 = 1 << 18;
    /// Supports Command List Override.
    pub const SCLO: u32 = 1 << 24;
    /// Supports Native Command Queuing.
    pub const SNCQ: u32 = 1 << 30;
    /// Supports 64-bit Addressing.
    pub const S64A: u32 = 1 << 31;
}

/// GHC bits.
pub mod ghc {
    /// HBA Reset (self-clearing).
    pub const HR: u32 = 1 << 0;
    /// Interrupt Enable.
    pub const IE: u32 = 1 << 1;
    /// MSI Revert to Single Message (never set: one message only).
    pub const MRSM: u32 = 1 << 2;
    /// AHCI Enable (read-only 1 with CAP.SAM).
    pub const AE: u32 = 1 << 31;
}

/// Port register offsets inside a port block (§3.3).
pub mod port {
    /// Command List Base Address, 1 KiB aligned (§3.3.1).
    pub const CLB: usize = 0x00;
    /// Command List Base Address Upper 32 bits.
    pub const CLBU: usize = 0x04;
    /// FIS Base Address, 256-byte aligned (§3.3.3).
    pub const FB: usize = 0x08;
    /// FIS Base Address Upper 32 bits.
    pub const FBU: usize = 0x0c;
    /// Interrupt Status (§3.3.5).
    pub const IS: usize = 0x10;
    /// Interrupt Enable (§3.3.6).
    pub const IE: usize = 0x14;
    /// Command and Status (§3.3.7).
    pub const CMD: usize = 0x18;
    /// Task File Data (§3.3.8).
    pub const TFD: usize = 0x20;
    /// Signature (§3.3.9).
    pub const SIG: usize = 0x24;
    /// Serial ATA Status, SStatus (§3.3.10).
    pub const SSTS: usize = 0x28;
    /// Serial ATA Control, SControl (§3.3.11).
    pub const SCTL: usize = 0x2c;
    /// Serial ATA Error, SError (§3.3.12).
    pub const SERR: usize = 0x30;
    /// Serial ATA Active, SActive (§3.3.13).
    pub const SACT: usize = 0x34;
    /// Command Issue (§3.3.14).
    pub const CI: usize = 0x38;
    /// Serial ATA Notification (§3.3.15).
    pub const SNTF: usize = 0x3c;
}

/// PxIS / PxIE bits (§3.3.5).
pub mod pis {
    /// Device to Host Register FIS Interrupt.
    pub const DHRS: u32 = 1 << 0;
    /// PIO Setup FIS Interrupt.
    pub const PSS: u32 = 1 << 1;
    /// DMA Setup FIS Interrupt.
    pub const DSS: u32 = 1 << 2;
    /// Set Device Bits Interrupt.
    pub const SDBS: u32 = 1 << 3;
    /// Unknown FIS Interrupt (read-only: mirrors PxSERR.DIAG.F).
    pub const UFS: u32 = 1 << 4;
    /// Descriptor Processed.
    pub const DPS: u32 = 1 << 5;
    /// Port Connect Change (read-only: mirrors PxSERR.DIAG.X).
    pub const PCS: u32 = 1 << 6;
    /// Device Mechanical Presence.
    pub const DMPS: u32 = 1 << 7;
    /// PhyRdy Change (read-only: mirrors PxSERR.DIAG.N).
    pub const PRCS: u32 = 1 << 22;
    /// Incorrect Port Multiplier.
    pub const IPMS: u32 = 1 << 23;
    /// Overflow: the device sent more data than the PRDT describes.
    pub const OFS: u32 = 1 << 24;
    /// Interface Non-fatal Error.
    pub const INFS: u32 = 1 << 26;
    /// Interface Fatal Error.
    pub const IFS: u32 = 1 << 27;
    /// Host Bus Data Error.
    pub const HBDS: u32 = 1 << 28;
    /// Host Bus Fatal Error.
    pub const HBFS: u32 = 1 << 29;
    /// Task File Error.
    pub const TFES: u32 = 1 << 30;
    /// Cold Port Detect.
    pub const CPDS: u32 = 1 << 31;
    /// Bits software clears by writing 1.
    pub const W1C: u32 =
        DHRS | PSS | DSS | SDBS | DPS | DMPS | IPMS | OFS | INFS | IFS | HBDS | HBFS | TFES | CPDS;
    /// Bits PxIE can enable.
    pub const ENABLES: u32 = W1C | UFS | PCS | PRCS;
    /// The errors after which the port stops processing its list
    /// (§6.1.2, fatal) until software clears PxCMD.ST.
    pub const FATAL: u32 = IFS | HBDS | HBFS | TFES | OFS;
}

/// PxCMD bits (§3.3.7).
pub mod pcmd {
    /// Start: process the command list.
    pub const ST: u32 = 1 << 0;
    /// Spin-Up Device (read-only 1: CAP.SSS is clear).
    pub const SUD: u32 = 1 << 1;
    /// Power On Device (read-only 1: no cold presence detection).
    pub const POD: u32 = 1 << 2;
    /// Command List Override.
    pub const CLO: u32 = 1 << 3;
    /// FIS Receive Enable.
    pub const FRE: u32 = 1 << 4;
    /// Current Command Slot (bits 12:8).
    pub const CCS_SHIFT: u32 = 8;
    /// Current Command Slot field.
    pub const CCS: u32 = 0x1f << CCS_SHIFT;
    /// FIS Receive Running.
    pub const FR: u32 = 1 << 14;
    /// Command List Running.
    pub const CR: u32 = 1 << 15;
    /// Device is ATAPI (a hint for LED logic only).
    pub const ATAPI: u32 = 1 << 24;
    /// Drive LED on ATAPI Enable.
    pub const DLAE: u32 = 1 << 25;
    /// Interface Communication Control (bits 31:28).
    pub const ICC: u32 = 0xf << 28;
    /// Bits software writes.
    pub const WRITABLE: u32 = ST | CLO | FRE | ATAPI | DLAE | ICC;
}

/// PxTFD status bits (ATA status register).
pub mod status {
    /// Error.
    pub const ERR: u8 = 1 << 0;
    /// Data Request.
    pub const DRQ: u8 = 1 << 3;
    /// Device Seek Complete (obsolete, still reported by drives).
    pub const DSC: u8 = 1 << 4;
    /// Device Ready.
    pub const DRDY: u8 = 1 << 6;
    /// Busy.
    pub const BSY: u8 = 1 << 7;
}

/// PxSERR bits (§3.3.12).
pub mod serr {
    /// DIAG.N: PhyRdy changed.
    pub const DIAG_N: u32 = 1 << 16;
    /// DIAG.X: Exchanged (a COMINIT was received).
    pub const DIAG_X: u32 = 1 << 26;
    /// DIAG.F: unknown FIS type.
    pub const DIAG_F: u32 = 1 << 25;
    /// Every defined bit (ERR 0,1,8–11; DIAG 16–26), all write-1-to-clear.
    pub const W1C: u32 = 0x07ff_0f03;
}

/// PxSSTS values (§3.3.10).
pub mod ssts {
    /// No device, no Phy communication.
    pub const NONE: u32 = 0;
    /// DET=3 (device present, Phy up), SPD=3 (6 Gbps), IPM=1 (active).
    pub const UP: u32 = 0x133;
    /// DET=4: Phy offline (disabled through SCTL.DET).
    pub const OFFLINE: u32 = 0x4;
}

/// PxSIG of an ATA disk after reset (§3.3.9: count 01h, LBA 000001h).
pub const SIG_DISK: u32 = 0x0000_0101;
/// PxSIG before any signature was received.
pub const SIG_NONE: u32 = 0xffff_ffff;
/// PxTFD with no device: status 7Fh as on a floating bus.
pub const TFD_NONE: u32 = 0x7f;

fn install(regs: &mut RegisterMask, offset: usize, value: u32, writable: u32, w1c: u32, w1s: u32) {
    let semantics = pci::regs::Semantics {
        writable: writable.into(),
        w1c: w1c.into(),
        w1s: w1s.into(),
        ..Default::default()
    };
    let ok = regs
        .set_value(offset, 4, value.into())
        .and_then(|()| regs.set_semantics(offset, 4, semantics));
    if let Err(e) = ok {
        unreachable!("AHCI register table is inside its block: {e}");
    }
}

/// What the HBA advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCaps {
    /// Ports implemented (1–6), numbered from 0.
    pub ports: usize,
}

impl HostCaps {
    /// CAP: NP, NCS = 31 (32 slots), ISS = 6 Gbps, SAM, SCLO, SNCQ, S64A;
    /// no staggered spin-up, port multiplier, FBS, ALPM, CCC or SNTF.
    pub fn cap(self) -> u32 {
        (self.ports as u32 - 1) & cap::NP_MASK
            | 31 << cap::NCS_SHIFT
            | 3 << cap::ISS_SHIFT
            | cap::SAM
            | cap::SCLO
            | cap::SNCQ
            | cap::S64A
    }

    /// PI: ports 0..ports.
    pub fn pi(self) -> u32 {
        (1u32 << self.ports) - 1
    }
}

/// The generic host control block at reset.
pub fn host_block(caps: HostCaps) -> RegisterMask {
    let mut r = RegisterMask::new(HBA_SIZE);
    // offset, reset value, writable, w1c
    let table: [(usize, u32, u32, u32); 6] = [
        (CAP, caps.cap(), 0, 0),
        (GHC, ghc::AE, ghc::HR | ghc::IE, 0),
        (IS, 0, 0, caps.pi()),
        (PI, caps.pi(), 0, 0),
        (VS, VERSION, 0, 0),
        (CAP2, 0, 0, 0),
    ];
    for (offset, value, writable, w1c) in table {
        install(&mut r, offset, value, writable, w1c, 0);
    }
    r
}

/// One port's block at reset: no signature yet, link down.
pub fn port_block() -> RegisterMask {
    use port::*;
    let mut r = RegisterMask::new(PORT_SIZE);
    // offset, reset value, writable, w1c, w1s
    let table: [(usize, u32, u32, u32, u32); 15] = [
        (CLB, 0, !0x3ff, 0, 0),
        (CLBU, 0, !0, 0, 0),
        (FB, 0, !0xff, 0, 0),
        (FBU, 0, !0, 0, 0),
        (IS, 0, 0, pis::W1C, 0),
        (IE, 0, pis::ENABLES, 0, 0),
        (CMD, pcmd::SUD | pcmd::POD, pcmd::WRITABLE, 0, 0),
        (TFD, TFD_NONE, 0, 0, 0),
        (SIG, SIG_NONE, 0, 0, 0),
        (SSTS, ssts::NONE, 0, 0, 0),
        (SCTL, 0, 0xfff, 0, 0),
        (SERR, 0, 0, serr::W1C, 0),
        (SACT, 0, 0, 0, !0),
        (CI, 0, 0, 0, !0),
        (SNTF, 0, 0, 0xffff, 0),
    ];
    for (offset, value, writable, w1c, w1s) in table {
        install(&mut r, offset, value, writable, w1c, w1s);
    }
    r
}

/// A 32-bit register of `block`.
pub fn get(block: &RegisterMask, offset: usize) -> u32 {
    block.read_le(offset, 4) as u32
}

/// Sets a 32-bit register of `block` from the device side, whatever its
/// guest semantics.
pub fn set(block: &mut RegisterMask, offset: usize, value: u32) {
    if let Err(e) = block.set_value(offset, 4, value.into()) {
        unreachable!("AHCI register {offset:#x} is inside its block: {e}");
    }
}

/// Whether an access of `len` bytes at `offset` covers any byte of the
/// 32-bit register at `reg`.
pub fn touches(offset: usize, len: usize, reg: usize) -> bool {
    offset < reg + 4 && offset + len > reg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_regs_cap_advertises_ncq_64bit_32_slots_and_ports() {
        let c = HostCaps { ports: 6 }.cap();
        assert_eq!(c & 0x1f, 5);
        assert_eq!((c >> 8) & 0x1f, 31);
        assert_ne!(c & cap::SNCQ, 0);
        assert_ne!(c & cap::S64A, 0);
        assert_eq!(c & (1 << 27), 0, "no staggered spin-up");
        assert_eq!(c & (1 << 17), 0, "no port multiplier");
        assert_eq!(HostCaps { ports: 6 }.pi(), 0x3f);
    }

    #[test]
    fn test_regs_port_is_clears_by_one_and_ci_sets_by_one() {
        let mut r = port_block();
        set(&mut r, port::IS, pis::DHRS | pis::PCS | pis::TFES);
        r.write(port::IS, &u32::MAX.to_le_bytes());
        assert_eq!(get(&r, port::IS), pis::PCS, "PCS is read-only");
        r.write(port::CI, &1u32.to_le_bytes());
        r.write(port::CI, &2u32.to_le_bytes());
        r.write(port::CI, &0u32.to_le_bytes());
        assert_eq!(get(&r, port::CI), 3);
    }

    #[test]
    fn test_regs_cmd_keeps_read_only_bits() {
        let mut r = port_block();
        r.write(port::CMD, &0u32.to_le_bytes());
        assert_eq!(get(&r, port::CMD), pcmd::SUD | pcmd::POD);
        r.write(port::CMD, &u32::MAX.to_le_bytes());
        assert_eq!(get(&r, port::CMD) & (pcmd::CR | pcmd::FR | pcmd::CCS), 0);
    }

    #[test]
    fn test_regs_clb_and_fb_keep_their_alignment() {
        let mut r = port_block();
        r.write(port::CLB, &0xffff_ffffu32.to_le_bytes());
        r.write(port::FB, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(get(&r, port::CLB), 0xffff_fc00);
        assert_eq!(get(&r, port::FB), 0xffff_ff00);
    }

    #[test]
    fn test_regs_ghc_ae_is_read_only_one() {
        let mut r = host_block(HostCaps { ports: 1 });
        r.write(GHC, &0u32.to_le_bytes());
        assert_eq!(get(&r, GHC), ghc::AE);
    }
}
