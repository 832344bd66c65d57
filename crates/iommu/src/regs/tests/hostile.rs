//! A hostile guest: every offset up to past the fault record, every width,
//! unaligned, random values (a fixed-seed xorshift), with faults recorded
//! in between. Nothing panics, read-only registers keep their values and
//! reserved bits read as zero.

use dma::RequesterId;

use super::*;
use crate::fault::{FaultReason, FaultRecord};
use layout::{
    CAP, CCMD, ECAP, FEADDR, FECTL, FEDATA, FEUADDR, FRCD, FSTS, GCMD, GSTS, ICS, IEADDR, IECTL,
    IEDATA, IEUADDR, IOTLB, IQA, IQERCD, IQH, IQT, IRTA, IVA, REGS_END, REGS_SIZE, RTADDR, VER,
};

/// xorshift64* (Vigna), fixed seed: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Registers of the default unit whose bits may ever be non-zero
/// (offset, size, bits). Bits only the queue processor will set (IQH,
/// FSTS.IQE/ICE/ITE, ICS.IWC, IECTL.IP) must stay 0 under guest writes.
const DEFINED: [(usize, usize, u64); 26] = [
    (VER, 4, 0x10),
    (CAP, 8, u64::MAX),
    (ECAP, 8, u64::MAX),
    (GCMD, 4, 0),
    (GSTS, 4, 0xc780_0000),
    (RTADDR, 8, !0xfff),
    (CCMD, 8, 0x7800_0003_ffff_ffff),
    (FSTS, 4, 0x3),
    (FECTL, 4, 0xc000_0000),
    (FEDATA, 4, 0xffff),
    (FEADDR, 4, 0xffff_fffc),
    (FEUADDR, 4, 0xffff_ffff),
    (IQH, 8, 0),
    (IQT, 8, 0x7fff0),
    (IQA, 8, !0xfff | 0x7),
    (ICS, 4, 0),
    (IECTL, 4, 0x8000_0000),
    (IEDATA, 4, 0xffff),
    (IEADDR, 4, 0xffff_fffc),
    (IEUADDR, 4, 0xffff_ffff),
    (IQERCD, 8, 0),
    (IRTA, 8, !0xfff | 0x80f),
    (IVA, 8, !0xfff | 0x7f),
    (IOTLB, 8, 0x3603_ffff_0000_0000),
    (FRCD, 8, !0xfff),
    (FRCD + 8, 8, 0xc000_00ff_0000_ffff),
];

fn check(r: &Registers, fresh: &Registers, what: &str) {
    let mut page = vec![0u8; REGS_SIZE];
    r.read(0, &mut page);
    let mut covered = vec![false; REGS_SIZE];
    for &(offset, len, bits) in &DEFINED {
        let v = read(r, offset, len);
        assert_eq!(v & !bits, 0, "reserved bits of {offset:#x} after {what}");
        covered[offset..offset + len].fill(true);
    }
    for offset in [VER, CAP, ECAP] {
        assert_eq!(
            read64(r, offset),
            read64(fresh, offset),
            "{offset:#x} after {what}"
        );
    }
    let stray = (0..REGS_SIZE).find(|&i| !covered[i] && page[i] != 0);
    assert_eq!(stray, None, "a byte outside the registers after {what}");
}

/// The effect's variant, to count which ones the sweep reached.
fn kind(e: &Effect) -> std::mem::Discriminant<Effect> {
    std::mem::discriminant(e)
}

fn check_effect(e: &Effect, what: &str) {
    match *e {
        Effect::SetRootTable(addr) => assert_eq!(addr & 0xfff, 0, "{what}"),
        Effect::SetInterruptTable { addr, entries, .. } => {
            assert_eq!(addr & 0xfff, 0, "{what}");
            assert!((2..=65536).contains(&entries), "{what}");
        }
        _ => {}
    }
}

#[test]
fn test_every_offset_width_and_value_is_harmless() {
    let fresh = regs();
    let mut r = regs();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut writes = 0u32;
    let mut kinds = std::collections::HashSet::new();

    for round in 0..4 {
        for width in [1, 2, 4, 8] {
            for offset in 0..REGS_END + 0x10 {
                let value = rng.next().to_le_bytes();
                let what = format!("round {round}, {width} bytes at {offset:#x}");
                let effects = r.write(offset, &value[..width]);
                let mut buf = [0u8; 8];
                r.read(offset, &mut buf[..width]);
                if value[0] & 7 == 0 {
                    let f = FaultRecord {
                        requester: RequesterId(rng.next() as u16),
                        addr: rng.next(),
                        reason: FaultReason::PteReserved,
                        write: value[1] & 1 == 0,
                    };
                    kinds.extend(r.record_fault(&f).map(|e| kind(&e)));
                }
                kinds.extend(effects.iter().map(kind));
                for e in &effects {
                    check_effect(e, &what);
                }
                check(&r, &fresh, &what);
                writes += 1;
            }
        }
    }

    assert_eq!(writes, 4 * 4 * (REGS_END as u32 + 0x10));
    assert_eq!(
        kinds.len(),
        10,
        "every kind of effect was reached: {kinds:?}"
    );
}

#[test]
fn test_accesses_at_the_page_end_and_beyond_are_ignored() {
    let fresh = regs();
    let mut r = regs();

    for offset in [REGS_SIZE - 3, REGS_SIZE, usize::MAX - 2, usize::MAX] {
        let e = r.write(offset, &[0xff; 8]);
        let mut buf = [0xaau8; 8];
        r.read(offset, &mut buf);

        assert!(e.is_empty());
        assert_eq!(buf, [0; 8], "{offset:#x}");
    }
    check(&r, &fresh, "writes at the end");
}

#[test]
fn test_read_only_registers_ignore_every_width() {
    let fresh = regs();
    let mut r = regs();

    for offset in VER..GCMD {
        for width in [1, 2, 4, 8] {
            r.write(offset, &[0xff; 8][..width]);
        }
    }

    for offset in [VER, CAP, ECAP] {
        assert_eq!(read64(&r, offset), read64(&fresh, offset));
    }
}
