//! Interrupt ports that record what a model did with them, for unit tests of
//! device models (the "fake guest" side of an interrupt): an [`IrqLine`] and
//! an [`MsiSink`] and [`MsiVectors`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::msi::{MsiMessage, MsiSink, MsiVectors, RouteChange};
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

/// Records every message sent to it, in order.
#[derive(Debug, Default)]
pub struct RecordingMsiSink {
    messages: Mutex<Vec<MsiMessage>>,
}

impl RecordingMsiSink {
    /// A sink that has received nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<MsiMessage>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<MsiMessage> {
        self.lock().clone()
    }

    /// The messages received so far, forgetting them.
    pub fn take(&self) -> Vec<MsiMessage> {
        std::mem::take(&mut *self.lock())
    }

    /// The vector (data bits 7..0) of every message received so far.
    pub fn vectors(&self) -> Vec<u8> {
        self.lock()
            .iter()
            .map(|m| m.data.to_le_bytes()[0])
            .collect()
    }
}

impl MsiSink for RecordingMsiSink {
    fn deliver(&self, msg: MsiMessage) {
        self.lock().push(msg);
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

    #[test]
    fn test_recording_msi_sink_keeps_messages_in_order() {
        let sink = RecordingMsiSink::new();
        let first = MsiMessage {
            address: 0xFEE0_0000,
            data: 0x30,
        };
        let second = MsiMessage {
            address: 0xFEE0_1000,
            data: 0x8041,
        };

        sink.deliver(first);
        sink.deliver(second);

        assert_eq!(sink.vectors(), vec![0x30, 0x41]);
        assert_eq!(sink.take(), vec![first, second]);
        assert!(sink.messages().is_empty());
    }
}

/// Records the routes a model installed and the vectors it sent, for unit
/// tests of MSI/MSI-X devices.
#[derive(Debug, Default)]
pub struct RecordingVectors {
    routes: Mutex<std::collections::BTreeMap<u16, MsiMessage>>,
    sent: Mutex<Vec<(u16, MsiMessage)>>,
    updates: AtomicUsize,
    counters: counters::InterruptCounters,
}

impl RecordingVectors {
    /// No routes, nothing sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The message `vector` is routed to, if any.
    pub fn route(&self, vector: u16) -> Option<MsiMessage> {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&vector)
            .copied()
    }

    /// Every `(vector, message)` sent so far, oldest first, forgetting them.
    pub fn take(&self) -> Vec<(u16, MsiMessage)> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The vectors sent so far, oldest first, without forgetting them.
    pub fn sent_vectors(&self) -> Vec<u16> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(v, _)| *v)
            .collect()
    }

    /// How many times the model called [`MsiVectors::update`] (once per
    /// guest write that changed routes, whatever the number of vectors).
    pub fn updates(&self) -> usize {
        self.updates.load(Ordering::Relaxed)
    }

    /// The interrupt counters the model counted its messages in.
    pub fn interrupt_counters(&self) -> &counters::InterruptCounters {
        &self.counters
    }
}

impl MsiVectors for RecordingVectors {
    fn update(&self, changes: &[RouteChange]) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for &(vector, message) in changes {
            match message {
                Some(m) => routes.insert(vector, m),
                None => routes.remove(&vector),
            };
        }
    }

    fn send(&self, vector: u16, message: MsiMessage) {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((vector, message));
    }

    fn counters(&self) -> Option<&counters::InterruptCounters> {
        Some(&self.counters)
    }
}
