//! GCMD/GSTS (§11.4.4, §11.4.5) and RTADDR (§11.4.6), and the effects
//! applied to a remapper.

use dma::{Direction, RequesterId};

use super::*;
use crate::remapper::{Piece, Remapper};
use crate::testing::{Machine, ROOT};
use crate::walk::Levels;
use layout::{gcmd, GCMD, GSTS, IQA, IQH, IQT, IRTA, RTADDR};

/// Linux's `iommu->gcmd | cmd` then the poll of GSTS.
fn command(r: &mut Registers, cmd: u32) -> Vec<Effect> {
    let levels = r.gsts() & gcmd::LEVELS;
    write32(r, GCMD, levels | cmd)
}

#[test]
fn test_reset_gsts_zero_gcmd_reads_zero() {
    let mut r = regs();

    command(&mut r, gcmd::TE);

    assert_eq!(regs().gsts(), 0);
    assert_eq!(read32(&r, GSTS), gcmd::TE);
    assert_eq!(read32(&r, GCMD), 0, "GCMD is write-only");
}

#[test]
fn test_guest_sequence_enables_translation_with_that_table() {
    let m = Machine::new();
    let ct = m.alloc_table();
    let top = m.alloc_table();
    m.set_root(0, ct | 1);
    m.set_context(ct, 0x08, top | 1, 2 | 1 << 8);
    m.map(top, Levels::Four, 0x4000, 0x30_0000, 1, 3);
    let remapper = Remapper::new(m.ram().clone(), Capabilities::DEFAULT, 1);
    let mut r = regs();
    let run = |effects: Vec<Effect>| {
        for e in &effects {
            apply(e, &remapper);
        }
        effects
    };

    let e = write64(&mut r, RTADDR, ROOT);
    run(e);
    let e = command(&mut r, gcmd::SRTP);
    let srtp = run(e);
    let rtps = r.gsts() & gcmd::SRTP != 0;
    let e = command(&mut r, gcmd::TE);
    let te = run(e);
    let tes = r.gsts() & gcmd::TE != 0;

    assert_eq!(srtp, [Effect::SetRootTable(ROOT)]);
    assert!(rtps, "RTPS set by the SRTP write");
    assert_eq!(te, [Effect::Translation(true)]);
    assert!(tes, "TES set by the TE write");
    assert_eq!(
        remapper.translate(RequesterId::new(0, 1, 0), 0x4123, Direction::ToDevice),
        Ok(Piece {
            gpa: 0x30_0123,
            len: 0xedd
        })
    );
}

#[test]
fn test_apply_leaves_other_effects() {
    let m = Machine::new();
    let remapper = Remapper::new(m.ram().clone(), Capabilities::DEFAULT, 1);

    let applied = [
        apply(&Effect::SetRootTable(0x5000), &remapper),
        apply(&Effect::Translation(true), &remapper),
        apply(
            &Effect::InvalidateContext(ContextInvalidation::Global),
            &remapper,
        ),
        apply(&Effect::ProcessQueue, &remapper),
        apply(&Effect::InterruptRemapping(true), &remapper),
    ];

    assert_eq!(applied, [true, true, true, false, false]);
    assert_eq!((remapper.root_table(), remapper.enabled()), (0x5000, true));
}

#[test]
fn test_srtp_latches_rtaddr_at_the_command() {
    let mut r = regs();
    write64(&mut r, RTADDR, 0x1234_5fff);

    let e = command(&mut r, gcmd::SRTP);
    write64(&mut r, RTADDR, 0x9000);

    assert_eq!(e, [Effect::SetRootTable(0x1234_5000)]);
    assert_eq!(r.rtaddr(), 0x9000, "RTA only, TTM stays 00");
}

#[test]
fn test_te_is_a_level_reported_on_change_only() {
    let mut r = regs();

    let on = command(&mut r, gcmd::TE);
    let again = command(&mut r, 0);
    let off = write32(&mut r, GCMD, 0);

    assert_eq!(on, [Effect::Translation(true)]);
    assert!(again.is_empty(), "the same level again is no change");
    assert_eq!(off, [Effect::Translation(false)]);
    assert_eq!(r.gsts(), 0);
}

#[test]
fn test_linux_interrupt_remapping_sequence() {
    let mut r = regs();
    write64(&mut r, IQA, 0x7_0000);
    write32(&mut r, IQT, 0);

    let qie = command(&mut r, gcmd::QIE);
    write64(&mut r, IRTA, 0x80_0000 | 1 << 11 | 0xf);
    let sirtp = command(&mut r, gcmd::SIRTP);
    let ire = command(&mut r, gcmd::IRE);
    let cfi = command(&mut r, gcmd::CFI);

    assert_eq!(qie, [Effect::QueuedInvalidation(true)]);
    assert_eq!(
        sirtp,
        [Effect::SetInterruptTable {
            addr: 0x80_0000,
            entries: 65536,
            eime: true
        }]
    );
    assert_eq!(ire, [Effect::InterruptRemapping(true)]);
    assert_eq!(cfi, [Effect::CompatibilityFormat(true)]);
    assert_eq!(
        r.gsts(),
        gcmd::QIE | gcmd::SIRTP | gcmd::IRE | gcmd::CFI,
        "QIES, IRTPS, IRES, CFIS"
    );
}

#[test]
fn test_commands_ecap_lacks_are_ignored() {
    let opts = Options {
        interrupt_remapping: false,
        ..Options::DEFAULT
    };
    let mut r = Registers::new(&Capabilities::DEFAULT, &opts);
    write64(&mut r, IRTA, 0x80_000f);

    let e = write32(
        &mut r,
        GCMD,
        gcmd::SIRTP | gcmd::IRE | gcmd::CFI | 1 << 29 | 1 << 28 | 1 << 27,
    );

    assert!(e.is_empty(), "{e:?}");
    assert_eq!((r.gsts(), r.irta()), (0, 0));
}

#[test]
fn test_every_command_in_one_write_gives_every_effect_in_order() {
    let mut r = regs();
    write64(&mut r, RTADDR, 0x2000);

    let e = write32(&mut r, GCMD, u32::MAX);

    assert_eq!(
        e,
        [
            Effect::SetRootTable(0x2000),
            Effect::SetInterruptTable {
                addr: 0,
                entries: 2,
                eime: false
            },
            Effect::Translation(true),
            Effect::QueuedInvalidation(true),
            Effect::InterruptRemapping(true),
            Effect::CompatibilityFormat(true),
        ]
    );
    assert_eq!(r.gsts(), 0xc780_0000, "no FLS, AFLS, WBFS");
}

#[test]
fn test_byte_write_to_gcmd_keeps_the_levels_it_does_not_cover() {
    let mut r = regs();
    command(&mut r, gcmd::CFI);

    let e = r.write(GCMD + 3, &[0x80]);

    assert_eq!(e, [Effect::Translation(true)]);
    assert_eq!(r.gsts(), gcmd::TE | gcmd::CFI);
}

#[test]
fn test_disabling_queued_invalidation_resets_iqh() {
    let mut r = regs();
    command(&mut r, gcmd::QIE);
    r.set_iqh(0x40);
    let head = r.iqh();

    let e = write32(&mut r, GCMD, 0);

    assert_eq!(head, 0x40);
    assert_eq!(e, [Effect::QueuedInvalidation(false)]);
    assert_eq!(r.iqh(), 0);
}

#[test]
fn test_queue_registers_keep_their_fields() {
    let mut r = regs();

    let tail = write32(&mut r, IQT, 0xffff_ffff);
    write64(&mut r, IQA, u64::MAX);
    write64(&mut r, IQH, u64::MAX);

    assert_eq!(tail, [], "the queue is off: nothing to process");
    assert_eq!(r.iqt(), 0x7fff0);
    assert_eq!(
        r.iqa(),
        !0xfff | 0x7,
        "base and QS; DW reserved in legacy mode"
    );
    assert_eq!(r.iqh(), 0, "IQH is the hardware's");
}
