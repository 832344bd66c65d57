//! Fuzzes the VT-d invalidation queue (`iommu::qi` and
//! `Registers::process_queue`): descriptors a guest wrote into RAM, with a
//! queue address, size and tail it chose.
//!
//! Input layout: 8 bytes of IQA, 4 bytes of IQT, 1 byte of flags (which
//! registers to write first: IECTL unmask, the queue on), then guest RAM
//! from address 0 (64 KiB, the rest zero). Nothing may panic; IQH must
//! stay inside the queue and on a descriptor boundary; every descriptor
//! the parser accepts must parse the same way twice.

#![no_main]

mod iommu_common;

use std::sync::Arc;

use dma::{Dma, GuestDma};
use iommu::qi::{parse, Limits};
use iommu::regs::layout::{GCMD, IECTL, IQA, IQT};
use iommu::regs::Options;
use iommu::{Capabilities, Effect, Registers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((iqa, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((iqt, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let Some((&flags, ram)) = rest.split_first() else {
        return;
    };
    let Some(mem) = iommu_common::guest_ram(ram) else {
        return;
    };
    let limits = Limits {
        dma_drain: flags & 4 != 0,
        max_address_mask: 18,
    };
    for d in ram.chunks_exact(16).take(64) {
        let qw0 = u64::from_le_bytes(d[..8].try_into().unwrap());
        let qw1 = u64::from_le_bytes(d[8..].try_into().unwrap());
        assert_eq!(parse(qw0, qw1, &limits), parse(qw0, qw1, &limits));
    }

    let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
    let mut regs = Registers::new(&Capabilities::DEFAULT, &Options::DEFAULT);
    regs.write(IQA, iqa);
    if flags & 1 != 0 {
        regs.write(IECTL, &0u32.to_le_bytes());
    }
    let qie = if flags & 2 != 0 { 1u32 << 26 } else { 0 };
    let mut effects = regs.write(GCMD, &qie.to_le_bytes());
    effects.extend(regs.write(IQT, iqt));
    for _ in 0..2 {
        if effects.contains(&Effect::ProcessQueue) {
            let processed = regs.process_queue(ram.as_ref());
            assert!(
                !processed.contains(&Effect::ProcessQueue),
                "processing the queue asked for processing again"
            );
        }
        let entries = 256u64 << (regs.iqa() & 7);
        assert!(
            regs.iqh() < entries * 16,
            "IQH {:#x} outside the queue",
            regs.iqh()
        );
        assert_eq!(regs.iqh() & 0xf, 0);
        effects = regs.write(iommu::regs::layout::FSTS, &0x10u32.to_le_bytes());
    }
});
