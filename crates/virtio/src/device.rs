//! The contract between a virtio transport and a device type
//! (virtio 1.2 §2: basic facilities; §3.1: device initialization).
//!
//! ```text
//!   reset ──▶ ACKNOWLEDGE ──▶ DRIVER ──▶ FEATURES_OK ──▶ DRIVER_OK
//!     ▲         (transport only: features, queue setup)      │
//!     │                                     activate(Activation)
//!     └──────────────── reset() ◀── status 0 written ◀───────┘
//! ```
//!
//! The transport owns the status machine, the negotiated features and
//! the queues' registers; the device owns its configuration space and,
//! from [`VirtioDevice::activate`] to [`VirtioDevice::reset`], its queues.

use std::fmt::Debug;
use std::sync::Arc;

use dma::Dma;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

/// Guest memory as the queues read it (descriptor tables, indirect
/// tables, avail and used rings): a view of the function's own DMA handle
/// ([`dma::DmaMemory`] over [`Activation::dma`]), so rings and buffers
/// alike go through the function's DMA context (its Bus Master Enable,
/// its requester ID and, with an IOMMU, its translation).
pub type Memory = dma::DmaMemory;

/// How a device reaches its driver: the transport's interrupts.
///
/// Infallible: the transport logs host-side failures itself.
pub trait Signals: Send + Sync + Debug {
    /// The device put buffers in the used ring of `queue` and the driver
    /// asked to hear about it (after event-index suppression, which the
    /// device decides with [`Queue::needs_notification`]).
    fn used(&self, queue: u16);

    /// The device's configuration space changed (§2.5.1): the transport
    /// bumps `config_generation` and sends the configuration vector.
    fn config_changed(&self);

    /// The device hit an error it cannot recover from without a reset
    /// (§2.1.2): the transport sets `DEVICE_NEEDS_RESET` and signals a
    /// configuration change.
    fn needs_reset(&self);
}

/// One queue as the driver set it up, handed to the device on activation.
#[derive(Debug)]
pub struct QueueSetup {
    /// The queue index (the driver's `queue_select`).
    pub index: u16,
    /// The queue, configured and ready, with event index set as negotiated.
    pub queue: Queue,
    /// Becomes readable when the driver notifies this queue (a trapped
    /// write to the notify region, or the VMM's ioeventfd on it).
    pub notify: EventFd,
}

/// Everything a device gets when the driver sets `DRIVER_OK`.
#[derive(Debug)]
pub struct Activation {
    /// The feature bits both sides accepted.
    pub features: u64,
    /// Guest memory for the queues: [`Memory`] over `dma`.
    pub memory: Arc<Memory>,
    /// DMA for the buffers' contents.
    pub dma: Arc<dyn Dma>,
    /// The queues the driver enabled (`queue_enable` = 1), in index order.
    /// Queues it left disabled are absent.
    pub queues: Vec<QueueSetup>,
    /// How to interrupt the driver.
    pub signals: Arc<dyn Signals>,
    /// The function's I/O counters, which the device counts its requests
    /// (or frames) and the notifications it read in.
    pub counters: Arc<counters::FunctionCounters>,
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// A queue the device needs was not enabled by the driver.
    #[error("queue {0} is required but was not enabled")]
    MissingQueue(u16),
    /// A worker thread could not be started.
    #[error("cannot start the device's worker thread")]
    Thread(#[source] std::io::Error),
    /// The backend refused (for example, a TAP queue could not be opened).
    #[error("device backend: {0}")]
    Backend(String),
}

/// A virtio device type (block, network, console, entropy) as a transport
/// drives it.
pub trait VirtioDevice: Send + Debug {
    /// The virtio device ID (§5), e.g. [`crate::features::ID_BLOCK`].
    fn device_id(&self) -> u16;

    /// The maximum size of each queue; the slice's length is the number
    /// of queues the device offers.
    fn queue_max_sizes(&self) -> Vec<u16>;

    /// The device-type feature bits it offers (bits 0–23, plus any of the
    /// reserved bits it supports beyond the transport's own).
    fn features(&self) -> u64;

    /// Reads its configuration space at `offset`; bytes past its end read
    /// as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes its configuration space at `offset` (most fields are read
    /// only: such writes are ignored with a log line).
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// Starts serving the queues (the driver set `DRIVER_OK`).
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;

    /// Stops serving the queues and returns to the state before
    /// activation; returns once no request is in flight and no worker
    /// touches guest memory any more (§2.4: device reset).
    fn reset(&mut self);
}
