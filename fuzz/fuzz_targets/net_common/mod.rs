//! What the virtio-net fuzz targets share: guest RAM of two 64 KiB regions
//! with a hole between them, filled from the input; the receive (0),
//! transmit (1) and control (2) queues of one pair at fixed places in the
//! first region, 16 entries each, the driver having made `offered[q]`
//! chains available on each; a backend that hands the device the frames
//! the target chose; and the byte ranges a device may write (the
//! device-writable buffers the descriptor tables, direct or indirect,
//! name, and the used rings).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use backend::net::{FrameIo, Offloads};
use dma::GuestDma;
use virtio::{Activation, QueueSetup, Signals};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Entries of each queue.
pub const QSIZE: u16 = 16;
const REGION: usize = 0x1_0000;
const SECOND: u64 = 0x2_0000;
/// Where queue `q`'s descriptor table, available ring and used ring are.
pub fn rings(q: u16) -> (u64, u64, u64) {
    let base = 0x400 * u64::from(q);
    (base, base + 0x100, base + 0x200)
}
/// Bytes of a used ring of [`QSIZE`] entries (flags, idx, ring, event).
pub const USED_LEN: u64 = 4 + 8 * QSIZE as u64 + 2;
const F_WRITE: u16 = 2;
const F_NEXT: u16 = 1;
const F_INDIRECT: u16 = 4;

/// Guest RAM holding `ram` (first region, then the second).
pub fn guest_ram(ram: &[u8]) -> Option<Arc<GuestMemoryMmap>> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), REGION),
        (GuestAddress(SECOND), REGION),
    ])
    .ok()?;
    let first = &ram[..ram.len().min(REGION)];
    let second = &ram[first.len()..];
    let second = &second[..second.len().min(REGION)];
    mem.write_slice(first, GuestAddress(0)).ok()?;
    mem.write_slice(second, GuestAddress(SECOND)).ok()?;
    Some(Arc::new(mem))
}

/// Every byte of guest RAM, in order of address.
pub fn snapshot(mem: &GuestMemoryMmap) -> Vec<u8> {
    let mut out = vec![0u8; 2 * REGION];
    let (a, b) = out.split_at_mut(REGION);
    mem.read_slice(a, GuestAddress(0)).expect("first region");
    mem.read_slice(b, GuestAddress(SECOND))
        .expect("second region");
    out
}

/// Where the `len` bytes at guest address `addr` are in a [`snapshot`],
/// if they are all in one region.
pub fn index_of(addr: u64, len: u64) -> Option<usize> {
    let end = addr.checked_add(len)?;
    if end <= REGION as u64 {
        Some(addr as usize)
    } else if addr >= SECOND && end <= SECOND + REGION as u64 {
        Some(REGION + (addr - SECOND) as usize)
    } else {
        None
    }
}

/// The guest address of byte `i` of a [`snapshot`].
pub fn address_of(i: usize) -> u64 {
    if i < REGION {
        i as u64
    } else {
        SECOND + (i - REGION) as u64
    }
}

/// Nothing recorded: the targets look at the rings.
#[derive(Debug, Default)]
pub struct NoSignals;

impl Signals for NoSignals {
    fn used(&self, _: u16) {}
    fn config_changed(&self) {}
    fn needs_reset(&self) {}
}

/// The activation of queues `0..queues` with `features`, the driver
/// having made `offered[q]` chains available on queue `q` (the ring
/// entries are the input's).
pub fn activation(
    mem: &Arc<GuestMemoryMmap>,
    features: u64,
    offered: &[u16],
) -> Option<Activation> {
    let mut queues = Vec::new();
    for (q, &n) in offered.iter().enumerate() {
        let q = q as u16;
        let (desc, avail, used) = rings(q);
        mem.write_obj(n, GuestAddress(avail + 2)).ok()?;
        mem.write_obj(0u16, GuestAddress(used + 2)).ok()?;
        let mut queue = Queue::new(QSIZE).ok()?;
        queue.set_size(QSIZE);
        queue.set_desc_table_address(Some(desc as u32), Some(0));
        queue.set_avail_ring_address(Some(avail as u32), Some(0));
        queue.set_used_ring_address(Some(used as u32), Some(0));
        queue.set_ready(true);
        queues.push(QueueSetup {
            index: q,
            queue,
            notify: EventFd::new(EFD_NONBLOCK).ok()?,
        });
    }
    let dma: Arc<dyn dma::Dma> = Arc::new(GuestDma::new(mem.clone()));
    Some(Activation {
        features,
        memory: Arc::new(virtio::Memory::new(dma.clone())),
        dma,
        queues,
        signals: Arc::new(NoSignals),
        counters: Arc::default(),
    })
}

/// A backend that hands out the frames it was given, then would block.
#[derive(Debug, Default)]
pub struct Frames(pub Mutex<VecDeque<Vec<u8>>>);

impl AsRawFd for Frames {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

impl FrameIo for Frames {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        let frame = self.0.lock().unwrap().pop_front();
        let frame = frame.ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(n)
    }

    fn write_frame(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(bufs.iter().map(|b| b.len()).sum())
    }

    fn set_offloads(&self, _: Offloads) -> io::Result<()> {
        Ok(())
    }

    fn set_enabled(&self, _: bool) -> io::Result<()> {
        Ok(())
    }
}

/// One descriptor as the driver wrote it.
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

/// Descriptor `i` of the table at `table` in `ram` (a [`snapshot`]).
pub fn desc(ram: &[u8], table: u64, i: u16) -> Option<Desc> {
    let at = table.checked_add(16 * u64::from(i))?;
    let at = index_of(at, 16)?;
    let b = &ram[at..at + 16];
    Some(Desc {
        addr: u64::from_le_bytes(b[0..8].try_into().ok()?),
        len: u32::from_le_bytes(b[8..12].try_into().ok()?),
        flags: u16::from_le_bytes(b[12..14].try_into().ok()?),
        next: u16::from_le_bytes(b[14..16].try_into().ok()?),
    })
}

/// The guest ranges `[start, end)` of queue `q`'s device-writable buffers
/// as `ram` describes them (in its descriptor table and the indirect
/// tables it names), and of those indirect tables.
fn buffers(ram: &[u8], q: u16) -> (Vec<(u64, u64)>, Vec<(u64, u64)>) {
    let (table, _, _) = rings(q);
    let (mut writable, mut tables) = (Vec::new(), Vec::new());
    let span = |d: Desc| (d.addr, d.addr.saturating_add(u64::from(d.len)));
    for i in 0..QSIZE {
        let Some(d) = desc(ram, table, i) else {
            continue;
        };
        if d.flags & F_INDIRECT != 0 {
            tables.push(span(d));
            for j in 0..(d.len / 16).min(u32::from(u16::MAX)) {
                let Some(e) = desc(ram, d.addr, j as u16) else {
                    break;
                };
                if e.flags & F_WRITE != 0 {
                    writable.push(span(e));
                }
            }
        } else if d.flags & F_WRITE != 0 {
            writable.push(span(d));
        }
    }
    (writable, tables)
}

/// Asserts that the device changed no byte of guest RAM outside queue
/// `q`'s device-writable buffers and its used ring. Checked when the
/// descriptors the device read are those `before` shows: nothing the
/// device may write (buffers, used ring) overlaps the descriptor table,
/// the available ring or an indirect table (a guest that lays them over
/// each other has the device follow descriptors the device itself
/// rewrote, which this check cannot see).
pub fn assert_writes_within(before: &[u8], after: &[u8], q: u16) {
    let (table, _, used) = rings(q);
    let (mut allowed, mut protected) = buffers(before, q);
    protected.push((table, used));
    allowed.push((used, used + USED_LEN));
    let overlaps = |&(s, e): &(u64, u64)| protected.iter().any(|&(ps, pe)| s < pe && ps < e);
    if allowed.iter().any(overlaps) {
        return;
    }
    // Whole chunks compare as one `memcmp` (not instrumented byte by byte).
    const CHUNK: usize = 256;
    for (c, (bc, ac)) in before.chunks(CHUNK).zip(after.chunks(CHUNK)).enumerate() {
        if bc == ac {
            continue;
        }
        for (k, (b, a)) in bc.iter().zip(ac).enumerate() {
            if b == a {
                continue;
            }
            let i = c * CHUNK + k;
            let addr = address_of(i);
            assert!(
                allowed.iter().any(|&(s, e)| (s..e).contains(&addr)),
                "byte at {addr:#x} written outside every device-writable buffer"
            );
        }
    }
}

/// The device-readable and device-writable buffers (non-empty ones) of
/// the direct chain at `head` of queue `q`, in order, or `None` if it is
/// indirect, loops or leaves the table.
pub fn chain(ram: &[u8], q: u16, head: u16) -> Option<(Vec<(u64, u32)>, Vec<(u64, u32)>)> {
    let (table, _, _) = rings(q);
    let (mut readable, mut writable) = (Vec::new(), Vec::new());
    let mut i = head;
    for _ in 0..QSIZE {
        let d = desc(ram, table, i % QSIZE)?;
        if i >= QSIZE || d.flags & F_INDIRECT != 0 {
            return None;
        }
        if d.len > 0 {
            let part = if d.flags & F_WRITE != 0 {
                &mut writable
            } else {
                &mut readable
            };
            part.push((d.addr, d.len));
        }
        if d.flags & F_NEXT == 0 {
            return Some((readable, writable));
        }
        i = d.next;
    }
    None
}

/// The used ring of queue `q` in `ram`: its `(id, len)` entries.
pub fn used(ram: &[u8], q: u16) -> Vec<(u32, u32)> {
    let (_, _, used) = rings(q);
    let used = used as usize;
    let at = used;
    let idx = u16::from_le_bytes([ram[at + 2], ram[at + 3]]);
    (0..idx.min(QSIZE))
        .map(|k| {
            let e = at + 4 + 8 * usize::from(k);
            let id = u32::from_le_bytes(ram[e..e + 4].try_into().unwrap());
            let len = u32::from_le_bytes(ram[e + 4..e + 8].try_into().unwrap());
            (id, len)
        })
        .collect()
}

/// `len` bytes read across `segs` of guest RAM `ram` (a [`snapshot`]), or
/// `None` if they leave RAM.
pub fn read_segs(ram: &[u8], segs: &[(u64, u32)], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    for &(addr, seg_len) in segs {
        let want = (len - out.len()).min(seg_len as usize) as u64;
        let start = index_of(addr, want)?;
        out.extend_from_slice(&ram[start..start + want as usize]);
        if out.len() == len {
            break;
        }
    }
    (out.len() == len).then_some(out)
}
