//! virtio-blk: a disk (virtio 1.2 §5.2) backed by a [`BlockFile`].
//!
//! ```text
//!  request queues 0..n ──notify──▶ worker (one thread per device)
//!     pop every chain ─▶ request::parse ─▶ Engine::push ─▶ one submit
//!     completion eventfd ─▶ reap ─▶ status byte, add_used, Signals::used
//! ```
//!
//! Data moves zero-copy: the descriptors' bus addresses become
//! [`dma::GuestBuffers`] handed to the backend engine (io_uring reads and
//! writes straight into guest RAM). Without `VIRTIO_BLK_F_FLUSH`
//! negotiated, writes are durable on completion (`RWF_DSYNC`, §5.2.6.2
//! case 1), and so are DISCARD and WRITE_ZEROES (the backend syncs after
//! deallocating or zeroing, before the request completes); with it, FLUSH
//! is `fdatasync`.
//!
//! # What a hostile guest can do
//! | Guest action | Outcome |
//! |---|---|
//! | read/write past the capacity, or a sector that wraps | status IOERR, nothing touched |
//! | OUT, DISCARD or WRITE_ZEROES on a read-only disk | status IOERR, nothing written |
//! | unknown request type; unknown range flags; UNMAP on DISCARD | status UNSUPP |
//! | header under 16 bytes, data in the wrong direction, data not a multiple of 512, readable after writable | status IOERR |
//! | buffers outside guest memory, or not mapped by the IOMMU (`ACCESS_PLATFORM`) | status IOERR (DMA refuses the whole range; the IOMMU records the fault) |
//! | no writable status descriptor | chain returned with used length 0, no status written |
//! | status byte outside memory, or not mapped writable by the IOMMU | chain returned with used length 0, `DEVICE_NEEDS_RESET` + configuration change |
//! | looping chain, bad next index, bad indirect table, too many descriptors | chain returned with used length 0 |
//! | head index past the queue, avail index jumping ahead | nothing can be returned: `needs_reset` |
//! | flood of bad requests | each is answered; warnings rate-limited (10/min) |
//! | reset while requests are in flight | `reset()` waits for them, then no guest memory is touched |
//! | config space read/write at any offset or width | reads past the end are 0; writes ignored |

mod request;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::Arc;

use backend::{BlockFile, EngineKind};
use virtio_queue::QueueT as _;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use request::{
    parse, parse_segments, Buffer, DiskRange, Limits, ParseError, Request, RequestError,
    RequestKind, Status, HEADER_LEN, ID_BYTES, RANGE_F_UNMAP, RANGE_LEN, SECTOR_SIZE, T_DISCARD,
    T_FLUSH, T_GET_ID, T_IN, T_OUT, T_WRITE_ZEROES,
};

use crate::device::{ActivateError, Activation, VirtioDevice};
use crate::features::ID_BLOCK;
use crate::runtime::{read_config_bytes, GuestWarnings, Worker};

/// Maximum size of any single segment is in `size_max`.
pub const F_SIZE_MAX: u64 = 1 << 1;
/// Maximum number of segments in a request is in `seg_max`.
pub const F_SEG_MAX: u64 = 1 << 2;
/// The device is read-only.
pub const F_RO: u64 = 1 << 5;
/// The block size is in `blk_size`.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// The FLUSH command is supported.
pub const F_FLUSH: u64 = 1 << 9;
/// Topology information is in `topology`.
pub const F_TOPOLOGY: u64 = 1 << 10;
/// More than one request queue (`num_queues`).
pub const F_MQ: u64 = 1 << 12;
/// The DISCARD command is supported.
pub const F_DISCARD: u64 = 1 << 13;
/// The WRITE_ZEROES command is supported.
pub const F_WRITE_ZEROES: u64 = 1 << 14;

/// Largest discard range (sectors): 4 GiB. Hole punching is cheap.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 23;
/// Most ranges per discard request.
pub const MAX_DISCARD_SEG: u32 = 16;
/// Largest write-zeroes range (sectors): 64 MiB, since a filesystem
/// without `FALLOC_FL_ZERO_RANGE` makes the backend write real zeros.
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 17;
/// Most ranges per write-zeroes request.
pub const MAX_WRITE_ZEROES_SEG: u32 = 1;

/// Why a block device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Queue sizes must be powers of two from 2 to 32768 (§2.7).
    #[error("queue size {0} is not a power of two between 2 and 32768")]
    QueueSize(u16),
    /// At least one request queue.
    #[error("a block device needs at least one queue")]
    NoQueue,
}

/// How to build a block device.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    /// The disk.
    pub file: Arc<BlockFile>,
    /// Offer `VIRTIO_BLK_F_RO` and refuse writes (also forced when the
    /// file was opened read-only).
    pub readonly: bool,
    /// Identifier returned by GET_ID; cut to 20 bytes, zero padded.
    pub serial: String,
    /// Number of request queues (the VMM's default: one per vCPU).
    pub queues: u16,
    /// Maximum size of each queue.
    pub queue_size: u16,
    /// How requests reach the file.
    pub engine: EngineKind,
}

impl BlockConfig {
    /// A configuration with `queues` queues of 256 entries, io_uring, no
    /// serial, read-only if the file is.
    pub fn new(file: Arc<BlockFile>, queues: u16) -> Self {
        let readonly = file.readonly();
        Self {
            file,
            readonly,
            serial: String::new(),
            queues,
            queue_size: 256,
            engine: EngineKind::IoUring,
        }
    }
}

/// The device configuration space (`struct virtio_blk_config`, §5.2.4),
/// as plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockConfigSpace {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Most data segments per request.
    pub seg_max: u32,
    /// Logical block size in bytes.
    pub blk_size: u32,
    /// log2(physical blocks per logical block).
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Suggested minimum I/O size, in logical blocks.
    pub min_io_size: u16,
    /// Optimal I/O size, in logical blocks.
    pub opt_io_size: u32,
    /// Number of request queues.
    pub num_queues: u16,
    /// Largest discard range, in sectors.
    pub max_discard_sectors: u32,
    /// Most discard ranges per request.
    pub max_discard_seg: u32,
    /// Discard alignment, in sectors.
    pub discard_sector_alignment: u32,
    /// Largest write-zeroes range, in sectors.
    pub max_write_zeroes_sectors: u32,
    /// Most write-zeroes ranges per request.
    pub max_write_zeroes_seg: u32,
    /// Write-zeroes with UNMAP may deallocate.
    pub write_zeroes_may_unmap: u8,
}

/// Bytes of the configuration space the device implements (up to
/// `write_zeroes_may_unmap` and its padding).
pub const CONFIG_LEN: usize = 60;

impl BlockConfigSpace {
    /// The little-endian layout the driver reads.
    pub fn to_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut b = [0u8; CONFIG_LEN];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.capacity.to_le_bytes());
        // 8: size_max (not offered), 16: geometry (not offered).
        put(12, &self.seg_max.to_le_bytes());
        put(20, &self.blk_size.to_le_bytes());
        put(24, &[self.physical_block_exp, self.alignment_offset]);
        put(26, &self.min_io_size.to_le_bytes());
        put(28, &self.opt_io_size.to_le_bytes());
        // 32: writeback, 33: unused (no CONFIG_WCE).
        put(34, &self.num_queues.to_le_bytes());
        put(36, &self.max_discard_sectors.to_le_bytes());
        put(40, &self.max_discard_seg.to_le_bytes());
        put(44, &self.discard_sector_alignment.to_le_bytes());
        put(48, &self.max_write_zeroes_sectors.to_le_bytes());
        put(52, &self.max_write_zeroes_seg.to_le_bytes());
        put(56, &[self.write_zeroes_may_unmap]);
        b
    }
}

/// A virtio-blk device.
#[derive(Debug)]
pub struct Block {
    cfg: BlockConfig,
    readonly: bool,
    serial: [u8; ID_BYTES],
    space: BlockConfigSpace,
    warnings: GuestWarnings,
    worker: Option<Worker>,
}

impl Block {
    /// A device serving `cfg.file`.
    pub fn new(cfg: BlockConfig) -> Result<Self, BlockError> {
        if cfg.queues == 0 {
            return Err(BlockError::NoQueue);
        }
        if !cfg.queue_size.is_power_of_two() || cfg.queue_size < 2 || cfg.queue_size > 32768 {
            return Err(BlockError::QueueSize(cfg.queue_size));
        }
        let readonly = cfg.readonly || cfg.file.readonly();
        let mut serial = [0u8; ID_BYTES];
        let n = cfg.serial.len().min(ID_BYTES);
        serial[..n].copy_from_slice(&cfg.serial.as_bytes()[..n]);
        let blk_size = cfg.file.logical_block_size().max(512);
        let regular = cfg.file.kind() == backend::FileKind::Regular;
        let space = BlockConfigSpace {
            capacity: cfg.file.size() / SECTOR_SIZE,
            seg_max: u32::from(cfg.queue_size) - 2,
            blk_size,
            physical_block_exp: 0,
            alignment_offset: 0,
            min_io_size: 1,
            opt_io_size: 0,
            num_queues: cfg.queues,
            max_discard_sectors: MAX_DISCARD_SECTORS,
            max_discard_seg: MAX_DISCARD_SEG,
            discard_sector_alignment: blk_size / 512,
            max_write_zeroes_sectors: MAX_WRITE_ZEROES_SECTORS,
            max_write_zeroes_seg: MAX_WRITE_ZEROES_SEG,
            // A hole punched in a regular file reads as zeros; a block
            // device's discard gives no such promise.
            write_zeroes_may_unmap: u8::from(regular),
        };
        Ok(Self {
            cfg,
            readonly,
            serial,
            space,
            warnings: GuestWarnings::new("virtio-blk"),
            worker: None,
        })
    }

    /// The configuration space as the driver reads it.
    pub fn config_space(&self) -> &BlockConfigSpace {
        &self.space
    }

    /// Whether the driver sees a read-only disk.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    fn limits(&self, features: u64) -> Limits {
        Limits {
            capacity: self.space.capacity,
            readonly: self.readonly,
            max_descriptors: usize::from(self.cfg.queue_size),
            discard: features & F_DISCARD != 0,
            write_zeroes: features & F_WRITE_ZEROES != 0,
            max_discard_sectors: self.space.max_discard_sectors,
            max_discard_seg: self.space.max_discard_seg,
            max_write_zeroes_sectors: self.space.max_write_zeroes_sectors,
            max_write_zeroes_seg: self.space.max_write_zeroes_seg,
        }
    }
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u16 {
        ID_BLOCK
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.cfg.queue_size; usize::from(self.cfg.queues)]
    }

    fn features(&self) -> u64 {
        let mut f = F_SEG_MAX | F_BLK_SIZE | F_TOPOLOGY | F_FLUSH;
        if self.cfg.queues > 1 {
            f |= F_MQ;
        }
        if self.readonly {
            f |= F_RO;
        } else {
            f |= F_DISCARD | F_WRITE_ZEROES;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.space.to_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // `writeback` is writable only with CONFIG_WCE, which is not offered.
        self.warnings.warn(format_args!(
            "ignored write of {} bytes to read-only config offset {offset:#x}",
            data.len()
        ));
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if self.worker.is_some() {
            tracing::warn!("virtio-blk: activated twice without reset; resetting first");
            self.reset();
        }
        if !activation.queues.iter().any(|q| q.index == 0) {
            return Err(ActivateError::MissingQueue(0));
        }
        let completions = EventFd::new(EFD_NONBLOCK).map_err(ActivateError::Thread)?;
        let depth: u32 = activation
            .queues
            .iter()
            .map(|q| u32::from(q.queue.size()))
            .sum();
        let engine =
            backend::new_engine(self.cfg.file.clone(), self.cfg.engine, depth, &completions)
                .map_err(|e| ActivateError::Backend(e.to_string()))?;
        let limits = self.limits(activation.features);
        let setup = worker::Setup {
            limits,
            dsync: activation.features & F_FLUSH == 0,
            regular_file: self.cfg.file.kind() == backend::FileKind::Regular,
            serial: self.serial,
            engine,
            completions,
        };
        self.worker = Some(worker::start(setup, activation)?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
}
