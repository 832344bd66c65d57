//! Register semantics and window decode of the type 1 header.

use super::*;
use crate::bar::{BarError, BarKind};
use crate::config::COMMAND;

fn id() -> Identity {
    Identity {
        vendor: 0x1b36,
        device: 0x0001,
        class: CLASS_PCI_BRIDGE,
        revision: 3,
        subsystem_vendor: 0,
        subsystem: 0,
    }
}

fn spec(pcie: bool, io32: bool) -> Type1Spec {
    Type1Spec {
        identity: id(),
        pcie,
        io32,
        multi_function: false,
        bars: Vec::new(),
        rom_size: None,
        pin: 1,
    }
}

fn pci() -> Type1Config {
    Type1Config::new(&spec(false, false)).unwrap()
}

fn pcie() -> Type1Config {
    Type1Config::new(&spec(true, true)).unwrap()
}

fn read(c: &Type1Config, off: usize, len: usize) -> u64 {
    c.regs().read_le(off, len)
}

/// Writes all-ones then zero to a register; returns what each reads back.
fn ones_then_zero(c: &mut Type1Config, off: usize, len: usize) -> (u64, u64) {
    c.write(off, &[0xff; 8][..len]);
    let ones = read(c, off, len);
    c.write(off, &[0; 8][..len]);
    (ones, read(c, off, len))
}

fn w16(c: &mut Type1Config, off: usize, v: u16) -> ConfigWriteEffects {
    c.write(off, &v.to_le_bytes())
}

fn w32(c: &mut Type1Config, off: usize, v: u32) -> ConfigWriteEffects {
    c.write(off, &v.to_le_bytes())
}

#[test]
fn test_identity_class_and_header_type_are_read_only() {
    let mut c = pci();
    for off in [0x00, 0x08, 0x0c] {
        c.write(off, &[0xff; 4]);
    }
    assert_eq!(read(&c, 0x00, 4), 0x0001_1b36);
    assert_eq!(read(&c, 0x08, 4), 0x0604_0003);
    assert_eq!(read(&c, reg::HEADER_TYPE, 1), 0x01);
    assert_eq!(read(&c, 0x0f, 1), 0, "BIST not implemented");
}

#[test]
fn test_multi_function_bit_when_asked() {
    let c = Type1Config::new(&Type1Spec {
        multi_function: true,
        ..spec(false, false)
    })
    .unwrap();
    assert_eq!(read(&c, reg::HEADER_TYPE, 1), 0x81);
}

#[test]
fn test_command_and_status_as_type_0() {
    let mut c = pci();
    let e = w16(&mut c, COMMAND, 0xffff);
    assert_eq!(c.command(), command::WRITABLE);
    assert_eq!(e.bus_master, Some(true));
    assert_eq!(e.intx_disabled, Some(true));
    c.raise_status(1 << 13);
    w16(&mut c, STATUS, 0);
    assert_eq!(read(&c, STATUS, 2), 1 << 13, "writing 0 leaves it");
    w16(&mut c, STATUS, 0xffff);
    assert_eq!(read(&c, STATUS, 2), 0, "writing 1 clears; others RO");
}

#[test]
fn test_bus_numbers_cache_line_and_interrupt_line_are_read_write() {
    let mut c = pcie();
    assert_eq!(ones_then_zero(&mut c, reg::PRIMARY_BUS, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut c, reg::SECONDARY_BUS, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut c, reg::SUBORDINATE_BUS, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut c, reg::CACHE_LINE_SIZE, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut c, reg::INTERRUPT_LINE, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut c, reg::INTERRUPT_PIN, 1), (1, 1));
}

#[test]
fn test_latency_timers_writable_on_pci_and_zero_on_pcie() {
    let mut p = pci();
    let mut e = pcie();
    assert_eq!(ones_then_zero(&mut p, reg::PRIMARY_LATENCY, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut p, reg::SECONDARY_LATENCY, 1), (0xff, 0));
    assert_eq!(ones_then_zero(&mut e, reg::PRIMARY_LATENCY, 1), (0, 0));
    assert_eq!(ones_then_zero(&mut e, reg::SECONDARY_LATENCY, 1), (0, 0));
}

#[test]
fn test_io_base_limit_low_nibble_is_the_read_only_type() {
    let mut p = pci();
    let mut e = pcie();
    assert_eq!(ones_then_zero(&mut p, reg::IO_BASE, 2), (0xf0f0, 0x0000));
    assert_eq!(ones_then_zero(&mut e, reg::IO_BASE, 2), (0xf1f1, 0x0101));
}

#[test]
fn test_io_upper_16_bits_only_with_32_bit_decode() {
    let mut p = pci();
    let mut e = pcie();
    assert_eq!(ones_then_zero(&mut p, reg::IO_BASE_UPPER, 4), (0, 0));
    assert_eq!(
        ones_then_zero(&mut e, reg::IO_BASE_UPPER, 4),
        (0xffff_ffff, 0)
    );
}

#[test]
fn test_secondary_status_error_bits_are_write_one_to_clear() {
    let mut c = pci();
    c.raise_secondary_status(0xffff);
    assert_eq!(
        read(&c, reg::SECONDARY_STATUS, 2),
        u64::from(secondary_status::W1C)
    );
    w16(&mut c, reg::SECONDARY_STATUS, 0);
    assert_eq!(
        read(&c, reg::SECONDARY_STATUS, 2),
        u64::from(secondary_status::W1C)
    );
    w16(&mut c, reg::SECONDARY_STATUS, 1 << 13);
    assert_eq!(
        read(&c, reg::SECONDARY_STATUS, 2),
        u64::from(secondary_status::W1C & !(1 << 13))
    );
    w16(&mut c, reg::SECONDARY_STATUS, 0xffff);
    assert_eq!(read(&c, reg::SECONDARY_STATUS, 2), 0);
}

#[test]
fn test_memory_base_limit_low_bits_read_zero() {
    let mut c = pci();
    assert_eq!(ones_then_zero(&mut c, reg::MEM_BASE, 4), (0xfff0_fff0, 0));
}

#[test]
fn test_prefetchable_is_64_bit_with_writable_upper_halves() {
    let mut c = pci();
    assert_eq!(
        ones_then_zero(&mut c, reg::PREF_BASE, 4),
        (0xfff1_fff1, 0x0001_0001)
    );
    assert_eq!(
        ones_then_zero(&mut c, reg::PREF_BASE_UPPER, 4),
        (0xffff_ffff, 0)
    );
    assert_eq!(
        ones_then_zero(&mut c, reg::PREF_LIMIT_UPPER, 4),
        (0xffff_ffff, 0)
    );
}

#[test]
fn test_capability_pointer_reserved_and_absent_rom_are_read_only() {
    let mut c = pci();
    assert_eq!(ones_then_zero(&mut c, 0x34, 4), (0, 0));
    assert_eq!(ones_then_zero(&mut c, reg::ROM, 4), (0, 0));
}

#[test]
fn test_rom_sizing_reads_back_size_mask_and_enable() {
    let mut c = Type1Config::new(&Type1Spec {
        rom_size: Some(0x1_0000),
        ..spec(false, false)
    })
    .unwrap();
    assert_eq!(ones_then_zero(&mut c, reg::ROM, 4), (0xffff_0001, 0));
    let bad = Type1Spec {
        rom_size: Some(0x100),
        ..spec(false, false)
    };
    assert!(Type1Config::new(&bad).is_err());
}

#[test]
fn test_bridge_control_writable_bits_by_flavour() {
    let mut p = pci();
    let mut e = pcie();
    assert_eq!(ones_then_zero(&mut p, reg::BRIDGE_CONTROL, 2), (0x7f, 0));
    assert_eq!(
        ones_then_zero(&mut e, reg::BRIDGE_CONTROL, 2),
        (0x5f, 0),
        "Master Abort Mode is RO 0 on PCIe"
    );
}

#[test]
fn test_two_bars_at_most() {
    let mem = |index| BarSpec {
        index,
        kind: BarKind::Mem32 {
            prefetchable: false,
        },
        size: 0x1000,
    };
    let ok = Type1Spec {
        bars: vec![mem(0), mem(1)],
        ..spec(false, false)
    };
    let mut c = Type1Config::new(&ok).unwrap();
    assert_eq!(ones_then_zero(&mut c, 0x10, 4), (0xffff_f000, 0));
    let third = Type1Spec {
        bars: vec![mem(2)],
        ..spec(false, false)
    };
    assert!(matches!(
        Type1Config::new(&third),
        Err(ConfigError::Bar(BarError::BadIndex { index: 2 }))
    ));
    let wide = Type1Spec {
        bars: vec![BarSpec {
            index: 1,
            kind: BarKind::Mem64 {
                prefetchable: false,
            },
            size: 0x1000,
        }],
        ..spec(false, false)
    };
    assert!(Type1Config::new(&wide).is_err());
}

#[test]
fn test_bar_window_change_is_reported() {
    let mut c = Type1Config::new(&Type1Spec {
        bars: vec![BarSpec {
            index: 0,
            kind: BarKind::Mem32 {
                prefetchable: false,
            },
            size: 0x1000,
        }],
        ..spec(false, false)
    })
    .unwrap();
    w32(&mut c, 0x10, 0xfe00_0000);
    let e = w16(&mut c, COMMAND, command::MEMORY);
    assert_eq!(
        e.bars[0].new,
        Some(BarWindow {
            addr: 0xfe00_0000,
            size: 0x1000
        })
    );
}

#[test]
fn test_windows_are_closed_at_reset() {
    let mut c = pcie();
    w16(&mut c, COMMAND, command::IO | command::MEMORY);
    assert_eq!(c.io_range(), None);
    assert_eq!(c.mem_range(), None);
    assert_eq!(c.pref_range(), None);
    assert!(!c.forwards_io(0));
    assert!(!c.forwards_mem(0));
}

#[test]
fn test_io_window_has_4k_granularity() {
    let mut c = pci();
    c.write(reg::IO_BASE, &[0x10, 0x20]);
    assert_eq!(c.io_range(), Some(0x1000..=0x2fff));
    assert_eq!(c.window(WindowKind::Io), None, "I/O decode off");
    w16(&mut c, COMMAND, command::IO);
    assert!(c.forwards_io(0x1000));
    assert!(c.forwards_io(0x2fff));
    assert!(!c.forwards_io(0x0fff));
    assert!(!c.forwards_io(0x3000));
}

#[test]
fn test_io_window_32_bit_uses_upper_registers() {
    let mut c = pcie();
    c.write(reg::IO_BASE, &[0x40, 0x40]);
    w32(&mut c, reg::IO_BASE_UPPER, 0x0002_0001);
    assert_eq!(c.io_range(), Some(0x1_4000..=0x2_4fff));
}

#[test]
fn test_memory_window_has_1m_granularity() {
    let mut c = pci();
    w32(&mut c, reg::MEM_BASE, 0xfe1f_fe00);
    assert_eq!(c.mem_range(), Some(0xfe00_0000..=0xfe1f_ffff));
    w16(&mut c, COMMAND, command::MEMORY);
    assert!(c.forwards_mem(0xfe1f_ffff));
    assert!(!c.forwards_mem(0xfe20_0000));
}

#[test]
fn test_prefetchable_window_decodes_64_bits() {
    let mut c = pci();
    w32(&mut c, reg::PREF_BASE, 0x0010_0000);
    w32(&mut c, reg::PREF_BASE_UPPER, 0x8);
    w32(&mut c, reg::PREF_LIMIT_UPPER, 0x8);
    assert_eq!(c.pref_range(), Some(0x8_0000_0000..=0x8_001f_ffff));
    w16(&mut c, COMMAND, command::MEMORY);
    assert!(c.forwards_mem(0x8_0010_0000));
    assert!(!c.forwards_mem(0x0010_0000), "upper bits matter");
}

#[test]
fn test_base_above_limit_closes_each_window() {
    let mut c = pcie();
    w16(&mut c, COMMAND, command::IO | command::MEMORY);
    c.write(reg::IO_BASE, &[0x20, 0x10]);
    w32(&mut c, reg::MEM_BASE, 0xfe00_fe10);
    w32(&mut c, reg::PREF_BASE, 0x0000_0010);
    assert_eq!(c.io_range(), None);
    assert_eq!(c.mem_range(), None);
    assert_eq!(c.pref_range(), None);
    w32(&mut c, reg::PREF_BASE_UPPER, 1);
    w32(&mut c, reg::PREF_BASE, 0xfff0_0000);
    assert_eq!(c.pref_range(), None, "upper base above upper limit");
}

#[test]
fn test_window_effects_follow_command_and_registers() {
    let mut c = pci();
    let e = w32(&mut c, reg::MEM_BASE, 0xfe10_fe00);
    assert!(e.bridge.windows.is_empty(), "memory decode is off");
    let e = w16(&mut c, COMMAND, command::MEMORY);
    assert_eq!(
        e.bridge.windows,
        vec![WindowChange {
            kind: WindowKind::Memory,
            old: None,
            new: Some(0xfe00_0000..=0xfe1f_ffff)
        }]
    );
    let e = w16(&mut c, reg::MEM_LIMIT, 0xfd00);
    assert_eq!(e.bridge.windows[0].new, None, "base above limit");
    let e = w16(&mut c, COMMAND, 0);
    assert!(e.bridge.is_empty(), "already closed");
}

#[test]
fn test_bus_number_and_control_effects() {
    let mut c = pci();
    let e = w32(&mut c, reg::PRIMARY_BUS, 0x0005_0100);
    assert_eq!(
        e.bridge.bus_numbers,
        Some(BusNumbers {
            primary: 0,
            secondary: 1,
            subordinate: 5
        })
    );
    assert_eq!(c.bus_range(), 1..=5);
    let e = w16(
        &mut c,
        reg::BRIDGE_CONTROL,
        bridge_control::SECONDARY_BUS_RESET,
    );
    assert_eq!(e.bridge.secondary_bus_reset, Some(true));
    let e = w16(
        &mut c,
        reg::BRIDGE_CONTROL,
        bridge_control::VGA | bridge_control::ISA,
    );
    assert_eq!(e.bridge.secondary_bus_reset, Some(false));
    assert_eq!((e.bridge.vga, e.bridge.isa), (Some(true), Some(true)));
}

#[test]
fn test_isa_enable_skips_the_top_768_bytes_of_each_kilobyte() {
    let mut c = pci();
    c.write(reg::IO_BASE, &[0x00, 0xf0]);
    w16(&mut c, COMMAND, command::IO);
    assert!(c.forwards_io(0x1100));
    w16(&mut c, reg::BRIDGE_CONTROL, bridge_control::ISA);
    assert!(c.forwards_io(0x1000));
    assert!(c.forwards_io(0x10ff));
    assert!(!c.forwards_io(0x1100));
    assert!(!c.forwards_io(0x13ff));
    assert!(c.forwards_io(0x1400));
}

#[test]
fn test_vga_enable_forwards_legacy_ranges() {
    let mut c = pci();
    w16(&mut c, COMMAND, command::IO | command::MEMORY);
    assert!(!c.forwards_mem(0xa_0000));
    assert!(!c.forwards_io(0x3c0));
    w16(&mut c, reg::BRIDGE_CONTROL, bridge_control::VGA);
    assert!(c.forwards_mem(0xa_0000));
    assert!(c.forwards_mem(0xb_ffff));
    assert!(!c.forwards_mem(0xc_0000));
    assert!(c.forwards_io(0x3c0));
    assert!(c.forwards_io(0x3bb));
    assert!(!c.forwards_io(0x3bc));
    assert!(c.forwards_io(0x7c0), "10-bit alias");
    w16(
        &mut c,
        reg::BRIDGE_CONTROL,
        bridge_control::VGA | bridge_control::VGA16,
    );
    assert!(!c.forwards_io(0x7c0), "16-bit decode");
}

#[test]
fn test_hostile_writes_keep_read_only_registers() {
    let mut c = pcie();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % 0x48) as usize;
        let len = [1usize, 2, 3, 4, 8][(x >> 8) as usize % 5];
        c.write(off, &(x >> 16).to_le_bytes()[..len]);
        let _ = c.forwards_io(x >> 40);
        let _ = c.forwards_mem(x >> 20);
    }
    assert_eq!(read(&c, 0, 4), 0x0001_1b36);
    assert_eq!(read(&c, 0x08, 4) >> 8, 0x06_0400);
    assert_eq!(read(&c, reg::HEADER_TYPE, 1), 1);
    assert_eq!(read(&c, reg::IO_BASE, 2) & 0x0f0f, 0x0101);
    assert_eq!(read(&c, reg::PREF_BASE, 4) & 0x000f_000f, 0x0001_0001);
}
