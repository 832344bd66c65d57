//! The second-level page walk (VT-d 4.1 §3.6, entry formats §9.8): from
//! the table a context entry points at, 3 or 4 levels of 512 eight-byte
//! entries down to a 4 KiB page, or a 2 MiB (level 2) or 1 GiB (level 3)
//! superpage where CAP.SLLPS allows.
//!
//! The walk is a loop over a fixed number of levels, so a table that points
//! at itself (or any cycle) ends after at most 4 reads. Access rights are
//! the intersection of the Read and Write bits of every level (§3.6.1); an
//! entry with both clear is not present.

use dma::{Direction, Dma};

use crate::caps::Capabilities;
use crate::fault::FaultReason;

/// Read bit of a second-level entry (§9.8).
pub(crate) const R: u64 = 1 << 0;
/// Write bit of a second-level entry (§9.8).
pub(crate) const W: u64 = 1 << 1;
/// Page Size bit: the entry maps a superpage (§9.8, levels 2 and 3).
pub(crate) const PS: u64 = 1 << 7;
/// Bit 11 (SNP in a leaf) is reserved without ECAP.SC, and so in every
/// entry here (§9.8).
const RESERVED_LOW: u64 = 1 << 11;
/// TM, bit 62, is reserved without ECAP.DT (§9.8).
const TM: u64 = 1 << 62;
/// Address bits 51:12 (§9.8); bits 63 and 61:52 are ignored.
pub(crate) const ADDR_FIELD: u64 = 0x000f_ffff_ffff_f000;

/// Depth of a second-level page table, from the context entry's AW field
/// (§9.3) as CAP.SAGAW allows it (§11.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// AW = 1: 39-bit input addresses, 3 levels.
    Three,
    /// AW = 2: 48-bit input addresses, 4 levels.
    Four,
}

impl Levels {
    /// The depth an AW value selects, if `caps` supports it (§9.3: 1 is
    /// 39-bit, 2 is 48-bit; other values are reserved here).
    pub fn from_aw(aw: u64, caps: &Capabilities) -> Option<Self> {
        match aw {
            1 if caps.width_39 => Some(Self::Three),
            2 if caps.width_48 => Some(Self::Four),
            _ => None,
        }
    }

    /// Number of tables walked.
    pub fn count(self) -> u32 {
        match self {
            Self::Three => 3,
            Self::Four => 4,
        }
    }

    /// Input address width in bits (the domain's AGAW, §3.6).
    pub fn width(self) -> u32 {
        match self {
            Self::Three => 39,
            Self::Four => 48,
        }
    }
}

/// Where an input address goes (§3.6): `len` bytes from `gpa` are
/// contiguous, to the end of the (super)page holding the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Guest-physical address the input address maps to.
    pub gpa: u64,
    /// Bytes from `gpa` to the end of its page.
    pub len: u64,
    /// Reads are allowed (Read set at every level).
    pub read: bool,
    /// Writes are allowed (Write set at every level).
    pub write: bool,
}

/// Reserved bits of a present entry at `level` (§9.8): bit 11, TM, the
/// address bits at and above the host address width, PS at level 4 or where
/// the superpage size is unsupported, and the low address bits of a
/// superpage.
pub(crate) fn entry_is_reserved(entry: u64, level: u32, caps: &Capabilities) -> bool {
    let mut mask = RESERVED_LOW | TM | (caps.above_haw() & ADDR_FIELD);
    let superpage = entry & PS != 0;
    match (level, superpage) {
        (2, true) if caps.page_2m => mask |= 0x1f_f000,
        (3, true) if caps.page_1g => mask |= 0x3fff_f000,
        (2..=4, true) => mask |= PS,
        _ => {}
    }
    entry & mask != 0
}

/// Translates `iova` for an access in direction `dir` through the
/// second-level table at `table`, `levels` deep (§3.6), reading the
/// entries from guest RAM through `ram`.
///
/// Faults: 0x4 if `iova` is at or above the domain's width (or the
/// hardware's MGAW); 0x7 if an entry cannot be read; for an entry with
/// Read and Write clear (not present), 0x6 for a read and 0x5 for a write;
/// 0xC for reserved bits in a present entry; then 0x5 or 0x6 if that
/// entry denies the access.
pub fn walk(
    ram: &dyn Dma,
    table: u64,
    levels: Levels,
    iova: u64,
    dir: Direction,
    caps: &Capabilities,
) -> Result<Mapping, FaultReason> {
    let width = levels
        .width()
        .min(u32::from(caps.max_guest_address_width()));
    if iova >> width != 0 {
        return Err(FaultReason::AddressBeyondWidth);
    }
    let (needed, denied) = match dir {
        Direction::ToDevice => (R, FaultReason::ReadNotPermitted),
        Direction::FromDevice => (W, FaultReason::WriteNotPermitted),
    };
    let addr_mask = ADDR_FIELD & !caps.above_haw();
    let mut table = table & addr_mask;
    let mut rights = R | W;
    for level in (1..=levels.count()).rev() {
        let shift = 12 + 9 * (level - 1);
        let index = (iova >> shift) & 0x1ff;
        let mut bytes = [0u8; 8];
        ram.read(table | (index * 8), &mut bytes)
            .map_err(|_| FaultReason::PageTableUnreadable)?;
        let entry = u64::from_le_bytes(bytes);
        if entry & (R | W) == 0 {
            return Err(denied);
        }
        if entry_is_reserved(entry, level, caps) {
            return Err(FaultReason::PteReserved);
        }
        if entry & needed == 0 {
            return Err(denied);
        }
        rights &= entry;
        if level == 1 || entry & PS != 0 {
            let page = 1u64 << shift;
            let offset = iova & (page - 1);
            return Ok(Mapping {
                gpa: (entry & addr_mask & !(page - 1)) | offset,
                len: page - offset,
                read: rights & R != 0,
                write: rights & W != 0,
            });
        }
        table = entry & addr_mask;
    }
    // Level 1 always returns above; a walk of zero levels maps nothing.
    Err(FaultReason::PageTableUnreadable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Machine;

    const GIB: u64 = 1 << 30;
    const MIB2: u64 = 2 << 20;

    fn caps() -> Capabilities {
        Capabilities::DEFAULT
    }

    fn read(m: &Machine, top: u64, levels: Levels, iova: u64) -> Result<Mapping, FaultReason> {
        walk(
            m.ram().as_ref(),
            top,
            levels,
            iova,
            Direction::ToDevice,
            &caps(),
        )
    }

    fn write(m: &Machine, top: u64, levels: Levels, iova: u64) -> Result<Mapping, FaultReason> {
        walk(
            m.ram().as_ref(),
            top,
            levels,
            iova,
            Direction::FromDevice,
            &caps(),
        )
    }

    #[test]
    fn test_walk_three_levels_4k_page_maps_offset() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x12_3456_7000, 0x20_5000, 1, R | W);

        let got = read(&m, top, Levels::Three, 0x12_3456_7abc);

        assert_eq!(
            got,
            Ok(Mapping {
                gpa: 0x20_5abc,
                len: 0x544,
                read: true,
                write: true
            })
        );
    }

    #[test]
    fn test_walk_four_levels_4k_page_maps_offset() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Four, 0xab_cdef_1000, 0x30_0000, 1, R);

        let got = read(&m, top, Levels::Four, 0xab_cdef_1008);

        assert_eq!(
            got,
            Ok(Mapping {
                gpa: 0x30_0008,
                len: 0xff8,
                read: true,
                write: false
            })
        );
    }

    #[test]
    fn test_walk_2m_superpage_maps_offset_within_it() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Four, 0x8000_0000, MIB2, 2, R | W);

        let got = write(&m, top, Levels::Four, 0x8012_3456);

        assert_eq!(
            got.map(|p| (p.gpa, p.len)),
            Ok((MIB2 + 0x12_3456, 0xd_cbaa))
        );
    }

    #[test]
    fn test_walk_1g_superpage_maps_offset_within_it() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 5 * GIB, 0, 3, R | W);

        let got = read(&m, top, Levels::Three, 5 * GIB + 0x1234);

        assert_eq!(got.map(|p| (p.gpa, p.len)), Ok((0x1234, GIB - 0x1234)));
    }

    #[test]
    fn test_walk_superpage_without_sllps_faults_0xc() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Four, 0x8000_0000, MIB2, 2, R | W);
        m.map(top, Levels::Four, 5 * GIB, 0, 3, R | W);
        let no_superpages = Capabilities {
            page_2m: false,
            page_1g: false,
            ..caps()
        };

        let got = [0x8000_0000, 5 * GIB].map(|iova| {
            walk(
                m.ram().as_ref(),
                top,
                Levels::Four,
                iova,
                Direction::ToDevice,
                &no_superpages,
            )
        });

        assert_eq!(got, [Err(FaultReason::PteReserved); 2]);
    }

    #[test]
    fn test_walk_ps_at_level_4_faults_0xc() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.write_u64(top, R | W | PS);

        assert_eq!(
            read(&m, top, Levels::Four, 0x1000),
            Err(FaultReason::PteReserved)
        );
    }

    #[test]
    fn test_walk_superpage_with_low_address_bits_faults_0xc() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x8000_0000, MIB2 | 0x1000, 2, R | W);

        assert_eq!(
            read(&m, top, Levels::Three, 0x8000_0000),
            Err(FaultReason::PteReserved)
        );
    }

    #[test]
    fn test_walk_reserved_bits_at_each_level_fault_0xc() {
        let iova = 0x1_0000_0000;
        let got: Vec<_> = (1..=4)
            .flat_map(|level| [RESERVED_LOW, TM, 1 << 50].map(|bit| (level, bit)))
            .map(|(level, bit)| {
                let m = Machine::new();
                let top = m.alloc_table();
                m.map(top, Levels::Four, iova, 0x20_0000, 1, R | W);
                let entry = m.entry_at(top, Levels::Four, iova, level);
                m.write_u64(entry, m.read_u64(entry) | bit);
                read(&m, top, Levels::Four, iova)
            })
            .collect();

        assert_eq!(got, vec![Err(FaultReason::PteReserved); 12]);
    }

    #[test]
    fn test_walk_not_present_at_each_level_faults_by_direction() {
        let iova = 0x1_0000_0000;
        let got: Vec<_> = (1..=4)
            .map(|level| {
                let m = Machine::new();
                let top = m.alloc_table();
                m.map(top, Levels::Four, iova, 0x20_0000, 1, R | W);
                let entry = m.entry_at(top, Levels::Four, iova, level);
                m.write_u64(entry, m.read_u64(entry) & !(R | W));
                (
                    read(&m, top, Levels::Four, iova).map_err(FaultReason::code),
                    write(&m, top, Levels::Four, iova).map_err(FaultReason::code),
                )
            })
            .collect();

        assert_eq!(got, vec![(Err(0x6), Err(0x5)); 4]);
    }

    #[test]
    fn test_walk_read_only_page_refuses_write_0x5() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x4000, 0x20_0000, 1, R);

        assert_eq!(
            write(&m, top, Levels::Three, 0x4000),
            Err(FaultReason::WriteNotPermitted)
        );
        assert!(read(&m, top, Levels::Three, 0x4000).is_ok());
    }

    #[test]
    fn test_walk_write_only_page_refuses_read_0x6() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x4000, 0x20_0000, 1, W);

        assert_eq!(
            read(&m, top, Levels::Three, 0x4000),
            Err(FaultReason::ReadNotPermitted)
        );
        assert!(write(&m, top, Levels::Three, 0x4000).is_ok());
    }

    #[test]
    fn test_walk_read_only_upper_level_refuses_write_through_rw_leaf() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Four, 0x4000, 0x20_0000, 1, R | W);
        let entry = m.entry_at(top, Levels::Four, 0x4000, 3);
        m.write_u64(entry, m.read_u64(entry) & !W);

        assert_eq!(
            write(&m, top, Levels::Four, 0x4000),
            Err(FaultReason::WriteNotPermitted)
        );
        assert_eq!(
            read(&m, top, Levels::Four, 0x4000).map(|p| p.write),
            Ok(false)
        );
    }

    #[test]
    fn test_walk_iova_beyond_width_faults_0x4() {
        let m = Machine::new();
        let top = m.alloc_table();
        let only_39 = Capabilities {
            width_48: false,
            ..caps()
        };

        let got = [
            read(&m, top, Levels::Three, 1 << 39),
            read(&m, top, Levels::Four, 1 << 48),
            read(&m, top, Levels::Four, u64::MAX),
            walk(
                m.ram().as_ref(),
                top,
                Levels::Four,
                1 << 40,
                Direction::ToDevice,
                &only_39,
            ),
        ];

        assert_eq!(got, [Err(FaultReason::AddressBeyondWidth); 4]);
    }

    #[test]
    fn test_walk_table_outside_ram_faults_0x7() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.write_u64(top, (1 << 40) | R | W);

        assert_eq!(
            read(&m, top, Levels::Four, 0),
            Err(FaultReason::PageTableUnreadable)
        );
        assert_eq!(
            read(&m, 1 << 41, Levels::Three, 0),
            Err(FaultReason::PageTableUnreadable)
        );
    }

    #[test]
    fn test_walk_table_pointing_at_itself_stops_after_levels() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.write_u64(top, top | R | W);

        let got = read(&m, top, Levels::Four, 0x10);

        assert_eq!(got.map(|p| p.gpa), Ok(top | 0x10));
    }
}
