//! The device's worker thread: waits (epoll) on the stop and kick
//! eventfds, the backend's fd (only while the receive side takes frames,
//! so a full ring leaves frames in the host queue and blocks nothing
//! else), and the deadline of a moderated interrupt; serves the transmit
//! ring, reads frames, and sends the interrupts due.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::core::Core;
use super::{E1000eError, Shared};

const STOP: u64 = 0;
const KICK: u64 = 1;
const BACKEND: u64 = 2;

/// A running worker; stopped and joined on drop.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, Core> {
    shared.core.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Worker {
    /// Starts the worker of `shared`.
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, E1000eError> {
        let epoll = Epoll::new().map_err(E1000eError::Worker)?;
        for (fd, token) in [
            (shared.stop.as_raw_fd(), STOP),
            (shared.kick.as_raw_fd(), KICK),
        ] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(E1000eError::Worker)?;
        }
        lock(&shared).defer = true;
        shared.worker_running.store(true, Ordering::SeqCst);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("e1000e".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::E1000e);
                run(&s, &epoll)
            })
            .map_err(E1000eError::Worker)?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

/// Adds or removes the backend's fd as the receive side wants frames.
fn sync(core: &Core, epoll: &Epoll, armed: &mut bool) {
    let Some(fd) = core.backend().map(|b| b.as_raw_fd()) else {
        return;
    };
    let want = core.wants_frames();
    let op = match (*armed, want) {
        (false, true) => ControlOperation::Add,
        (true, false) => ControlOperation::Delete,
        _ => return,
    };
    match epoll.ctl(op, fd, EpollEvent::new(EventSet::IN, BACKEND)) {
        Ok(()) => *armed = want,
        Err(e) => tracing::error!("e1000e: epoll failed for the backend: {e}"),
    }
}

fn run(shared: &Shared, epoll: &Epoll) {
    let mut events = [EpollEvent::default(); 4];
    let mut armed = false;
    loop {
        let timeout = {
            let mut c = lock(shared);
            c.process_tx();
            c.retry_pending();
            c.poll_backend();
            c.flush_interrupts();
            sync(&c, epoll, &mut armed);
            c.deadline().map_or(-1, |d| {
                let ms = d
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            })
        };
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("e1000e worker: epoll failed, stopping: {e}");
                return;
            }
        };
        if events[..n].iter().any(|e| e.data() == STOP) {
            return;
        }
        // Nonblocking: a spurious wake-up reads EAGAIN.
        let _ = shared.kick.read();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.worker_running.store(false, Ordering::SeqCst);
        lock(&self.shared).defer = false;
        if let Err(e) = self.shared.stop.write(1) {
            tracing::error!("e1000e worker: cannot signal stop: {e}");
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
