//! An [`IrqLine`] that records what a device did with it, for unit tests of
//! device models (the "fake guest" side of an interrupt).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{IrqError, IrqLine};

/// Counts pulses and remembers the current level of a line.
#[derive(Debug, Default)]
pub struct RecordingLine {
    pulses: AtomicU64,
    level: AtomicBool,
}

impl RecordingLine {
    /// A line that has never fired and is low.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many edges the device raised so far.
    pub fn pulses(&self) -> u64 {
        self.pulses.load(Ordering::SeqCst)
    }

    /// Whether the device currently holds the line high.
    pub fn level(&self) -> bool {
        self.level.load(Ordering::SeqCst)
    }
}

impl IrqLine for RecordingLine {
    fn pulse(&self) -> Result<(), IrqError> {
        self.pulses.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
        self.level.store(asserted, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_recording_line_pulse_counts_edges() {
        let line = RecordingLine::new();
        line.pulse().unwrap();
        line.pulse().unwrap();
        assert_eq!(line.pulses(), 2);
        assert!(!line.level());
    }

    #[test]
    fn test_recording_line_set_level_tracks_state() {
        let line = RecordingLine::new();
        line.set_level(true).unwrap();
        assert!(line.level());
        line.set_level(false).unwrap();
        assert!(!line.level());
    }
}
