//! Fuzzes the virtio-blk request parser (`virtio::blk::parse`) with a
//! guest-written descriptor table, indirect tables and buffers.
//!
//! Input layout: 16 bytes of parameters (capacity, limits, head index,
//! flags), then the bytes of guest RAM from address 0. Guest RAM is two
//! 64 KiB regions with a hole between them, so descriptors can point
//! into RAM, across the hole or past the end. The queue (16 entries) has
//! its descriptor table at 0 and its available ring at 0x100; the
//! available ring always offers one chain.

#![no_main]

use std::sync::Arc;

use dma::GuestDma;
use libfuzzer_sys::fuzz_target;
use virtio::blk::{self, Limits, RequestKind, SECTOR_SIZE};
use virtio_queue::QueueT;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((params, ram)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Some((mem, mut queue)) = common::ram_and_queue(ram, params[0]) else {
        return;
    };

    let capacity = u64::from(u32::from_le_bytes([
        params[1], params[2], params[3], params[4],
    ]));
    let flags = params[5];
    let limits = Limits {
        capacity,
        readonly: flags & 1 != 0,
        max_descriptors: usize::from(params[6]).max(1),
        discard: flags & 2 != 0,
        write_zeroes: flags & 4 != 0,
        max_discard_sectors: u32::from(u16::from_le_bytes([params[7], params[8]])),
        max_discard_seg: u32::from(params[9]),
        max_write_zeroes_sectors: u32::from(u16::from_le_bytes([params[10], params[11]])),
        max_write_zeroes_seg: u32::from(params[12]),
    };
    let mem = Arc::new(mem);
    let dma = GuestDma::new(mem.clone());
    let Some(chain) = queue.pop_descriptor_chain(&*mem) else {
        return;
    };
    let Ok(req) = blk::parse(chain, &dma, &limits) else {
        return;
    };
    check(&req.kind, &limits);
});

/// What every accepted request must satisfy.
fn check(kind: &RequestKind, limits: &Limits) {
    let disk = limits.capacity * SECTOR_SIZE;
    let total = |bufs: &[(u64, u64)]| bufs.iter().map(|b| b.1).sum::<u64>();
    match kind {
        RequestKind::Read { offset, data } => {
            assert!(offset + total(data) <= disk);
            assert_eq!(total(data) % SECTOR_SIZE, 0);
        }
        RequestKind::Write { offset, data } => {
            assert!(!limits.readonly);
            assert!(offset + total(data) <= disk);
            assert_eq!(total(data) % SECTOR_SIZE, 0);
        }
        RequestKind::GetId { data } => assert!(total(data) <= blk::ID_BYTES as u64),
        RequestKind::Discard { ranges } | RequestKind::WriteZeroes { ranges, .. } => {
            assert!(!limits.readonly);
            for &(offset, len) in ranges {
                assert!(len > 0 && offset + len <= disk);
            }
        }
        RequestKind::Flush | RequestKind::Fail { .. } => {}
    }
}
