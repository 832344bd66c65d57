//! Listing the leaves of a second-level page table (VT-d 4.1 §3.6, entry
//! formats §9.8): every present 4 KiB page, 2 MiB or 1 GiB superpage that
//! maps part of an input-address range, with the rights of its walk.
//!
//! What a VMM needs when a real IOMMU must carry what the guest programmed
//! into the emulated one (caching mode, §6.1: software invalidates every
//! change, so the VMM can mirror the tables on each invalidation).
//!
//! The guest writes the tables, so the listing is bounded: at most 4 levels
//! deep whatever the entries say (a table that points at itself is read
//! again, never followed further), and at most `limit` leaves, after which
//! it stops and says so. Entries a request would fault on (reserved bits,
//! unreadable tables, Read and Write clear) are left out, as a request to
//! them would fail, and so are leaves whose levels together grant neither
//! Read nor Write.

use std::ops::Range;

use dma::Dma;

use crate::caps::Capabilities;
use crate::walk::{entry_is_reserved, Levels, ADDR_FIELD, PS, R, W};

/// One leaf: `len` bytes of input addresses from `iova` (aligned to
/// `len`) map to guest-physical `gpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First input address.
    pub iova: u64,
    /// Guest-physical address it maps to.
    pub gpa: u64,
    /// Page size: 4 KiB, 2 MiB or 1 GiB.
    pub len: u64,
    /// Read set at every level.
    pub read: bool,
    /// Write set at every level.
    pub write: bool,
}

/// The listing stopped after `limit` leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the page table maps more than {limit} pages in the range")]
pub struct TooManyLeaves {
    /// The bound that was reached.
    pub limit: usize,
}

/// Calls `visit` for each leaf of the table at `table`, `levels` deep,
/// that maps some of `range`, in input-address order; stops after
/// `limit` leaves with [`TooManyLeaves`].
pub fn leaves(
    ram: &dyn Dma,
    table: u64,
    levels: Levels,
    range: Range<u64>,
    caps: &Capabilities,
    limit: usize,
    visit: &mut dyn FnMut(Leaf),
) -> Result<(), TooManyLeaves> {
    let width = levels
        .width()
        .min(u32::from(caps.max_guest_address_width()));
    let end = range.end.min(1u64 << width);
    if range.start >= end {
        return Ok(());
    }
    let mut lister = Lister {
        ram,
        caps,
        addr_mask: ADDR_FIELD & !caps.above_haw(),
        range: range.start..end,
        left: limit,
        limit,
        visit,
    };
    lister.table(table, levels.count(), 0, R | W)
}

struct Lister<'a> {
    ram: &'a dyn Dma,
    caps: &'a Capabilities,
    addr_mask: u64,
    range: Range<u64>,
    left: usize,
    limit: usize,
    visit: &'a mut dyn FnMut(Leaf),
}

impl Lister<'_> {
    /// Lists the table at `table`, at `level`, which maps input addresses
    /// from `base`, with `rights` granted by the levels above.
    fn table(
        &mut self,
        table: u64,
        level: u32,
        base: u64,
        rights: u64,
    ) -> Result<(), TooManyLeaves> {
        let shift = 12 + 9 * (level - 1);
        let span = 1u64 << shift;
        let first = self.range.start.saturating_sub(base) >> shift;
        let last = ((self.range.end - 1).saturating_sub(base) >> shift).min(511);
        let mut bytes = [0u8; 8 * 512];
        let table = table & self.addr_mask;
        let want = &mut bytes[first as usize * 8..(last as usize + 1) * 8];
        if self.ram.read(table + first * 8, want).is_err() {
            return Ok(());
        }
        for index in first..=last {
            let at = (index - first) as usize * 8;
            let mut e = [0u8; 8];
            e.copy_from_slice(&want[at..at + 8]);
            let entry = u64::from_le_bytes(e);
            if entry & (R | W) == 0 || entry_is_reserved(entry, level, self.caps) {
                continue;
            }
            let iova = base + index * span;
            let rights = rights & entry;
            if rights & (R | W) == 0 {
                // Present at each level, but the levels grant nothing together.
                continue;
            }
            if level == 1 || entry & PS != 0 {
                if self.left == 0 {
                    return Err(TooManyLeaves { limit: self.limit });
                }
                self.left -= 1;
                (self.visit)(Leaf {
                    iova,
                    gpa: entry & self.addr_mask & !(span - 1),
                    len: span,
                    read: rights & R != 0,
                    write: rights & W != 0,
                });
            } else {
                self.table(entry, level - 1, iova, rights)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Machine;

    const MIB2: u64 = 2 << 20;

    fn list(
        m: &Machine,
        top: u64,
        levels: Levels,
        range: Range<u64>,
        limit: usize,
    ) -> (Vec<Leaf>, Result<(), TooManyLeaves>) {
        let mut out = Vec::new();
        let r = leaves(
            m.ram().as_ref(),
            top,
            levels,
            range,
            &Capabilities::DEFAULT,
            limit,
            &mut |l| out.push(l),
        );
        (out, r)
    }

    #[test]
    fn test_lists_4k_pages_and_superpages_in_order_with_their_rights() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Four, 0xffff_f000, 0x20_5000, 1, R);
        m.map(top, Levels::Four, 0x1000, 0x30_0000, 1, R | W);
        m.map(top, Levels::Four, 0x4000_0000, MIB2, 2, W);

        let (got, r) = list(&m, top, Levels::Four, 0..1 << 48, 100);

        assert_eq!(r, Ok(()));
        assert_eq!(
            got,
            [
                Leaf {
                    iova: 0x1000,
                    gpa: 0x30_0000,
                    len: 0x1000,
                    read: true,
                    write: true
                },
                Leaf {
                    iova: 0x4000_0000,
                    gpa: MIB2,
                    len: MIB2,
                    read: false,
                    write: true
                },
                Leaf {
                    iova: 0xffff_f000,
                    gpa: 0x20_5000,
                    len: 0x1000,
                    read: true,
                    write: false
                },
            ]
        );
    }

    #[test]
    fn test_only_leaves_touching_the_range_and_a_superpage_whole() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x1000, 0x30_0000, 1, R | W);
        m.map(top, Levels::Three, 0x2000, 0x30_1000, 1, R | W);
        m.map(top, Levels::Three, 0x3000, 0x30_2000, 1, R | W);
        m.map(top, Levels::Three, 0x40_0000, MIB2, 2, R | W);

        let (got, _) = list(&m, top, Levels::Three, 0x2000..0x3000, 100);
        assert_eq!(got.iter().map(|l| l.iova).collect::<Vec<_>>(), [0x2000]);

        let (got, _) = list(&m, top, Levels::Three, 0x40_1000..0x40_2000, 100);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].iova, got[0].len), (0x40_0000, MIB2));
    }

    #[test]
    fn test_not_present_reserved_and_unreadable_entries_are_left_out() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x1000, 0x30_0000, 1, R | W);
        m.map(top, Levels::Three, 0x2000, 0x30_1000, 1, R | W | 1 << 11);
        m.map(top, Levels::Three, 0x3000, 0x30_2000, 1, 0);
        // A level-2 entry pointing far outside guest RAM.
        m.write_u64(
            m.entry_at(top, Levels::Three, 0x8000_0000, 3),
            0x7_0000_0000 | 3,
        );

        let (got, r) = list(&m, top, Levels::Three, 0..1 << 39, 100);

        assert_eq!(r, Ok(()));
        assert_eq!(got.iter().map(|l| l.iova).collect::<Vec<_>>(), [0x1000]);
    }

    #[test]
    fn test_a_table_pointing_at_itself_ends_at_the_leaf_limit() {
        let m = Machine::new();
        let top = m.alloc_table();
        for i in 0..512 {
            m.write_u64(top + i * 8, top | 3);
        }

        let (got, r) = list(&m, top, Levels::Four, 0..1 << 48, 1000);

        assert_eq!(r, Err(TooManyLeaves { limit: 1000 }));
        assert_eq!(got.len(), 1000);
    }

    #[test]
    fn test_a_leaf_whose_levels_grant_nothing_together_is_left_out() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x1000, 0x30_0000, 1, W);
        // Its level-3 and level-2 entries grant Read only.
        for level in [3, 2] {
            let e = m.entry_at(top, Levels::Three, 0x1000, level);
            m.write_u64(e, m.read_u64(e) & !W);
        }
        let (got, r) = list(&m, top, Levels::Three, 0..1 << 39, 10);
        assert_eq!((got.len(), r), (0, Ok(())));
    }

    #[test]
    fn test_range_beyond_the_width_lists_nothing() {
        let m = Machine::new();
        let top = m.alloc_table();
        m.map(top, Levels::Three, 0x1000, 0x30_0000, 1, R | W);
        let (got, r) = list(&m, top, Levels::Three, 1 << 39..u64::MAX, 10);
        assert_eq!((got.len(), r), (0, Ok(())));
        let (got, _) = list(&m, top, Levels::Three, 0..0, 10);
        assert!(got.is_empty());
    }
}
