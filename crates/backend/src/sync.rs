//! The synchronous engine: each request runs to its end inside
//! [`Engine::push`], on the caller's thread, with `preadv2`/`pwritev2`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use dma::HostRange;
use vmm_sys_util::eventfd::EventFd;

use crate::file::fallocate;
use crate::{in_bounds, BackendError, BlockFile, Completion, Engine, Op, Request};

/// Runs requests immediately; completions wait for [`Engine::reap`].
#[derive(Debug)]
pub struct SyncEngine {
    file: Arc<BlockFile>,
    done: VecDeque<Completion>,
    notify: EventFd,
}

impl SyncEngine {
    /// An engine over `file` that writes `notify` after each completion.
    pub fn new(file: Arc<BlockFile>, notify: &EventFd) -> Result<Self, BackendError> {
        Ok(Self {
            file,
            done: VecDeque::new(),
            notify: notify.try_clone().map_err(BackendError::EventFd)?,
        })
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Transfers every range at consecutive offsets from `offset`, retrying
/// short transfers; `write` selects the direction.
fn transfer(
    fd: i32,
    offset: u64,
    ranges: &[HostRange],
    write: bool,
    flags: i32,
) -> Result<u64, i32> {
    let mut pos = offset;
    for r in ranges {
        let mut done = 0usize;
        while done < r.len() {
            let iov = libc::iovec {
                iov_base: (r.addr() + done) as *mut libc::c_void,
                iov_len: r.len() - done,
            };
            let off = i64::try_from(pos).map_err(|_| libc::EINVAL)?;
            let n = if write {
                // SAFETY: `iov` covers part of a HostRange borrowed from
                // the request's GuestBuffers, so it stays mapped for the
                // whole call; the kernel only reads it.
                unsafe { libc::pwritev2(fd, &iov, 1, off, flags) }
            } else {
                // SAFETY: as above; the kernel writes into guest memory that
                // Rust holds no reference to.
                unsafe { libc::preadv2(fd, &iov, 1, off, flags) }
            };
            match n {
                n if n < 0 => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(errno(&e));
                    }
                }
                0 => return Err(libc::EIO),
                n => {
                    done += n as usize;
                    pos += n as u64;
                }
            }
        }
    }
    Ok(pos - offset)
}

/// Runs one request to its end (shared with the io_uring engine for the
/// operations it does synchronously).
pub(crate) fn run(file: &BlockFile, op: &Op) -> Result<u64, i32> {
    let writes = !matches!(op, Op::Read { .. } | Op::Flush);
    if writes && file.readonly() {
        return Err(libc::EROFS);
    }
    match op {
        Op::Read { offset, buffers } => {
            if !in_bounds(*offset, buffers.len(), file.size()) {
                return Err(libc::EINVAL);
            }
            let fd = file.fd_for(*offset, buffers.ranges());
            transfer(fd, *offset, buffers.ranges(), false, 0)
        }
        Op::Write {
            offset,
            buffers,
            dsync,
        } => {
            if !in_bounds(*offset, buffers.len(), file.size()) {
                return Err(libc::EINVAL);
            }
            let fd = file.fd_for(*offset, buffers.ranges());
            let flags = if *dsync { libc::RWF_DSYNC } else { 0 };
            transfer(fd, *offset, buffers.ranges(), true, flags)
        }
        Op::Flush => {
            file.datasync().map_err(|e| errno(&e))?;
            Ok(0)
        }
        Op::Discard { offset, len, dsync } => {
            if !in_bounds(*offset, *len, file.size()) {
                return Err(libc::EINVAL);
            }
            file.discard(*offset, *len).map_err(|e| errno(&e))?;
            sync_if(file, *dsync)?;
            Ok(0)
        }
        Op::WriteZeroes { offset, len, dsync } => {
            if !in_bounds(*offset, *len, file.size()) {
                return Err(libc::EINVAL);
            }
            write_zeroes(file, *offset, *len)?;
            sync_if(file, *dsync)?;
            Ok(0)
        }
    }
}

/// Makes a completed deallocation or zeroing durable when `dsync` asks
/// for it (write-through mode).
pub(crate) fn sync_if(file: &BlockFile, dsync: bool) -> Result<(), i32> {
    if dsync {
        file.datasync().map_err(|e| errno(&e))?;
    }
    Ok(())
}

/// `FALLOC_FL_ZERO_RANGE`, or plain writes where it is not supported.
pub(crate) fn write_zeroes(file: &BlockFile, offset: u64, len: u64) -> Result<(), i32> {
    let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    match fallocate(file.raw_fd(), mode, offset, len) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => file
            .write_zeroes_by_writing(offset, len)
            .map_err(|e| errno(&e)),
        Err(e) => Err(errno(&e)),
    }
}

impl Engine for SyncEngine {
    fn push(&mut self, req: Request) {
        let result = run(&self.file, &req.op);
        self.done.push_back(Completion {
            tag: req.tag,
            result,
        });
        if let Err(e) = self.notify.write(1) {
            tracing::warn!("block completion notification failed: {e}");
        }
    }

    fn submit(&mut self) {}

    fn reap(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.done.drain(..));
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn wait(&mut self) {}

    fn file(&self) -> &Arc<BlockFile> {
        &self.file
    }
}
