//! The HBA's worker thread: waits (epoll) on the backends' completion
//! eventfd and posts what completed (SDB/D2H FISes, one message per
//! pass), so completions never wait for a vCPU exit.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::hba::Hba;
use super::{AhciError, Shared};

const STOP: u64 = 0;
const COMPLETIONS: u64 = 1;
const KICK: u64 = 2;

/// A running worker; stopped and joined on drop.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, Hba> {
    shared.hba.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Worker {
    /// Starts the worker of `shared`.
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, AhciError> {
        let epoll = Epoll::new().map_err(AhciError::Worker)?;
        for (fd, token) in [
            (shared.stop.as_raw_fd(), STOP),
            (shared.completions.as_raw_fd(), COMPLETIONS),
            (shared.kick.as_raw_fd(), KICK),
        ] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(AhciError::Worker)?;
        }
        lock(&shared).set_defer_issue(true);
        shared.worker_running.store(true, Ordering::SeqCst);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ahci-worker".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::AhciWorker);
                run(&s, &epoll)
            })
            .map_err(AhciError::Worker)?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

fn run(shared: &Shared, epoll: &Epoll) {
    let mut events = [EpollEvent::default(); 4];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("AHCI worker: epoll failed, stopping: {e}");
                return;
            }
        };
        if events[..n].iter().any(|e| e.data() == STOP) {
            return;
        }
        // Nonblocking: a spurious wake-up reads EAGAIN.
        let _ = shared.completions.read();
        let _ = shared.kick.read();
        let mut h = lock(shared);
        h.run_lists();
        h.reap_completions();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.worker_running.store(false, Ordering::SeqCst);
        {
            // PxCI writes fetch on the vCPU again; what is waiting runs now.
            let mut h = lock(&self.shared);
            h.set_defer_issue(false);
            h.run_lists();
        }
        if let Err(e) = self.shared.stop.write(1) {
            tracing::error!("AHCI worker: cannot signal stop: {e}");
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
