//! Fuzzes the e1000e receive placement: the ring as the guest's
//! registers describe it (`RxRing::from_regs`: RDBAL, RDLEN, RDH, RDT,
//! RCTL, RFCTL, PSRCTL) and the placement of one frame in it
//! (`rx::place`: legacy, extended and packet-split descriptors, buffers
//! NULL, inside or outside guest RAM).
//!
//! Input layout: seven little-endian u32 register values (RDBAL, RDLEN,
//! RDH, RDT, RCTL, RFCTL, PSRCTL), a 2-byte frame length, the frame, then
//! guest RAM from address 0 (at most 64 KiB). No input may panic;
//! placement uses at most the descriptors the driver gave and leaves the
//! head inside the ring.

#![no_main]

use std::sync::Arc;

use devices::e1000e::regs::{self, Regs};
use devices::e1000e::rx::{self, RxRing};
use dma::GuestDma;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: usize = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    let Some((words, rest)) = data.split_first_chunk::<28>() else {
        return;
    };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (frame, ram) = rest.split_at(len);
    let w = |i: usize| u32::from_le_bytes(words[4 * i..4 * i + 4].try_into().unwrap());
    let mut r = Regs::new();
    for (i, reg) in [regs::RDBAL, regs::RDLEN, regs::RDH, regs::RDT, regs::RCTL, regs::RFCTL, regs::PSRCTL]
        .into_iter()
        .enumerate()
    {
        r.write_masked(reg, w(i));
    }
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]) else {
        return;
    };
    let ram = &ram[..ram.len().min(RAM)];
    if mem.write_slice(ram, GuestAddress(0)).is_err() {
        return;
    }
    let dma = GuestDma::new(Arc::new(mem));
    let Ok(mut ring) = RxRing::from_regs(&r) else {
        return;
    };
    let free = ring.free();
    if let Ok(p) = rx::place(&mut ring, &dma, frame, None) {
        assert!(p.descriptors <= free);
        assert!(ring.head < ring.count);
    }
});
