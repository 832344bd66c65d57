//! Telling a test host that stopped making progress from one that is busy.
//!
//! Under QEMU TCG the nested test host's own kernel sometimes dies or livelocks (see
//! `docs/test-host.md`): it then prints nothing, not even the watchdog's timeout marker of
//! the run in progress, until the batch's overall limit. [`Watch`] knows from the console
//! what the test host is doing (booting, running a guest, running hooks between guests)
//! and how long each phase may take, so the harness can give up on that test host soon
//! after the phase's limit instead.

use std::time::Duration;

use crate::markers::{self, BATCH, TESTHOST_READY};
use crate::run::GuestRun;
use crate::testhost::{BOOT_ALLOWANCE, PER_RUN_ALLOWANCE};

/// Time allowed between two runs (a run's host hooks, the next run's start) and after the
/// last one (powering off).
pub const BETWEEN_RUNS_ALLOWANCE: Duration = Duration::from_secs(240);

/// What the test host was last seen doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Booting,
    Running(String),
    Between,
}

/// Follows one test host's console and says when it has been silent about its progress for
/// longer than its current phase allows.
#[derive(Debug)]
pub struct Watch {
    limits: Vec<(String, Duration)>,
    markers_seen: usize,
    ready: bool,
    phase: Phase,
    idle: Duration,
}

impl Watch {
    /// A watch over a test host that runs `runs`.
    pub fn new(runs: &[GuestRun]) -> Self {
        Watch {
            limits: runs
                .iter()
                .map(|r| (r.name.clone(), r.timeout + PER_RUN_ALLOWANCE))
                .collect(),
            markers_seen: 0,
            ready: false,
            phase: Phase::Booting,
            idle: Duration::ZERO,
        }
    }

    /// Looks at the console so far, `elapsed` after the previous look. Returns why the test
    /// host is taken as stuck, or `None` while it is within its phase's allowance.
    pub fn observe(&mut self, console: &str, elapsed: Duration) -> Option<String> {
        let ready = console.contains(TESTHOST_READY);
        let seen = console.matches(BATCH).count();
        if ready != self.ready || seen != self.markers_seen {
            self.ready = ready;
            self.markers_seen = seen;
            self.idle = Duration::ZERO;
            self.phase = if !ready {
                Phase::Booting
            } else {
                markers::split(console)
                    .into_iter()
                    .find(|(_, s)| s.begun && !s.ended)
                    .map_or(Phase::Between, |(name, _)| Phase::Running(name))
            };
        } else {
            self.idle += elapsed;
        }
        let (allowed, doing) = match &self.phase {
            Phase::Booting => (BOOT_ALLOWANCE, "booting".to_owned()),
            Phase::Running(name) => (
                self.limits
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(BETWEEN_RUNS_ALLOWANCE, |(_, d)| *d),
                format!("running {name}"),
            ),
            Phase::Between => (BETWEEN_RUNS_ALLOWANCE, "between runs".to_owned()),
        };
        (self.idle > allowed).then(|| {
            format!(
                "test host made no progress for more than {}s while {doing}",
                allowed.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, secs: u64) -> GuestRun {
        let mut r = GuestRun::new(name);
        r.timeout = Duration::from_secs(secs);
        r
    }

    fn feed(w: &mut Watch, console: &str, secs: u64) -> Option<String> {
        w.observe(console, Duration::from_secs(secs))
    }

    #[test]
    fn test_boot_that_never_reaches_ready_is_stuck_after_boot_allowance() {
        let mut w = Watch::new(&[run("a", 60)]);

        assert_eq!(feed(&mut w, "SeaBIOS\n", 0), None);
        assert_eq!(feed(&mut w, "SeaBIOS\n", BOOT_ALLOWANCE.as_secs()), None);
        let why = feed(&mut w, "SeaBIOS\n", 1).expect("stuck");

        assert!(why.contains("while booting"), "{why}");
    }

    #[test]
    fn test_silent_run_is_stuck_only_after_its_timeout_and_allowance() {
        let mut w = Watch::new(&[run("a", 60), run("b", 600)]);
        let console = "IOVM-TESTHOST: ready\n@@IOVM-BATCH begin a t=3@@\n";
        let allowed = 60 + PER_RUN_ALLOWANCE.as_secs();

        assert_eq!(feed(&mut w, console, 0), None);
        assert_eq!(feed(&mut w, console, allowed), None);
        let why = feed(&mut w, console, 1).expect("stuck");

        assert!(why.contains("while running a"), "{why}");
    }

    #[test]
    fn test_each_marker_restarts_the_clock_with_the_next_phase_limit() {
        let mut w = Watch::new(&[run("a", 10), run("b", 600)]);
        let mut console = String::from("IOVM-TESTHOST: ready\n@@IOVM-BATCH begin a t=3@@\n");
        assert_eq!(feed(&mut w, &console, 20), None);
        console.push_str("@@IOVM-BATCH end a rc=0 t=9@@\n");
        assert_eq!(feed(&mut w, &console, 5), None);
        assert_eq!(
            feed(&mut w, &console, BETWEEN_RUNS_ALLOWANCE.as_secs()),
            None
        );
        console.push_str("@@IOVM-BATCH begin b t=20@@\n");

        assert_eq!(feed(&mut w, &console, 0), None);
        assert_eq!(feed(&mut w, &console, 500), None);
        assert!(feed(&mut w, &console, 200).is_some());
    }

    #[test]
    fn test_guest_output_without_markers_does_not_count_as_progress() {
        let mut w = Watch::new(&[run("a", 10)]);
        let mut console = String::from("IOVM-TESTHOST: ready\n@@IOVM-BATCH begin a t=3@@\n");
        assert_eq!(feed(&mut w, &console, 0), None);
        console.push_str("guest still printing\n");

        assert!(feed(&mut w, &console, 30).is_some());
    }
}
