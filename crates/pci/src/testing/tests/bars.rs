//! BAR probing, placement and accesses.

use super::{bars, function, FakeFunction, MSI64, TABLE};
use crate::config::{command, BarWindow};
use crate::testing::{BarDriver, ConfigDriver};

#[test]
fn test_size_bars_finds_each_bar_with_its_kind_and_size() {
    let mut f = function(MSI64);

    let found = f.size_bars();

    assert_eq!(found, bars());
}

#[test]
fn test_size_bar_of_an_upper_half_or_an_unimplemented_register_is_none() {
    let mut f = function(MSI64);

    let sized: Vec<_> = [1, 4, 5, 6].map(|i| f.size_bar(i)).into();

    assert_eq!(sized, vec![None; 4]);
}

#[test]
fn test_placed_bars_decode_where_the_driver_put_them() {
    let mut f = function(MSI64);
    f.place_bar(0, 0x1_0000_0000);
    f.place_bar(2, 0xfe00_0000);
    f.place_bar(3, 0xc000);

    let e = f.set_command(command::MEMORY | command::IO | command::BUS_MASTER);

    let window = |addr, size| Some(BarWindow { addr, size });
    let windows: Vec<_> = e.bars.iter().map(|b| (b.index, b.new)).collect();
    assert_eq!(
        windows,
        vec![
            (0, window(0x1_0000_0000, 0x4000)),
            (2, window(0xfe00_0000, 0x1000)),
            (3, window(0xc000, 0x20)),
        ]
    );
    assert_eq!(e.bus_master, Some(true));
}

#[test]
fn test_size_bar_while_decoding_restores_registers_and_command() {
    let mut f = function(MSI64);
    f.place_bar(0, 0x1_0000_0000);
    f.place_bar(3, 0xc000);
    let cmd = command::MEMORY | command::IO | command::BUS_MASTER;
    f.set_command(cmd);
    let registers = |f: &FakeFunction| -> Vec<u32> {
        (0x10..0x28)
            .step_by(4)
            .map(|r| f.config_read32(r))
            .collect()
    };
    let before = registers(&f);
    let windows = f.ep.config().bar_windows();

    f.size_bars();

    assert_eq!(registers(&f), before);
    assert_eq!(f.command(), cmd);
    assert_eq!(f.ep.config().bar_windows(), windows);
}

#[test]
fn test_bar_accesses_of_four_and_eight_bytes() {
    let mut f = function(MSI64);
    let entry = u64::from(TABLE);

    f.bar_write64(0, entry, 0x1_fee0_1000);
    f.bar_write32(0, entry + 8, 0x4041);

    assert_eq!(f.bar_read32(0, entry), 0xfee0_1000);
    assert_eq!(f.bar_read32(0, entry + 4), 1);
    assert_eq!(
        f.bar_read64(0, entry + 8),
        0x1_0000_4041,
        "data, then masked"
    );
}
