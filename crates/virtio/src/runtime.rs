//! What every device type's worker shares: the thread with its stop
//! eventfd and epoll set, collecting a descriptor chain (virtio 1.2
//! §2.7.5, split virtqueues) into a plain list, the rate-limited warning
//! about something the guest did, and bounded configuration-space reads.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::thread::JoinHandle;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemory;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::device::Memory;

/// The epoll token of a worker's stop eventfd.
pub(crate) const STOP: u64 = u64::MAX;

/// Set by [`inject_worker_panic`].
static PANIC_ON_NEXT_EVENT: AtomicBool = AtomicBool::new(false);

/// Test hook: the next device worker that wakes for anything but its stop
/// eventfd panics, so a test can show what a panicking worker does to the
/// VMM (iovm's `IOVM_TEST_INJECT_PANIC=device-worker`).
pub fn inject_worker_panic() {
    PANIC_ON_NEXT_EVENT.store(true, AtomicOrdering::SeqCst);
}

/// An epoll set a worker waits on; each fd carries a token.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

impl Poller {
    /// An empty set.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            epoll: Epoll::new()?,
            events: vec![EpollEvent::default(); 16],
        })
    }

    /// Wakes the worker with `token` when `fd` becomes readable.
    pub(crate) fn add(&mut self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            fd.as_raw_fd(),
            EpollEvent::new(EventSet::IN, token),
        )?;
        self.events.push(EpollEvent::default());
        Ok(())
    }

    /// Blocks until some fd is readable; appends their tokens to `out`.
    pub(crate) fn wait(&mut self, out: &mut Vec<u64>) -> io::Result<()> {
        loop {
            match self.epoll.wait(-1, &mut self.events) {
                Ok(n) => {
                    out.extend(self.events[..n].iter().map(EpollEvent::data));
                    if out.iter().any(|&t| t != STOP)
                        && PANIC_ON_NEXT_EVENT.load(AtomicOrdering::Relaxed)
                        && PANIC_ON_NEXT_EVENT.swap(false, AtomicOrdering::SeqCst)
                    {
                        panic!("injected device worker panic (test hook)");
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads an eventfd to clear it; a nonblocking fd with nothing to read
/// (a spurious wake-up) is not an error worth reporting.
pub(crate) fn drain_eventfd(fd: &EventFd) -> u64 {
    fd.read().unwrap_or(0)
}

/// A device's worker thread; stopped and joined on [`Worker::stop`] or
/// drop.
#[derive(Debug)]
pub(crate) struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a thread named after `kind`, in `kind`'s seccomp filter. The stop eventfd is added
    /// to `poller` with the token [`STOP`]; `body` must return soon after
    /// it sees that token.
    pub(crate) fn spawn(
        kind: sandbox::ThreadKind,
        mut poller: Poller,
        body: impl FnOnce(Poller) + Send + 'static,
    ) -> io::Result<Self> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        poller.add(&stop, STOP)?;
        let thread = std::thread::Builder::new()
            .name(kind.name().into())
            .spawn(move || {
                sandbox::enter(kind);
                body(poller)
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits until it has.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Err(e) = self.stop.write(1) {
            // Without the wake-up the join would hang: leave the thread.
            tracing::error!("virtio worker: cannot signal stop: {e}");
            return;
        }
        if thread.join().is_err() {
            tracing::error!("virtio worker panicked");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why a queue can no longer be served (the driver must reset the device).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RingError {
    /// Reading or writing the rings failed.
    #[error(transparent)]
    Queue(#[from] virtio_queue::Error),
    /// The available index moved twice but no entry could be read: the
    /// ring lies (partly) outside guest memory.
    #[error("available ring entry unreadable")]
    Unreadable,
}

/// Pops every chain available in `queue` and hands it to `f`, with the
/// driver's notifications disabled meanwhile; re-enables them and checks
/// again before returning, so a chain published in between is not missed
/// (the loop virtio-queue documents for `enable_notification`).
pub(crate) fn pop_all<'m>(
    queue: &mut Queue,
    mem: &'m Memory,
    mut f: impl FnMut(DescriptorChain<&'m Memory>),
) -> Result<(), RingError> {
    let mut empty_passes = 0;
    loop {
        queue.disable_notification(mem)?;
        let mut popped = 0usize;
        while let Some(chain) = queue.iter(mem)?.next() {
            popped += 1;
            f(chain);
        }
        match queue.enable_notification(mem)? {
            false => return Ok(()),
            // More arrived while notifications were off.
            true if popped > 0 => empty_passes = 0,
            // Published just after the pass looked: the next pass sees it.
            true if empty_passes == 0 => empty_passes = 1,
            true => return Err(RingError::Unreadable),
        }
    }
}

/// Pops every chain available in `queue` and hands it to `f`, leaving the
/// driver's notifications disabled: for a device with requests in flight,
/// whose completions will wake it anyway. Before it waits for a
/// notification again, the caller must re-arm with [`pop_all`].
pub(crate) fn pop_quiet<'m>(
    queue: &mut Queue,
    mem: &'m Memory,
    mut f: impl FnMut(DescriptorChain<&'m Memory>),
) -> Result<(), RingError> {
    queue.disable_notification(mem)?;
    while let Some(chain) = queue.iter(mem)?.next() {
        f(chain);
    }
    Ok(())
}

/// One descriptor of a chain as a device sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Bus address of the buffer.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u32,
    /// Device-writable (`VIRTQ_DESC_F_WRITE`).
    pub writable: bool,
}

/// Why a descriptor chain cannot be used at all (§2.7.5.3: the driver
/// broke a MUST the device cannot work around).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No descriptor could be read: the head index is past the table, or
    /// the head descriptor lies outside guest memory.
    #[error("the chain has no readable descriptor")]
    Empty,
    /// The chain ended on a descriptor that still has `NEXT` set: it loops,
    /// points past the table or outside memory, has a bad indirect table,
    /// or its lengths overflow 32 bits.
    #[error("the chain is broken (loop, bad next index, bad indirect table or memory)")]
    Broken,
    /// More descriptors than the device accepts.
    #[error("the chain has more than {0} descriptors")]
    TooLong(usize),
}

/// Collects the descriptors of `chain`, at most `max` of them.
///
/// `DescriptorChain` stops silently at the first problem; a chain is whole
/// only if its last descriptor has no `NEXT` flag.
pub fn collect_chain<M>(chain: DescriptorChain<M>, max: usize) -> Result<Vec<Segment>, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let mut out = Vec::new();
    let mut ended = false;
    for desc in chain {
        if out.len() == max {
            return Err(ChainError::TooLong(max));
        }
        out.push(Segment {
            addr: desc.addr().0,
            len: desc.len(),
            writable: desc.is_write_only(),
        });
        ended = !desc.has_next();
    }
    match (out.is_empty(), ended) {
        (true, _) => Err(ChainError::Empty),
        (false, false) => Err(ChainError::Broken),
        (false, true) => Ok(out),
    }
}

/// Warnings about what the guest did, at most [`ratelimit::BURST`] per
/// minute per device; the rest go to debug level so a hostile guest cannot
/// flood the host's log.
#[derive(Debug)]
pub(crate) struct GuestWarnings {
    device: &'static str,
    limit: ratelimit::LogLimit,
}

impl GuestWarnings {
    /// Warnings of the device called `device` (e.g. "virtio-blk").
    pub(crate) fn new(device: &'static str) -> Self {
        Self {
            device,
            limit: ratelimit::LogLimit::new(ratelimit::BURST, ratelimit::WINDOW),
        }
    }

    /// Logs `msg` as a warning, or at debug level past the budget.
    pub(crate) fn warn(&mut self, msg: fmt::Arguments<'_>) {
        let device = self.device;
        ratelimit::warn_with!(self.limit, "{device}: {msg}");
    }
}

/// Copies the bytes of `space` at `offset` into `data`; bytes past the end
/// (or at an offset that does not fit in memory) read as zero.
pub(crate) fn read_config_bytes(space: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = space.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_config_bytes_past_end_reads_zero() {
        let mut data = [0xffu8; 4];
        read_config_bytes(&[1, 2, 3], 2, &mut data);
        assert_eq!(data, [3, 0, 0, 0]);
    }

    #[test]
    fn test_read_config_bytes_huge_offset_reads_zero() {
        let mut data = [0xffu8; 8];
        read_config_bytes(&[1, 2, 3], u64::MAX, &mut data);
        assert_eq!(data, [0; 8]);
    }
}
