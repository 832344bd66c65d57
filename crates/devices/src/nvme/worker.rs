//! The controller's worker thread: waits (epoll) on the doorbell kick
//! eventfd, the per-SQ ioeventfds, the backend completion eventfd and a
//! timer for interrupts held back ([`super::INTERRUPT_DEFERRAL`]), and
//! runs [`super::controller::Controller::run_pass`] whenever one fires, so
//! I/O never runs on a vCPU thread.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::timerfd::TimerFd;

use super::controller::Controller;
use super::{NvmeError, Shared};

/// The token of the stop eventfd.
const STOP: u64 = u64::MAX;
/// The token of the deferred-interrupt timer.
const TIMER: u64 = u64::MAX - 1;

/// A running worker; stopped and joined on drop.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, Controller> {
    shared.ctrl.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Worker {
    /// Starts the worker of `shared`.
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, NvmeError> {
        let epoll = Epoll::new().map_err(NvmeError::Worker)?;
        let add = |fd: i32, token: u64| {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )
        };
        add(shared.stop.as_raw_fd(), STOP).map_err(NvmeError::Worker)?;
        add(shared.kick.as_raw_fd(), 0).map_err(NvmeError::Worker)?;
        add(shared.completions.as_raw_fd(), 1).map_err(NvmeError::Worker)?;
        for (i, fd) in shared.sq_kicks.iter().enumerate() {
            add(fd.as_raw_fd(), 2 + i as u64).map_err(NvmeError::Worker)?;
        }
        let timer = TimerFd::new().map_err(|e| NvmeError::Worker(e.into()))?;
        add(timer.as_raw_fd(), TIMER).map_err(NvmeError::Worker)?;
        lock(&shared).set_interrupt_deferral(Some(super::INTERRUPT_DEFERRAL));
        shared.worker_running.store(true, Ordering::SeqCst);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nvme-worker".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::NvmeWorker);
                run(&s, &epoll, timer)
            })
            .map_err(NvmeError::Worker)?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

fn run(shared: &Shared, epoll: &Epoll, mut timer: TimerFd) {
    let mut events = vec![EpollEvent::default(); 8 + shared.sq_kicks.len()];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("NVMe worker: epoll failed, stopping: {e}");
                break;
            }
        };
        for ev in &events[..n] {
            let fd = match ev.data() {
                STOP => return,
                TIMER => {
                    // Readable: the read does not block.
                    let _ = timer.wait();
                    continue;
                }
                0 => &shared.kick,
                1 => &shared.completions,
                i => match shared.sq_kicks.get(i as usize - 2) {
                    Some(fd) => {
                        // Each ioeventfd signal of KVM adds one.
                        if let Ok(n) = fd.read() {
                            shared.counters.doorbells.doorbells_ioeventfd.add(n);
                        }
                        continue;
                    }
                    None => continue,
                },
            };
            // Nonblocking: a spurious wake-up reads EAGAIN.
            let _ = fd.read();
        }
        // Work no event will announce (a shadow tail that moved while the
        // pass ran) gets further passes, each releasing the lock between.
        let mut c = lock(shared);
        while c.run_pass() {
            drop(c);
            c = lock(shared);
        }
        let deadline = c.next_deadline();
        drop(c);
        if let Some(by) = deadline {
            // A zero duration would disarm the timer.
            let wait = by.saturating_duration_since(Instant::now());
            if let Err(e) = timer.reset(wait.max(Duration::from_micros(1)), None) {
                tracing::warn!("NVMe worker: cannot arm the interrupt timer: {e}");
                lock(shared).flush_interrupts();
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.worker_running.store(false, Ordering::SeqCst);
        {
            // Nothing will wake for held-back interrupts any more.
            let mut c = lock(&self.shared);
            c.set_interrupt_deferral(None);
            c.flush_interrupts();
        }
        if let Err(e) = self.shared.stop.write(1) {
            tracing::error!("NVMe worker: cannot signal stop: {e}");
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
