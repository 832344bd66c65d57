//! The virtio-rng worker thread: waits (epoll) on the request queue's
//! notification eventfd and its stop eventfd; fills every available chain
//! from `getrandom(2)`.

use std::sync::Arc;

use dma::Dma;
use virtio_queue::QueueT;

use super::request;
use crate::device::{ActivateError, Activation, Memory, QueueSetup, Signals};
use crate::runtime::{drain_eventfd, pop_all, GuestWarnings, Poller, Worker, STOP};

/// Epoll token of the request queue.
const REQUESTS: u64 = 0;

struct RngWorker {
    memory: Arc<Memory>,
    dma: Arc<dyn Dma>,
    signals: Arc<dyn Signals>,
    queue: QueueSetup,
    max_descriptors: usize,
    max_bytes: u64,
    dead: bool,
    warnings: GuestWarnings,
    counters: Arc<counters::FunctionCounters>,
}

/// Starts the worker serving request queue 0 of `act`.
pub(super) fn start(
    max_descriptors: usize,
    max_bytes: u64,
    act: Activation,
) -> Result<Worker, ActivateError> {
    let queue = act
        .queues
        .into_iter()
        .find(|q| q.index == 0)
        .ok_or(ActivateError::MissingQueue(0))?;
    let mut poller = Poller::new().map_err(ActivateError::Thread)?;
    poller
        .add(&queue.notify, REQUESTS)
        .map_err(ActivateError::Thread)?;
    let w = RngWorker {
        memory: act.memory,
        dma: act.dma,
        signals: act.signals,
        queue,
        max_descriptors,
        max_bytes,
        dead: false,
        warnings: GuestWarnings::new("virtio-rng"),
        counters: act.counters,
    };
    Worker::spawn(sandbox::ThreadKind::VirtioRng, poller, move |p| w.run(p))
        .map_err(ActivateError::Thread)
}

impl RngWorker {
    fn run(mut self, mut poller: Poller) {
        self.serve();
        let mut tokens = Vec::new();
        loop {
            tokens.clear();
            if let Err(e) = poller.wait(&mut tokens) {
                tracing::error!("virtio-rng: epoll failed, stopping the worker: {e}");
                self.signals.needs_reset();
                return;
            }
            if tokens.contains(&STOP) {
                return;
            }
            let notified = drain_eventfd(&self.queue.notify);
            self.counters.doorbells.doorbells_shared.add(notified);
            self.serve();
        }
    }

    /// Fills every available chain, then interrupts the driver if asked.
    fn serve(&mut self) {
        if self.dead {
            return;
        }
        let mem = self.memory.clone();
        let (max_desc, max_bytes) = (self.max_descriptors, self.max_bytes);
        let mut chains = Vec::new();
        let popped = pop_all(&mut self.queue.queue, &mem, |chain| {
            let head = chain.head_index();
            chains.push((head, request::parse(chain, max_desc, max_bytes)));
        });
        let mut added = false;
        for (head, parsed) in chains {
            let len = match parsed {
                Ok(req) => {
                    if req.readable > 0 {
                        self.warnings.warn(format_args!(
                            "chain {head}: {} device-readable descriptors skipped",
                            req.readable
                        ));
                    }
                    self.fill(head, &req.buffers)
                }
                Err(e) => {
                    self.warnings
                        .warn(format_args!("chain {head} dropped: {e}"));
                    0
                }
            };
            if let Err(e) = self.queue.queue.add_used(&*mem, head, len) {
                return self.broken(format_args!("cannot return chain {head}: {e}"));
            }
            added = true;
        }
        if let Err(e) = popped {
            return self.broken(format_args!("{e}"));
        }
        if added {
            match self.queue.queue.needs_notification(&*mem) {
                Ok(true) => self.signals.used(self.queue.index),
                Ok(false) => {}
                Err(e) => self.broken(format_args!("used_event: {e}")),
            }
        }
    }

    /// Fills `buffers` with random bytes; returns how many were written.
    fn fill(&mut self, head: u16, buffers: &[(u64, u64)]) -> u32 {
        let mut written = 0u64;
        let mut bytes = Vec::new();
        for &(addr, len) in buffers {
            bytes.resize(usize::try_from(len).unwrap_or(0), 0);
            if let Err(e) = getrandom(&mut bytes) {
                tracing::error!("virtio-rng: getrandom failed: {e}");
                break;
            }
            if let Err(e) = self.dma.write(addr, &bytes) {
                self.warnings.warn(format_args!("chain {head}: {e}"));
                break;
            }
            written += len;
        }
        u32::try_from(written).unwrap_or(u32::MAX)
    }

    fn broken(&mut self, why: std::fmt::Arguments<'_>) {
        self.warnings
            .warn(format_args!("queue unusable, device needs reset: {why}"));
        if !std::mem::replace(&mut self.dead, true) {
            self.signals.needs_reset();
        }
    }
}

/// Fills `buf` from the kernel's random pool (`getrandom(2)`, blocking
/// only until the pool is initialized at boot).
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable
        // slice; getrandom writes at most that many bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}
