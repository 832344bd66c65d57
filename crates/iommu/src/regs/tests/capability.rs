//! CAP and ECAP (§11.4.2, §11.4.3) against QEMU's values and field by field.

use super::*;

/// QEMU 7.2's configuration in the brief's guest line (aw-bits=39,
/// intremap=on, eim on, pt on, without caching mode and draining).
fn qemu_like() -> (Capabilities, Options) {
    let caps = Capabilities {
        width_48: false,
        ..Capabilities::DEFAULT
    };
    let opts = Options {
        dma_drain: false,
        ..Options::DEFAULT
    };
    (caps, opts)
}

fn field(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & ((1 << (hi - lo + 1)) - 1)
}

#[test]
fn test_cap_ecap_match_qemus_without_caching_mode() {
    let (caps, opts) = qemu_like();
    // "cap 12008c22260286 ecap f00f5a", less CM (bit 7): iovm never sets it.
    let qemu_cap = 0x0012_008c_2226_0286u64 & !(1 << 7);

    let r = Registers::new(&caps, &opts);

    assert_eq!(
        (read64(&r, layout::CAP), read64(&r, layout::ECAP)),
        (qemu_cap, 0xf0_0f5a)
    );
}

#[test]
fn test_default_cap_fields() {
    let cap = regs().cap();

    let fields = [
        ("ND", field(cap, 2, 0), 6),
        ("RWBF", field(cap, 4, 4), 0),
        ("PLMR/PHMR", field(cap, 6, 5), 0),
        ("CM", field(cap, 7, 7), 0),
        ("SAGAW", field(cap, 12, 8), 0b110),
        ("MGAW", field(cap, 21, 16), 47),
        ("FRO", field(cap, 33, 24), 0x22),
        ("SLLPS", field(cap, 37, 34), 0b11),
        ("PSI", field(cap, 39, 39), 1),
        ("NFR", field(cap, 47, 40), 0),
        ("MAMV", field(cap, 53, 48), 18),
        ("DWD/DRD", field(cap, 55, 54), 0b11),
        ("PI, ESIRTPS, ESRTPS", field(cap, 63, 56), 0),
    ];

    for (name, got, want) in fields {
        assert_eq!(got, want, "{name} in {cap:#x}");
    }
}

#[test]
fn test_default_ecap_fields_and_never_scalable_mode() {
    let ecap = regs().ecap();

    let fields = [
        ("C", field(ecap, 0, 0), 0),
        ("QI", field(ecap, 1, 1), 1),
        ("DT", field(ecap, 2, 2), 0),
        ("IR", field(ecap, 3, 3), 1),
        ("EIM", field(ecap, 4, 4), 1),
        ("PT", field(ecap, 6, 6), 1),
        ("SC", field(ecap, 7, 7), 0),
        ("IRO", field(ecap, 17, 8), 0xf),
        ("MHMV", field(ecap, 23, 20), 0xf),
        ("bits 63:24 (SMTS, SRS, SLTS, ...)", field(ecap, 63, 24), 0),
    ];

    for (name, got, want) in fields {
        assert_eq!(got, want, "{name} in {ecap:#x}");
    }
}

#[test]
fn test_widths_pages_and_pass_through_follow_capabilities() {
    let caps = Capabilities {
        width_39: false,
        width_48: true,
        page_2m: true,
        page_1g: false,
        pass_through: false,
        ..Capabilities::DEFAULT
    };

    let r = Registers::new(&caps, &Options::DEFAULT);

    assert_eq!(field(r.cap(), 12, 8), 0b100, "SAGAW: 48-bit only");
    assert_eq!(field(r.cap(), 21, 16), 47, "MGAW");
    assert_eq!(field(r.cap(), 37, 34), 0b01, "SLLPS: 2 MiB only");
    assert_eq!(field(r.ecap(), 6, 6), 0, "PT");
}

#[test]
fn test_without_interrupt_remapping_no_ir_eim_mhmv() {
    let opts = Options {
        interrupt_remapping: false,
        ..Options::DEFAULT
    };

    let r = Registers::new(&Capabilities::DEFAULT, &opts);

    assert_eq!(r.ecap(), 0xf42, "QI, PT, IRO only");
}

#[test]
fn test_without_queued_invalidation_no_qi_and_qie_ignored() {
    let opts = Options {
        queued_invalidation: false,
        interrupt_remapping: false,
        ..Options::DEFAULT
    };
    let mut r = Registers::new(&Capabilities::DEFAULT, &opts);

    let effects = r.write(layout::GCMD, &(1u32 << 26).to_le_bytes());

    assert_eq!(r.ecap(), 0xf40, "PT, IRO only");
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(r.gsts(), 0);
}

#[test]
fn test_ver_and_caps_read_whole_or_in_halves() {
    let r = regs();

    let halves = read32(&r, layout::CAP + 4) as u64;

    assert_eq!(read32(&r, layout::VER), 0x10);
    assert_eq!(halves << 32 | u64::from(read32(&r, layout::CAP)), r.cap());
}
