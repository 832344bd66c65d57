//! virtio-console: one port (virtio 1.2 §5.3, no `MULTIPORT`), usable as
//! the guest's `hvc0` (`console=hvc0`).
//!
//! ```text
//!  transmitq 1 ──▶ worker ──▶ output (Box<dyn Write + Send>, e.g. stdout)
//!  receiveq 0 ◀── worker ◀── ConsoleInput::push (VMM, e.g. stdin)
//!                    │          bytes wait in a bounded buffer while the
//!                    │          guest has posted no receive buffer
//! ```
//!
//! `VIRTIO_CONSOLE_F_SIZE` is offered when the configuration gives a
//! size; the configuration space is `cols, rows, max_nr_ports,
//! emerg_wr` (§5.3.4), of which only the size is meaningful here.
//!
//! # What a hostile guest can do
//! | Guest action | Outcome |
//! |---|---|
//! | transmit huge buffers | copied to the output in 4 KiB pieces; nothing is held in memory |
//! | transmit buffers outside guest memory | the rest of that buffer is skipped, chain returned |
//! | never post receive buffers | input is held up to the bound; `ConsoleInput::push` then accepts fewer bytes |
//! | receive buffers outside guest memory | input for them is dropped, chain returned with what was written |
//! | wrong-direction descriptors | skipped, rate-limited warning |
//! | looping / broken / too long chain | returned with used length 0 |
//! | head index past the queue, bad avail index | `needs_reset`, queue no longer served |
//! | config writes (emerg_wr included) | ignored |

mod request;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use request::{parse, parse_segments, ConsoleBuffers, Port};

use crate::device::{ActivateError, Activation, VirtioDevice};
use crate::features::ID_CONSOLE;
use crate::runtime::{read_config_bytes, GuestWarnings, Worker};

/// The configuration space has the console size (`cols`, `rows`).
pub const F_SIZE: u64 = 1 << 0;

/// Index of the receive queue (host → guest).
pub const RECEIVEQ: u16 = 0;
/// Index of the transmit queue (guest → host).
pub const TRANSMITQ: u16 = 1;

/// Why a console could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Queue sizes must be powers of two from 2 to 32768 (§2.7).
    #[error("queue size {0} is not a power of two between 2 and 32768")]
    QueueSize(u16),
    /// The input eventfd could not be created.
    #[error("cannot create the console input eventfd")]
    EventFd(#[source] std::io::Error),
}

/// Where the guest's output goes.
pub type Output = Box<dyn Write + Send>;

/// How to build a console.
pub struct ConsoleConfig {
    /// Receives the bytes the guest transmits.
    pub output: Output,
    /// Columns and rows to report (`VIRTIO_CONSOLE_F_SIZE`), if any.
    pub size: Option<(u16, u16)>,
    /// Maximum size of each queue.
    pub queue_size: u16,
    /// Most input bytes held while the guest posts no receive buffer.
    pub input_capacity: usize,
}

impl ConsoleConfig {
    /// A console writing to `output`, without size, queues of 256
    /// entries, 64 KiB of input buffering.
    pub fn new(output: Output) -> Self {
        Self {
            output,
            size: None,
            queue_size: 256,
            input_capacity: 64 * 1024,
        }
    }
}

impl fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("size", &self.size)
            .field("queue_size", &self.queue_size)
            .field("input_capacity", &self.input_capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct InputShared {
    buf: Mutex<VecDeque<u8>>,
    capacity: usize,
    /// Written on every push; wakes the worker.
    event: EventFd,
}

/// The VMM's end of the console input: bytes pushed here reach the guest
/// as soon as it has posted receive buffers. Cheap to clone; usable from
/// any thread, before and after activation.
#[derive(Clone, Debug)]
pub struct ConsoleInput {
    shared: Arc<InputShared>,
}

impl ConsoleInput {
    /// Queues `bytes` for the guest; returns how many were accepted (fewer
    /// when the buffer is full: the guest is not reading).
    pub fn push(&self, bytes: &[u8]) -> usize {
        let n = {
            let mut buf = self.lock();
            let n = bytes
                .len()
                .min(self.shared.capacity.saturating_sub(buf.len()));
            buf.extend(&bytes[..n]);
            n
        };
        if n > 0 {
            if let Err(e) = self.shared.event.write(1) {
                tracing::error!("virtio-console: cannot wake the worker: {e}");
            }
        }
        n
    }

    /// Bytes waiting for receive buffers.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<u8>> {
        self.shared
            .buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes up to `max` bytes.
    fn take(&self, max: usize) -> Vec<u8> {
        let mut buf = self.lock();
        let n = buf.len().min(max);
        buf.drain(..n).collect()
    }

    fn event(&self) -> &EventFd {
        &self.shared.event
    }
}

/// A virtio-console device with one port.
pub struct Console {
    size: Option<(u16, u16)>,
    queue_size: u16,
    output: Arc<Mutex<Output>>,
    input: ConsoleInput,
    warnings: GuestWarnings,
    worker: Option<Worker>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("size", &self.size)
            .field("queue_size", &self.queue_size)
            .field("input", &self.input)
            .field("running", &self.worker.is_some())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console as `cfg` describes.
    pub fn new(cfg: ConsoleConfig) -> Result<Self, ConsoleError> {
        if !cfg.queue_size.is_power_of_two() || cfg.queue_size < 2 || cfg.queue_size > 32768 {
            return Err(ConsoleError::QueueSize(cfg.queue_size));
        }
        let event = EventFd::new(EFD_NONBLOCK).map_err(ConsoleError::EventFd)?;
        Ok(Self {
            size: cfg.size,
            queue_size: cfg.queue_size,
            output: Arc::new(Mutex::new(cfg.output)),
            input: ConsoleInput {
                shared: Arc::new(InputShared {
                    buf: Mutex::new(VecDeque::new()),
                    capacity: cfg.input_capacity,
                    event,
                }),
            },
            warnings: GuestWarnings::new("virtio-console"),
            worker: None,
        })
    }

    /// The handle the VMM pushes host input (e.g. stdin) into.
    pub fn input(&self) -> ConsoleInput {
        self.input.clone()
    }

    fn config_bytes(&self) -> [u8; 12] {
        let (cols, rows) = self.size.unwrap_or((0, 0));
        let mut b = [0u8; 12];
        b[0..2].copy_from_slice(&cols.to_le_bytes());
        b[2..4].copy_from_slice(&rows.to_le_bytes());
        b
    }
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u16 {
        ID_CONSOLE
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.queue_size; 2]
    }

    fn features(&self) -> u64 {
        if self.size.is_some() {
            F_SIZE
        } else {
            0
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE, which is not offered.
        self.warnings.warn(format_args!(
            "ignored write of {} bytes at config offset {offset:#x}",
            data.len()
        ));
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if self.worker.is_some() {
            tracing::warn!("virtio-console: activated twice without reset; resetting first");
            self.reset();
        }
        self.worker = Some(worker::start(
            usize::from(self.queue_size),
            self.output.clone(),
            self.input.clone(),
            activation,
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
}
