//! An INTx line that counts its assertions in its function's counters.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use counters::FunctionCounters;

use crate::{IrqError, IrqLine};

/// A function's INTx pin, counting each assertion (a pulse, or the level
/// going from low to high) in [`counters::InterruptCounters::irq_intx`]
/// before passing it to the wire.
pub struct CountedLine {
    inner: Arc<dyn IrqLine>,
    counters: Arc<FunctionCounters>,
    high: AtomicBool,
}

impl CountedLine {
    /// `inner`, counted in `counters`.
    pub fn new(inner: Arc<dyn IrqLine>, counters: Arc<FunctionCounters>) -> Self {
        Self {
            inner,
            counters,
            high: AtomicBool::new(false),
        }
    }
}

impl fmt::Debug for CountedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountedLine")
            .field("inner", &self.inner)
            .field("high", &self.high)
            .finish()
    }
}

impl IrqLine for CountedLine {
    fn pulse(&self) -> Result<(), IrqError> {
        self.counters.interrupts.irq_intx.inc();
        self.inner.pulse()
    }

    fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
        if self.high.swap(asserted, Ordering::Relaxed) != asserted && asserted {
            self.counters.interrupts.irq_intx.inc();
        }
        self.inner.set_level(asserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingLine;

    #[test]
    fn test_pulses_and_rising_levels_count_and_a_held_level_does_not() {
        let wire = Arc::new(RecordingLine::new());
        let counters = Arc::new(FunctionCounters::default());
        let line = CountedLine::new(wire.clone(), counters.clone());

        line.pulse().unwrap();
        line.set_level(true).unwrap();
        line.set_level(true).unwrap();
        line.set_level(false).unwrap();
        line.set_level(false).unwrap();
        line.set_level(true).unwrap();

        assert_eq!(counters.interrupts.irq_intx.get(), 3);
        assert!(wire.level(), "every call reached the wire");
        assert_eq!(wire.pulses(), 1);
    }
}
