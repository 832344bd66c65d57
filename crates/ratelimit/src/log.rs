//! [`LogLimit`]: how many lines one call site may log per window, shared by
//! every thread that reaches it (a `static`), with no lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines a call site logs at its own level per [`WINDOW`].
pub const BURST: u32 = 10;
/// The window a call site's [`BURST`] is counted over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// What a call site does with its next line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it at its level; `quieted` lines went to debug level since the
    /// last line logged so (0 if none).
    Log {
        /// Lines logged at debug level in the window before.
        quieted: u64,
    },
    /// Log it at its level, saying the next ones go to debug level.
    Last,
    /// Log it at debug level.
    Quiet,
}

/// A call site's budget: [`BURST`] lines per window at its level.
/// Lock-free and `const`-constructible, so a `static` per call site serves
/// every thread (vCPUs, workers) that reaches it.
#[derive(Debug)]
pub struct LogLimit {
    burst: u32,
    window_ms: u64,
    /// When the current window started, in milliseconds since [`epoch`].
    start_ms: AtomicU64,
    /// Lines in the current window.
    count: AtomicU32,
    /// Lines sent to debug level since the last one logged at level.
    quieted: AtomicU64,
}

/// The instant the limits count time from (the first use in the process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LogLimit {
    /// `burst` lines per `window` (at least one line, at least 1 ms).
    pub const fn new(burst: u32, window: Duration) -> Self {
        let window_ms = window.as_millis() as u64;
        Self {
            burst: if burst == 0 { 1 } else { burst },
            window_ms: if window_ms == 0 { 1 } else { window_ms },
            start_ms: AtomicU64::new(0),
            count: AtomicU32::new(0),
            quieted: AtomicU64::new(0),
        }
    }

    /// The verdict on a line logged now.
    pub fn check(&self) -> Verdict {
        self.check_at(epoch().elapsed().as_millis() as u64)
    }

    /// The verdict on a line logged `now_ms` milliseconds after the
    /// process's first limited line (tests pass their own clock).
    pub fn check_at(&self, now_ms: u64) -> Verdict {
        let start = self.start_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(start) >= self.window_ms
            && self
                .start_ms
                .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        let before = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        match before.saturating_add(1) {
            n if n < self.burst => Verdict::Log {
                quieted: self.quieted.swap(0, Ordering::Relaxed),
            },
            n if n == self.burst => {
                self.quieted.store(0, Ordering::Relaxed);
                Verdict::Last
            }
            _ => {
                self.quieted.fetch_add(1, Ordering::Relaxed);
                Verdict::Quiet
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_burst_then_quiet_then_a_new_window_says_how_many() {
        let limit = LogLimit::new(3, Duration::from_secs(1));

        let first: Vec<Verdict> = (0..6).map(|_| limit.check_at(10)).collect();
        let later = limit.check_at(1_010);
        let after = limit.check_at(1_011);

        assert_eq!(
            first,
            [
                Verdict::Log { quieted: 0 },
                Verdict::Log { quieted: 0 },
                Verdict::Last,
                Verdict::Quiet,
                Verdict::Quiet,
                Verdict::Quiet,
            ]
        );
        assert_eq!(later, Verdict::Log { quieted: 3 });
        assert_eq!(after, Verdict::Log { quieted: 0 });
    }

    #[test]
    fn test_within_the_window_the_budget_does_not_refill() {
        let limit = LogLimit::new(2, Duration::from_secs(60));

        let _ = limit.check_at(0);
        let _ = limit.check_at(0);
        let still = limit.check_at(59_999);
        let next = limit.check_at(60_000);

        assert_eq!(still, Verdict::Quiet);
        assert_eq!(next, Verdict::Log { quieted: 1 });
    }

    #[test]
    fn test_count_saturates_instead_of_wrapping() {
        let limit = LogLimit::new(1, Duration::from_secs(60));
        limit.count.store(u32::MAX - 1, Ordering::Relaxed);

        let a = limit.check_at(0);
        let b = limit.check_at(0);

        assert_eq!((a, b), (Verdict::Quiet, Verdict::Quiet));
    }

    #[test]
    fn test_zero_burst_still_logs_one_line() {
        let limit = LogLimit::new(0, Duration::ZERO);

        assert_eq!(limit.check_at(0), Verdict::Last);
        assert_eq!(limit.check_at(0), Verdict::Quiet);
    }
}
