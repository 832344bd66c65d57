//! The shared header code on a bare register block, for the cases the
//! type 0 and type 1 tests do not reach.

use super::*;
use crate::bar::BarKind;
use crate::config::CONFIG_SPACE_SIZE;

fn id() -> Identity {
    Identity {
        vendor: 0x8086,
        device: 0x10d3,
        class: 0x02_00_00,
        revision: 0,
        subsystem_vendor: 0,
        subsystem: 0,
    }
}

const MEM: BarSpec = BarSpec {
    index: 0,
    kind: BarKind::Mem32 {
        prefetchable: false,
    },
    size: 0x2_0000,
};
const IO: BarSpec = BarSpec {
    index: 2,
    kind: BarKind::Io,
    size: 0x20,
};

fn header(bars: &[BarSpec]) -> RegisterMask {
    let mut regs = RegisterMask::new(CONFIG_SPACE_SIZE);
    install_common(&mut regs, &id(), 0, 1).unwrap();
    install_bars(&mut regs, bars, 6).unwrap();
    regs
}

/// Applies a guest write and returns its effects, as a header kind does.
fn write(
    regs: &mut RegisterMask,
    bars: &[BarSpec],
    offset: usize,
    data: &[u8],
) -> ConfigWriteEffects {
    let before = CommonState::of(regs, bars);
    regs.write(offset, data);
    before.effects(&CommonState::of(regs, bars))
}

#[test]
fn test_pin_above_intd_reads_as_intd_and_header_type_is_read_only() {
    let mut regs = RegisterMask::new(CONFIG_SPACE_SIZE);
    install_common(&mut regs, &id(), 0x81, 9).unwrap();
    regs.write(HEADER_TYPE, &[0]);
    regs.write(INTERRUPT_PIN, &[2]);
    assert_eq!(regs.read_le(HEADER_TYPE, 1), 0x81);
    assert_eq!(regs.read_le(INTERRUPT_PIN, 1), 4);
}

#[test]
fn test_clearing_bus_master_is_reported_and_untouched_bits_are_not() {
    let mut regs = header(&[]);
    let e = write(&mut regs, &[], COMMAND, &command::BUS_MASTER.to_le_bytes());
    assert_eq!((e.bus_master, e.intx_disabled), (Some(true), None));
    let e = write(
        &mut regs,
        &[],
        COMMAND,
        &command::INTX_DISABLE.to_le_bytes(),
    );
    assert_eq!((e.bus_master, e.intx_disabled), (Some(false), Some(true)));
    let e = write(&mut regs, &[], COMMAND + 1, &[0]);
    assert_eq!(
        (e.bus_master, e.intx_disabled),
        (None, Some(false)),
        "a byte write to the Command register's upper half"
    );
}

#[test]
fn test_io_decode_reports_the_io_bar_only() {
    let bars = [MEM, IO];
    let mut regs = header(&bars);
    write(&mut regs, &bars, 0x18, &0xc000u32.to_le_bytes());
    let e = write(&mut regs, &bars, COMMAND, &command::IO.to_le_bytes());
    assert_eq!(
        e.bars,
        vec![BarChange {
            index: 2,
            io: true,
            old: None,
            new: Some(BarWindow {
                addr: 0xc000,
                size: 0x20
            }),
        }]
    );
    assert_eq!(e.bridge, Default::default());
}

#[test]
fn test_a_bar_moved_while_decoding_reports_both_windows() {
    let bars = [MEM];
    let mut regs = header(&bars);
    write(&mut regs, &bars, 0x10, &0xfe00_0000u32.to_le_bytes());
    write(&mut regs, &bars, COMMAND, &command::MEMORY.to_le_bytes());
    let e = write(&mut regs, &bars, 0x12, &0xfe10u16.to_le_bytes());
    let window = |addr| {
        Some(BarWindow {
            addr,
            size: 0x2_0000,
        })
    };
    assert_eq!(e.bars.len(), 1);
    assert_eq!(
        (e.bars[0].old, e.bars[0].new),
        (window(0xfe00_0000), window(0xfe10_0000))
    );
}

#[test]
fn test_bars_past_the_slots_or_sharing_a_register_are_refused() {
    let mut regs = RegisterMask::new(CONFIG_SPACE_SIZE);
    let mem64 = BarSpec {
        index: 1,
        kind: BarKind::Mem64 { prefetchable: true },
        size: 0x1000,
    };
    assert!(matches!(
        install_bars(&mut regs, &[mem64], 2),
        Err(ConfigError::Bar(BarError::BadIndex { index: 1 }))
    ));
    let second = BarSpec { index: 1, ..MEM };
    assert!(matches!(
        install_bars(&mut regs, &[BarSpec { index: 0, ..mem64 }, second], 6),
        Err(ConfigError::Bar(BarError::Overlap { index: 1 }))
    ));
    install_bars(&mut regs, &[mem64], 6).unwrap();
    assert_eq!(
        regs.read_le(0x14, 4),
        0b1100,
        "64-bit prefetchable type bits"
    );
}
