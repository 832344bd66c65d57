//! Physical Region Page walking (NVMe 1.4 §4.3): turning PRP Entry 1 and 2
//! of a command into the list of guest memory segments its data occupies.
//!
//! Rules checked (page size `P`, a power of two):
//! - PRP1 may start anywhere in a page, but dword aligned (bits 1:0 = 0);
//!   it covers up to the end of its page.
//! - If the rest fits in one page, PRP2 is that page: offset 0.
//! - Otherwise PRP2 points at a PRP list (qword aligned, any offset). Each
//!   list entry is a page with offset 0; when more pages remain than entries
//!   left in the list's page, the last entry of the page points to the next
//!   list page (offset 0 too).
//! - Any nonzero offset where 0 is required: PRP Offset Invalid. A list that
//!   cannot be read: Data Transfer Error. A transfer over MDTS: Invalid
//!   Field in Command (checked here too, so a hostile list can never make
//!   the walk long).
//!
//! Pure: list pages are read through a callback.

use super::status::Status;

/// Why a PRP walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpError {
    /// An entry's offset is not allowed (nonzero, or not dword aligned).
    OffsetInvalid,
    /// A PRP list could not be read from guest memory.
    ListUnreadable,
    /// The transfer is larger than the controller's MDTS.
    TooLarge,
}

impl From<PrpError> for Status {
    fn from(e: PrpError) -> Self {
        match e {
            PrpError::OffsetInvalid => Status::PRP_OFFSET_INVALID,
            PrpError::ListUnreadable => Status::DATA_TRANSFER_ERROR,
            PrpError::TooLarge => Status::INVALID_FIELD,
        }
    }
}

/// Reads the little-endian u64 entries of a PRP list at a guest address.
pub type ReadList<'a> = dyn FnMut(u64, &mut [u64]) -> Result<(), ()> + 'a;

/// The segments `(address, length)`, in transfer order, that `len` bytes
/// described by `prp1`/`prp2` occupy. Physically adjacent pages are merged.
/// `read_list(addr, entries)` fills `entries` with the little-endian u64s at
/// `addr`, or fails.
pub fn walk(
    prp1: u64,
    prp2: u64,
    len: u64,
    page_size: u64,
    max_len: u64,
    read_list: &mut ReadList<'_>,
) -> Result<Vec<(u64, u64)>, PrpError> {
    let mut out = Segments::default();
    if len == 0 {
        return Ok(out.0);
    }
    if len > max_len {
        return Err(PrpError::TooLarge);
    }
    let mask = page_size - 1;
    if prp1 & 0b11 != 0 {
        return Err(PrpError::OffsetInvalid);
    }
    let first = (page_size - (prp1 & mask)).min(len);
    out.push(prp1, first);
    let mut left = len - first;
    if left == 0 {
        return Ok(out.0);
    }
    if left <= page_size {
        if prp2 & mask != 0 {
            return Err(PrpError::OffsetInvalid);
        }
        out.push(prp2, left);
        return Ok(out.0);
    }
    if prp2 & 0b111 != 0 {
        return Err(PrpError::OffsetInvalid);
    }
    let per_page = (page_size / 8) as usize;
    let mut list = prp2;
    let mut entries = vec![0u64; per_page];
    while left > 0 {
        let slots = ((page_size - (list & mask)) / 8) as usize;
        let pages_left = left.div_ceil(page_size);
        // Read only what is needed: the data pages, plus one chain entry.
        let want = slots.min(usize::try_from(pages_left).unwrap_or(usize::MAX));
        let read = if (pages_left as usize) > slots {
            slots
        } else {
            want
        };
        read_list(list, &mut entries[..read]).map_err(|()| PrpError::ListUnreadable)?;
        let chained = pages_left > slots as u64;
        let data_entries = if chained { slots - 1 } else { read };
        for &page in &entries[..data_entries] {
            if page & mask != 0 {
                return Err(PrpError::OffsetInvalid);
            }
            let n = left.min(page_size);
            out.push(page, n);
            left -= n;
        }
        if chained {
            list = entries[slots - 1];
            if list & mask != 0 {
                return Err(PrpError::OffsetInvalid);
            }
        }
    }
    Ok(out.0)
}

/// Segments being built, merging adjacent ones.
#[derive(Default)]
struct Segments(Vec<(u64, u64)>);

impl Segments {
    fn push(&mut self, addr: u64, len: u64) {
        match self.0.last_mut() {
            Some((a, l)) if a.checked_add(*l) == Some(addr) => *l += len,
            _ => self.0.push((addr, len)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const PAGE: u64 = 4096;
    const MDTS: u64 = 32 * PAGE;

    /// Guest memory holding PRP lists at page addresses.
    fn lists(pages: &[(u64, Vec<u64>)]) -> impl FnMut(u64, &mut [u64]) -> Result<(), ()> {
        let mut mem: HashMap<u64, u64> = HashMap::new();
        for (base, entries) in pages {
            for (i, e) in entries.iter().enumerate() {
                mem.insert(base + 8 * i as u64, *e);
            }
        }
        move |addr, out| {
            if addr >= 0x100_0000 {
                return Err(());
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o = mem.get(&(addr + 8 * i as u64)).copied().unwrap_or(0);
            }
            Ok(())
        }
    }

    fn no_list() -> impl FnMut(u64, &mut [u64]) -> Result<(), ()> {
        |_, _| panic!("no list expected")
    }

    #[test]
    fn test_prp_single_page_ignores_prp2() {
        let r = walk(0x10_0000, 0xdead, 4096, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Ok(vec![(0x10_0000, 4096)]));
    }

    #[test]
    fn test_prp_offset_prp1_within_page() {
        let r = walk(0x10_0200, 0, 512, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Ok(vec![(0x10_0200, 512)]));
    }

    #[test]
    fn test_prp_two_pages_use_prp2_as_data() {
        let r = walk(0x10_0000, 0x20_0000, 8192, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Ok(vec![(0x10_0000, 4096), (0x20_0000, 4096)]));
    }

    #[test]
    fn test_prp_misaligned_prp1_spills_into_prp2() {
        let r = walk(0x10_0e00, 0x20_0000, 4096, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Ok(vec![(0x10_0e00, 0x200), (0x20_0000, 0xe00)]));
    }

    #[test]
    fn test_prp_prp2_data_pointer_with_offset_is_invalid() {
        let r = walk(0x10_0000, 0x20_0010, 8192, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Err(PrpError::OffsetInvalid));
    }

    #[test]
    fn test_prp1_not_dword_aligned_is_invalid() {
        let r = walk(0x10_0002, 0, 512, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Err(PrpError::OffsetInvalid));
    }

    #[test]
    fn test_prp_list_of_three_pages_merges_adjacent() {
        let mut l = lists(&[(0x30_0000, vec![0x40_0000, 0x40_1000, 0x50_0000])]);
        let r = walk(0x10_0000, 0x30_0000, 4 * PAGE, PAGE, MDTS, &mut l);
        assert_eq!(
            r,
            Ok(vec![
                (0x10_0000, 4096),
                (0x40_0000, 8192),
                (0x50_0000, 4096)
            ])
        );
    }

    #[test]
    fn test_prp_list_with_offset_starts_mid_page() {
        // List pointer at the last two slots of its page: the second slot
        // chains to the next list page.
        let mut l = lists(&[
            (0x30_0ff0, vec![0x40_0000, 0x31_0000]),
            (0x31_0000, vec![0x60_0000, 0x70_0000]),
        ]);
        let r = walk(0x10_0000, 0x30_0ff0, 4 * PAGE, PAGE, MDTS, &mut l);
        assert_eq!(
            r,
            Ok(vec![
                (0x10_0000, 4096),
                (0x40_0000, 4096),
                (0x60_0000, 4096),
                (0x70_0000, 4096)
            ])
        );
    }

    #[test]
    fn test_prp_list_chains_across_list_pages() {
        // 600 data pages after PRP1: 511 in the first list page + chain.
        let first: Vec<u64> = (0..511)
            .map(|i| 0x100_0000 + i * PAGE)
            .chain([0x20_0000])
            .collect();
        let second: Vec<u64> = (511..600).map(|i| 0x100_0000 + i * PAGE).collect();
        let mut l = |addr: u64, out: &mut [u64]| {
            let src = match addr {
                0x30_0000 => &first,
                0x20_0000 => &second,
                _ => return Err(()),
            };
            out.copy_from_slice(&src[..out.len()]);
            Ok(())
        };
        let r = walk(0x10_0000, 0x30_0000, 601 * PAGE, PAGE, 1024 * PAGE, &mut l).unwrap();
        assert_eq!(r, vec![(0x10_0000, PAGE), (0x100_0000, 600 * PAGE)]);
    }

    #[test]
    fn test_prp_list_entry_with_offset_is_invalid() {
        let mut l = lists(&[(0x30_0000, vec![0x40_0000, 0x40_1200])]);
        let r = walk(0x10_0000, 0x30_0000, 3 * PAGE, PAGE, MDTS, &mut l);
        assert_eq!(r, Err(PrpError::OffsetInvalid));
    }

    #[test]
    fn test_prp_list_pointer_not_qword_aligned_is_invalid() {
        let r = walk(0x10_0000, 0x30_0004, 3 * PAGE, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Err(PrpError::OffsetInvalid));
    }

    #[test]
    fn test_prp_list_outside_memory_is_unreadable() {
        let mut l = lists(&[]);
        let r = walk(0x10_0000, 0x200_0000, 3 * PAGE, PAGE, MDTS, &mut l);
        assert_eq!(r, Err(PrpError::ListUnreadable));
        assert_eq!(
            Status::from(PrpError::ListUnreadable),
            Status::DATA_TRANSFER_ERROR
        );
    }

    #[test]
    fn test_prp_transfer_over_mdts_is_refused_before_reading() {
        let r = walk(0x10_0000, 0x30_0000, MDTS + 512, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Err(PrpError::TooLarge));
        assert_eq!(Status::from(PrpError::TooLarge), Status::INVALID_FIELD);
    }

    #[test]
    fn test_prp_zero_length_is_empty() {
        assert_eq!(walk(3, 5, 0, PAGE, MDTS, &mut no_list()), Ok(vec![]));
    }

    #[test]
    fn test_prp_segments_at_top_of_address_space_do_not_overflow() {
        let r = walk(u64::MAX - 4095, 0, 4096, PAGE, MDTS, &mut no_list());
        assert_eq!(r, Ok(vec![(u64::MAX - 4095, 4096)]));
    }
}
