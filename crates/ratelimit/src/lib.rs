//! Rate limits for what a hostile guest can make the host do over and over.
//!
//! A guest can repeat any access millions of times a second. Whatever the
//! host does in answer must not grow without bound with it:
//!
//! - a log line a guest can trigger goes through [`warn!`], [`error!`] or
//!   [`info!`] (drop-ins for `tracing`'s): each call site logs at most
//!   [`BURST`] lines per [`WINDOW`] at its level, the rest at debug level,
//!   and the first line of the next window says how many went quiet; a
//!   device model keeps one [`LogLimit`] per instance instead and logs
//!   through [`warn_with!`];
//! - a costly host call (an ioctl that rebuilds a kernel table) waits for a
//!   token of a [`TokenBucket`], so its rate is bounded while a burst of
//!   legitimate work (a driver setting up its vectors) still runs at once.
//!
//! ```text
//!  guest access ─▶ model ─▶ ratelimit::warn!("...") ─▶ LogLimit (static, per call site)
//!                                                     ├─ Log      ─▶ tracing::warn!
//!                                                     ├─ Last     ─▶ tracing::warn! "... (further ... at debug level)"
//!                                                     └─ Quiet    ─▶ tracing::debug!
//! ```
//!
//! Debug and trace lines are not limited: they are off unless asked for.

#![deny(missing_docs)]

mod bucket;
mod log;
pub mod testing;

pub use bucket::TokenBucket;
pub use log::{LogLimit, Verdict, BURST, WINDOW};

/// `tracing` for the macros' expansions.
#[doc(hidden)]
pub use tracing;

/// Logs through `$limit` (a [`LogLimit`]) at `$level` (`warn`, `error` or
/// `info`), or at debug level once its budget is spent.
#[doc(hidden)]
#[macro_export]
macro_rules! __limited {
    ($limit:expr, $level:ident, $($arg:tt)+) => {
        match $limit.check() {
            $crate::Verdict::Log { quieted: 0 } => $crate::tracing::$level!($($arg)+),
            $crate::Verdict::Log { quieted } => $crate::tracing::$level!(
                "{} ({quieted} more like this were logged at debug level)",
                format_args!($($arg)+)
            ),
            $crate::Verdict::Last => $crate::tracing::$level!(
                "{} (more like this at debug level for a while)",
                format_args!($($arg)+)
            ),
            $crate::Verdict::Quiet => $crate::tracing::debug!($($arg)+),
        }
    };
}

/// `tracing::warn!` through `$limit`, a [`LogLimit`] of one device instance
/// (each controller, HBA or queue its own budget), at debug level once the
/// budget of the window is spent.
#[macro_export]
macro_rules! warn_with {
    ($limit:expr, $($arg:tt)+) => {
        $crate::__limited!($limit, warn, $($arg)+)
    };
}

/// `tracing::warn!`, limited to [`BURST`] lines per [`WINDOW`] at this call
/// site; the rest at debug level. For anything a guest can trigger.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::LogLimit = $crate::LogLimit::new($crate::BURST, $crate::WINDOW);
        $crate::__limited!(LIMIT, warn, $($arg)+)
    }};
}

/// `tracing::error!`, limited like [`warn!`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::LogLimit = $crate::LogLimit::new($crate::BURST, $crate::WINDOW);
        $crate::__limited!(LIMIT, error, $($arg)+)
    }};
}

/// `tracing::info!`, limited like [`warn!`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::LogLimit = $crate::LogLimit::new($crate::BURST, $crate::WINDOW);
        $crate::__limited!(LIMIT, info, $($arg)+)
    }};
}

#[cfg(test)]
mod tests {
    use crate::testing::count_events;

    fn guest_pokes(n: usize) {
        for i in 0..n {
            crate::warn!("bad access {i}");
        }
    }

    #[test]
    fn test_a_flood_at_one_call_site_logs_a_burst_then_debug() {
        let counts = count_events(|| guest_pokes(10_000));

        assert_eq!(counts.warn_or_worse, crate::BURST as usize);
        assert_eq!(counts.debug, 10_000 - crate::BURST as usize);
    }

    #[test]
    fn test_each_instance_limit_has_its_own_budget() {
        let (a, b) = (
            crate::LogLimit::new(3, crate::WINDOW),
            crate::LogLimit::new(3, crate::WINDOW),
        );

        let counts = count_events(|| {
            for i in 0..10 {
                crate::warn_with!(a, "device a: {i}");
                crate::warn_with!(b, "device b: {i}");
            }
        });

        assert_eq!(counts.warn_or_worse, 6);
        assert_eq!(counts.debug, 14);
    }

    #[test]
    fn test_each_call_site_has_its_own_budget() {
        let counts = count_events(|| {
            for _ in 0..100 {
                crate::error!("one");
                crate::info!("other");
            }
        });

        assert_eq!(counts.warn_or_worse, crate::BURST as usize);
        assert_eq!(counts.info, crate::BURST as usize);
    }
}
