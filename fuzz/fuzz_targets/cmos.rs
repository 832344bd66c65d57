//! Fuzzes the MC146818 CMOS clock and RAM (`devices::legacy::Cmos`): guest
//! accesses of any width to its index (offset 0) and data (offset 1) ports
//! and past them, with setting the clock (status B `SET`, time registers,
//! `SET` cleared) in any order and in binary or BCD mode, over a host clock
//! that stands still.
//!
//! Input layout: records of 4 bytes (`legacy_common::accesses` over the 2
//! ports). Properties, against a shadow of the index and the RAM: nothing
//! panics; the index reads back as written (NMI bit masked off); a RAM
//! byte outside the clock's registers reads back what was last written;
//! status A never shows an update in progress; status C reads 0 and status
//! D reads "valid" whatever was written; while `SET` is clear, every time
//! register reads a value in range (seconds and minutes below 60, hours
//! below 24 or 1..12 with the PM bit, day 1..31, month 1..12, weekday
//! 1..7), in valid BCD in BCD mode; right after the guest clears `SET`,
//! the seconds and minutes it wrote (if in range) read back unchanged.

#![no_main]

mod legacy_common;

use devices::legacy::cmos::CMOS_SIZE;
use devices::legacy::Cmos;
use devices::BusDevice;
use legacy_common::accesses;
use libfuzzer_sys::fuzz_target;

/// 2026-11-25 18:30:15 UTC.
fn fixed() -> i64 {
    1_795_631_415
}

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
const SET: u8 = 0x80;
const BINARY: u8 = 0x04;
const H24: u8 = 0x02;

/// Whether `reg` is one of the registers the clock computes.
fn clock_register(reg: u8) -> bool {
    matches!(reg, 0x00 | 0x02 | 0x04 | 0x06..=0x09 | CENTURY)
}

fn read_reg(c: &mut Cmos, reg: u8) -> u8 {
    c.write(0, &[reg]);
    let mut d = [0u8];
    c.read(1, &mut d);
    d[0]
}

/// The value of a time register as a number, if it is valid in the mode.
fn decode(raw: u8, binary: bool) -> Option<u32> {
    if binary {
        return Some(u32::from(raw));
    }
    (raw >> 4 <= 9 && raw & 0xf <= 9).then(|| u32::from(raw >> 4) * 10 + u32::from(raw & 0xf))
}

fn check_clock(c: &mut Cmos, status_b: u8) {
    let binary = status_b & BINARY != 0;
    for (reg, lo, hi) in [
        (SECONDS, 0, 59),
        (MINUTES, 0, 59),
        (0x06, 1, 7),
        (0x07, 1, 31),
        (0x08, 1, 12),
        (0x09, 0, 99),
        (CENTURY, 0, 99),
    ] {
        let raw = read_reg(c, reg);
        let v = decode(raw, binary).unwrap_or_else(|| panic!("reg {reg:#x} = {raw:#x}"));
        assert!((lo..=hi).contains(&v), "reg {reg:#x} = {v}");
    }
    let raw = read_reg(c, HOURS);
    if status_b & H24 != 0 {
        let v = decode(raw, binary).unwrap_or_else(|| panic!("hours {raw:#x}"));
        assert!(v < 24, "hours {v}");
    } else {
        let v = decode(raw & 0x7f, binary).unwrap_or_else(|| panic!("hours {raw:#x}"));
        assert!((1..=12).contains(&v), "12-hour hours {v}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cmos::with_clock(fixed);
    let mut index = 0u8;
    let mut ram = [None::<u8>; 128];
    let mut status_b = H24;
    for a in accesses(data, CMOS_SIZE) {
        let value = a.value[0];
        if a.write {
            c.write(a.offset, &a.value[..a.width]);
            match a.offset {
                0 => index = value & 0x7f,
                1 => {
                    ram[usize::from(index)] = Some(value);
                    if index == STATUS_B {
                        if status_b & SET == 0 && value & SET != 0 {
                            // The running time is latched into the clock's RAM.
                            for r in [SECONDS, MINUTES, HOURS, 0x06, 0x07, 0x08, 0x09, CENTURY] {
                                ram[usize::from(r)] = None;
                            }
                        }
                        let committed = status_b & SET != 0 && value & SET == 0;
                        let old_b = status_b;
                        status_b = value;
                        if committed {
                            check_commit(&mut c, &ram, old_b, value);
                            c.write(0, &[index]);
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let mut got = [0xa5u8; 4];
        c.read(a.offset, &mut got[..a.width]);
        assert!(got[1..a.width].iter().all(|&b| b == 0), "{got:x?}");
        match a.offset {
            0 => assert_eq!(got[0], index, "index"),
            1 => match index {
                STATUS_A => assert_eq!(got[0] & 0x80, 0, "update in progress"),
                STATUS_C => assert_eq!(got[0], 0, "status C"),
                STATUS_D => assert_eq!(got[0], 0x80, "status D"),
                STATUS_B => assert_eq!(got[0], status_b, "status B"),
                r if clock_register(r) => {}
                r => {
                    if let Some(v) = ram[usize::from(r)] {
                        assert_eq!(got[0], v, "RAM byte {r:#x}");
                    }
                }
            },
            _ => assert_eq!(got[0], 0, "past the ports"),
        }
        if status_b & SET == 0 && a.offset == 1 {
            check_clock(&mut c, status_b);
            c.write(0, &[index]);
        }
    }
});

/// Right after a commit in the mode of `status_b`: the seconds and minutes
/// the guest wrote while `SET` was on, if in range, read back.
fn check_commit(c: &mut Cmos, ram: &[Option<u8>; 128], before: u8, status_b: u8) {
    if (before ^ status_b) & BINARY != 0 {
        return;
    }
    let binary = status_b & BINARY != 0;
    for reg in [SECONDS, MINUTES] {
        let Some(written) = ram[usize::from(reg)] else {
            continue;
        };
        if decode(written, binary).is_some_and(|v| v < 60) {
            assert_eq!(read_reg(c, reg), written, "reg {reg:#x} after the commit");
        }
    }
}
