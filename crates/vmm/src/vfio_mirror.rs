//! The VFIO container of one host function behind iovm's emulated VT-d
//! (issue 19, with issue 18's unit in caching mode): its IOVA space is
//! what the guest's IOMMU tables give the function, kept in step by the
//! `iommu` crate's [`Mirror`](iommu::Mirror) on each invalidation, so the
//! host's IOMMU enforces the guest's mappings, rights included, on a
//! device whose DMA iovm never sees.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use iommu::HostMapper;
use vfio_bindings::bindings::vfio::{
    vfio_iommu_type1_dma_map, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
};
use vfio_ioctls::VfioContainer;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::ioctl::ioctl_with_ref;

/// `VFIO_TYPE` (`';'`) and `VFIO_BASE` of `linux/vfio.h`.
const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;

/// The `VFIO_IOMMU_MAP_DMA` ioctl request, built by `ioctl_io_nr!`.
mod ioctls {
    #![allow(missing_docs)]
    use super::{VFIO_BASE, VFIO_TYPE};
    vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
}
use ioctls::VFIO_IOMMU_MAP_DMA;

/// One function's container and guest RAM, mapped as the mirror says.
pub struct MirroredContainer {
    container: Arc<VfioContainer>,
    memory: Arc<GuestMemoryMmap>,
}

impl std::fmt::Debug for MirroredContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredContainer").finish_non_exhaustive()
    }
}

impl MirroredContainer {
    /// `container`, whose DMA reaches `memory`.
    pub fn new(container: Arc<VfioContainer>, memory: Arc<GuestMemoryMmap>) -> Self {
        Self { container, memory }
    }

    /// Where `len` bytes of guest RAM at `gpa` are in iovm, if they are
    /// all guest RAM of one region.
    fn host_addr(&self, gpa: u64, len: u64) -> Option<u64> {
        let region = self.memory.find_region(GuestAddress(gpa))?;
        let offset = gpa - region.start_addr().0;
        if offset.checked_add(len)? > region.len() {
            return None;
        }
        let base = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .ok()?;
        Some(base as u64 + offset)
    }
}

impl HostMapper for MirroredContainer {
    fn map(&self, iova: u64, gpa: u64, len: u64, read: bool, write: bool) -> io::Result<()> {
        let vaddr = self.host_addr(gpa, len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{gpa:#x}+{len:#x} is not guest RAM"),
            )
        })?;
        let flags = if read { VFIO_DMA_MAP_FLAG_READ } else { 0 }
            | if write { VFIO_DMA_MAP_FLAG_WRITE } else { 0 };
        let map = vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags,
            vaddr,
            iova,
            size: len,
        };
        // SAFETY: the container fd is open; the kernel reads `map`, which
        // lives across the call. The range is guest RAM, which stays mapped
        // as long as the machine, and the machine drops its devices (and
        // this container) first; iovm touches guest RAM only through
        // volatile accesses, so the device writing it is no aliasing hazard.
        let ret =
            unsafe { ioctl_with_ref(&self.container.as_raw_fd(), VFIO_IOMMU_MAP_DMA(), &map) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unmap(&self, iova: u64, len: u64) -> io::Result<()> {
        self.container
            .vfio_dma_unmap(iova, len as usize)
            .map_err(|e| io::Error::other(format!("unmapping {iova:#x}+{len:#x}: {e}")))
    }

    fn map_identity(&self) -> io::Result<()> {
        for r in self.memory.iter() {
            let start = r.start_addr().0;
            self.map(start, start, r.len(), true, true)?;
        }
        Ok(())
    }

    fn unmap_identity(&self) -> io::Result<()> {
        for r in self.memory.iter() {
            self.unmap(r.start_addr().0, r.len())?;
        }
        Ok(())
    }
}
