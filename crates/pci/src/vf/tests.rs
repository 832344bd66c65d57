//! A VF's header: identity, command, BARs, no INTx, windows from its PF.

use crate::bar::{BarKind, BarSpec};
use crate::config::{command, BarWindow, Identity, Type0Config, COMMAND, STATUS};

fn bar() -> BarSpec {
    BarSpec {
        index: 0,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: 0x4000,
    }
}

fn vf() -> Type0Config {
    let id = Identity {
        vendor: 0x1b36,
        device: 0x0010,
        class: 0x01_08_02,
        revision: 2,
        subsystem_vendor: 0x1b36,
        subsystem: 0x0010,
    };
    Type0Config::virtual_function(id, &[bar()]).unwrap()
}

fn read32(c: &Type0Config, off: usize) -> u32 {
    let mut d = [0u8; 4];
    c.read(off, &mut d);
    u32::from_le_bytes(d)
}

#[test]
fn test_vf_ids_read_ffff_and_class_is_the_pfs() {
    let c = vf();

    assert_eq!(read32(&c, 0), 0xffff_ffff);
    assert_eq!(read32(&c, 8), 0x0108_0202);
    assert_eq!(read32(&c, 0x2c), 0x0010_1b36);
    assert!(c.is_virtual_function());
}

#[test]
fn test_vf_bars_rom_and_interrupt_pin_are_read_only_zero() {
    let mut c = vf();

    let bars_and_rom = [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30];
    for off in bars_and_rom {
        c.write(off, &[0xff; 4]);
    }
    c.write(0x3c, &[0xff; 4]);

    for off in bars_and_rom {
        assert_eq!(read32(&c, off), 0, "offset {off:#x}");
    }
    assert_eq!(read32(&c, 0x3c) >> 8 & 0xff, 0, "no INTx pin");
}

#[test]
fn test_vf_command_keeps_only_bus_master() {
    let mut c = vf();

    let e = c.write(COMMAND, &0xffffu16.to_le_bytes());

    assert_eq!(
        c.command(),
        command::BUS_MASTER,
        "MSE, I/O, INTx Disable read 0"
    );
    assert_eq!(e.bus_master, Some(true));
    assert_eq!(e.intx_disabled, None);
    assert!(e.bars.is_empty());
}

#[test]
fn test_vf_status_error_bits_clear_by_writing_one() {
    let mut c = vf();
    c.raise_status(1 << 13);

    c.write(STATUS, &0xffffu16.to_le_bytes());

    assert_eq!(read32(&c, 4) >> 16, 0);
}

#[test]
fn test_vf_windows_come_from_the_owner_only() {
    let mut c = vf();
    let placed = vec![(
        bar(),
        Some(BarWindow {
            addr: 0x1_0000_4000,
            size: 0x4000,
        }),
    )];

    let before = c.bar_windows();
    let changed = c.set_vf_bar_windows(placed.clone());
    let again = c.set_vf_bar_windows(placed.clone());

    assert_eq!(before, vec![(bar(), None)]);
    assert!(changed);
    assert!(!again, "same windows: no change");
    assert_eq!(c.bar_windows(), placed);
}

#[test]
fn test_set_vf_windows_on_an_ordinary_header_is_ignored() {
    let mut c = Type0Config::new(
        Identity {
            vendor: 1,
            device: 2,
            class: 0,
            revision: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        },
        &[bar()],
        1,
    )
    .unwrap();

    let changed = c.set_vf_bar_windows(vec![(bar(), None)]);

    assert!(!changed);
    assert!(!c.is_virtual_function());
}
