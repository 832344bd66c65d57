//! The shape of a descriptor chain (virtio 1.2 §2.7.4, §2.7.5): its
//! device-readable and device-writable segments, checked as a pure
//! function of the descriptors the queue yields.
//!
//! `virtio_queue`'s chain iterator stops early and silently on a loop
//! (after `queue_size` descriptors), a `next` index past the table, an
//! unreadable descriptor or a bad indirect table; the last descriptor it
//! yields then still has `NEXT` set, which is how such a chain is told
//! apart from a complete one.

use virtio_queue::desc::split::Descriptor;

/// One buffer of a chain, in guest (bus) addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seg {
    /// Bus address of the first byte.
    pub addr: u64,
    /// Length in bytes (never zero: empty descriptors are skipped).
    pub len: u32,
}

/// A chain's buffers, readable ones first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Device-readable buffers, in order.
    pub readable: Vec<Seg>,
    /// Device-writable buffers, in order.
    pub writable: Vec<Seg>,
    /// Sum of the readable lengths.
    pub readable_len: u64,
    /// Sum of the writable lengths.
    pub writable_len: u64,
}

/// Why a chain cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainError {
    /// The chain has no descriptor at all (e.g. an invalid indirect table).
    #[error("empty descriptor chain")]
    Empty,
    /// The chain loops, points past its table or cannot be read.
    #[error("descriptor chain loops or leaves its table")]
    Broken,
    /// A device-readable descriptor follows a device-writable one (§2.7.4.2).
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// The readable or writable part exceeds what the queue accepts.
    #[error("descriptor chain longer than {0} bytes")]
    TooLong(u64),
}

/// Splits the descriptors of one chain into readable and writable
/// segments; either part longer than `max_len` bytes is refused.
pub(crate) fn layout(
    descs: impl Iterator<Item = Descriptor>,
    max_len: u64,
) -> Result<Layout, ChainError> {
    let mut out = Layout::default();
    let mut last_has_next = None;
    for d in descs {
        last_has_next = Some(d.has_next());
        let seg = Seg {
            addr: d.addr().0,
            len: d.len(),
        };
        if d.is_write_only() {
            out.writable_len += u64::from(seg.len);
            if out.writable_len > max_len {
                return Err(ChainError::TooLong(max_len));
            }
            if seg.len > 0 {
                out.writable.push(seg);
            }
        } else {
            if !out.writable.is_empty() || out.writable_len > 0 {
                return Err(ChainError::ReadableAfterWritable);
            }
            out.readable_len += u64::from(seg.len);
            if out.readable_len > max_len {
                return Err(ChainError::TooLong(max_len));
            }
            if seg.len > 0 {
                out.readable.push(seg);
            }
        }
    }
    match last_has_next {
        None => Err(ChainError::Empty),
        Some(true) => Err(ChainError::Broken),
        Some(false) => Ok(out),
    }
}

/// Appends the bytes of `segs` to `out`; `Err` if a segment is outside
/// guest memory.
pub(crate) fn gather(
    dma: &dyn dma::Dma,
    segs: &[Seg],
    out: &mut Vec<u8>,
) -> Result<(), dma::DmaError> {
    for s in segs {
        let start = out.len();
        out.resize(start + s.len as usize, 0);
        dma.read(s.addr, &mut out[start..])?;
    }
    Ok(())
}

/// Writes `data` across `segs` from their start; returns the bytes
/// written (all of `data`, or less if the segments are shorter).
pub(crate) fn scatter(
    dma: &dyn dma::Dma,
    segs: &[Seg],
    mut data: &[u8],
) -> Result<usize, dma::DmaError> {
    let mut written = 0;
    for s in segs {
        if data.is_empty() {
            break;
        }
        let n = (s.len as usize).min(data.len());
        dma.write(s.addr, &data[..n])?;
        written += n;
        data = &data[n..];
    }
    Ok(written)
}

/// Whether every segment is backed by guest memory, for writing.
pub(crate) fn writable_in_memory(dma: &dyn dma::Dma, segs: &[Seg]) -> bool {
    let mut scratch = Vec::new();
    segs.iter().all(|s| {
        scratch.clear();
        dma.host_ranges(
            s.addr,
            u64::from(s.len),
            dma::Direction::FromDevice,
            &mut scratch,
        )
        .is_ok()
    })
}
