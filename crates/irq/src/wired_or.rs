//! Several level-triggered device lines sharing one interrupt input, as PCI
//! INTx# wires do (PCI Local Bus 3.0 §2.2.6: "interrupts are shareable").
//!
//! The wires are open-drain: the shared signal is asserted while any device
//! asserts its own. Each device gets a [`WiredOrInput`], an [`IrqLine`] of
//! its own; the combined level goes to the output line only when it
//! changes, so one device deasserting cannot hide another's interrupt.
//!
//! ```text
//!  device A ── input 0 ─┐
//!  device B ── input 1 ─┼─ OR ──▶ output (an IOAPIC pin)
//!  device C ── input 2 ─┘
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use crate::{IrqError, IrqLine};

/// One shared interrupt input and the devices driving it.
#[derive(Debug)]
pub struct WiredOr {
    output: Arc<dyn IrqLine>,
    asserted: Mutex<Vec<bool>>,
}

impl WiredOr {
    /// A shared input feeding `output`, with no devices yet.
    pub fn new(output: Arc<dyn IrqLine>) -> Arc<Self> {
        Arc::new(Self {
            output,
            asserted: Mutex::new(Vec::new()),
        })
    }

    /// A new device's wire into the shared input, deasserted.
    pub fn input(self: &Arc<Self>) -> WiredOrInput {
        let mut asserted = self.asserted.lock().unwrap_or_else(PoisonError::into_inner);
        asserted.push(false);
        WiredOrInput {
            shared: self.clone(),
            index: asserted.len() - 1,
        }
    }

    fn drive(&self, index: usize, level: bool) -> Result<(), IrqError> {
        // The lock is held while the output moves, so two devices changing
        // their levels at once reach the output in the order they combined.
        let mut asserted = self.asserted.lock().unwrap_or_else(PoisonError::into_inner);
        let before = asserted.iter().any(|a| *a);
        if let Some(a) = asserted.get_mut(index) {
            *a = level;
        }
        let after = asserted.iter().any(|a| *a);
        if before != after {
            self.output.set_level(after)?;
        }
        Ok(())
    }
}

/// One device's wire into a [`WiredOr`].
#[derive(Debug)]
pub struct WiredOrInput {
    shared: Arc<WiredOr>,
    index: usize,
}

impl IrqLine for WiredOrInput {
    fn pulse(&self) -> Result<(), IrqError> {
        self.shared.drive(self.index, true)?;
        self.shared.drive(self.index, false)
    }

    fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
        self.shared.drive(self.index, asserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingLine;

    #[test]
    fn test_shared_line_stays_asserted_until_every_device_deasserts() {
        let out = Arc::new(RecordingLine::new());
        let shared = WiredOr::new(out.clone());
        let a = shared.input();
        let b = shared.input();

        a.set_level(true).unwrap();
        b.set_level(true).unwrap();
        a.set_level(false).unwrap();
        let while_b = out.level();
        b.set_level(false).unwrap();

        assert!(while_b);
        assert!(!out.level());
    }

    #[test]
    fn test_output_moves_only_on_a_change_of_the_combined_level() {
        #[derive(Debug, Default)]
        struct Counting(Mutex<Vec<bool>>);
        impl IrqLine for Counting {
            fn pulse(&self) -> Result<(), IrqError> {
                Ok(())
            }
            fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
                self.0.lock().unwrap().push(asserted);
                Ok(())
            }
        }
        let out = Arc::new(Counting::default());
        let shared = WiredOr::new(out.clone());
        let a = shared.input();
        let b = shared.input();

        a.set_level(true).unwrap();
        a.set_level(true).unwrap();
        b.set_level(true).unwrap();
        b.set_level(false).unwrap();
        a.set_level(false).unwrap();

        assert_eq!(*out.0.lock().unwrap(), vec![true, false]);
    }
}
