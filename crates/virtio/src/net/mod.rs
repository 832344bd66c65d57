//! virtio-net (virtio 1.2 §5.1): an Ethernet card whose frames go to a
//! host [`FrameIo`] per queue pair (a TAP interface's queues, see
//! [`backend::net::Tap`]).
//!
//! ```text
//!  queues: rx0 tx0 rx1 tx1 ... rx(N-1) tx(N-1) ctrl      (N = queue pairs;
//!          without MQ negotiated: rx0 tx0 ctrl)
//!
//!  tx: chain [hdr 12 B | frame] ──gather──▶ checks ──write_frame──▶ FrameIo
//!  rx: FrameIo ──read_frame──▶ filter, hdr fix ──▶ held chains ──▶ used ring
//!                                  (num_buffers = chains used, MRG_RXBUF)
//! ```
//!
//! One worker thread per activated device waits with epoll on the queues'
//! notification eventfds, the backends' fds and a stop eventfd. Receive
//! has back-pressure: a frame read from the backend stays in the worker
//! until the driver posts enough buffers; meanwhile the backend's fd is
//! taken out of the epoll set and the queue's notifications are enabled,
//! so nothing is dropped and nothing spins. Frames are copied between the
//! worker's buffer and guest memory through [`dma::Dma`].
//!
//! Only the first queue pair carries traffic until the driver sends
//! `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`; backends of unused pairs are
//! disabled (a multi-queue TAP detaches them, so the kernel steers no
//! frame there).
//!
//! # Threat table
//!
//! | The guest writes ...                               | The device ...                                           |
//! |----------------------------------------------------|----------------------------------------------------------|
//! | tx chain shorter than the 12-byte header or a frame | drops it, used length 0, rate-limited warning           |
//! | tx chain longer than 12 B + 64 KiB + 64 B           | drops it, used length 0, warning                        |
//! | tx chain with a device-writable descriptor          | drops it, used length 0, warning                        |
//! | looping chain, `next` past the table, bad indirect  | drops it (chain cut short by the queue), warning        |
//! | buffer outside guest memory, or unmapped by the IOMMU | drops it (DMA refused before any access), warning     |
//! | tx header with flags/GSO not negotiated             | drops it, warning                                       |
//! | rx chain with a device-readable descriptor, < 12 B, outside memory | returns it unused (length 0), warning    |
//! | rx buffers too small for a frame (no MRG_RXBUF)     | drops the frame, keeps the buffer, warning              |
//! | no rx buffers                                       | keeps the frame, stops reading the backend, waits       |
//! | control command short, no ack byte, unknown class   | `ERR` ack (or length 0 without an ack byte), warning    |
//! | control ack byte outside guest memory               | drops the chain unexecuted, used length 0, warning      |
//! | `VQ_PAIRS_SET` of 0 or more pairs than set up       | `ERR` ack                                               |
//! | avail index more than a queue size ahead, used ring outside memory | `DEVICE_NEEDS_RESET`, queue stops       |
//! | config space writes                                 | ignored (all fields read-only), logged                  |
//!
//! Warnings are limited: 32 a minute per activation at `warn`, the rest
//! at `debug`. [`VirtioDevice::reset`] stops and joins the worker before
//! returning, so no guest memory is touched after it.

mod chain;
pub(crate) mod ctrl;
mod header;
mod inline;
mod rx;
#[cfg(test)]
mod tests;
mod tx;
mod worker;

use std::sync::Arc;

use backend::net::{FrameIo, Tap};
use counters::{FunctionCounters, IoClass};

pub use ctrl::{CtrlState, RxFilter};
pub use inline::InlineNet;

/// Checks one transmit chain exactly as the transmit path does; the length
/// of the frame after the header if it would be sent. The fuzz target's
/// entry point into transmit parsing.
pub fn check_tx_chain(
    descs: impl Iterator<Item = virtio_queue::desc::split::Descriptor>,
    dma: &dyn dma::Dma,
    features: u64,
) -> Option<usize> {
    let mut ranges = Vec::new();
    tx::parse_frame(descs, dma, features, &mut ranges).ok()?;
    Some(ranges.iter().map(|r| r.len()).sum())
}

/// Parses the readable bytes of a control-queue command as the device
/// does; `true` if it is a well-formed command it knows. The fuzz
/// target's entry point into control parsing.
pub fn check_ctrl_command(bytes: &[u8], features: u64) -> bool {
    ctrl::parse(bytes, features).is_ok()
}

use crate::device::{ActivateError, Activation, VirtioDevice};
use crate::features::ID_NET;

/// The driver may send frames with a partial checksum.
pub const F_CSUM: u64 = 1 << 0;
/// The device may deliver frames with a partial checksum.
pub const F_GUEST_CSUM: u64 = 1 << 1;
/// The device reports its MTU in configuration space.
pub const F_MTU: u64 = 1 << 3;
/// The device has a MAC address in configuration space.
pub const F_MAC: u64 = 1 << 5;
/// The device may deliver TCPv4 segments to be split by the driver.
pub const F_GUEST_TSO4: u64 = 1 << 7;
/// The device may deliver TCPv6 segments to be split by the driver.
pub const F_GUEST_TSO6: u64 = 1 << 8;
/// ... with the ECN bit.
pub const F_GUEST_ECN: u64 = 1 << 9;
/// The device may deliver UDP fragments (not offered).
pub const F_GUEST_UFO: u64 = 1 << 10;
/// The driver may send TCPv4 segments for the device to split.
pub const F_HOST_TSO4: u64 = 1 << 11;
/// The driver may send TCPv6 segments for the device to split.
pub const F_HOST_TSO6: u64 = 1 << 12;
/// ... with the ECN bit.
pub const F_HOST_ECN: u64 = 1 << 13;
/// The driver may send UDP fragments (not offered).
pub const F_HOST_UFO: u64 = 1 << 14;
/// One frame may span several receive chains (`num_buffers`).
pub const F_MRG_RXBUF: u64 = 1 << 15;
/// The configuration space has a `status` field.
pub const F_STATUS: u64 = 1 << 16;
/// There is a control queue.
pub const F_CTRL_VQ: u64 = 1 << 17;
/// Receive-mode and MAC-filter commands on the control queue.
pub const F_CTRL_RX: u64 = 1 << 18;
/// Several queue pairs.
pub const F_MQ: u64 = 1 << 22;

/// `status`: the link is up.
pub const STATUS_LINK_UP: u16 = 1;

/// Length of the configuration space: mac, status, max_virtqueue_pairs,
/// mtu.
pub const CONFIG_LEN: usize = 12;

/// The default size of every queue.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;

/// The largest `max_virtqueue_pairs` (§5.1.4).
pub const MAX_QUEUE_PAIRS: usize = 0x8000;

/// Why a network device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No backend, or more than [`MAX_QUEUE_PAIRS`].
    #[error("{0} queue pairs: between 1 and {MAX_QUEUE_PAIRS} are supported")]
    QueuePairs(usize),
    /// Not a power of two between 2 and 32768.
    #[error("queue size {0} is not a power of two between 2 and 32768")]
    QueueSize(u16),
    /// Below the IPv4 minimum of 68 bytes.
    #[error("MTU {0} is below 68")]
    Mtu(u16),
}

/// How to build a [`Net`].
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The MAC address the guest sees.
    pub mac: [u8; 6],
    /// The MTU offered to the guest (`VIRTIO_NET_F_MTU`), if any.
    pub mtu: Option<u16>,
    /// The size of every queue.
    pub queue_size: u16,
    /// One backend per queue pair; their number is `max_virtqueue_pairs`.
    pub backends: Vec<Arc<dyn FrameIo>>,
    /// The function's I/O counters, which the device counts its frames
    /// and drops in (kept across resets).
    pub counters: Arc<FunctionCounters>,
}

impl NetConfig {
    /// A device with address `mac` over `backends`, default queue size and
    /// no MTU.
    pub fn new(mac: [u8; 6], backends: Vec<Arc<dyn FrameIo>>) -> Self {
        Self {
            mac,
            mtu: None,
            queue_size: DEFAULT_QUEUE_SIZE,
            backends,
            counters: Arc::default(),
        }
    }

    /// A device with address `mac` over the queues of `tap`, one queue pair
    /// each.
    pub fn from_tap(mac: [u8; 6], tap: Tap) -> Self {
        let backends = tap
            .into_queues()
            .into_iter()
            .map(|q| Arc::new(q) as Arc<dyn FrameIo>)
            .collect();
        Self::new(mac, backends)
    }
}

/// A virtio network card.
#[derive(Debug)]
pub struct Net {
    cfg: NetConfig,
    counters: Arc<FunctionCounters>,
    worker: Option<worker::Worker>,
}

impl Net {
    /// Checks `cfg` and builds the device (inactive).
    pub fn new(cfg: NetConfig) -> Result<Self, NetError> {
        let pairs = cfg.backends.len();
        if pairs == 0 || pairs > MAX_QUEUE_PAIRS {
            return Err(NetError::QueuePairs(pairs));
        }
        let qs = cfg.queue_size;
        if !qs.is_power_of_two() || !(2..=32768).contains(&qs) {
            return Err(NetError::QueueSize(qs));
        }
        if let Some(mtu) = cfg.mtu.filter(|&m| m < 68) {
            return Err(NetError::Mtu(mtu));
        }
        let counters = cfg.counters.clone();
        counters.set_class(IoClass::Net);
        Ok(Self {
            cfg,
            counters,
            worker: None,
        })
    }

    /// Its counters: frames and bytes each way, and what it dropped
    /// because of what the guest gave it (a chain it could not use, a
    /// buffer its DMA could not reach: outside memory, Bus Master Enable
    /// off, an IOMMU fault).
    pub fn counters(&self) -> Arc<FunctionCounters> {
        self.counters.clone()
    }

    /// `max_virtqueue_pairs`: the number of backends.
    pub fn queue_pairs(&self) -> u16 {
        // At most MAX_QUEUE_PAIRS, checked in `new`.
        u16::try_from(self.cfg.backends.len()).unwrap_or(u16::MAX)
    }

    /// Whether a worker is running (between activation and reset).
    pub fn is_active(&self) -> bool {
        self.worker.is_some()
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[0..6].copy_from_slice(&self.cfg.mac);
        c[6..8].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&self.queue_pairs().to_le_bytes());
        c[10..12].copy_from_slice(&self.cfg.mtu.unwrap_or(0).to_le_bytes());
        c
    }
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u16 {
        ID_NET
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.cfg.queue_size; 2 * self.cfg.backends.len() + 1]
    }

    fn features(&self) -> u64 {
        let mut f = F_CSUM
            | F_GUEST_CSUM
            | F_MAC
            | F_GUEST_TSO4
            | F_GUEST_TSO6
            | F_GUEST_ECN
            | F_HOST_TSO4
            | F_HOST_TSO6
            | F_HOST_ECN
            | F_MRG_RXBUF
            | F_STATUS
            | F_CTRL_VQ
            | F_CTRL_RX;
        if self.cfg.backends.len() > 1 {
            f |= F_MQ;
        }
        if self.cfg.mtu.is_some() {
            f |= F_MTU;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| bytes.get(o).copied())
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(
            "virtio-net: ignored write of {} bytes at config offset {offset:#x}",
            data.len()
        );
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.reset();
        let core = worker::Core::new(activation, &self.cfg, self.counters.clone())?;
        self.worker = Some(worker::Worker::start(core)?);
        Ok(())
    }

    fn reset(&mut self) {
        // Dropping the worker stops and joins its thread.
        self.worker = None;
    }
}
