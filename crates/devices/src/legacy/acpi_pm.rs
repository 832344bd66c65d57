//! The power-management registers of a hardware-reduced ACPI platform
//! (ACPI 6.5 §4.1 "Hardware-Reduced ACPI", §4.8.3.7 sleep control and status
//! registers, §4.8.3.6 reset register), all in one 3-port I/O window:
//!
//! | offset | register        | what a write does                               |
//! |--------|-----------------|-------------------------------------------------|
//! | 0      | sleep control   | `SLP_EN` with `SLP_TYP` = [`S5_SLEEP_TYPE`] → off |
//! | 1      | sleep status    | read: `WAK_STS` never set; writes ignored       |
//! | 2      | reset register  | [`RESET_VALUE`] → platform reset                |
//!
//! The DSDT's `\_S5` object carries [`S5_SLEEP_TYPE`]; the FADT points at these
//! ports. Other sleep states are not offered, so requests for them are logged
//! and ignored.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::lifecycle::{GuestRequest, LifecycleSink};

/// First port of the window.
pub const ACPI_PM_PORT: u16 = 0x600;
/// Ports the window spans.
pub const ACPI_PM_SIZE: u64 = 3;
/// Offset of the sleep control register.
pub const SLEEP_CONTROL_OFFSET: u64 = 0;
/// Offset of the sleep status register.
pub const SLEEP_STATUS_OFFSET: u64 = 1;
/// Offset of the reset register.
pub const RESET_OFFSET: u64 = 2;
/// The `SLP_TYP` value the DSDT's `\_S5` package names.
pub const S5_SLEEP_TYPE: u8 = 5;
/// The value the FADT tells the OS to write to the reset register.
pub const RESET_VALUE: u8 = 0x01;

const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;

/// The power-management register window.
#[derive(Debug)]
pub struct AcpiPowerDevice {
    sink: Arc<dyn LifecycleSink>,
}

impl AcpiPowerDevice {
    /// A window that reports power-off and reset to `sink`.
    pub fn new(sink: Arc<dyn LifecycleSink>) -> Self {
        Self { sink }
    }

    fn sleep_control(&self, value: u8) {
        if value & SLP_EN == 0 {
            return;
        }
        match (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK {
            S5_SLEEP_TYPE => self.sink.request(GuestRequest::PowerOff),
            other => ratelimit::warn!("guest asked for sleep type {other}, which is not offered"),
        }
    }
}

impl BusDevice for AcpiPowerDevice {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            SLEEP_CONTROL_OFFSET => self.sleep_control(value),
            RESET_OFFSET if value == RESET_VALUE => self.sink.request(GuestRequest::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::testing::RecordingSink;

    fn dev() -> (AcpiPowerDevice, Arc<RecordingSink>) {
        let sink = Arc::new(RecordingSink::default());
        (AcpiPowerDevice::new(sink.clone()), sink)
    }

    #[test]
    fn test_acpi_pm_s5_with_slp_en_powers_off() {
        let (mut d, sink) = dev();
        d.write(SLEEP_CONTROL_OFFSET, &[(S5_SLEEP_TYPE << 2) | SLP_EN]);
        assert_eq!(sink.taken(), vec![GuestRequest::PowerOff]);
    }

    #[test]
    fn test_acpi_pm_s5_without_slp_en_does_nothing() {
        let (mut d, sink) = dev();
        d.write(SLEEP_CONTROL_OFFSET, &[S5_SLEEP_TYPE << 2]);
        d.write(SLEEP_CONTROL_OFFSET, &[(3 << 2) | SLP_EN]);
        assert!(sink.taken().is_empty());
    }

    #[test]
    fn test_acpi_pm_flood_of_unoffered_sleep_types_logs_a_bounded_number_of_lines() {
        let (mut d, sink) = dev();

        let counts = ratelimit::testing::count_events(|| {
            for _ in 0..10_000 {
                d.write(SLEEP_CONTROL_OFFSET, &[(3 << 2) | SLP_EN]);
            }
        });

        assert_eq!(counts.warn_or_worse, ratelimit::BURST as usize);
        assert_eq!(counts.debug, 10_000 - ratelimit::BURST as usize);
        assert!(sink.taken().is_empty());
    }

    #[test]
    fn test_acpi_pm_reset_value_resets() {
        let (mut d, sink) = dev();
        d.write(RESET_OFFSET, &[RESET_VALUE]);
        d.write(RESET_OFFSET, &[0x7f]);
        d.write(SLEEP_STATUS_OFFSET, &[RESET_VALUE]);
        assert_eq!(sink.taken(), vec![GuestRequest::Reset]);
    }
}
