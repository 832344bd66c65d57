//! The legacy-mode translation structures the IOMMU reads from guest RAM
//! (VT-d 4.1 §3.4.2): the root table (§9.1), indexed by bus number, and
//! the context tables (§9.3), indexed by device and function number.
//!
//! Entries are read through a plain [`Dma`] onto guest RAM: the IOMMU's own
//! table reads are not translated. Every entry is checked as the spec says
//! hardware checks it: present bit, reserved bits (which depend on the host
//! address width), and the supported translation types and widths.

use dma::Dma;

use crate::caps::Capabilities;
use crate::fault::FaultReason;
use crate::walk::Levels;

/// Size of a root or context entry (§9.1, §9.3): 128 bits.
pub const ENTRY_SIZE: u64 = 16;

/// Root entry bits 11:1 of the low quadword are reserved (§9.1).
const ROOT_LO_RESERVED: u64 = 0xffe;
/// Context entry bits 11:4 of the low quadword are reserved (§9.3).
const CONTEXT_LO_RESERVED: u64 = 0xff0;
/// Context entry high quadword: bit 7 and bits 63:24 are reserved (§9.3;
/// bits 6:3 are ignored; a 16-bit domain ID, CAP.ND = 6, uses 23:8).
const CONTEXT_HI_RESERVED: u64 = 0xffff_ffff_ff00_0080;
/// Bits 63:12 of a table pointer.
const PAGE_MASK: u64 = !0xfff;

/// A present root entry (§9.1): where the bus's context table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootEntry {
    /// Guest-physical address of the context table (CTP, bits 63:12).
    pub context_table: u64,
}

/// What a context entry asks of the requests of its function (§9.3, TT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// TT = 00b: untranslated requests go through the second-level page
    /// table at `table`, `levels` deep (§3.6).
    Translated {
        /// Guest-physical address of the top-level table (SLPTPTR).
        table: u64,
        /// Levels of the walk, from AW.
        levels: Levels,
    },
    /// TT = 10b: untranslated requests pass through, address unchanged
    /// (only with ECAP.PT, §9.3).
    PassThrough,
}

/// A present, valid context entry (§9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextEntry {
    /// FPD: faults on requests through this entry are not recorded (§9.3, §7.1).
    pub fault_processing_disabled: bool,
    /// DID: the domain the function belongs to (tags cached translations).
    pub domain: u16,
    /// How requests are translated.
    pub translation: Translation,
}

fn read_entry(ram: &dyn Dma, addr: u64) -> Option<(u64, u64)> {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    ram.read(addr, &mut lo).ok()?;
    ram.read(addr.checked_add(8)?, &mut hi).ok()?;
    Some((u64::from_le_bytes(lo), u64::from_le_bytes(hi)))
}

/// Reads and checks the root entry of `bus` in the root table at
/// `root_table` (§9.1; bits 11:0 of `root_table` are ignored, as RTADDR's).
///
/// Faults: unreadable 0x8, not present 0x1, reserved bits 0xA (bits 11:1,
/// the bits at and above the host address width, and the whole upper
/// quadword, which legacy mode reserves).
pub fn read_root_entry(
    ram: &dyn Dma,
    root_table: u64,
    bus: u8,
    caps: &Capabilities,
) -> Result<RootEntry, FaultReason> {
    let addr = (root_table & PAGE_MASK) | (u64::from(bus) * ENTRY_SIZE);
    let (lo, hi) = read_entry(ram, addr).ok_or(FaultReason::RootTableUnreadable)?;
    if lo & 1 == 0 {
        return Err(FaultReason::RootNotPresent);
    }
    if lo & (ROOT_LO_RESERVED | caps.above_haw()) != 0 || hi != 0 {
        return Err(FaultReason::RootReserved);
    }
    Ok(RootEntry {
        context_table: lo & PAGE_MASK,
    })
}

/// Reads and checks the context entry of `devfn` in the context table at
/// `context_table` (§9.3).
///
/// Faults: unreadable 0x9, not present 0x2, reserved bits 0xB, and 0x3 for
/// a translation type the hardware does not support (01b needs a
/// device-TLB, which this model lacks; 10b needs ECAP.PT; 11b is reserved)
/// or, for TT = 00b, an AW that CAP.SAGAW does not list.
pub fn read_context_entry(
    ram: &dyn Dma,
    context_table: u64,
    devfn: u8,
    caps: &Capabilities,
) -> Result<ContextEntry, FaultReason> {
    let addr = (context_table & PAGE_MASK) | (u64::from(devfn) * ENTRY_SIZE);
    let (lo, hi) = read_entry(ram, addr).ok_or(FaultReason::ContextTableUnreadable)?;
    if lo & 1 == 0 {
        return Err(FaultReason::ContextNotPresent);
    }
    if lo & (CONTEXT_LO_RESERVED | caps.above_haw()) != 0 || hi & CONTEXT_HI_RESERVED != 0 {
        return Err(FaultReason::ContextReserved);
    }
    let translation = match (lo >> 2) & 3 {
        0b00 => Translation::Translated {
            table: lo & PAGE_MASK,
            levels: Levels::from_aw(hi & 7, caps).ok_or(FaultReason::InvalidContext)?,
        },
        0b10 if caps.pass_through => Translation::PassThrough,
        _ => return Err(FaultReason::InvalidContext),
    };
    Ok(ContextEntry {
        fault_processing_disabled: lo & 2 != 0,
        domain: (hi >> 8) as u16,
        translation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Machine, ROOT};

    const CT: u64 = 0x2_0000;
    const PT: u64 = 0x3_0000;

    fn root(m: &Machine, bus: u8) -> Result<RootEntry, FaultReason> {
        read_root_entry(m.ram().as_ref(), ROOT, bus, &Capabilities::DEFAULT)
    }

    fn context(m: &Machine, devfn: u8, caps: &Capabilities) -> Result<ContextEntry, FaultReason> {
        read_context_entry(m.ram().as_ref(), CT, devfn, caps)
    }

    #[test]
    fn test_root_entry_present_gives_context_table() {
        let m = Machine::new();
        m.set_root(3, CT | 1);

        assert_eq!(root(&m, 3), Ok(RootEntry { context_table: CT }));
    }

    #[test]
    fn test_root_entry_not_present_faults_0x1() {
        let m = Machine::new();
        m.set_root(3, CT);

        assert_eq!(root(&m, 3).map_err(FaultReason::code), Err(0x1));
    }

    #[test]
    fn test_root_entry_reserved_bits_fault_0xa() {
        let m = Machine::new();
        for (bus, lo, hi) in [
            (1, CT | 1 | 0x2, 0),
            (2, CT | 1 | 0x800, 0),
            (3, CT | 1 | 1 << 48, 0),
            (4, CT | 1 | 1 << 63, 0),
            (5, CT | 1, 1),
        ] {
            m.set_root_entry(bus, lo, hi);
        }

        let got: Vec<_> = (1..=5).map(|bus| root(&m, bus)).collect();

        assert_eq!(got, vec![Err(FaultReason::RootReserved); 5]);
    }

    #[test]
    fn test_root_table_outside_ram_faults_0x8() {
        let m = Machine::new();

        let got = read_root_entry(m.ram().as_ref(), 1 << 40, 0, &Capabilities::DEFAULT);

        assert_eq!(got.map_err(FaultReason::code), Err(0x8));
    }

    #[test]
    fn test_root_table_at_top_of_address_space_faults_0x8() {
        let m = Machine::new();

        let got = read_root_entry(m.ram().as_ref(), u64::MAX, 0xff, &Capabilities::DEFAULT);

        assert_eq!(got, Err(FaultReason::RootTableUnreadable));
    }

    #[test]
    fn test_context_entry_translated_decodes_fields() {
        let m = Machine::new();
        m.set_context(CT, 0x21, PT | 1, 2 | 0x1234 << 8);

        let got = context(&m, 0x21, &Capabilities::DEFAULT);

        assert_eq!(
            got,
            Ok(ContextEntry {
                fault_processing_disabled: false,
                domain: 0x1234,
                translation: Translation::Translated {
                    table: PT,
                    levels: Levels::Four
                },
            })
        );
    }

    #[test]
    fn test_context_entry_pass_through_with_fpd() {
        let m = Machine::new();
        m.set_context(CT, 8, 0b1011, 2 | 7 << 8);

        let got = context(&m, 8, &Capabilities::DEFAULT);

        assert_eq!(
            got,
            Ok(ContextEntry {
                fault_processing_disabled: true,
                domain: 7,
                translation: Translation::PassThrough,
            })
        );
    }

    #[test]
    fn test_context_entry_not_present_faults_0x2() {
        let m = Machine::new();
        m.set_context(CT, 8, PT, 2);

        assert_eq!(
            context(&m, 8, &Capabilities::DEFAULT).map_err(FaultReason::code),
            Err(0x2)
        );
    }

    #[test]
    fn test_context_entry_reserved_bits_fault_0xb() {
        let m = Machine::new();
        let cases = [
            (PT | 1 | 0x10, 2),
            (PT | 1 | 0x800, 2),
            (PT | 1 | 1 << 50, 2),
            (PT | 1, 2 | 0x80),
            (PT | 1, 2 | 1 << 24),
            (PT | 1, 2 | 1 << 63),
        ];
        for (devfn, &(lo, hi)) in cases.iter().enumerate() {
            m.set_context(CT, devfn as u8, lo, hi);
        }

        let got: Vec<_> = (0..cases.len() as u8)
            .map(|devfn| context(&m, devfn, &Capabilities::DEFAULT))
            .collect();

        assert_eq!(got, vec![Err(FaultReason::ContextReserved); cases.len()]);
    }

    #[test]
    fn test_context_entry_bad_tt_faults_0x3() {
        let m = Machine::new();
        m.set_context(CT, 1, PT | 1 | 0b01 << 2, 2);
        m.set_context(CT, 2, PT | 1 | 0b11 << 2, 2);
        m.set_context(CT, 3, PT | 1 | 0b10 << 2, 2);
        let no_pt = Capabilities {
            pass_through: false,
            ..Capabilities::DEFAULT
        };

        let got = [
            context(&m, 1, &Capabilities::DEFAULT),
            context(&m, 2, &Capabilities::DEFAULT),
            context(&m, 3, &no_pt),
        ];

        assert_eq!(got, [Err(FaultReason::InvalidContext); 3]);
    }

    #[test]
    fn test_context_entry_unsupported_aw_faults_0x3() {
        let m = Machine::new();
        for aw in 0..8u8 {
            m.set_context(CT, aw, PT | 1, u64::from(aw));
        }
        let only_39 = Capabilities {
            width_48: false,
            ..Capabilities::DEFAULT
        };

        let got: Vec<_> = (0..8u8)
            .map(|aw| context(&m, aw, &only_39).is_ok())
            .collect();

        assert_eq!(got, [false, true, false, false, false, false, false, false]);
    }

    #[test]
    fn test_context_table_outside_ram_faults_0x9() {
        let m = Machine::new();

        let got = read_context_entry(m.ram().as_ref(), 1 << 40, 0, &Capabilities::DEFAULT);

        assert_eq!(got.map_err(FaultReason::code), Err(0x9));
    }
}
