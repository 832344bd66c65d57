//! Turning the queue registers the driver wrote into configured
//! [`virtio_queue::Queue`]s at `DRIVER_OK` (virtio 1.2 §2.7 split
//! virtqueues: size a power of two up to 32768, descriptor table 16-byte,
//! available ring 2-byte and used ring 4-byte aligned, every ring inside
//! the memory the device reaches).

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::common::QueueRegs;
use super::notify::Notifiers;
use crate::device::{Memory, QueueSetup};

/// Why the driver's queue setup cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The size is zero, above the maximum, or not a power of two.
    #[error("queue {index}: size {size} is not a power of two up to {max}")]
    Size {
        /// Queue index.
        index: u16,
        /// The size the driver wrote.
        size: u16,
        /// The device's maximum.
        max: u16,
    },
    /// A ring address breaks the ring's alignment.
    #[error("queue {index}: a ring address is misaligned")]
    Alignment {
        /// Queue index.
        index: u16,
    },
    /// A ring lies (partly) outside the memory the device reaches: guest
    /// memory, or with `VIRTIO_F_ACCESS_PLATFORM` what the IOMMU maps.
    #[error("queue {index}: a ring is outside the memory the device reaches")]
    OutsideMemory {
        /// Queue index.
        index: u16,
    },
    /// The queue's eventfd could not be cloned for the device.
    #[error("queue {index}: cannot clone the notification eventfd")]
    Eventfd {
        /// Queue index.
        index: u16,
        /// The host error.
        #[source]
        source: std::io::Error,
    },
}

/// One configured queue, or why not.
fn build(
    index: u16,
    regs: &QueueRegs,
    memory: &Memory,
    event_idx: bool,
) -> Result<Queue, QueueError> {
    let size_err = |_| QueueError::Size {
        index,
        size: regs.size,
        max: regs.max_size,
    };
    let mut queue = Queue::new(regs.max_size).map_err(size_err)?;
    queue.try_set_size(regs.size).map_err(size_err)?;
    let misaligned = |_| QueueError::Alignment { index };
    queue
        .try_set_desc_table_address(GuestAddress(regs.desc))
        .map_err(misaligned)?;
    queue
        .try_set_avail_ring_address(GuestAddress(regs.driver))
        .map_err(misaligned)?;
    queue
        .try_set_used_ring_address(GuestAddress(regs.device))
        .map_err(misaligned)?;
    queue.set_event_idx(event_idx);
    queue.set_ready(true);
    if !queue.is_valid(memory) {
        return Err(QueueError::OutsideMemory { index });
    }
    Ok(queue)
}

/// The enabled queues, configured, each with a clone of its eventfd, in
/// index order; the first invalid one fails the whole setup.
pub fn setups(
    regs: &[QueueRegs],
    memory: &Memory,
    event_idx: bool,
    notifiers: &Notifiers,
) -> Result<Vec<QueueSetup>, QueueError> {
    let mut out = Vec::new();
    for (i, r) in regs.iter().enumerate().filter(|(_, r)| r.enabled) {
        let index = u16::try_from(i).unwrap_or(u16::MAX);
        let queue = build(index, r, memory, event_idx)?;
        let notify = notifiers
            .get(index)
            .ok_or_else(|| QueueError::Eventfd {
                index,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?
            .try_clone()
            .map_err(|source| QueueError::Eventfd { index, source })?;
        out.push(QueueSetup {
            index,
            queue,
            notify,
        });
    }
    Ok(out)
}
