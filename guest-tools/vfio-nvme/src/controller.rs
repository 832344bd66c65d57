//! The controller driven from user space: BAR0 through the VFIO device
//! (mapped, or read and written through the region when it cannot be
//! mapped), queues in pages mapped for DMA, completions polled (admin) or
//! announced by an MSI-X eventfd (I/O).

use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use crate::dma::Pages;
use crate::nvme::{self, Cap, Cqe, Sqe, CQE_SIZE, CSTS_CFS, CSTS_RDY, SQE_SIZE};
use crate::vfio::{Device, RegionInfo, REGION_FLAG_MMAP};

/// BAR0 of the device.
#[derive(Debug)]
pub enum Bar<'a> {
    /// Mapped into this process.
    Mapped {
        /// First byte.
        ptr: *mut u8,
        /// Size in bytes.
        len: usize,
    },
    /// Reached with pread/pwrite on the device file.
    Region {
        /// The device.
        device: &'a Device,
        /// BAR0's region.
        region: RegionInfo,
    },
}

impl<'a> Bar<'a> {
    /// Maps BAR0 when the region allows it, else uses the region file.
    pub fn open(device: &'a Device, region: RegionInfo) -> Result<Self, String> {
        if region.flags & REGION_FLAG_MMAP == 0 {
            return Ok(Bar::Region { device, region });
        }
        let len = usize::try_from(region.size).map_err(|_| "BAR0 too large")?;
        let offset = libc::off_t::try_from(region.offset).map_err(|_| "BAR0 offset too large")?;
        // SAFETY: a new shared mapping of the device's BAR0, which vfio-pci
        // allows for this region (FLAG_MMAP); nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                device.fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap of BAR0: {}", std::io::Error::last_os_error()));
        }
        Ok(Bar::Mapped {
            ptr: ptr.cast(),
            len,
        })
    }

    /// True if BAR0 is mapped.
    pub fn mapped(&self) -> bool {
        matches!(self, Bar::Mapped { .. })
    }

    /// Reads the dword at `offset`.
    pub fn read32(&self, offset: usize) -> Result<u32, String> {
        match self {
            Bar::Mapped { ptr, len } => {
                if !offset.is_multiple_of(4) || offset + 4 > *len {
                    return Err(format!("BAR0 read at {offset:#x} outside the BAR"));
                }
                // SAFETY: an aligned dword inside the mapping (checked above).
                Ok(unsafe { ptr.add(offset).cast::<u32>().read_volatile() })
            }
            Bar::Region { device, region } => {
                let mut b = [0u8; 4];
                device.read_region(region, offset as u64, &mut b)?;
                Ok(u32::from_le_bytes(b))
            }
        }
    }

    /// Writes the dword at `offset`.
    pub fn write32(&self, offset: usize, value: u32) -> Result<(), String> {
        fence(Ordering::SeqCst);
        match self {
            Bar::Mapped { ptr, len } => {
                if !offset.is_multiple_of(4) || offset + 4 > *len {
                    return Err(format!("BAR0 write at {offset:#x} outside the BAR"));
                }
                // SAFETY: an aligned dword inside the mapping (checked above).
                unsafe { ptr.add(offset).cast::<u32>().write_volatile(value) };
                Ok(())
            }
            Bar::Region { device, region } => {
                device.write_region(region, offset as u64, &value.to_le_bytes())
            }
        }
    }

    /// Reads a 64-bit register as two dwords, low first.
    pub fn read64(&self, offset: usize) -> Result<u64, String> {
        let lo = self.read32(offset)?;
        let hi = self.read32(offset + 4)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// Writes a 64-bit register as two dwords, low first.
    pub fn write64(&self, offset: usize, value: u64) -> Result<(), String> {
        self.write32(offset, value as u32)?;
        self.write32(offset + 4, (value >> 32) as u32)
    }
}

impl Drop for Bar<'_> {
    fn drop(&mut self) {
        if let Bar::Mapped { ptr, len } = self {
            // SAFETY: unmaps exactly the mapping `open` made.
            unsafe { libc::munmap(ptr.cast(), *len) };
        }
    }
}

/// Pages the device reaches at an I/O virtual address. They are never
/// given back while the process lives: the container may still map them
/// until it is closed, and the process ends soon after.
#[derive(Debug)]
pub struct DmaBuffer {
    /// The memory.
    pub pages: ManuallyDrop<Pages>,
    /// Its I/O virtual address.
    pub iova: u64,
}

/// A submission/completion queue pair in DMA memory.
#[derive(Debug)]
pub struct QueuePair {
    /// Queue identifier (0: admin).
    pub qid: u16,
    /// Entries per queue.
    pub entries: u16,
    /// The submission queue.
    pub sq: DmaBuffer,
    /// The completion queue.
    pub cq: DmaBuffer,
    sq_tail: u16,
    cq_head: u16,
    phase: bool,
    next_cid: u16,
}

impl QueuePair {
    /// A fresh pair over `sq` and `cq` (zeroed pages), the controller's
    /// first pass through the CQ posting with phase 1.
    pub fn new(qid: u16, entries: u16, sq: DmaBuffer, cq: DmaBuffer) -> Self {
        Self {
            qid,
            entries,
            sq,
            cq,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            next_cid: 1,
        }
    }

    /// A new command identifier.
    pub fn cid(&mut self) -> u16 {
        let c = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        c
    }

    /// Copies `sqe` into the next slot and rings the tail doorbell.
    pub fn submit(&mut self, bar: &Bar, cap: &Cap, sqe: &Sqe) -> Result<(), String> {
        self.sq
            .pages
            .write(usize::from(self.sq_tail) * SQE_SIZE, &sqe.0);
        self.sq_tail = (self.sq_tail + 1) % self.entries;
        bar.write32(cap.sq_tail_doorbell(self.qid), u32::from(self.sq_tail))
    }

    /// The next completion if the controller has posted it; consumes it
    /// and rings the head doorbell.
    pub fn poll(&mut self, bar: &Bar, cap: &Cap) -> Result<Option<Cqe>, String> {
        let mut b = [0u8; CQE_SIZE];
        self.cq
            .pages
            .read(usize::from(self.cq_head) * CQE_SIZE, &mut b);
        let cqe = Cqe::parse(&b);
        if cqe.phase != self.phase {
            return Ok(None);
        }
        fence(Ordering::SeqCst);
        self.cq_head = (self.cq_head + 1) % self.entries;
        if self.cq_head == 0 {
            self.phase = !self.phase;
        }
        bar.write32(cap.cq_head_doorbell(self.qid), u32::from(self.cq_head))?;
        Ok(Some(cqe))
    }

    /// Polls until the completion of `cid` arrives or `timeout` passes.
    pub fn wait(
        &mut self,
        bar: &Bar,
        cap: &Cap,
        cid: u16,
        timeout: Duration,
    ) -> Result<Cqe, String> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.poll(bar, cap)? {
                return check_cid(c, cid);
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "no completion for command {cid} on queue {} within {timeout:?}",
                    self.qid
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// `c` if it completes `cid`.
fn check_cid(c: Cqe, cid: u16) -> Result<Cqe, String> {
    if c.cid != cid {
        return Err(format!(
            "completion for command {} while waiting for {cid}",
            c.cid
        ));
    }
    Ok(c)
}

/// An eventfd VFIO signals for one MSI-X vector.
#[derive(Debug)]
pub struct IrqEvent {
    fd: OwnedFd,
    /// Interrupts counted so far.
    pub count: u64,
}

impl IrqEvent {
    /// A new non-blocking eventfd.
    pub fn new() -> Result<Self, String> {
        // SAFETY: creates a new descriptor; no memory is passed.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is new and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, count: 0 })
    }

    /// The descriptor to hand to VFIO.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Waits up to `timeout` for the vector to fire; returns how many
    /// interrupts the eventfd counted (0 on timeout) and adds them to `count`.
    pub fn wait(&mut self, timeout: Duration) -> Result<u64, String> {
        let mut p = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one pollfd, valid for the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            return Err(format!(
                "poll on the MSI-X eventfd: {}",
                std::io::Error::last_os_error()
            ));
        }
        if r == 0 {
            return Ok(0);
        }
        let mut n = [0u8; 8];
        // SAFETY: reads 8 bytes into `n`.
        let got = unsafe { libc::read(self.raw(), n.as_mut_ptr().cast(), 8) };
        if got != 8 {
            return Err(format!(
                "read of the MSI-X eventfd: {}",
                std::io::Error::last_os_error()
            ));
        }
        let n = u64::from_ne_bytes(n);
        self.count += n;
        Ok(n)
    }
}

/// Waits for the completion of `cid` on `q`, announced by `irq`: the
/// interrupt must come, and the entry must be there once it has.
pub fn wait_interrupt(
    q: &mut QueuePair,
    bar: &Bar,
    cap: &Cap,
    irq: &mut IrqEvent,
    cid: u16,
    timeout: Duration,
) -> Result<Cqe, String> {
    if irq.wait(timeout)? == 0 {
        return Err(match q.poll(bar, cap)? {
            Some(c) => format!(
                "command {} completed (status {:#06x}) but its MSI-X vector did not fire within {timeout:?}",
                c.cid, c.status
            ),
            None => format!("no completion and no interrupt for command {cid} within {timeout:?}"),
        });
    }
    q.wait(bar, cap, cid, Duration::from_secs(1))
}

/// Waits up to `timeout` for CSTS.RDY to equal `ready`; fails early on CSTS.CFS.
pub fn wait_ready(bar: &Bar, ready: bool, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let csts = bar.read32(nvme::REG_CSTS)?;
        if csts == u32::MAX {
            return Err("CSTS reads all ones: the BAR is not decoded (memory space off?)".into());
        }
        if csts & CSTS_CFS != 0 {
            return Err(format!("controller fatal status (CSTS {csts:#x})"));
        }
        if (csts & CSTS_RDY != 0) == ready {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "CSTS.RDY did not become {} within {timeout:?} (CSTS {csts:#x})",
                u8::from(ready)
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
