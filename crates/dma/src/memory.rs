//! Guest memory as a device's queues see it: a [`vm_memory::GuestMemory`]
//! view of one function's [`Dma`], so that code written against vm-memory
//! (virtio-queue reading descriptor tables and avail/used rings) goes
//! through the same seam as the device's buffers: the function's Bus
//! Master Enable, its requester ID and, later, the IOMMU's translation.
//!
//! Where the handle reaches guest RAM untranslated ([`Dma::direct`]: no
//! IOMMU), an access checks the function's Bus Master Enable and goes
//! straight to the memory map, as cheap as reading `GuestMemoryMmap`
//! itself. Otherwise each access is resolved piece by piece with
//! [`Dma::translate`] (one piece for a range that is contiguous on the
//! host, as rings in RAM are), so reading a descriptor allocates nothing.

use std::iter::FusedIterator;
use std::sync::Arc;

use vm_memory::guest_memory::{
    Error as MemError, GuestMemoryBackendSliceIterator, GuestMemorySliceIterator,
    Result as MemResult,
};
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, Permissions, VolatileSlice,
};

use crate::{Direct, Direction, Dma};

/// One function's view of memory for vm-memory users.
#[derive(Debug, Clone)]
pub struct DmaMemory {
    dma: Arc<dyn Dma>,
    direct: Option<Direct>,
}

impl DmaMemory {
    /// The memory `dma` reaches.
    pub fn new(dma: Arc<dyn Dma>) -> Self {
        let direct = dma.direct();
        Self { dma, direct }
    }

    /// The untranslated memory, if this view has it and its function may
    /// master the bus now (`Err` when it may not).
    #[inline]
    fn direct(&self) -> Option<Result<&GuestMemoryMmap, ()>> {
        self.direct.as_ref().map(|d| match &d.gate {
            Some(ctx) if !ctx.bus_master() => Err(()),
            _ => Ok(&*d.ram),
        })
    }

    /// The DMA handle underneath.
    pub fn dma(&self) -> &Arc<dyn Dma> {
        &self.dma
    }
}

fn direction(access: Permissions) -> Direction {
    if access.has_write() {
        Direction::FromDevice
    } else {
        Direction::ToDevice
    }
}

/// vm-memory's word for a refused access: the address is not valid for
/// this function (outside memory, Bus Master off, no translation).
fn refused(addr: u64) -> MemError {
    MemError::InvalidGuestAddress(GuestAddress(addr))
}

/// The pieces of one access, translated as they are taken.
#[derive(Debug)]
pub struct Slices<'a> {
    dma: &'a dyn Dma,
    addr: u64,
    left: u64,
    dir: Direction,
    failed: bool,
}

impl<'a> Iterator for Slices<'a> {
    type Item = MemResult<VolatileSlice<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        match self.dma.translate(self.addr, self.left, self.dir) {
            Ok(range) if !range.is_empty() => {
                let taken = (range.len() as u64).min(self.left);
                // The range borrows the handle for `'a`, so its slice does.
                let Ok(slice) = range.as_volatile_slice().subslice(0, taken as usize) else {
                    self.failed = true;
                    return Some(Err(refused(self.addr)));
                };
                self.addr = self.addr.wrapping_add(taken);
                self.left -= taken;
                Some(Ok(slice))
            }
            Ok(_) => {
                self.failed = true;
                Some(Err(refused(self.addr)))
            }
            Err(_) => {
                self.failed = true;
                Some(Err(refused(self.addr)))
            }
        }
    }
}

impl FusedIterator for Slices<'_> {}

impl<'a> GuestMemorySliceIterator<'a, ()> for Slices<'a> {}

/// The pieces of one access: straight from guest RAM, or translated.
#[derive(Debug)]
pub enum SliceIter<'a> {
    /// Untranslated.
    Direct(GuestMemoryBackendSliceIterator<'a, GuestMemoryMmap>),
    /// Through [`Dma::translate`].
    Translated(Slices<'a>),
}

impl<'a> Iterator for SliceIter<'a> {
    type Item = MemResult<VolatileSlice<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Direct(i) => i.next(),
            Self::Translated(i) => i.next(),
        }
    }
}

impl FusedIterator for SliceIter<'_> {}

impl<'a> GuestMemorySliceIterator<'a, ()> for SliceIter<'a> {}

impl GuestMemory for DmaMemory {
    type PhysicalMemory = GuestMemoryMmap;
    type Bitmap = ();

    #[inline]
    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        match self.direct() {
            Some(Ok(ram)) => return GuestMemoryBackend::check_range(ram, addr, count),
            Some(Err(())) => return false,
            None => {}
        }
        let mut slices = Slices {
            dma: self.dma.as_ref(),
            addr: addr.0,
            left: count as u64,
            dir: direction(access),
            failed: false,
        };
        addr.0.checked_add(count as u64).is_some() && slices.all(|s| s.is_ok())
    }

    #[inline]
    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> MemResult<impl GuestMemorySliceIterator<'a, ()>> {
        if addr.0.checked_add(count as u64).is_none() {
            return Err(MemError::GuestAddressOverflow);
        }
        match self.direct() {
            Some(Ok(ram)) => Ok(SliceIter::Direct(GuestMemoryBackend::get_slices(
                ram, addr, count,
            ))),
            Some(Err(())) => Err(refused(addr.0)),
            None => Ok(SliceIter::Translated(Slices {
                dma: self.dma.as_ref(),
                addr: addr.0,
                left: count as u64,
                dir: direction(access),
                failed: false,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use vm_memory::{Bytes, GuestMemoryMmap};

    use super::*;
    use crate::{DmaError, GuestDma, HostRange};

    fn ram(regions: &[(u64, usize)]) -> Arc<GuestMemoryMmap> {
        let r: Vec<_> = regions.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
        Arc::new(GuestMemoryMmap::<()>::from_ranges(&r).unwrap())
    }

    /// A translating DMA: bus address = guest address + `offset`; records
    /// every bus address it translated.
    #[derive(Debug)]
    struct Shifted {
        inner: GuestDma,
        offset: u64,
        seen: Mutex<Vec<u64>>,
    }

    impl Dma for Shifted {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            self.inner.read(addr - self.offset, buf)
        }
        fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
            self.inner.write(addr - self.offset, buf)
        }
        fn host_ranges<'a>(
            &'a self,
            addr: u64,
            len: u64,
            dir: Direction,
            out: &mut Vec<HostRange<'a>>,
        ) -> Result<(), DmaError> {
            let gpa = addr
                .checked_sub(self.offset)
                .ok_or(DmaError::OutOfRange { addr, len })?;
            self.inner.host_ranges(gpa, len, dir, out)
        }
        fn translate(
            &self,
            addr: u64,
            len: u64,
            dir: Direction,
        ) -> Result<HostRange<'_>, DmaError> {
            self.seen.lock().unwrap().push(addr);
            let gpa = addr
                .checked_sub(self.offset)
                .ok_or(DmaError::OutOfRange { addr, len })?;
            self.inner.translate(gpa, len, dir)
        }
    }

    #[test]
    fn test_reads_and_writes_go_through_the_translation() {
        let mem = ram(&[(0, 0x4000)]);
        let dma = Arc::new(Shifted {
            inner: GuestDma::new(mem.clone()),
            offset: 0x1_0000_0000,
            seen: Mutex::new(vec![]),
        });
        let view = DmaMemory::new(dma.clone());
        view.write_obj(0xabcd_u16, GuestAddress(0x1_0000_0100))
            .unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x100)).unwrap(), 0xabcd);
        mem.write_obj(0x1234_5678_u32, GuestAddress(0x200)).unwrap();
        assert_eq!(
            view.read_obj::<u32>(GuestAddress(0x1_0000_0200)).unwrap(),
            0x1234_5678
        );
        assert!(
            view.read_obj::<u32>(GuestAddress(0x200)).is_err(),
            "untranslated"
        );
        assert_eq!(
            *dma.seen.lock().unwrap(),
            vec![0x1_0000_0100, 0x1_0000_0200, 0x200]
        );
    }

    #[test]
    fn test_access_across_regions_comes_in_pieces_and_past_the_end_fails() {
        let mem = ram(&[(0, 0x1000), (0x1000, 0x1000)]);
        let view = DmaMemory::new(Arc::new(GuestDma::new(mem.clone())));
        let data: Vec<u8> = (0..32).collect();
        view.write_slice(&data, GuestAddress(0xff0)).unwrap();
        let mut back = [0u8; 32];
        mem.read_slice(&mut back, GuestAddress(0xff0)).unwrap();
        assert_eq!(&back[..], &data[..]);
        let pieces = view
            .get_slices(GuestAddress(0xff0), 32, Permissions::Read)
            .unwrap()
            .count();
        assert_eq!(pieces, 2);
        assert!(view.check_range(GuestAddress(0xff0), 32, Permissions::Read));
        assert!(!view.check_range(GuestAddress(0x1ff0), 32, Permissions::Read));
        assert!(view.read_obj::<u64>(GuestAddress(0x1ffc)).is_err());
        assert!(!view.check_range(GuestAddress(u64::MAX - 1), 4, Permissions::Read));
        assert!(view
            .get_slices(GuestAddress(u64::MAX - 1), 4, Permissions::Read)
            .is_err());
    }

    #[test]
    fn test_a_refused_function_reads_nothing() {
        let mem = ram(&[(0, 0x1000)]);
        let ctx = crate::FunctionContext::new(crate::RequesterId::new(0, 3, 0));
        let dma = crate::FunctionDma::new(ctx.clone(), Arc::new(GuestDma::new(mem)));
        let view = DmaMemory::new(Arc::new(dma));
        assert!(view.read_obj::<u16>(GuestAddress(0x10)).is_err());
        assert!(!view.check_range(GuestAddress(0x10), 2, Permissions::Read));
        ctx.set_bus_master(true);
        assert!(view.read_obj::<u16>(GuestAddress(0x10)).is_ok());
    }
}
