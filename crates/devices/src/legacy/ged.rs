//! The Generic Event Device of a hardware-reduced ACPI platform (ACPI 6.5
//! §5.6.9, `_HID` `ACPI0013`): how the machine tells the guest of an event
//! without fixed-feature registers or an SCI. The device raises its
//! interrupt; the guest's GED driver (Linux `drivers/acpi/evged.c`) runs the
//! device's `_EVT` method, which reads the event register here and sends
//! `Notify` to the device the event is for (the power button, `PNP0C0C`,
//! ACPI 6.5 §4.8.2.2.1.2).
//!
//! The event register is one byte at [`GED_PORT`]: a bit per pending event,
//! cleared when read (the guest's `_EVT` reads it once per interrupt).
//! Writes are ignored.

use std::sync::Arc;

use irq::IrqLine;

use crate::bus::BusDevice;

/// The I/O port of the event register.
pub const GED_PORT: u16 = 0x610;
/// Ports the device decodes.
pub const GED_SIZE: u64 = 1;
/// The IOAPIC pin (edge-triggered, active high) the device interrupts on.
pub const GED_IRQ: u32 = 10;

/// An event the machine can signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GedEvent {
    /// The power button was pressed: the guest should power off.
    PowerButton,
}

impl GedEvent {
    /// The event's bit in the event register (what the DSDT's `_EVT` tests).
    pub const fn bit(self) -> u8 {
        match self {
            GedEvent::PowerButton => 1 << 0,
        }
    }
}

/// The Generic Event Device.
#[derive(Debug)]
pub struct Ged {
    pending: u8,
    line: Arc<dyn IrqLine>,
}

impl Ged {
    /// A device with no event pending, interrupting on `line`.
    pub fn new(line: Arc<dyn IrqLine>) -> Self {
        Self { pending: 0, line }
    }

    /// Signals `event`: its bit is set until the guest reads the register,
    /// and the interrupt fires (again, if the guest has not read yet).
    pub fn raise(&mut self, event: GedEvent) {
        self.pending |= event.bit();
        if let Err(e) = self.line.pulse() {
            ratelimit::warn!("GED: cannot raise the interrupt: {e}");
        }
    }
}

impl BusDevice for Ged {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 {
            if let Some(first) = data.first_mut() {
                *first = std::mem::take(&mut self.pending);
            }
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use irq::recording::RecordingLine;

    use super::*;

    #[test]
    fn test_power_button_sets_its_bit_and_pulses_the_line() {
        let line = Arc::new(RecordingLine::new());
        let mut ged = Ged::new(line.clone());
        let mut data = [0xaau8];
        ged.read(0, &mut data);
        assert_eq!(data, [0], "nothing pending at first");
        ged.raise(GedEvent::PowerButton);
        assert_eq!(line.pulses(), 1);
        ged.read(0, &mut data);
        assert_eq!(data, [GedEvent::PowerButton.bit()]);
    }

    #[test]
    fn test_event_register_clears_on_read_and_a_second_press_fires_again() {
        let line = Arc::new(RecordingLine::new());
        let mut ged = Ged::new(line.clone());
        ged.raise(GedEvent::PowerButton);
        ged.raise(GedEvent::PowerButton);
        assert_eq!(line.pulses(), 2);
        let mut data = [0u8];
        ged.read(0, &mut data);
        assert_eq!(data, [1]);
        ged.read(0, &mut data);
        assert_eq!(data, [0], "read-to-clear");
    }

    #[test]
    fn test_guest_writes_and_wide_reads_change_nothing() {
        let line = Arc::new(RecordingLine::new());
        let mut ged = Ged::new(line.clone());
        ged.write(0, &[0xff]);
        let mut wide = [0xffu8; 4];
        ged.read(0, &mut wide);
        assert_eq!(wide, [0; 4]);
        ged.raise(GedEvent::PowerButton);
        ged.write(0, &[0]);
        ged.read(0, &mut wide);
        assert_eq!(wide, [1, 0, 0, 0], "a write does not acknowledge");
        assert_eq!(line.pulses(), 1);
    }
}
