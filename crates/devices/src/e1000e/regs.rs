//! The BAR0 register map of the 82574L (Intel 82574 GbE Controller
//! Family datasheet, §10.2), as data: offsets, the bits that drive
//! behaviour, and one table of reset values and writable masks.
//!
//! Every offset of the 128 KiB window is a 32-bit register. The ones in
//! [`SPECS`] keep their reset value and writable mask (the masks are what
//! `ethtool -t`'s register test checks); the statistics block clears on
//! read; the rest is plain storage, as on the chip where software reads
//! back what it wrote. What a write *does* beyond storing bits (reset,
//! EERD, MDIC, ICR/ICS/IMS/IMC, doorbells) is `core.rs`'s business.

/// Size of the register BAR (BAR0).
pub const MMIO_SIZE: usize = 0x2_0000;

/// Device Control.
pub const CTRL: usize = 0x0000;
/// Device Status (read-only).
pub const STATUS: usize = 0x0008;
/// EEPROM/Flash Control.
pub const EECD: usize = 0x0010;
/// EEPROM Read.
pub const EERD: usize = 0x0014;
/// Extended Device Control.
pub const CTRL_EXT: usize = 0x0018;
/// MDI Control (PHY access).
pub const MDIC: usize = 0x0020;
/// Flow Control Address Low.
pub const FCAL: usize = 0x0028;
/// Flow Control Address High.
pub const FCAH: usize = 0x002c;
/// Flow Control Type.
pub const FCT: usize = 0x0030;
/// VLAN Ether Type.
pub const VET: usize = 0x0038;
/// Interrupt Cause Read.
pub const ICR: usize = 0x00c0;
/// Interrupt Throttling Rate.
pub const ITR: usize = 0x00c4;
/// Interrupt Cause Set.
pub const ICS: usize = 0x00c8;
/// Interrupt Mask Set/Read.
pub const IMS: usize = 0x00d0;
/// Interrupt Mask Clear.
pub const IMC: usize = 0x00d8;
/// Extended Interrupt Auto Clear (82574).
pub const EIAC: usize = 0x00dc;
/// Interrupt Acknowledge Auto Mask.
pub const IAM: usize = 0x00e0;
/// Interrupt Vector Allocation (MSI-X routing).
pub const IVAR: usize = 0x00e4;
/// Extended Interrupt Throttle, one per MSI-X vector (82574).
pub const EITR0: usize = 0x00e8;
/// Receive Control.
pub const RCTL: usize = 0x0100;
/// Flow Control Transmit Timer Value.
pub const FCTTV: usize = 0x0170;
/// Transmit Configuration Word.
pub const TXCW: usize = 0x0178;
/// Transmit Control.
pub const TCTL: usize = 0x0400;
/// Transmit IPG.
pub const TIPG: usize = 0x0410;
/// Extended Configuration Control (MDIO software ownership).
pub const EXTCNF_CTRL: usize = 0x0f00;
/// Packet Buffer Allocation.
pub const PBA: usize = 0x1000;
/// Management EEPROM Control (configuration done).
pub const EEMNGCTL: usize = 0x1010;
/// Flow Control Receive Threshold High.
pub const FCRTH: usize = 0x2168;
/// Packet Split Receive Control.
pub const PSRCTL: usize = 0x2170;
/// Receive Descriptor Base Low (queue 0).
pub const RDBAL: usize = 0x2800;
/// Receive Descriptor Base High.
pub const RDBAH: usize = 0x2804;
/// Receive Descriptor Length.
pub const RDLEN: usize = 0x2808;
/// Receive Descriptor Head.
pub const RDH: usize = 0x2810;
/// Receive Descriptor Tail.
pub const RDT: usize = 0x2818;
/// Receive Interrupt Delay Timer.
pub const RDTR: usize = 0x2820;
/// Transmit Descriptor Base Low (queue 0).
pub const TDBAL: usize = 0x3800;
/// Transmit Descriptor Base High.
pub const TDBAH: usize = 0x3804;
/// Transmit Descriptor Length.
pub const TDLEN: usize = 0x3808;
/// Transmit Descriptor Head.
pub const TDH: usize = 0x3810;
/// Transmit Descriptor Tail.
pub const TDT: usize = 0x3818;
/// Transmit Interrupt Delay Value.
pub const TIDV: usize = 0x3820;
/// First statistics register.
pub const STATS_START: usize = 0x4000;
/// One past the last statistics register.
pub const STATS_END: usize = 0x4130;
/// Receive Checksum Control.
pub const RXCSUM: usize = 0x5000;
/// Receive Filter Control.
pub const RFCTL: usize = 0x5008;
/// Multicast Table Array (128 registers).
pub const MTA: usize = 0x5200;
/// Receive Address Low/High pairs (16 of them).
pub const RA: usize = 0x5400;
/// Receive address pairs.
pub const RA_ENTRIES: usize = 16;
/// VLAN Filter Table Array (128 registers).
pub const VFTA: usize = 0x5600;
/// Firmware Semaphore (read-only: no firmware).
pub const FWSM: usize = 0x5b54;

/// CTRL bits.
pub mod ctrl {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// GIO Master Disable.
    pub const GIO_MASTER_DISABLE: u32 = 1 << 2;
    /// Set Link Up.
    pub const SLU: u32 = 1 << 6;
    /// Device Reset (self-clearing).
    pub const RST: u32 = 1 << 26;
    /// VLAN Mode Enable (tag stripping and insertion).
    pub const VME: u32 = 1 << 30;
    /// PHY Reset (self-clearing here).
    pub const PHY_RST: u32 = 1 << 31;
}

/// STATUS bits.
pub mod status {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Link up.
    pub const LU: u32 = 1 << 1;
    /// Speed 1000 Mb/s (bits 7:6 = 10b).
    pub const SPEED_1000: u32 = 1 << 7;
    /// GIO Master Enable: clear once GIO Master Disable took effect.
    pub const GIO_MASTER_ENABLE: u32 = 1 << 19;
}

/// EECD bits.
pub mod eecd {
    /// NVM present.
    pub const PRES: u32 = 1 << 8;
    /// NVM auto-read done.
    pub const AUTO_RD: u32 = 1 << 9;
    /// Size field (bits 14:11): words = 1 << (6 + size).
    pub const SIZE_SHIFT: u32 = 11;
}

/// EERD fields.
pub mod eerd {
    /// Start read.
    pub const START: u32 = 1 << 0;
    /// Read done.
    pub const DONE: u32 = 1 << 1;
    /// Word address (bits 15:2).
    pub const ADDR_SHIFT: u32 = 2;
    /// Data (bits 31:16).
    pub const DATA_SHIFT: u32 = 16;
}

/// CTRL_EXT bits.
pub mod ctrl_ext {
    /// EEPROM reset (self-clearing: the NVM reloads).
    pub const EE_RST: u32 = 1 << 13;
    /// Extended interrupt auto-mask enable (MSI-X).
    pub const EIAME: u32 = 1 << 24;
    /// Interrupt acknowledge auto-mask enable (ICR read).
    pub const IAME: u32 = 1 << 27;
}

/// MDIC fields.
pub mod mdic {
    /// Data (bits 15:0).
    pub const DATA_MASK: u32 = 0xffff;
    /// PHY register (bits 20:16).
    pub const REG_SHIFT: u32 = 16;
    /// PHY address (bits 25:21).
    pub const PHY_SHIFT: u32 = 21;
    /// Opcode (bits 27:26): 01 write, 10 read.
    pub const OP_SHIFT: u32 = 26;
    /// Ready.
    pub const READY: u32 = 1 << 28;
    /// Interrupt on completion.
    pub const INT: u32 = 1 << 29;
    /// Error.
    pub const ERROR: u32 = 1 << 30;
}

/// Interrupt cause bits (ICR, ICS, IMS, IMC; datasheet §10.2.4).
pub mod icr {
    /// Transmit descriptor written back.
    pub const TXDW: u32 = 1 << 0;
    /// Transmit queue empty.
    pub const TXQE: u32 = 1 << 1;
    /// Link status change.
    pub const LSC: u32 = 1 << 2;
    /// Receive sequence error.
    pub const RXSEQ: u32 = 1 << 3;
    /// Receive descriptor minimum threshold.
    pub const RXDMT0: u32 = 1 << 4;
    /// Receiver overrun.
    pub const RXO: u32 = 1 << 6;
    /// Receiver timer (a frame was received).
    pub const RXT0: u32 = 1 << 7;
    /// MDIO access complete.
    pub const MDAC: u32 = 1 << 9;
    /// Receive queue 0 (MSI-X).
    pub const RXQ0: u32 = 1 << 20;
    /// Receive queue 1 (MSI-X).
    pub const RXQ1: u32 = 1 << 21;
    /// Transmit queue 0 (MSI-X).
    pub const TXQ0: u32 = 1 << 22;
    /// Transmit queue 1 (MSI-X).
    pub const TXQ1: u32 = 1 << 23;
    /// Other causes (MSI-X).
    pub const OTHER: u32 = 1 << 24;
    /// An interrupt is asserted (MSI and INTx).
    pub const INT_ASSERTED: u32 = 1 << 31;
    /// Causes that raise OTHER under MSI-X.
    pub const OTHER_CAUSES: u32 = 0x0000_ff7c & !RXT0;
}

/// RCTL bits.
pub mod rctl {
    /// Receiver enable.
    pub const EN: u32 = 1 << 1;
    /// Unicast promiscuous.
    pub const UPE: u32 = 1 << 3;
    /// Multicast promiscuous.
    pub const MPE: u32 = 1 << 4;
    /// Long packets (jumbo frames).
    pub const LPE: u32 = 1 << 5;
    /// Loopback mode (bits 7:6).
    pub const LBM_MASK: u32 = 0b11 << 6;
    /// Descriptor type (bits 11:10): 01 = packet split.
    pub const DTYP_SHIFT: u32 = 10;
    /// Multicast offset (bits 13:12).
    pub const MO_SHIFT: u32 = 12;
    /// Broadcast accept.
    pub const BAM: u32 = 1 << 15;
    /// Buffer size (bits 17:16).
    pub const BSIZE_SHIFT: u32 = 16;
    /// VLAN filter enable.
    pub const VFE: u32 = 1 << 18;
    /// Buffer size extension (×16).
    pub const BSEX: u32 = 1 << 25;
    /// Strip Ethernet CRC.
    pub const SECRC: u32 = 1 << 26;
}

/// RFCTL bits.
pub mod rfctl {
    /// Extended status (extended RX descriptors).
    pub const EXSTEN: u32 = 1 << 15;
}

/// TCTL bits.
pub mod tctl {
    /// Transmit enable.
    pub const EN: u32 = 1 << 1;
}

/// One register's reset value and writable bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Offset.
    pub offset: usize,
    /// Value at reset.
    pub reset: u32,
    /// Bits a guest write changes; the rest keep their value.
    pub writable: u32,
}

const fn spec(offset: usize, reset: u32, writable: u32) -> Spec {
    Spec {
        offset,
        reset,
        writable,
    }
}

/// Registers with a reset value or read-only bits. Everything not listed
/// (outside the statistics block) resets to 0 and is fully writable.
pub const SPECS: &[Spec] = &[
    spec(CTRL, ctrl::FD | ctrl::SLU | (0b10 << 8), 0xffff_ffff),
    spec(STATUS, 0, 0),
    spec(
        EECD,
        eecd::PRES | eecd::AUTO_RD | (2 << eecd::SIZE_SHIFT),
        0,
    ),
    spec(FCAH, 0, 0x0000_ffff),
    spec(FCT, 0x8808, 0x0000_ffff),
    spec(VET, 0x8100, 0x0000_ffff),
    spec(ITR, 0, 0x0000_ffff),
    spec(EIAC, 0, 0x01f0_0000),
    spec(FCTTV, 0, 0x0000_ffff),
    spec(TXCW, 0, 0xc000_ffff),
    spec(TIPG, 0x0060_200a, 0x3fff_ffff),
    spec(PBA, 0x0014_0014, 0xffff_ffff),
    spec(EEMNGCTL, 1 << 18, 0),
    spec(FCRTH, 0, 0x0000_fff8),
    spec(RDBAL, 0, 0xffff_fff0),
    spec(RDLEN, 0, 0x000f_ff80),
    spec(RDH, 0, 0x0000_ffff),
    spec(RDT, 0, 0x0000_ffff),
    spec(RDTR, 0, 0x0000_ffff),
    spec(RDBAL + 0x100, 0, 0xffff_fff0),
    spec(RDLEN + 0x100, 0, 0x000f_ff80),
    spec(TDBAL, 0, 0xffff_fff0),
    spec(TDLEN, 0, 0x000f_ff80),
    spec(TDH, 0, 0x0000_ffff),
    spec(TDT, 0, 0x0000_ffff),
    spec(TIDV, 0, 0x0000_ffff),
    spec(TDBAL + 0x100, 0, 0xffff_fff0),
    spec(TDLEN + 0x100, 0, 0x000f_ff80),
    spec(RXCSUM, 0x300, 0xffff_ffff),
    spec(FWSM, 0, 0),
];

/// The EITR registers (one per MSI-X vector): 16-bit intervals.
fn eitr_spec(offset: usize) -> Option<Spec> {
    let n = offset.checked_sub(EITR0)? / 4;
    (n < super::MSIX_VECTORS as usize && offset.is_multiple_of(4))
        .then_some(spec(offset, 0, 0xffff))
}

/// Receive Address High: address bits 47:32, select bits 17:16, AV 31.
fn rah_spec(offset: usize) -> Option<Spec> {
    let rel = offset.checked_sub(RA)?;
    (rel < RA_ENTRIES * 8 && rel % 8 == 4).then_some(spec(offset, 0, 0x8003_ffff))
}

/// The spec of the register at `offset` (4-aligned).
pub fn spec_of(offset: usize) -> Spec {
    SPECS
        .iter()
        .copied()
        .find(|s| s.offset == offset)
        .or_else(|| eitr_spec(offset))
        .or_else(|| rah_spec(offset))
        .unwrap_or(spec(offset, 0, 0xffff_ffff))
}

/// Whether `offset` is a statistics register (clears on read).
pub fn is_stat(offset: usize) -> bool {
    (STATS_START..STATS_END).contains(&offset)
}

/// The register file: one `u32` per 4-byte offset, with the masks of
/// [`spec_of`] applied on guest writes.
#[derive(Clone, Debug)]
pub struct Regs {
    words: Vec<u32>,
}

impl Default for Regs {
    fn default() -> Self {
        Self::new()
    }
}

impl Regs {
    /// Every register at its reset value.
    pub fn new() -> Self {
        let mut words = vec![0u32; MMIO_SIZE / 4];
        for s in SPECS {
            words[s.offset / 4] = s.reset;
        }
        Self { words }
    }

    /// The value at `offset` (4-aligned, inside the BAR; else 0).
    pub fn get(&self, offset: usize) -> u32 {
        self.words.get(offset / 4).copied().unwrap_or(0)
    }

    /// Sets the value at `offset` from the device side (no mask).
    pub fn set(&mut self, offset: usize, value: u32) {
        if let Some(w) = self.words.get_mut(offset / 4) {
            *w = value;
        }
    }

    /// Sets or clears `bits` at `offset` from the device side.
    pub fn update(&mut self, offset: usize, bits: u32, on: bool) {
        let v = self.get(offset);
        self.set(offset, if on { v | bits } else { v & !bits });
    }

    /// A guest write of `value` through the register's writable mask.
    pub fn write_masked(&mut self, offset: usize, value: u32) {
        let s = spec_of(offset);
        let old = self.get(offset);
        self.set(offset, (old & !s.writable) | (value & s.writable));
    }

    /// A 64-bit address from a low/high register pair.
    pub fn addr64(&self, low: usize) -> u64 {
        u64::from(self.get(low)) | u64::from(self.get(low + 4)) << 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_spec_of_rah_has_av_and_select_bits_writable() {
        assert_eq!(spec_of(RA + 4).writable, 0x8003_ffff);
        assert_eq!(spec_of(RA + 15 * 8 + 4).writable, 0x8003_ffff);
        assert_eq!(spec_of(RA).writable, 0xffff_ffff);
    }

    #[test]
    fn test_write_masked_keeps_read_only_bits() {
        let mut r = Regs::new();
        r.write_masked(STATUS, 0xffff_ffff);
        r.write_masked(RDLEN, 0xffff_ffff);
        assert_eq!(r.get(STATUS), 0);
        assert_eq!(r.get(RDLEN), 0x000f_ff80);
    }

    #[test]
    fn test_stats_block_is_stat_and_mta_is_not() {
        assert!(is_stat(0x4074));
        assert!(!is_stat(MTA));
    }
}
