//! virtio-rng: an entropy source (virtio 1.2 §5.4) fed by the host's
//! `getrandom(2)`.
//!
//! ```text
//!  requestq 0 ──notify──▶ worker: pop each chain, fill its writable
//!                          buffers (≤ max_bytes) from getrandom,
//!                          add_used(bytes), Signals::used if asked
//! ```
//!
//! The device has no configuration space and no feature bits.
//!
//! # What a hostile guest can do
//! | Guest action | Outcome |
//! |---|---|
//! | huge buffers | at most `max_bytes` (64 KiB by default) filled per chain, used length says how many |
//! | device-readable descriptors | skipped, rate-limited warning |
//! | buffers outside guest memory, or unmapped by the IOMMU | filling stops at that buffer; used length counts what was written |
//! | looping / broken / too long chain | returned with used length 0 |
//! | head index past the queue, bad avail index | `needs_reset`, queue no longer served |
//! | flood of requests | one worker thread; the vCPU never blocks on it |
//! | config space access | reads zero, writes ignored |

mod request;
#[cfg(test)]
mod tests;
mod worker;

pub use request::{parse, parse_segments, RngRequest};

use crate::device::{ActivateError, Activation, VirtioDevice};
use crate::features::ID_RNG;
use crate::runtime::{GuestWarnings, Worker};

/// Why an entropy device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RngError {
    /// Queue sizes must be powers of two from 2 to 32768 (§2.7).
    #[error("queue size {0} is not a power of two between 2 and 32768")]
    QueueSize(u16),
}

/// How to build an entropy device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngConfig {
    /// Maximum size of the request queue.
    pub queue_size: u16,
    /// Most bytes given for one chain.
    pub max_bytes: u32,
}

impl Default for RngConfig {
    fn default() -> Self {
        Self {
            queue_size: 256,
            max_bytes: 64 * 1024,
        }
    }
}

/// A virtio-rng device.
#[derive(Debug)]
pub struct Rng {
    cfg: RngConfig,
    warnings: GuestWarnings,
    worker: Option<Worker>,
}

impl Rng {
    /// A device as `cfg` describes.
    pub fn new(cfg: RngConfig) -> Result<Self, RngError> {
        if !cfg.queue_size.is_power_of_two() || cfg.queue_size < 2 || cfg.queue_size > 32768 {
            return Err(RngError::QueueSize(cfg.queue_size));
        }
        Ok(Self {
            cfg,
            warnings: GuestWarnings::new("virtio-rng"),
            worker: None,
        })
    }
}

impl VirtioDevice for Rng {
    fn device_id(&self) -> u16 {
        ID_RNG
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.cfg.queue_size]
    }

    fn features(&self) -> u64 {
        0
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.warnings.warn(format_args!(
            "ignored write of {} bytes at config offset {offset:#x} (no config space)",
            data.len()
        ));
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if self.worker.is_some() {
            tracing::warn!("virtio-rng: activated twice without reset; resetting first");
            self.reset();
        }
        self.worker = Some(worker::start(
            usize::from(self.cfg.queue_size),
            u64::from(self.cfg.max_bytes),
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
