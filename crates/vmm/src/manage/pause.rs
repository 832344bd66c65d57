//! Pausing a running machine's vCPUs (`vm.pause`, `vm.resume`).
//!
//! ```text
//!  run loop: pause() ─ sets `paused`, kicks every vCPU out of KVM_RUN ─▶
//!  vCPU: sees `paused` at the top of its loop ─▶ parks (counted) ─▶
//!  run loop: every live vCPU parked ─▶ answers the client
//!  resume() ─ clears `paused`, wakes the parked vCPUs ─▶ KVM_RUN again
//! ```
//!
//! Device workers keep running while the vCPUs are parked, so I/O the
//! guest started before the pause completes into guest memory and raises
//! its interrupt, which the guest handles on resume. KVM keeps every
//! vCPU's state in the kernel: a parked vCPU is a thread outside
//! `KVM_RUN`, nothing more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct GateState {
    paused: bool,
    parked: u32,
}

/// The gate every vCPU of one machine passes before each `KVM_RUN`.
#[derive(Debug, Default)]
pub struct PauseGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

/// How often a parked vCPU looks at the machine's stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

impl PauseGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the vCPUs to park; they do so at their next pass of the gate
    /// (the caller kicks them out of `KVM_RUN`).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// Lets the parked vCPUs run again.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.changed.notify_all();
    }

    /// Whether a pause is asked for.
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// How many vCPUs are parked now.
    pub fn parked(&self) -> u32 {
        self.lock().parked
    }

    /// Waits until `count` vCPUs are parked, calling `kick` between looks
    /// (a kick can arrive before a vCPU enters `KVM_RUN` and be lost, so it
    /// is repeated); false when `timeout` passed first.
    pub fn wait_parked(&self, count: u32, timeout: Duration, mut kick: impl FnMut()) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.parked() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            kick();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Called by a vCPU before each `KVM_RUN`: parks while a pause is asked
    /// for and the machine is not stopping.
    pub fn pass(&self, stop: &AtomicBool) {
        let mut s = self.lock();
        if !s.paused {
            return;
        }
        s.parked += 1;
        self.changed.notify_all();
        while s.paused && !stop.load(Ordering::Acquire) {
            s = self
                .changed
                .wait_timeout(s, STOP_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.parked -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn spawn_vcpu(
        gate: &Arc<PauseGate>,
        stop: &Arc<AtomicBool>,
        passes: &Arc<std::sync::atomic::AtomicU64>,
    ) -> std::thread::JoinHandle<()> {
        let (gate, stop, passes) = (gate.clone(), stop.clone(), passes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                gate.pass(&stop);
                passes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }

    #[test]
    fn test_pause_parks_every_vcpu_and_resume_releases_them() {
        let gate = Arc::new(PauseGate::default());
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..3).map(|_| spawn_vcpu(&gate, &stop, &passes)).collect();

        gate.pause();
        assert!(gate.wait_parked(3, Duration::from_secs(5), || {}));
        let frozen = passes.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(passes.load(Ordering::Relaxed), frozen, "parked vCPUs ran");

        gate.resume();
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            passes.load(Ordering::Relaxed) > frozen,
            "resumed vCPUs did not run"
        );
        assert_eq!(gate.parked(), 0);
        stop.store(true, Ordering::Release);
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn test_stop_releases_parked_vcpus() {
        let gate = Arc::new(PauseGate::default());
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t = spawn_vcpu(&gate, &stop, &passes);
        gate.pause();
        assert!(gate.wait_parked(1, Duration::from_secs(5), || {}));

        stop.store(true, Ordering::Release);

        t.join().unwrap();
        assert_eq!(gate.parked(), 0);
    }

    #[test]
    fn test_wait_parked_times_out_when_a_vcpu_never_comes() {
        let gate = PauseGate::default();
        gate.pause();
        let mut kicks = 0;
        assert!(!gate.wait_parked(1, Duration::from_millis(20), || kicks += 1));
        assert!(kicks > 0, "the caller was not asked to kick");
    }
}
