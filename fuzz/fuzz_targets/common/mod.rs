//! What the virtio fuzz targets share: guest RAM of two 64 KiB regions
//! with a hole between them (so descriptors can point into RAM, across the
//! hole or past the end), filled from the input, and a 16-entry split
//! queue whose descriptor table is at 0 and whose available ring (at
//! 0x100) offers one chain with an input-chosen head.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Entries of the queue.
const QSIZE: u16 = 16;
const REGION: usize = 0x1_0000;
const SECOND: u64 = 0x2_0000;
const AVAIL: u64 = 0x100;
const USED: u64 = 0x200;

/// Guest RAM holding `ram` (first region, then the second), with one
/// chain at `head` (taken modulo twice the queue size, so it may lie past
/// the table) on offer, and the queue set up over it.
pub fn ram_and_queue(ram: &[u8], head: u8) -> Option<(GuestMemoryMmap<()>, Queue)> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), REGION),
        (GuestAddress(SECOND), REGION),
    ])
    .ok()?;
    let first = &ram[..ram.len().min(REGION)];
    let second = &ram[first.len()..];
    let second = &second[..second.len().min(REGION)];
    let head = u16::from(head) % (QSIZE * 2);
    mem.write_slice(first, GuestAddress(0)).ok()?;
    mem.write_slice(second, GuestAddress(SECOND)).ok()?;
    mem.write_obj(0u16, GuestAddress(AVAIL)).ok()?;
    mem.write_obj(1u16, GuestAddress(AVAIL + 2)).ok()?;
    mem.write_obj(head, GuestAddress(AVAIL + 4)).ok()?;
    let mut queue = Queue::new(QSIZE).ok()?;
    queue.set_size(QSIZE);
    queue.set_desc_table_address(Some(0), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_ready(true);
    Some((mem, queue))
}
