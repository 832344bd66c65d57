//! A tracing subscriber that counts events by level, for tests that show a
//! flood of guest accesses logs a bounded number of lines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Events seen by level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// `warn` and `error` events.
    pub warn_or_worse: usize,
    /// `info` events.
    pub info: usize,
    /// `debug` and `trace` events.
    pub debug: usize,
}

#[derive(Debug, Default)]
struct Counter {
    warn_or_worse: AtomicUsize,
    info: AtomicUsize,
    debug: AtomicUsize,
}

#[derive(Debug)]
struct Counting(Arc<Counter>);

impl Subscriber for Counting {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        let slot = if level <= Level::WARN {
            &self.0.warn_or_worse
        } else if level == Level::INFO {
            &self.0.info
        } else {
            &self.0.debug
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a subscriber (on this thread only) that counts its events.
pub fn count_events(f: impl FnOnce()) -> EventCounts {
    let counter = Arc::new(Counter::default());
    tracing::subscriber::with_default(Counting(counter.clone()), f);
    EventCounts {
        warn_or_worse: counter.warn_or_worse.load(Ordering::Relaxed),
        info: counter.info.load(Ordering::Relaxed),
        debug: counter.debug.load(Ordering::Relaxed),
    }
}
