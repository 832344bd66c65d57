//! One virtio-blk request parsed from its descriptor chain (virtio 1.2
//! §5.2.6), checking what the driver MUST do before anything reaches the
//! disk.
//!
//! The layout does not depend on how the driver cut the request into
//! descriptors (§2.6.4, message framing): the device-readable descriptors
//! form one byte stream (the 16-byte header `type, reserved, sector`,
//! then, for OUT, DISCARD and WRITE_ZEROES, the data), the device-writable
//! ones a second (IN and GET_ID data, then the status byte, which is the
//! very last byte of the chain).
//!
//! ```text
//!  readable:  [ type:le32 | reserved:le32 | sector:le64 ][ data out ... ]
//!  writable:  [ data in ... ][ status:u8 ]
//! ```
//!
//! A chain whose status byte cannot be found or written is
//! [`ParseError`]: it is returned unanswered (used length 0). Every other
//! mistake becomes [`RequestKind::Fail`] with the status the spec asks for,
//! so the guest sees an I/O error, never the VMM.

use dma::{Direction, Dma};
use virtio_queue::DescriptorChain;
use vm_memory::GuestMemory;

use crate::runtime::{collect_chain, ChainError, Segment};

/// Bytes per sector: the unit of `sector` and `capacity` whatever the
/// block size.
pub const SECTOR_SIZE: u64 = 512;
/// Length of the identifier GET_ID returns.
pub const ID_BYTES: usize = 20;
/// Length of the request header.
pub const HEADER_LEN: u64 = 16;
/// Length of one discard / write-zeroes range.
pub const RANGE_LEN: u64 = 16;

/// Request type: read.
pub const T_IN: u32 = 0;
/// Request type: write.
pub const T_OUT: u32 = 1;
/// Request type: flush the volatile write cache.
pub const T_FLUSH: u32 = 4;
/// Request type: the device's identifier string.
pub const T_GET_ID: u32 = 8;
/// Request type: deallocate ranges.
pub const T_DISCARD: u32 = 11;
/// Request type: write zeros over ranges.
pub const T_WRITE_ZEROES: u32 = 13;

/// Discard / write-zeroes flag: the device may deallocate.
pub const RANGE_F_UNMAP: u32 = 1;

/// The status byte the device writes last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Device or driver error.
    IoErr = 1,
    /// Request not supported.
    Unsupp = 2,
}

/// What the parser needs to know about the device and the negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size of the disk in 512-byte sectors.
    pub capacity: u64,
    /// Writes, discards and write-zeroes fail with IOERR.
    pub readonly: bool,
    /// Most descriptors a chain may have.
    pub max_descriptors: usize,
    /// `VIRTIO_BLK_F_DISCARD` was negotiated.
    pub discard: bool,
    /// `VIRTIO_BLK_F_WRITE_ZEROES` was negotiated.
    pub write_zeroes: bool,
    /// Largest discard range, in sectors.
    pub max_discard_sectors: u32,
    /// Most ranges in one discard request.
    pub max_discard_seg: u32,
    /// Largest write-zeroes range, in sectors.
    pub max_write_zeroes_sectors: u32,
    /// Most ranges in one write-zeroes request.
    pub max_write_zeroes_seg: u32,
}

/// A guest buffer: bus address and length.
pub type Buffer = (u64, u64);

/// A range of the disk: byte offset and length.
pub type DiskRange = (u64, u64);

/// What a request asks of the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Read `data`'s total length at byte `offset` into `data`.
    Read {
        /// Byte offset on the disk.
        offset: u64,
        /// Device-writable guest buffers, in order.
        data: Vec<Buffer>,
    },
    /// Write `data` at byte `offset`.
    Write {
        /// Byte offset on the disk.
        offset: u64,
        /// Device-readable guest buffers, in order.
        data: Vec<Buffer>,
    },
    /// Make completed writes durable.
    Flush,
    /// Write the identifier (at most [`ID_BYTES`]) into `data`.
    GetId {
        /// Device-writable guest buffers, cut to [`ID_BYTES`] in total.
        data: Vec<Buffer>,
    },
    /// Deallocate the ranges (zero-length ranges are left out).
    Discard {
        /// Byte ranges of the disk.
        ranges: Vec<DiskRange>,
    },
    /// Zero the ranges, deallocating them if `unmap`.
    WriteZeroes {
        /// Byte ranges of the disk.
        ranges: Vec<DiskRange>,
        /// The driver allows deallocation.
        unmap: bool,
    },
    /// Answered with `status` without touching the disk.
    Fail {
        /// The status to write.
        status: Status,
        /// What was wrong.
        reason: RequestError,
    },
}

/// A parsed request: where its status goes and what it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Bus address of the status byte.
    pub status: u64,
    /// The operation.
    pub kind: RequestKind,
}

/// A chain that cannot be answered with a status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The descriptor chain itself is unusable.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The last descriptor is not device-writable, or is empty.
    #[error("the last descriptor is not a device-writable status byte")]
    NoStatus,
    /// The device may not write the status byte: it is outside guest
    /// memory, or the IOMMU does not map it writable.
    #[error("the status byte at {0:#x} is not writable by the device")]
    StatusOutsideMemory(u64),
}

/// Why a request was refused with a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A device-readable descriptor follows a device-writable one
    /// (§2.7.4.2).
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    /// Less than 16 device-readable bytes.
    #[error("the header is shorter than 16 bytes ({0})")]
    ShortHeader(u64),
    /// The header or a range list could not be read from guest memory.
    #[error("the header or range list is outside guest memory")]
    Unreadable,
    /// Data in the wrong direction for the request type.
    #[error("request type {0} has data buffers in the wrong direction")]
    WrongDirection(u32),
    /// IN/OUT data that is not a multiple of 512 bytes (§5.2.6.1).
    #[error("data length {0} is not a multiple of 512")]
    Unaligned(u64),
    /// Sectors past the capacity, or an offset that wraps.
    #[error("sector {sector} + {len} bytes is past the end of the disk")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A write-type request on a read-only device (§5.2.6.2).
    #[error("write-type request {0} on a read-only device")]
    ReadOnly(u32),
    /// A request type the device does not know.
    #[error("unsupported request type {0}")]
    UnknownType(u32),
    /// DISCARD / WRITE_ZEROES without the feature negotiated.
    #[error("request type {0} without its feature negotiated")]
    NotNegotiated(u32),
    /// A range list whose length is not a positive multiple of 16 bytes.
    #[error("range list of {0} bytes")]
    BadRangeList(u64),
    /// More ranges than `max_discard_seg` / `max_write_zeroes_seg`.
    #[error("{0} ranges exceed the limit")]
    TooManyRanges(u64),
    /// A range longer than the advertised maximum.
    #[error("a range of {0} sectors exceeds the limit")]
    RangeTooLong(u32),
    /// Unknown range flags, or UNMAP on a discard (§5.2.6.2: UNSUPP).
    #[error("range flags {0:#x} are not supported")]
    RangeFlags(u32),
}

/// Parses the chain popped from a request queue. Reads the header and
/// range lists through `dma`; writes nothing.
pub fn parse<M>(
    chain: DescriptorChain<M>,
    dma: &dyn Dma,
    limits: &Limits,
) -> Result<Request, ParseError>
where
    M: std::ops::Deref,
    M::Target: GuestMemory,
{
    let segments = collect_chain(chain, limits.max_descriptors)?;
    parse_segments(&segments, dma, limits)
}

/// Parses a request from its descriptors (see [`parse`]).
pub fn parse_segments(
    segments: &[Segment],
    dma: &dyn Dma,
    limits: &Limits,
) -> Result<Request, ParseError> {
    let last = segments.last().ok_or(ChainError::Empty)?;
    if !last.writable || last.len == 0 {
        return Err(ParseError::NoStatus);
    }
    let status = last
        .addr
        .checked_add(u64::from(last.len) - 1)
        .ok_or(ParseError::NoStatus)?;
    // A write check, not a read: behind an IOMMU the driver maps the
    // status byte for the device to write only (DMA_FROM_DEVICE).
    if dma.translate(status, 1, Direction::FromDevice).is_err() {
        return Err(ParseError::StatusOutsideMemory(status));
    }
    let kind = match request_kind(segments, dma, limits) {
        Ok(kind) => kind,
        Err((status, reason)) => RequestKind::Fail { status, reason },
    };
    Ok(Request { status, kind })
}

type Refusal = (Status, RequestError);

fn ioerr(e: RequestError) -> Refusal {
    (Status::IoErr, e)
}

fn request_kind(
    segments: &[Segment],
    dma: &dyn Dma,
    limits: &Limits,
) -> Result<RequestKind, Refusal> {
    let split = segments
        .iter()
        .position(|s| s.writable)
        .unwrap_or(segments.len());
    if segments[split..].iter().any(|s| !s.writable) {
        return Err(ioerr(RequestError::ReadableAfterWritable));
    }
    let readable: Vec<Buffer> = segments[..split].iter().map(as_buffer).collect();
    let writable: Vec<Buffer> = segments[split..].iter().map(as_buffer).collect();
    let readable_len = total(&readable);
    if readable_len < HEADER_LEN {
        return Err(ioerr(RequestError::ShortHeader(readable_len)));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    read_stream(dma, &readable, 0, &mut header).map_err(ioerr)?;
    let (ty, sector) = decode_header(&header);
    let data_out = skip(&readable, HEADER_LEN);
    let data_in = truncate(&writable, total(&writable).saturating_sub(1));
    let no_data_out = || {
        if data_out.is_empty() {
            Ok(())
        } else {
            Err(ioerr(RequestError::WrongDirection(ty)))
        }
    };
    let no_data_in = || {
        if data_in.is_empty() {
            Ok(())
        } else {
            Err(ioerr(RequestError::WrongDirection(ty)))
        }
    };
    match ty {
        T_IN => {
            no_data_out()?;
            let offset = checked_transfer(sector, total(&data_in), limits)?;
            Ok(RequestKind::Read {
                offset,
                data: data_in,
            })
        }
        T_OUT => {
            if limits.readonly {
                return Err(ioerr(RequestError::ReadOnly(ty)));
            }
            no_data_in()?;
            let offset = checked_transfer(sector, total(&data_out), limits)?;
            Ok(RequestKind::Write {
                offset,
                data: data_out,
            })
        }
        T_FLUSH => Ok(RequestKind::Flush),
        T_GET_ID => {
            no_data_out()?;
            Ok(RequestKind::GetId {
                data: truncate(&data_in, ID_BYTES as u64),
            })
        }
        T_DISCARD | T_WRITE_ZEROES => {
            if limits.readonly {
                return Err(ioerr(RequestError::ReadOnly(ty)));
            }
            let (negotiated, max_seg, max_sectors) = if ty == T_DISCARD {
                let l = limits;
                (l.discard, l.max_discard_seg, l.max_discard_sectors)
            } else {
                let l = limits;
                (
                    l.write_zeroes,
                    l.max_write_zeroes_seg,
                    l.max_write_zeroes_sectors,
                )
            };
            if !negotiated {
                return Err((Status::Unsupp, RequestError::NotNegotiated(ty)));
            }
            no_data_in()?;
            let (ranges, unmap) = parse_ranges(ty, &data_out, dma, limits, max_seg, max_sectors)?;
            Ok(if ty == T_DISCARD {
                RequestKind::Discard { ranges }
            } else {
                RequestKind::WriteZeroes { ranges, unmap }
            })
        }
        other => Err((Status::Unsupp, RequestError::UnknownType(other))),
    }
}

fn as_buffer(s: &Segment) -> Buffer {
    (s.addr, u64::from(s.len))
}

fn decode_header(h: &[u8; HEADER_LEN as usize]) -> (u32, u64) {
    let ty = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let sector = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    (ty, sector)
}

/// The byte offset of a transfer of `len` bytes at `sector`, if it is a
/// whole number of sectors inside the disk.
fn checked_transfer(sector: u64, len: u64, limits: &Limits) -> Result<u64, Refusal> {
    if len & (SECTOR_SIZE - 1) != 0 {
        return Err(ioerr(RequestError::Unaligned(len)));
    }
    checked_range(sector, len / SECTOR_SIZE, limits)
        .ok_or(ioerr(RequestError::OutOfRange { sector, len }))
}

/// `sector..sector+count` inside the disk, as a byte offset.
fn checked_range(sector: u64, count: u64, limits: &Limits) -> Option<u64> {
    let end = sector.checked_add(count)?;
    if end > limits.capacity {
        return None;
    }
    sector.checked_mul(SECTOR_SIZE)
}

fn parse_ranges(
    ty: u32,
    list: &[Buffer],
    dma: &dyn Dma,
    limits: &Limits,
    max_seg: u32,
    max_sectors: u32,
) -> Result<(Vec<DiskRange>, bool), Refusal> {
    let len = total(list);
    if len == 0 || len & (RANGE_LEN - 1) != 0 {
        return Err(ioerr(RequestError::BadRangeList(len)));
    }
    let count = len / RANGE_LEN;
    if count > u64::from(max_seg) {
        return Err(ioerr(RequestError::TooManyRanges(count)));
    }
    let mut ranges = Vec::new();
    let mut unmap = true;
    for i in 0..count {
        let mut raw = [0u8; RANGE_LEN as usize];
        read_stream(dma, list, i * RANGE_LEN, &mut raw).map_err(ioerr)?;
        let (sector, num, flags) = decode_range(&raw);
        if flags & !RANGE_F_UNMAP != 0 || (ty == T_DISCARD && flags & RANGE_F_UNMAP != 0) {
            return Err((Status::Unsupp, RequestError::RangeFlags(flags)));
        }
        if num > max_sectors {
            return Err(ioerr(RequestError::RangeTooLong(num)));
        }
        let bytes = u64::from(num) * SECTOR_SIZE;
        let offset = checked_range(sector, u64::from(num), limits)
            .ok_or(ioerr(RequestError::OutOfRange { sector, len: bytes }))?;
        unmap &= flags & RANGE_F_UNMAP != 0;
        if num > 0 {
            ranges.push((offset, bytes));
        }
    }
    Ok((ranges, unmap))
}

fn decode_range(r: &[u8; RANGE_LEN as usize]) -> (u64, u32, u32) {
    let sector = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
    let num = u32::from_le_bytes([r[8], r[9], r[10], r[11]]);
    let flags = u32::from_le_bytes([r[12], r[13], r[14], r[15]]);
    (sector, num, flags)
}

/// Total length of `bufs`.
pub(crate) fn total(bufs: &[Buffer]) -> u64 {
    bufs.iter().map(|b| b.1).sum()
}

/// `bufs` without their first `n` bytes.
fn skip(bufs: &[Buffer], mut n: u64) -> Vec<Buffer> {
    let mut out = Vec::new();
    for &(addr, len) in bufs {
        if n >= len {
            n -= len;
            continue;
        }
        // `addr + n` may wrap for a hostile address: DMA refuses it later.
        out.push((addr.wrapping_add(n), len - n));
        n = 0;
    }
    out
}

/// The first `n` bytes of `bufs`, without empty buffers.
pub(crate) fn truncate(bufs: &[Buffer], mut n: u64) -> Vec<Buffer> {
    let mut out = Vec::new();
    for &(addr, len) in bufs {
        if n == 0 {
            break;
        }
        let take = len.min(n);
        if take > 0 {
            out.push((addr, take));
        }
        n -= take;
    }
    out
}

/// Reads `buf.len()` bytes at byte `offset` of the stream `bufs`.
fn read_stream(
    dma: &dyn Dma,
    bufs: &[Buffer],
    offset: u64,
    buf: &mut [u8],
) -> Result<(), RequestError> {
    let mut done = 0usize;
    for (addr, len) in skip(bufs, offset) {
        if done == buf.len() {
            break;
        }
        let n = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(buf.len() - done);
        dma.read(addr, &mut buf[done..done + n])
            .map_err(|_| RequestError::Unreadable)?;
        done += n;
    }
    if done == buf.len() {
        Ok(())
    } else {
        Err(RequestError::Unreadable)
    }
}
