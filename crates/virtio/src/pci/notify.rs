//! Queue notifications (virtio 1.2 §4.1.4.4, §4.1.5.2): with
//! `notify_off_multiplier` = 4 and queue N's `queue_notify_off` = N, each
//! queue has its own 4-byte address, so the VMM can turn each into a KVM
//! ioeventfd without data match. A trapped write lands here and does what
//! the ioeventfd would: it makes the queue's eventfd readable.

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::layout::{Layout, NOTIFY_OFF_MULTIPLIER, VIRTIO_BAR};

/// One eventfd per queue.
#[derive(Debug)]
pub struct Notifiers {
    fds: Vec<EventFd>,
}

/// What became of a driver's write to the notification region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notified {
    /// The queue with this index was kicked.
    Queue(u16),
    /// Not on a queue's address, or a queue that does not exist.
    NoQueue(u64),
    /// The eventfd could not be written (host error, logged).
    Failed(u16),
}

impl Notifiers {
    /// Eventfds for `queues` queues.
    pub fn new(queues: usize) -> std::io::Result<Self> {
        let fds = (0..queues)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<_>>()?;
        Ok(Self { fds })
    }

    /// Queue `queue`'s eventfd.
    pub fn get(&self, queue: u16) -> Option<&EventFd> {
        self.fds.get(usize::from(queue))
    }

    /// A driver write at `rel` bytes into the notification region (any
    /// width, any value: without `VIRTIO_F_NOTIFICATION_DATA` the value is
    /// the queue index, which the address already says).
    pub fn write(&self, rel: u64) -> Notified {
        let multiplier = u64::from(NOTIFY_OFF_MULTIPLIER);
        if !rel.is_multiple_of(multiplier) {
            return Notified::NoQueue(rel);
        }
        let Some((queue, fd)) = u16::try_from(rel / multiplier)
            .ok()
            .and_then(|q| self.get(q).map(|fd| (q, fd)))
        else {
            return Notified::NoQueue(rel);
        };
        match fd.write(1) {
            Ok(()) => Notified::Queue(queue),
            Err(e) => {
                tracing::warn!("virtio-pci: cannot signal queue {queue}'s eventfd: {e}");
                Notified::Failed(queue)
            }
        }
    }

    /// Empties every eventfd (on reset, so a kick of the old driver does
    /// not wake the next activation).
    pub fn drain(&self) {
        for fd in &self.fds {
            // EAGAIN: already empty, which is the goal.
            let _ = fd.read();
        }
    }

    /// `(bar, offset in the BAR, eventfd clone)` for each queue; a clone
    /// that fails is logged and left out (that queue's notifications then
    /// trap, which works, only slower).
    pub fn ioeventfds(&self) -> Vec<(usize, u64, EventFd)> {
        self.fds
            .iter()
            .enumerate()
            .filter_map(|(q, fd)| {
                let q = u16::try_from(q).ok()?;
                match fd.try_clone() {
                    Ok(clone) => Some((VIRTIO_BAR, Layout::notify_offset(q), clone)),
                    Err(e) => {
                        tracing::warn!("virtio-pci: cannot clone queue {q}'s eventfd: {e}");
                        None
                    }
                }
            })
            .collect()
    }
}
