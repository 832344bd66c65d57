//! [`Dma`] straight onto guest RAM (no IOMMU): bus address = guest-physical
//! address.

use std::sync::Arc;

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};

use crate::{checked_end, Direction, Dma, DmaError, HostRange};

/// Guest RAM as a [`Dma`] target; holds the memory map alive.
#[derive(Debug, Clone)]
pub struct GuestDma {
    mem: Arc<GuestMemoryMmap>,
}

impl GuestDma {
    /// DMA onto `mem`.
    pub fn new(mem: Arc<GuestMemoryMmap>) -> Self {
        Self { mem }
    }

    /// The guest memory.
    pub fn memory(&self) -> &Arc<GuestMemoryMmap> {
        &self.mem
    }

    /// Calls `f(guest_addr, region_offset, chunk_len, region)` for each
    /// region-contained chunk of `addr..addr+len`, after checking that the
    /// whole range is backed.
    fn chunks(
        &self,
        addr: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, u64, &vm_memory::GuestRegionMmap) -> Result<(), DmaError>,
    ) -> Result<(), DmaError> {
        let end = checked_end(addr, len)?;
        let out = DmaError::OutOfRange { addr, len };
        // First pass: validate, so that no partial access happens.
        let mut cur = addr;
        while cur < end {
            let region = self.mem.find_region(GuestAddress(cur)).ok_or(out)?;
            let region_end = region.start_addr().0.saturating_add(region.len());
            cur = region_end.min(end);
        }
        let mut cur = addr;
        while cur < end {
            let region = self.mem.find_region(GuestAddress(cur)).ok_or(out)?;
            let offset = cur - region.start_addr().0;
            let chunk = (region.len() - offset).min(end - cur);
            f(cur - addr, offset, chunk, region)?;
            cur += chunk;
        }
        Ok(())
    }
}

fn as_index(v: u64) -> usize {
    // Lengths here never exceed a buffer's length, which is a usize.
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl Dma for GuestDma {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len() as u64;
        self.chunks(addr, len, |done, off, chunk, region| {
            let (start, end) = (as_index(done), as_index(done + chunk));
            region
                .read_slice(&mut buf[start..end], MemoryRegionAddress(off))
                .map_err(|_| DmaError::OutOfRange { addr, len })
        })
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        let len = buf.len() as u64;
        self.chunks(addr, len, |done, off, chunk, region| {
            let (start, end) = (as_index(done), as_index(done + chunk));
            region
                .write_slice(&buf[start..end], MemoryRegionAddress(off))
                .map_err(|_| DmaError::OutOfRange { addr, len })
        })
    }

    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        _dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        let mark = out.len();
        let res = self.chunks(addr, len, |done, off, chunk, region| {
            let host = region
                .get_host_address(MemoryRegionAddress(off))
                .map_err(|_| DmaError::NoHostMapping { addr: addr + done })?;
            let chunk = usize::try_from(chunk).map_err(|_| DmaError::OutOfRange { addr, len })?;
            // SAFETY: `host..host+chunk` lies inside one mmap'ed region of
            // `self.mem` (checked by `chunks`), which stays mapped while the
            // `Arc<GuestMemoryMmap>` held by this handle lives, so for all
            // of `'a`, the borrow of `self`.
            let range = unsafe { HostRange::new(host, chunk) };
            let can_merge = out.len() > mark;
            match out.last_mut() {
                Some(last) if can_merge && last.addr() + last.len() == range.addr() => {
                    *last = {
                        // SAFETY: the union of two adjacent ranges, each
                        // mapped for `'a`, is mapped for `'a`.
                        unsafe { HostRange::new(last.addr() as *mut u8, last.len() + range.len()) }
                    };
                }
                _ => out.push(range),
            }
            Ok(())
        });
        if res.is_err() {
            out.truncate(mark);
        }
        res
    }

    fn direct(&self) -> Option<crate::Direct> {
        Some(crate::Direct {
            ram: self.mem.clone(),
            gate: None,
        })
    }

    fn translate(&self, addr: u64, len: u64, _dir: Direction) -> Result<HostRange<'_>, DmaError> {
        let out = DmaError::OutOfRange { addr, len };
        checked_end(addr, len)?;
        if len == 0 {
            return Err(out);
        }
        let region = self.mem.find_region(GuestAddress(addr)).ok_or(out)?;
        let offset = addr - region.start_addr().0;
        let chunk = (region.len() - offset).min(len);
        let host = region
            .get_host_address(MemoryRegionAddress(offset))
            .map_err(|_| DmaError::NoHostMapping { addr })?;
        let chunk = usize::try_from(chunk).map_err(|_| out)?;
        // SAFETY: `host..host+chunk` lies inside one mmap'ed region of
        // `self.mem`, which stays mapped while this handle lives, so for
        // the borrow of `self` the result carries.
        Ok(unsafe { HostRange::new(host, chunk) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestBuffers;

    /// RAM at [0, 64 KiB) and [1 MiB, 1 MiB + 64 KiB).
    fn dma() -> GuestDma {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1_0000),
            (GuestAddress(0x10_0000), 0x1_0000),
        ])
        .unwrap();
        GuestDma::new(Arc::new(mem))
    }

    #[test]
    fn test_guest_dma_write_then_read_round_trips() {
        let d = dma();
        d.write(0x1234, b"hello").unwrap();
        let mut buf = [0u8; 5];
        d.read(0x1234, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[test]
    fn test_guest_dma_range_ending_at_region_end_is_accepted() {
        let d = dma();
        let mut buf = [0u8; 16];
        assert_eq!(d.read(0x1_0000 - 16, &mut buf), Ok(()));
    }

    #[test]
    fn test_guest_dma_range_past_the_end_is_refused_untouched() {
        let d = dma();
        let err = d.write(0x1_0000 - 4, &[0xaa; 8]);
        assert_eq!(
            err,
            Err(DmaError::OutOfRange {
                addr: 0xfffc,
                len: 8
            })
        );
        let mut buf = [0u8; 4];
        d.read(0xfffc, &mut buf).unwrap();
        assert_eq!(buf, [0; 4], "no partial write");
    }

    #[test]
    fn test_guest_dma_range_across_a_hole_is_refused() {
        let d = dma();
        let mut out = Vec::new();
        let err = d.host_ranges(0xf000, 0x10_0000, Direction::FromDevice, &mut out);
        assert!(matches!(err, Err(DmaError::OutOfRange { .. })));
        assert!(out.is_empty());
    }

    #[test]
    fn test_guest_dma_wrapping_range_is_overflow() {
        let d = dma();
        let mut buf = [0u8; 16];
        assert_eq!(
            d.read(u64::MAX - 3, &mut buf),
            Err(DmaError::Overflow {
                addr: u64::MAX - 3,
                len: 16
            })
        );
        let mut out = Vec::new();
        assert!(d
            .host_ranges(1, u64::MAX, Direction::ToDevice, &mut out)
            .is_err());
    }

    #[test]
    fn test_guest_dma_zero_length_anywhere_is_empty() {
        let d = dma();
        let mut out = Vec::new();
        d.host_ranges(0xdead_0000, 0, Direction::ToDevice, &mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn test_guest_dma_host_ranges_split_at_regions_and_merge_inside() {
        // Two adjacent regions with separate mappings.
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x2000),
            (GuestAddress(0x2000), 0x2000),
        ])
        .unwrap();
        let d = GuestDma::new(Arc::new(mem));
        let mut out = Vec::new();
        d.host_ranges(0x1000, 0x2000, Direction::FromDevice, &mut out)
            .unwrap();
        d.host_ranges(0x3000, 0x800, Direction::FromDevice, &mut out)
            .unwrap();
        let total: usize = out.iter().map(HostRange::len).sum();
        assert_eq!(total, 0x2800);
        assert!(out.len() <= 3);
        assert_eq!(out[0].len(), 0x1000, "first chunk ends at the region end");
    }

    #[test]
    fn test_guest_buffers_keep_the_total_length() {
        let d: Arc<dyn Dma> = Arc::new(dma());
        let b = GuestBuffers::new(
            d,
            &[(0x1000, 0x200), (0x10_0000, 0x1000)],
            Direction::FromDevice,
        )
        .unwrap();
        assert_eq!(b.len(), 0x1200);
        assert_eq!(b.ranges().len(), 2);
    }

    #[test]
    fn test_range_scratch_lends_it_empty_and_keeps_its_allocation() {
        let d = dma();
        let mut scratch = crate::RangeScratch::new();
        let first = scratch.borrow();
        d.host_ranges(0x1000, 0x200, Direction::ToDevice, first)
            .unwrap();
        d.host_ranges(0x10_0000, 0x200, Direction::ToDevice, first)
            .unwrap();
        let (len, buf) = (first.len(), first.as_ptr() as usize);

        let again = scratch.borrow();

        assert_eq!(len, 2);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr() as usize, buf, "no new allocation");
    }

    #[test]
    fn test_guest_buffers_ranges_read_through_volatile_slices() {
        let d: Arc<dyn Dma> = Arc::new(dma());
        d.write(0x1000, b"guest").unwrap();
        let b = GuestBuffers::new(d, &[(0x1000, 5)], Direction::ToDevice).unwrap();
        let mut got = [0u8; 5];

        b.ranges()[0].as_volatile_slice().copy_to(&mut got[..]);

        assert_eq!(&got, b"guest");
    }

    #[test]
    fn test_guest_buffers_with_one_bad_segment_fail() {
        let d: Arc<dyn Dma> = Arc::new(dma());
        let b = GuestBuffers::new(
            d,
            &[(0x1000, 0x200), (0x2_0000, 0x1000)],
            Direction::FromDevice,
        );
        assert!(b.is_err());
    }
}
