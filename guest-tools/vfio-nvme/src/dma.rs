//! Memory the device reaches: anonymous pages of this process, each given
//! an I/O virtual address from a window far from guest RAM, and the
//! guest-physical address behind a page (from `/proc/self/pagemap`) to
//! show that the two differ.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::nvme::PAGE;

/// Where the driver's I/O virtual addresses start: 4 GiB, above the test
/// guest's RAM below the PCI hole, so that no IOVA equals the guest-physical
/// address of its page.
pub const IOVA_BASE: u64 = 0x1_0000_0000;

/// Hands out page-aligned I/O virtual addresses upwards from a base.
#[derive(Debug)]
pub struct IovaAllocator {
    next: u64,
}

impl IovaAllocator {
    /// An allocator starting at `base` (page-aligned).
    pub fn new(base: u64) -> Self {
        assert_eq!(base % PAGE, 0, "IOVA base must be page-aligned");
        Self { next: base }
    }

    /// The next `pages` pages of I/O virtual space.
    pub fn take(&mut self, pages: u64) -> u64 {
        let iova = self.next;
        self.next += pages * PAGE;
        iova
    }
}

/// Anonymous, zeroed, populated pages of this process.
#[derive(Debug)]
pub struct Pages {
    ptr: *mut u8,
    len: usize,
}

impl Pages {
    /// `pages` fresh pages.
    pub fn new(pages: usize) -> Result<Self, String> {
        let len = pages * PAGE as usize;
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {pages} anonymous pages: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The address of the first byte in this process.
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Reads the bytes at `offset..offset+out.len()` as the device left them.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= self.len, "read past the buffer");
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the mapping (checked above); volatile because
            // the device writes the pages behind the compiler's back.
            *b = unsafe { self.ptr.add(offset + i).read_volatile() };
        }
    }

    /// Writes `data` at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len, "write past the buffer");
        for (i, b) in data.iter().enumerate() {
            // SAFETY: inside the mapping (checked above); volatile so that the
            // writes happen before the doorbell that hands them to the device.
            unsafe { self.ptr.add(offset + i).write_volatile(*b) };
        }
    }

    /// Fills the pages with `byte`.
    pub fn fill(&self, byte: u8) {
        self.write(0, &vec![byte; self.len]);
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value made.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The physical address in a `/proc/self/pagemap` entry for the byte at
/// `vaddr`: bits 54:0 hold the frame number when bit 63 (present) is set;
/// the frame is 0 to a reader without CAP_SYS_ADMIN.
pub fn pagemap_physical(entry: u64, vaddr: u64) -> Option<u64> {
    let present = entry & (1 << 63) != 0;
    let pfn = entry & ((1 << 55) - 1);
    (present && pfn != 0).then_some(pfn * PAGE + vaddr % PAGE)
}

/// The guest-physical address of the byte at `vaddr` of this process.
pub fn guest_physical(vaddr: u64) -> Result<u64, String> {
    let f = File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, vaddr / PAGE * 8)
        .map_err(|e| format!("/proc/self/pagemap at {vaddr:#x}: {e}"))?;
    pagemap_physical(u64::from_le_bytes(b), vaddr)
        .ok_or_else(|| format!("page {vaddr:#x} is not present or its frame is hidden"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_iovas_are_consecutive_pages_from_the_base() {
        let mut a = IovaAllocator::new(IOVA_BASE);
        assert_eq!(a.take(1), 0x1_0000_0000);
        assert_eq!(a.take(2), 0x1_0000_1000);
        assert_eq!(a.take(1), 0x1_0000_3000);
    }

    #[test]
    fn test_pagemap_entries() {
        let present = 1u64 << 63;
        assert_eq!(
            pagemap_physical(present | 0x3e5f1, 0x7f00_0000_0123),
            Some(0x3e5f_1123)
        );
        assert_eq!(pagemap_physical(0x3e5f1, 0x1000), None, "not present");
        assert_eq!(pagemap_physical(present, 0x1000), None, "frame hidden");
        // soft-dirty (55) and exclusive (56) bits are not part of the frame
        assert_eq!(
            pagemap_physical(present | 3 << 55 | 0x10, 0),
            Some(0x10_000)
        );
    }

    #[test]
    fn test_pages_read_back_what_was_written() {
        let p = Pages::new(2).unwrap();
        assert_eq!(p.len(), 8192);
        let mut b = [0xffu8; 4];
        p.read(4096, &mut b);
        assert_eq!(b, [0; 4], "fresh pages are zero");
        p.write(4094, &[1, 2, 3, 4]);
        p.read(4094, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        p.fill(0xa5);
        p.read(8188, &mut b);
        assert_eq!(b, [0xa5; 4]);
    }
}
