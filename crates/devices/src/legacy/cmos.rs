//! The MC146818 CMOS real-time clock and its battery-backed RAM, at ports
//! 0x70 (index; bit 7 masks NMI) and 0x71 (data).
//!
//! Time registers are computed from the host's clock plus an offset that the
//! guest moves by setting the clock (status B `SET` bit, then writing the time
//! registers, then clearing `SET`, as `hwclock --systohc` does). Status A never
//! shows an update in progress; status D always reports valid RAM and time.
//! Status B's data-mode (binary or BCD) and 24-hour bits are honoured.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

/// First port of the device (index register).
pub const CMOS_PORT: u16 = 0x70;
/// Ports the device spans.
pub const CMOS_SIZE: u64 = 2;

const RAM_SIZE: usize = 128;
const INDEX_MASK: u8 = 0x7f;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_C: u8 = 0x0c;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Status A at reset: 32.768 kHz time base, 1024 Hz periodic rate, UIP clear.
const STATUS_A_DEFAULT: u8 = 0x26;
/// Status B: 24-hour mode.
const STATUS_B_24H: u8 = 1 << 1;
/// Status B: binary (not BCD) data mode.
const STATUS_B_BINARY: u8 = 1 << 2;
/// Status B: clock updates halted while the guest sets the time.
const STATUS_B_SET: u8 = 1 << 7;
/// Status D: valid RAM and time.
const STATUS_D_VRT: u8 = 1 << 7;

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CivilTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: u32,
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl CivilTime {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday; the RTC counts Sunday as 1.
            weekday: ((days + 4).rem_euclid(7) + 1) as u32,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

fn from_bcd(v: u8) -> u32 {
    u32::from(v >> 4) * 10 + u32::from(v & 0xf)
}

/// The clock and its RAM.
#[derive(Debug)]
pub struct Cmos {
    index: u8,
    ram: [u8; RAM_SIZE],
    /// Guest time minus host time, in seconds.
    offset_secs: i64,
    now: fn() -> i64,
}

fn host_unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Default for Cmos {
    fn default() -> Self {
        Self::with_clock(host_unix_now)
    }
}

impl Cmos {
    /// A clock that follows the host's time.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock that follows `now` (Unix seconds) instead of the host's time:
    /// tests and the fuzz target, which need a time that stands still.
    pub fn with_clock(now: fn() -> i64) -> Self {
        let mut ram = [0u8; RAM_SIZE];
        ram[usize::from(REG_STATUS_A)] = STATUS_A_DEFAULT;
        ram[usize::from(REG_STATUS_B)] = STATUS_B_24H;
        ram[usize::from(REG_STATUS_D)] = STATUS_D_VRT;
        Self {
            index: 0,
            ram,
            offset_secs: 0,
            now,
        }
    }

    fn binary(&self) -> bool {
        self.ram[usize::from(REG_STATUS_B)] & STATUS_B_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() {
            v as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.binary() {
            u32::from(v)
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u32) -> u8 {
        if self.ram[usize::from(REG_STATUS_B)] & STATUS_B_24H != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { 0x80 } else { 0 };
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, raw: u8) -> u32 {
        if self.ram[usize::from(REG_STATUS_B)] & STATUS_B_24H != 0 {
            return self.decode(raw) % 24;
        }
        let h12 = self.decode(raw & 0x7f) % 12;
        if raw & 0x80 != 0 {
            h12 + 12
        } else {
            h12
        }
    }

    fn time_register(&self, reg: u8) -> Option<u8> {
        let t = CivilTime::from_unix((self.now)() + self.offset_secs);
        let year = t.year.rem_euclid(10_000) as u32;
        Some(match reg {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => self.encode_hour(t.hour),
            REG_WEEKDAY => self.encode(t.weekday),
            REG_DAY => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode(year % 100),
            REG_CENTURY => self.encode(year / 100),
            _ => return None,
        })
    }

    fn setting(&self) -> bool {
        self.ram[usize::from(REG_STATUS_B)] & STATUS_B_SET != 0
    }

    /// While `SET` is on, reads return what the guest wrote; otherwise the clock.
    fn read_register(&mut self, reg: u8) -> u8 {
        match reg {
            REG_STATUS_C => std::mem::take(&mut self.ram[usize::from(REG_STATUS_C)]),
            _ if !self.setting() => self
                .time_register(reg)
                .unwrap_or(self.ram[usize::from(reg)]),
            _ => self.ram[usize::from(reg)],
        }
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        match reg {
            REG_STATUS_C | REG_STATUS_D => {}
            REG_STATUS_A => self.ram[usize::from(reg)] = value & INDEX_MASK,
            REG_STATUS_B => {
                let was_setting = self.setting();
                if value & STATUS_B_SET != 0 && !was_setting {
                    self.latch_time();
                }
                self.ram[usize::from(reg)] = value;
                if was_setting && value & STATUS_B_SET == 0 {
                    self.commit_time();
                }
            }
            _ => self.ram[usize::from(reg)] = value,
        }
    }

    /// Copies the running time into RAM so a partial update keeps the rest.
    fn latch_time(&mut self) {
        for reg in [
            REG_SECONDS,
            REG_MINUTES,
            REG_HOURS,
            REG_WEEKDAY,
            REG_DAY,
            REG_MONTH,
            REG_YEAR,
            REG_CENTURY,
        ] {
            if let Some(v) = self.time_register(reg) {
                self.ram[usize::from(reg)] = v;
            }
        }
    }

    /// Turns the time the guest wrote into a new offset from the host clock.
    fn commit_time(&mut self) {
        let r = |reg: u8| self.ram[usize::from(reg)];
        let year =
            i64::from(self.decode(r(REG_CENTURY))) * 100 + i64::from(self.decode(r(REG_YEAR)));
        let t = CivilTime {
            year,
            month: self.decode(r(REG_MONTH)).clamp(1, 12),
            day: self.decode(r(REG_DAY)).clamp(1, 31),
            hour: self.decode_hour(r(REG_HOURS)),
            minute: self.decode(r(REG_MINUTES)) % 60,
            second: self.decode(r(REG_SECONDS)) % 60,
            weekday: 0,
        };
        self.offset_secs = t.to_unix() - (self.now)();
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match offset {
            0 => self.index,
            1 => self.read_register(self.index),
            _ => 0,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            0 => self.index = value & INDEX_MASK,
            1 => self.write_register(self.index, value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-25 18:30:15 UTC, a Wednesday.
    const FIXED: i64 = 1_795_631_415;

    fn cmos() -> Cmos {
        Cmos::with_clock(|| FIXED)
    }

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0, &[reg]);
        let mut d = [0u8];
        c.read(1, &mut d);
        d[0]
    }

    fn write(c: &mut Cmos, reg: u8, v: u8) {
        c.write(0, &[reg]);
        c.write(1, &[v]);
    }

    #[test]
    fn test_cmos_reads_host_time_in_bcd() {
        let mut c = cmos();
        assert_eq!(read(&mut c, REG_SECONDS), 0x15);
        assert_eq!(read(&mut c, REG_MINUTES), 0x30);
        assert_eq!(read(&mut c, REG_HOURS), 0x18);
        assert_eq!(read(&mut c, REG_DAY), 0x25);
        assert_eq!(read(&mut c, REG_MONTH), 0x11);
        assert_eq!(read(&mut c, REG_YEAR), 0x26);
        assert_eq!(read(&mut c, REG_CENTURY), 0x20);
        assert_eq!(read(&mut c, REG_WEEKDAY), 4);
    }

    #[test]
    fn test_cmos_binary_and_12_hour_modes() {
        let mut c = cmos();
        write(&mut c, REG_STATUS_B, STATUS_B_BINARY);
        assert_eq!(read(&mut c, REG_HOURS), 0x80 | 6);
        assert_eq!(read(&mut c, REG_YEAR), 26);
    }

    #[test]
    fn test_cmos_status_registers() {
        let mut c = cmos();
        assert_eq!(
            read(&mut c, REG_STATUS_A) & 0x80,
            0,
            "no update in progress"
        );
        assert_eq!(read(&mut c, REG_STATUS_D), STATUS_D_VRT);
        write(&mut c, REG_STATUS_D, 0);
        assert_eq!(
            read(&mut c, REG_STATUS_D),
            STATUS_D_VRT,
            "status D is read-only"
        );
    }

    #[test]
    fn test_cmos_guest_sets_time_one_hour_ahead() {
        let mut c = cmos();
        write(&mut c, REG_STATUS_B, STATUS_B_24H | STATUS_B_SET);
        write(&mut c, REG_HOURS, 0x19);
        write(&mut c, REG_STATUS_B, STATUS_B_24H);
        assert_eq!(c.offset_secs, 3600);
        assert_eq!(read(&mut c, REG_HOURS), 0x19);
        assert_eq!(read(&mut c, REG_MINUTES), 0x30);
    }

    #[test]
    fn test_cmos_garbage_time_does_not_panic() {
        let mut c = cmos();
        write(&mut c, REG_STATUS_B, STATUS_B_SET);
        for reg in [
            REG_SECONDS,
            REG_MINUTES,
            REG_HOURS,
            REG_DAY,
            REG_MONTH,
            REG_YEAR,
            REG_CENTURY,
        ] {
            write(&mut c, reg, 0xff);
        }
        write(&mut c, REG_STATUS_B, 0);
        let _ = read(&mut c, REG_YEAR);
        c.write(7, &[1]);
        c.write(0, &[]);
    }

    #[test]
    fn test_cmos_index_masks_nmi_bit_and_ram_roundtrips() {
        let mut c = cmos();
        write(&mut c, 0x80 | 0x40, 0xab);
        assert_eq!(read(&mut c, 0x40), 0xab);
    }

    #[test]
    fn test_civil_roundtrip_across_eras() {
        for secs in [0, 951_782_400, FIXED, 4_102_444_800, -86_400] {
            assert_eq!(CivilTime::from_unix(secs).to_unix(), secs);
        }
    }
}
