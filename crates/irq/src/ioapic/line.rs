//! A device's interrupt wire into one IOAPIC pin: an [`IrqLine`] that turns
//! "asserted" into the electrical level the wire carries.
//!
//! ISA interrupts are active high; PCI INTx# wires are active low (PCI Local
//! Bus 3.0 §2.2.6). The guest learns each pin's polarity from ACPI (MADT
//! interrupt source overrides, `_PRT`) and programs the entry to match; the
//! VMM picks the [`WirePolarity`] that agrees with what its tables say.
//!
//! One line drives one pin: lines that share a pin (PCI INTx sharing) need
//! their levels combined before it, or the last one to move wins.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Ioapic, IoapicError};
use crate::msi::MsiSink;
use crate::{IrqError, IrqLine};

/// Which electrical level of a wire means "asserted".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WirePolarity {
    /// High when asserted (ISA).
    ActiveHigh,
    /// Low when asserted (PCI INTx#); idles high.
    ActiveLow,
}

impl WirePolarity {
    /// The electrical level for `asserted`.
    pub const fn level(self, asserted: bool) -> bool {
        match self {
            Self::ActiveHigh => asserted,
            Self::ActiveLow => !asserted,
        }
    }
}

/// One IOAPIC pin, as the device driving it sees it.
#[derive(Debug)]
pub struct IoapicLine<S: MsiSink> {
    ioapic: Arc<Mutex<Ioapic<S>>>,
    pin: usize,
    polarity: WirePolarity,
}

impl<S: MsiSink> IoapicLine<S> {
    /// Connects a wire of `polarity` to `pin` and drives it to its idle
    /// (deasserted) level.
    pub fn new(
        ioapic: Arc<Mutex<Ioapic<S>>>,
        pin: usize,
        polarity: WirePolarity,
    ) -> Result<Self, IoapicError> {
        let line = Self {
            ioapic,
            pin,
            polarity,
        };
        line.drive(false)?;
        Ok(line)
    }

    fn lock(&self) -> MutexGuard<'_, Ioapic<S>> {
        self.ioapic.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn drive(&self, asserted: bool) -> Result<(), IoapicError> {
        self.lock().set_irq(self.pin, self.polarity.level(asserted))
    }
}

impl<S: MsiSink> IrqLine for IoapicLine<S> {
    fn pulse(&self) -> Result<(), IrqError> {
        let mut ioapic = self.lock();
        ioapic
            .set_irq(self.pin, self.polarity.level(true))
            .and_then(|()| ioapic.set_irq(self.pin, self.polarity.level(false)))
            .map_err(IrqError::Ioapic)
    }

    fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
        self.drive(asserted).map_err(IrqError::Ioapic)
    }
}
