//! Fuzzes the hardware-reduced ACPI power-management window
//! (`devices::legacy::AcpiPowerDevice`: sleep control at offset 0, sleep
//! status at 1, reset register at 2), and the pvpanic port
//! (`devices::legacy::PvPanic`), which the same records drive.
//!
//! Input layout: records of 4 bytes (`legacy_common::accesses` over a
//! window of 3 ports); a write goes to both devices. Properties: nothing
//! panics; every read of the window returns zeros, and the pvpanic port
//! reads its two event bits in its first byte and zeros after; the window
//! requests power-off exactly for a sleep-control write with `SLP_EN` and
//! `SLP_TYP` = 5, a reset exactly for the reset value at the reset
//! register, and nothing else; pvpanic requests a panic exactly for a
//! write with bit 0 set.

#![no_main]

mod legacy_common;
mod lifecycle_common;

use std::sync::Arc;

use devices::legacy::acpi_pm::{
    ACPI_PM_SIZE, RESET_OFFSET, RESET_VALUE, S5_SLEEP_TYPE, SLEEP_CONTROL_OFFSET,
};
use devices::legacy::pvpanic::{PVPANIC_CRASH_LOADED, PVPANIC_PANICKED};
use devices::legacy::{AcpiPowerDevice, PvPanic};
use devices::{BusDevice, GuestRequest};
use legacy_common::accesses;
use libfuzzer_sys::fuzz_target;
use lifecycle_common::Requests;

/// What the window should request for a write of `value` at `offset`.
fn expected(offset: u64, value: u8) -> Option<GuestRequest> {
    match offset {
        SLEEP_CONTROL_OFFSET if value & 0x20 != 0 && (value >> 2) & 7 == S5_SLEEP_TYPE => {
            Some(GuestRequest::PowerOff)
        }
        RESET_OFFSET if value == RESET_VALUE => Some(GuestRequest::Reset),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let pm_sink = Arc::new(Requests::default());
    let panic_sink = Arc::new(Requests::default());
    let mut pm = AcpiPowerDevice::new(pm_sink.clone());
    let mut pvpanic = PvPanic::new(panic_sink.clone());
    for a in accesses(data, ACPI_PM_SIZE) {
        let bytes = &a.value[..a.width];
        if a.write {
            pm.write(a.offset, bytes);
            pvpanic.write(a.offset, bytes);
            let want: Vec<_> = expected(a.offset, bytes[0]).into_iter().collect();
            assert_eq!(pm_sink.take(), want, "{a:?}");
            let panicked = bytes[0] & PVPANIC_PANICKED != 0;
            let want = if panicked {
                vec![GuestRequest::Panic]
            } else {
                vec![]
            };
            assert_eq!(panic_sink.take(), want, "{a:?}");
        } else {
            let mut out = [0xa5u8; 4];
            pm.read(a.offset, &mut out[..a.width]);
            assert!(
                out[..a.width].iter().all(|&b| b == 0),
                "window read {out:x?}"
            );
            let mut out = [0xa5u8; 4];
            pvpanic.read(a.offset, &mut out[..a.width]);
            assert_eq!(out[0], PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
            assert!(
                out[1..a.width].iter().all(|&b| b == 0),
                "pvpanic read {out:x?}"
            );
        }
    }
});
