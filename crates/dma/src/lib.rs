//! Device DMA: the one seam through which device models read and write guest
//! memory (STYLE point 2), so that a virtual IOMMU can later translate every
//! access without the devices changing.
//!
//! A device holds an `Arc<dyn Dma>` and addresses memory by *bus address*:
//! today the guest-physical address, with an IOMMU the I/O virtual address.
//! Every access is checked as a whole: a range that is not entirely backed
//! (past the end of RAM, across a hole, or whose end wraps around 2^64) is an
//! error, never a partial access and never a panic.
//!
//! For zero-copy block I/O, [`Dma::host_ranges`] turns a bus range into the
//! host virtual ranges that back it, and [`GuestBuffers`] bundles those
//! ranges with the `Arc<dyn Dma>` that keeps them mapped, so a backend
//! (io_uring) can hand them to the kernel.

#![deny(missing_docs)]

mod function;
mod guest;
mod memory;

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use vm_memory::VolatileSlice;

pub use function::{FunctionContext, FunctionDma, RequesterId};
pub use guest::GuestDma;
pub use memory::DmaMemory;

/// Why a DMA access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// Some byte of the range is not backed by guest memory.
    #[error("DMA range {addr:#x}+{len:#x} is not inside guest memory")]
    OutOfRange {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// `addr + len` does not fit in 64 bits.
    #[error("DMA range {addr:#x}+{len:#x} wraps around the address space")]
    Overflow {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// The memory exists but cannot be mapped into the host (no host address).
    #[error("DMA range at {addr:#x} has no host mapping")]
    NoHostMapping {
        /// Start of the range.
        addr: u64,
    },
    /// The function's Bus Master Enable is off (PCI 3.0 §6.2.2, Command
    /// bit 2): it may not start a transaction at all.
    #[error("DMA at {addr:#x} with Bus Master Enable off")]
    BusMasterOff {
        /// Start of the range.
        addr: u64,
    },
    /// An IOMMU refused the access: no translation for this requester at
    /// this address, or not with this permission (VT-d 4.1 §7.1: a DMA
    /// remapping fault). The device reports it as its own error (NVMe:
    /// Data Transfer Error; virtio-blk: IOERR; virtio-net: the frame is
    /// dropped and counted).
    #[error("DMA translation fault for requester {requester} at {addr:#x}")]
    TranslationFault {
        /// The faulting bus address.
        addr: u64,
        /// Who asked.
        requester: RequesterId,
    },
}

/// Which way the device moves data (an IOMMU checks read/write permission).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The device reads guest memory (e.g. a disk write).
    ToDevice,
    /// The device writes guest memory (e.g. a disk read).
    FromDevice,
}

/// A span of host virtual memory that backs part of a guest range, valid
/// for the lifetime `'a` of the borrow of the [`Dma`] handle (or of the
/// [`GuestBuffers`]) it came from.
///
/// It is only an address and a length, laid out as a C `struct iovec`
/// (`repr(C)`: address, then length, each pointer-sized) so that a slice of
/// ranges can go to `preadv`/`writev`/io_uring as it is. The lifetime is
/// what makes it safe to hand out: a range cannot be kept past the handle
/// that keeps its memory mapped, so a kernel call made with it while it is
/// in scope never sees unmapped memory. Asynchronous I/O, which must keep
/// memory mapped until its completion is reaped, takes [`GuestBuffers`]
/// by value instead: they own the handle.
///
/// ```compile_fail,E0597
/// use std::sync::Arc;
/// use dma::{Direction, Dma, GuestDma};
/// use vm_memory::{GuestAddress, GuestMemoryMmap};
///
/// let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
/// let range = {
///     let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(ram)));
///     dma.translate(0, 16, Direction::ToDevice).unwrap()
/// }; // error[E0597]: `dma` does not live long enough
/// assert_eq!(range.len(), 16);
/// ```
///
/// The same code using the range while the handle lives compiles:
///
/// ```
/// use std::sync::Arc;
/// use dma::{Direction, Dma, GuestDma};
/// use vm_memory::{GuestAddress, GuestMemoryMmap};
///
/// let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
/// let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(ram)));
/// let range = dma.translate(0, 16, Direction::ToDevice).unwrap();
/// assert_eq!(range.len(), 16);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRange<'a> {
    addr: usize,
    len: usize,
    /// Borrows whatever keeps `addr..addr+len` mapped.
    mapped: PhantomData<&'a ()>,
}

impl<'a> HostRange<'a> {
    /// A range of `len` bytes at host address `addr`, valid for `'a`.
    ///
    /// # Safety
    /// `addr..addr + len` must be mapped, readable and writable host memory
    /// for all of `'a` (in a [`Dma`] implementation: `'a` is the borrow of
    /// the handle, whose mapping lives as long as the handle does).
    pub unsafe fn new(addr: *mut u8, len: usize) -> Self {
        Self {
            addr: addr as usize,
            len,
            mapped: PhantomData,
        }
    }

    /// Host virtual address of the first byte.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same bytes as a vm-memory [`VolatileSlice`] for `'a`: the
    /// guest may change them at any time, so they are read and written
    /// with volatile accesses, never through Rust references.
    pub fn as_volatile_slice(&self) -> VolatileSlice<'a> {
        // SAFETY: `new`'s contract: the memory is mapped for all of `'a`.
        unsafe { VolatileSlice::new(self.addr as *mut u8, self.len) }
    }
}

/// Access to guest memory on behalf of one device.
///
/// Implementations are cheap to share (`Arc<dyn Dma>`) and must never panic
/// on any address or length: out-of-range accesses return [`DmaError`] and
/// touch nothing.
pub trait Dma: Send + Sync + Debug {
    /// Reads `buf.len()` bytes at bus address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError>;

    /// Writes `buf` at bus address `addr`.
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError>;

    /// Appends to `out` the host ranges backing `len` bytes at `addr`, in
    /// order; on error `out` is left as it was.
    ///
    /// Contract: the returned ranges stay mapped as long as this `Dma`
    /// handle lives (an implementation that can unmap, such as an IOMMU on
    /// invalidation, must keep the mapping alive while a handle to it is
    /// held); the lifetime `'a` makes the compiler hold every caller to
    /// the borrow of the handle. The guest may change the bytes at any
    /// time: users treat them as shared memory, never as Rust references.
    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError>;

    /// The host range backing the first bytes of `addr..addr+len`: as many
    /// as are contiguous on the host (at least one when `len` is not zero),
    /// under the same contract as [`Dma::host_ranges`]. Ring accesses use it
    /// one piece at a time ([`DmaMemory`]); the default goes through
    /// `host_ranges`, an implementation on a hot path overrides it.
    fn translate(&self, addr: u64, len: u64, dir: Direction) -> Result<HostRange<'_>, DmaError> {
        let mut out = Vec::new();
        self.host_ranges(addr, len, dir, &mut out)?;
        out.first()
            .copied()
            .ok_or(DmaError::OutOfRange { addr, len })
    }

    /// Guest RAM this handle reaches untranslated (bus address =
    /// guest-physical address), with the function whose Bus Master Enable
    /// gates it, if any: lets [`DmaMemory`] read rings without a
    /// translation per access. `None` (the default) for a handle that
    /// translates, such as an IOMMU's.
    fn direct(&self) -> Option<Direct> {
        None
    }
}

/// Guest RAM reached without translation, as [`Dma::direct`] gives it.
#[derive(Clone, Debug)]
pub struct Direct {
    /// The memory.
    pub ram: Arc<vm_memory::GuestMemoryMmap>,
    /// The function whose Bus Master Enable every access must find on.
    pub gate: Option<Arc<FunctionContext>>,
}

/// `addr..addr+len` as an end address, or [`DmaError::Overflow`].
pub fn checked_end(addr: u64, len: u64) -> Result<u64, DmaError> {
    addr.checked_add(len)
        .ok_or(DmaError::Overflow { addr, len })
}

/// Guest buffers resolved to host memory, together with the `Dma` handle
/// that keeps them mapped: what a backend needs for zero-copy I/O.
///
/// This is the owning form of [`HostRange`]s: it holds an `Arc` of the
/// handle, so the ranges stay valid for as long as the `GuestBuffers`
/// live, wherever they are moved. Asynchronous I/O moves them into the
/// request the kernel owns and drops them only once the completion is
/// reaped; the ranges it lends ([`GuestBuffers::ranges`]) cannot outlive
/// it:
///
/// ```compile_fail,E0505
/// use std::sync::Arc;
/// use dma::{Direction, Dma, GuestBuffers, GuestDma};
/// use vm_memory::{GuestAddress, GuestMemoryMmap};
///
/// let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
/// let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(ram)));
/// let buffers = GuestBuffers::new(dma, &[(0, 0x200)], Direction::FromDevice).unwrap();
/// let first = buffers.ranges()[0];
/// drop(buffers); // error[E0505]: cannot move out of `buffers` because it is borrowed
/// assert_eq!(first.len(), 0x200);
/// ```
#[derive(Debug, Clone)]
pub struct GuestBuffers {
    dma: Arc<dyn Dma>,
    /// Valid while `dma` lives (detached from the borrow that made them).
    ranges: Vec<HostRange<'static>>,
    len: u64,
}

impl GuestBuffers {
    /// Resolves the bus `segments` (`(addr, len)` pairs, in transfer order).
    pub fn new(
        dma: Arc<dyn Dma>,
        segments: &[(u64, u64)],
        dir: Direction,
    ) -> Result<Self, DmaError> {
        let mut ranges = Vec::with_capacity(segments.len());
        let mut len = 0u64;
        for &(addr, seg) in segments {
            dma.host_ranges(addr, seg, dir, &mut ranges)?;
            len = len
                .checked_add(seg)
                .ok_or(DmaError::Overflow { addr, len: seg })?;
        }
        let mut ranges = std::mem::ManuallyDrop::new(ranges);
        // SAFETY: the same allocation, re-typed: the element types differ
        // only in a lifetime, so layout, length and capacity are the same.
        // Detaching the ranges from the borrow of `dma` is sound because
        // they are valid while the handle behind `dma` lives (the
        // `host_ranges` contract), `Self` owns that `Arc`, which keeps the
        // handle alive and in place, and lends the ranges out only for
        // borrows of `Self`.
        let ranges: Vec<HostRange<'static>> = unsafe {
            Vec::from_raw_parts(ranges.as_mut_ptr().cast(), ranges.len(), ranges.capacity())
        };
        Ok(Self { dma, ranges, len })
    }

    /// The host ranges, in transfer order, valid while `self` lives.
    pub fn ranges(&self) -> &[HostRange<'_>] {
        &self.ranges
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is nothing to transfer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The handle keeping the ranges mapped.
    pub fn dma(&self) -> &Arc<dyn Dma> {
        &self.dma
    }
}

/// A vector of [`HostRange`]s kept between uses so that a hot path (a
/// transmit queue resolving frame after frame) does not allocate: each
/// [`RangeScratch::borrow`] lends it empty, for one borrow of a handle.
#[derive(Default)]
pub struct RangeScratch {
    /// Always emptied before it is lent; what it holds between loans is
    /// never read.
    buf: Vec<HostRange<'static>>,
}

impl RangeScratch {
    /// An empty scratch vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The vector, empty, to fill with ranges valid for `'a`.
    pub fn borrow<'a>(&'a mut self) -> &'a mut Vec<HostRange<'a>> {
        self.buf.clear();
        let buf: *mut Vec<HostRange<'static>> = &mut self.buf;
        // SAFETY: the two types differ only in a lifetime, so they have one
        // layout. The vector is empty when lent; ranges pushed while it is
        // lent are cleared before it is lent again, and nothing else reads
        // `buf`, so no range is ever used past its `'a`.
        unsafe { &mut *buf.cast::<Vec<HostRange<'a>>>() }
    }
}

impl Debug for RangeScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeScratch")
            .field("capacity", &self.buf.capacity())
            .finish()
    }
}
