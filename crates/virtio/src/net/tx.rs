//! Transmit (virtio 1.2 §5.1.6.2): each chain is a 12-byte header and a
//! frame in device-readable buffers. The header is copied out and checked;
//! the frame goes to the backend straight from guest memory, in one
//! `writev` (no copy in iovm). The used length is always 0.

use backend::net::FrameIo;
use dma::{Direction, HostRange, RangeScratch};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::Queue;

use super::chain::{self, ChainError};
use super::header::{self, HdrError, HDR_LEN};
use super::worker::{drain, Ctx};

/// The largest frame (after the header) a chain may carry: a 64 KiB
/// segment plus Ethernet and VLAN headers.
pub(crate) const MAX_PACKET: usize = 64 * 1024 + 64;
/// The shortest: an Ethernet header.
pub(crate) const MIN_PACKET: usize = 14;

/// Why a transmit chain was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxDrop {
    /// Malformed chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A device-writable buffer in a transmit chain.
    #[error("transmit chain has a device-writable descriptor")]
    Writable,
    /// Shorter than the header plus an Ethernet header.
    #[error("transmit chain of {0} bytes is shorter than header and frame")]
    Short(u64),
    /// A buffer outside guest memory.
    #[error(transparent)]
    Dma(#[from] dma::DmaError),
    /// A header the negotiated features do not allow.
    #[error(transparent)]
    Header(#[from] HdrError),
}

/// Checks one transmit chain; returns its header (copied, so the guest
/// cannot change it after the check) and puts in `ranges` the host memory
/// of the frame that follows it.
pub(crate) fn parse_frame<'a>(
    descs: impl Iterator<Item = Descriptor>,
    dma: &'a dyn dma::Dma,
    features: u64,
    ranges: &mut Vec<HostRange<'a>>,
) -> Result<[u8; HDR_LEN], TxDrop> {
    ranges.clear();
    let layout = chain::layout(descs, (HDR_LEN + MAX_PACKET) as u64)?;
    if layout.writable_len > 0 {
        return Err(TxDrop::Writable);
    }
    if layout.readable_len < (HDR_LEN + MIN_PACKET) as u64 {
        return Err(TxDrop::Short(layout.readable_len));
    }
    let mut hdr = [0u8; HDR_LEN];
    let mut got = 0;
    for seg in &layout.readable {
        // Header bytes this segment holds (the header may span several).
        let take = (HDR_LEN - got).min(seg.len as usize);
        if take > 0 {
            dma.read(seg.addr, &mut hdr[got..got + take])?;
            got += take;
        }
        let rest = u64::from(seg.len) - take as u64;
        if rest > 0 {
            dma.host_ranges(
                seg.addr.wrapping_add(take as u64),
                rest,
                Direction::ToDevice,
                ranges,
            )?;
        }
    }
    header::check_tx(&hdr, features)?;
    Ok(hdr)
}

/// One transmit queue.
#[derive(Debug)]
pub(crate) struct TxQueue {
    /// The virtqueue.
    pub queue: Queue,
    /// Its index.
    pub index: u16,
    /// Set once the queue hit a fault that needs a device reset.
    pub broken: bool,
    ranges: RangeScratch,
}

impl TxQueue {
    /// Serves queue `index`.
    pub fn new(queue: Queue, index: u16) -> Self {
        Self {
            queue,
            index,
            broken: false,
            ranges: RangeScratch::new(),
        }
    }

    /// Sends every chain the driver made available to `io`.
    pub fn run(&mut self, ctx: &mut Ctx, io: &dyn FrameIo) {
        if self.broken {
            return;
        }
        let mem = ctx.mem.clone();
        let ranges = self.ranges.borrow();
        let r = drain(&mut self.queue, &mem, |descs| {
            match parse_frame(descs, ctx.dma.as_ref(), ctx.features, ranges) {
                Ok(hdr) => match io.write_frame_ranges(&hdr, ranges) {
                    Ok(_) => {
                        let bytes: usize = ranges.iter().map(HostRange::len).sum();
                        ctx.counters.net.tx_frames.inc();
                        ctx.counters.net.tx_bytes.add(bytes as u64);
                    }
                    Err(e) => {
                        ctx.counters.net.tx_dropped.inc();
                        ctx.log.warn(format_args!("tx frame not sent: {e}"));
                    }
                },
                Err(e) => {
                    ctx.counters.net.tx_dropped.inc();
                    ctx.log.warn(format_args!("tx chain dropped: {e}"));
                }
            }
            0
        });
        ctx.finish(&mut self.queue, self.index, r, &mut self.broken);
    }
}
