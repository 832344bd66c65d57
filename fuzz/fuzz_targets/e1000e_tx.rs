//! Fuzzes the e1000e transmit path's parsing of guest-written data: the
//! descriptor parser (`TxDesc::parse`), packet assembly across
//! descriptors (`TxMachine::push`) and the offloads (`tx::finish`:
//! checksum insertion, TSO segmentation, VLAN insertion, padding).
//!
//! Input layout: one byte of flags (bit 0: TCTL.PSP), a 2-byte count of
//! descriptors (at most 64), that many 16-byte descriptors, then a pool of
//! bytes that stands for guest RAM: a buffer is `len` bytes at `addr`
//! modulo the pool, or a DMA failure when it runs past the pool. No input
//! may panic; a finished packet never makes more than `MAX_SEGMENTS`
//! frames, nor a frame longer than `MAX_PACKET` plus a VLAN tag.

#![no_main]

use devices::e1000e::desc::{TxDesc, DESC_SIZE};
use devices::e1000e::tx::{self, Step, TxError, TxMachine, MAX_PACKET, MAX_SEGMENTS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((count, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let count = usize::from(u16::from_le_bytes(*count)).min(64);
    let Some((descs, pool)) = rest.split_at_checked(count * DESC_SIZE) else {
        return;
    };
    let mut m = TxMachine::default();
    for raw in descs.chunks_exact(DESC_SIZE) {
        let raw: &[u8; DESC_SIZE] = raw.try_into().unwrap();
        let d = TxDesc::parse(raw);
        let (addr, len) = match d {
            TxDesc::Legacy { addr, len, .. } => (addr, usize::from(len)),
            TxDesc::Data { addr, len, .. } => (addr, len as usize),
            _ => (0, 0),
        };
        let bytes = if pool.is_empty() {
            Err(TxError::Dma)
        } else {
            let start = (addr % pool.len() as u64) as usize;
            pool.get(start..start + len).ok_or(TxError::Dma)
        };
        if let Step::Done(p) = m.push(&d, bytes) {
            assert!(p.bytes.len() <= MAX_PACKET);
            if let Ok(frames) = tx::finish(&p, 0x8100, flags & 1 != 0) {
                assert!(frames.len() <= MAX_SEGMENTS);
                assert!(frames.iter().all(|f| f.len() <= MAX_PACKET + 4 + tx::MIN_FRAME));
            }
        }
    }
});
