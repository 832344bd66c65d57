//! Host storage and networking: what an emulated disk's data lives in
//! ([`BlockFile`], [`Engine`]) and where a virtual NIC's frames go
//! ([`net`]: TAP interfaces).
//!
//! A [`BlockFile`] is a regular file or a block device, opened with
//! `O_DIRECT` when the host filesystem allows it. An [`Engine`] runs
//! requests against it: [`UringEngine`] through io_uring, straight between
//! the file and guest RAM ([`dma::GuestBuffers`]), or [`SyncEngine`] with
//! `preadv2`/`pwritev2` on the calling thread (tests, and hosts where
//! io_uring is unavailable).
//!
//! ```text
//!  device ──push(Request{tag, op})──▶ Engine ──submit()──▶ kernel
//!     ▲                                 │
//!     └──reap() ◀── Completion{tag} ◀───┘  (notify EventFd becomes readable)
//! ```
//!
//! Every request is checked against the file's size before it reaches the
//! kernel, so a request can never touch bytes outside the backing file;
//! the result of a failed request is an errno in its [`Completion`], never
//! a panic.

#![deny(missing_docs)]

mod file;
pub mod image;
pub mod net;
mod sync;
#[cfg(test)]
mod tests;
mod uring;

use std::fmt::Debug;
use std::sync::Arc;

use dma::GuestBuffers;
use vmm_sys_util::eventfd::EventFd;

pub use file::{BlockFile, DiskConfig, FileKind};
pub use sync::SyncEngine;
pub use uring::UringEngine;

/// Why a backend could not be opened or set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The file or device could not be opened.
    #[error("cannot open {path}")]
    Open {
        /// What was opened.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither a regular file nor a block device.
    #[error("{path} is neither a regular file nor a block device")]
    NotADisk {
        /// What was opened.
        path: String,
    },
    /// Its size or block size could not be read.
    #[error("cannot read the geometry of {path}")]
    Geometry {
        /// What was opened.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A container format (qcow2, VMDK, ...) where a raw image was expected.
    #[error(
        "{path} is a {format} image, not a raw one; iovm reads raw images only \
         (convert it: qemu-img convert -O raw {path} {path}.raw)"
    )]
    NotRaw {
        /// The image.
        path: String,
        /// What it is.
        format: &'static str,
    },
    /// Another process holds a conflicting lock on the image.
    #[error(
        "{path} is in use by another process (another VM?); {}",
        if *readonly {
            "a read-only disk cannot share an image a writer holds"
        } else {
            "a writable image backs one disk at a time"
        }
    )]
    Locked {
        /// The image.
        path: String,
        /// Whether this disk asked for read-only use.
        readonly: bool,
    },
    /// The image lock could not be taken for another reason.
    #[error("cannot lock {path}")]
    Lock {
        /// The image.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The io_uring instance could not be created or configured.
    #[error("io_uring setup failed")]
    Uring(#[source] std::io::Error),
    /// The completion eventfd could not be duplicated.
    #[error("cannot duplicate the completion eventfd")]
    EventFd(#[source] std::io::Error),
}

/// What a request does.
#[derive(Debug)]
pub enum Op {
    /// Reads `buffers.len()` bytes at `offset` into guest memory.
    Read {
        /// Byte offset in the file.
        offset: u64,
        /// Where the data goes.
        buffers: GuestBuffers,
    },
    /// Writes guest memory to the file at `offset`.
    Write {
        /// Byte offset in the file.
        offset: u64,
        /// Where the data comes from.
        buffers: GuestBuffers,
        /// Durable on completion (`RWF_DSYNC`): forced unit access, or a
        /// disabled volatile write cache.
        dsync: bool,
    },
    /// Makes every completed write durable (`fdatasync`).
    Flush,
    /// Deallocates a range; later reads return zeros (hole punch on a file,
    /// `BLKDISCARD` on a block device).
    Discard {
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Durable on completion (an `fdatasync` follows the deallocation):
        /// a disabled volatile write cache.
        dsync: bool,
    },
    /// Writes zeros over a range (`FALLOC_FL_ZERO_RANGE`, or plain writes).
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Durable on completion (an `fdatasync` follows the zeroing):
        /// forced unit access, or a disabled volatile write cache.
        dsync: bool,
    },
}

/// One request and the tag its completion carries back.
#[derive(Debug)]
pub struct Request {
    /// Caller's identifier, returned in the [`Completion`].
    pub tag: u64,
    /// The operation.
    pub op: Op,
}

/// The outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The request's tag.
    pub tag: u64,
    /// Bytes transferred (0 for flush, discard, write-zeroes), or a
    /// positive errno.
    pub result: Result<u64, i32>,
}

/// Which engine to run requests with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// io_uring, falling back to [`EngineKind::Sync`] if setup fails.
    #[default]
    IoUring,
    /// `preadv2`/`pwritev2` on the caller's thread.
    Sync,
}

/// Runs block requests against one [`BlockFile`].
///
/// Completions are collected with [`Engine::reap`]; whenever one becomes
/// available the engine's notify eventfd is written, so a worker can wait
/// for it with epoll. `push` never fails: a request that cannot run
/// completes with an errno.
pub trait Engine: Send + Debug {
    /// Queues `req`; it starts at the latest on the next [`Engine::submit`].
    fn push(&mut self, req: Request);

    /// Hands every queued request to the kernel.
    fn submit(&mut self);

    /// Moves finished requests' completions to `out`.
    fn reap(&mut self, out: &mut Vec<Completion>);

    /// Requests pushed and not yet reaped.
    fn in_flight(&self) -> usize;

    /// Blocks until at least one completion can be reaped (or nothing is in
    /// flight).
    fn wait(&mut self);

    /// The file the engine works on.
    fn file(&self) -> &Arc<BlockFile>;
}

/// An engine of `kind` over `file`, signalling `notify` on completions.
/// io_uring setup failures fall back to the synchronous engine with a log
/// line.
pub fn new_engine(
    file: Arc<BlockFile>,
    kind: EngineKind,
    depth: u32,
    notify: &EventFd,
) -> Result<Box<dyn Engine>, BackendError> {
    if kind == EngineKind::IoUring {
        match UringEngine::new(file.clone(), depth, notify) {
            Ok(e) => return Ok(Box::new(e)),
            Err(e) => tracing::warn!("io_uring unavailable, using synchronous I/O: {e}"),
        }
    }
    Ok(Box::new(SyncEngine::new(file, notify)?))
}

/// `offset..offset+len` inside a file of `size` bytes.
pub(crate) fn in_bounds(offset: u64, len: u64, size: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= size)
}
