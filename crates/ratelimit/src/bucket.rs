//! [`TokenBucket`]: a bound on how often a costly host call runs, which
//! lets a burst through at once and then paces the rest.

use std::time::{Duration, Instant};

/// `capacity` tokens, refilled at `per_second`; each call takes one.
/// The caller holds it behind its own lock and decides what to do while
/// no token is left (wait, or defer the work).
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now` (`capacity` and `per_second` at least 1).
    pub fn new(capacity: u32, per_second: u32, now: Instant) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            capacity,
            per_second: f64::from(per_second.max(1)),
            tokens: capacity,
            last: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }

    /// Takes a token, sleeping the calling thread until one is there.
    pub fn take_blocking(&mut self) {
        while let Err(wait) = self.take(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_burst_passes_then_the_rate_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, 100, t0);

        let burst: Vec<bool> = (0..5).map(|_| b.take(t0).is_ok()).collect();
        let wait = b.take(t0).unwrap_err();
        let after_10ms = b.take(t0 + Duration::from_millis(10));

        assert_eq!(burst, [true, true, true, true, false]);
        assert!(wait <= Duration::from_millis(10) && wait > Duration::ZERO);
        assert!(after_10ms.is_ok());
    }

    #[test]
    fn test_tokens_never_exceed_the_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, 1000, t0);
        let later = t0 + Duration::from_secs(3600);

        let taken = (0..10).filter(|_| b.take(later).is_ok()).count();

        assert_eq!(taken, 2);
    }

    #[test]
    fn test_over_a_second_at_most_capacity_plus_rate_pass() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(8, 50, t0);

        let passed = (0..10_000u64)
            .filter(|i| b.take(t0 + Duration::from_micros(i * 100)).is_ok())
            .count();

        assert!(passed <= 8 + 50, "{passed}");
        assert!(passed >= 50, "{passed}");
    }

    #[test]
    fn test_a_clock_going_back_takes_nothing_extra() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(1, 1, t0);

        assert!(b.take(t0).is_ok());
        assert!(b.take(t0 - Duration::from_millis(500)).is_err());
        assert!(b.take(t0).is_err());
    }
}
