//! Fuzzes VT-d interrupt remapping (`iommu::intremap`): a remappable or
//! compatibility-format interrupt request a guest's device or IOAPIC
//! entry made, translated through a remapping table the guest wrote.
//!
//! Input layout: 8 bytes of message address, 4 of message data, 2 of
//! requester ID, 1 byte of flags (x2APIC mode, compatibility format
//! allowed, table size exponent in bits 7:4), then guest RAM from address
//! 0 (64 KiB, the rest zero; the table sits at 0). Nothing may panic; a
//! translated message must be one KVM takes (the local APICs' window, no
//! reserved low byte in the upper address) and, unless it passed as a
//! compatibility-format request, come from a present entry.

#![no_main]

mod iommu_common;

use std::sync::Arc;

use dma::{Dma, GuestDma, RequesterId};
use iommu::intremap::decode_irte;
use iommu::InterruptRemapper;
use irq::msi::MsiMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((address, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((msg_data, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let Some((rid, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let Some((&flags, ram)) = rest.split_first() else {
        return;
    };
    let Some(mem) = iommu_common::guest_ram(ram) else {
        return;
    };
    for e in ram.chunks_exact(16).take(64) {
        let lo = u64::from_le_bytes(e[..8].try_into().unwrap());
        let hi = u64::from_le_bytes(e[8..].try_into().unwrap());
        let _ = decode_irte(lo, hi, flags & 1 != 0);
    }
    let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
    let ir = InterruptRemapper::new(ram);
    let msg = MsiMessage {
        address: u64::from_le_bytes(*address),
        data: u32::from_le_bytes(*msg_data),
    };
    let requester = RequesterId(u16::from_le_bytes(*rid));
    assert_eq!(
        ir.remap(msg, requester),
        Ok(msg),
        "remapping off passes all"
    );

    let x2apic = flags & 1 != 0;
    let compat = flags & 2 != 0;
    ir.set_table(0, 2u32 << (flags >> 4), x2apic);
    ir.set_compatibility(compat);
    ir.set_enabled(true);
    if let Ok(out) = ir.remap(msg, requester) {
        if msg.address & 0x10 == 0 {
            assert!(compat, "compatibility format passed while blocked");
            assert_eq!(out, msg);
        } else {
            assert_eq!(out.address & 0xfff0_0000, 0xfee0_0000, "{out:x?}");
            assert_eq!((out.address >> 32) & 0xff, 0, "{out:x?}");
            if !x2apic {
                assert_eq!(out.address >> 32, 0, "xAPIC destinations are 8 bits");
            }
        }
    }
});
