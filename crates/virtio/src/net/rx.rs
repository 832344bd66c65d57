//! Receive (virtio 1.2 §5.1.6.3, §5.1.6.4): frames read from the backend
//! into the driver's device-writable chains.
//!
//! A frame read from the backend is *pending* until it is delivered or
//! refused; it is never dropped for lack of buffers. Chains are popped
//! into a *held* list until their capacity covers the pending frame
//! (with `MRG_RXBUF`, several chains; without, the first one must hold the
//! whole frame); only then is guest memory written, the header's
//! `num_buffers` set to the number of chains used, and the chains put in
//! the used ring. When the available ring runs dry the queue's
//! notifications are enabled and the worker stops reading the backend
//! until the driver posts more.

use std::collections::VecDeque;

use backend::net::FrameIo;
use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::chain::{self, Seg};
use super::ctrl::RxFilter;
use super::header::{self, HDR_LEN};
use super::tx::{MAX_PACKET, MIN_PACKET};
use super::worker::Ctx;
use super::F_MRG_RXBUF;

/// Frames read per pass before other queues get a turn.
const BUDGET: usize = 64;

/// A chain popped from the available ring and checked, not yet used.
#[derive(Debug)]
struct Held {
    head: u16,
    segs: Vec<Seg>,
    cap: u64,
}

/// What reserving chains for the pending frame came to.
enum Reserve {
    /// The first `n` held chains take the frame.
    Ready(usize),
    /// The driver has not posted enough buffers.
    NoBuffers,
    /// The frame can never fit (buffer too small without `MRG_RXBUF`).
    TooSmall,
}

/// One receive queue and its pending frame.
#[derive(Debug)]
pub(crate) struct RxQueue {
    /// The virtqueue.
    pub queue: Queue,
    /// Its index.
    pub index: u16,
    /// Set once the queue hit a fault that needs a device reset.
    pub broken: bool,
    buf: Vec<u8>,
    pending: Option<usize>,
    held: VecDeque<Held>,
    used_any: bool,
}

impl RxQueue {
    /// Serves queue `index`.
    pub fn new(queue: Queue, index: u16) -> Self {
        Self {
            queue,
            index,
            broken: false,
            // One byte more than the largest frame, to see truncation.
            buf: vec![0; HDR_LEN + MAX_PACKET + 1],
            pending: None,
            held: VecDeque::new(),
            used_any: false,
        }
    }

    /// Whether the worker should wait for frames from the backend: not
    /// while a frame waits for buffers.
    pub fn wants_frames(&self) -> bool {
        !self.broken && self.pending.is_none()
    }

    /// Whether a frame waits for buffers.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Delivers the pending frame if buffers allow, then (if `read`)
    /// further frames from `io`, until the backend is empty, the budget
    /// is spent or buffers run out.
    pub fn run(
        &mut self,
        ctx: &mut Ctx,
        io: &dyn FrameIo,
        read: bool,
        filter: &RxFilter,
        mac: &[u8; 6],
    ) {
        if self.broken {
            return;
        }
        self.used_any = false;
        let r = self.pass(ctx, io, read, filter, mac);
        let r = r.map(|()| self.used_any);
        ctx.finish(&mut self.queue, self.index, r, &mut self.broken);
    }

    fn pass(
        &mut self,
        ctx: &mut Ctx,
        io: &dyn FrameIo,
        read: bool,
        filter: &RxFilter,
        mac: &[u8; 6],
    ) -> Result<(), virtio_queue::Error> {
        self.queue.disable_notification(&*ctx.mem)?;
        let mut frames = 0;
        loop {
            let len = match self.pending {
                Some(len) => len,
                None => {
                    if !read || frames >= BUDGET {
                        return Ok(());
                    }
                    match io.read_frame(&mut self.buf) {
                        Ok(n) => {
                            frames += 1;
                            match self.accept(ctx, n, filter, mac) {
                                Some(n) => n,
                                None => continue,
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => {
                            ctx.log
                                .warn(format_args!("rx queue {}: read failed: {e}", self.index));
                            return Ok(());
                        }
                    }
                }
            };
            self.pending = Some(len);
            match self.reserve(ctx, len)? {
                Reserve::Ready(n) => self.deliver(ctx, len, n)?,
                Reserve::NoBuffers => return Ok(()),
                Reserve::TooSmall => {
                    ctx.counters.net.rx_dropped.inc();
                    ctx.log.warn(format_args!(
                        "rx queue {}: frame of {len} bytes dropped, buffers too small",
                        self.index
                    ))
                }
            }
            self.pending = None;
        }
    }

    /// Checks a frame just read into `buf`; its length if it is to be
    /// delivered.
    fn accept(
        &mut self,
        ctx: &mut Ctx,
        n: usize,
        filter: &RxFilter,
        mac: &[u8; 6],
    ) -> Option<usize> {
        if n >= self.buf.len() || n < HDR_LEN + MIN_PACKET {
            ctx.log.warn(format_args!(
                "rx queue {}: backend frame of {n} bytes dropped",
                self.index
            ));
            return None;
        }
        let dst: [u8; 6] = self.buf[HDR_LEN..HDR_LEN + 6].try_into().ok()?;
        if !filter.accepts(mac, &dst) {
            return None;
        }
        let hdr: &mut [u8; HDR_LEN] = self.buf.first_chunk_mut()?;
        if let Err(e) = header::fix_rx(hdr, ctx.features, 1) {
            ctx.log.warn(format_args!(
                "rx queue {}: backend frame dropped: {e}",
                self.index
            ));
            return None;
        }
        Some(n)
    }

    /// Pops chains until the held ones can take `len` bytes.
    fn reserve(&mut self, ctx: &mut Ctx, len: usize) -> Result<Reserve, virtio_queue::Error> {
        let mergeable = ctx.features & F_MRG_RXBUF != 0;
        let need = len as u64;
        loop {
            if let Some(first) = self.held.front() {
                if !mergeable {
                    return Ok(if first.cap >= need {
                        Reserve::Ready(1)
                    } else {
                        Reserve::TooSmall
                    });
                }
                let mut sum = 0;
                for (i, h) in self.held.iter().enumerate() {
                    sum += h.cap;
                    if sum >= need {
                        return Ok(Reserve::Ready(i + 1));
                    }
                }
                if self.held.len() >= usize::from(self.queue.size()) {
                    return Ok(Reserve::TooSmall);
                }
            }
            let chain = self.queue.iter(&*ctx.mem)?.next();
            let Some(chain) = chain else {
                if self.queue.enable_notification(&*ctx.mem)? {
                    continue;
                }
                return Ok(Reserve::NoBuffers);
            };
            let head = chain.head_index();
            match check_chain(chain, ctx.dma.as_ref()) {
                Ok(h) => self.held.push_back(Held { head, ..h }),
                Err(why) => {
                    ctx.counters.net.rx_refused.inc();
                    ctx.log.warn(format_args!(
                        "rx queue {}: chain {head} returned unused: {why}",
                        self.index
                    ));
                    self.queue.add_used(&*ctx.mem, head, 0)?;
                    self.used_any = true;
                }
            }
        }
    }

    /// Writes the pending frame into the first `n` held chains.
    fn deliver(&mut self, ctx: &mut Ctx, len: usize, n: usize) -> Result<(), virtio_queue::Error> {
        // `n` is at most the held count, which the queue size bounds.
        let count = u16::try_from(n).unwrap_or(u16::MAX);
        self.buf[10..12].copy_from_slice(&count.to_le_bytes());
        let mut data = &self.buf[..len];
        let mut faulted = false;
        for _ in 0..n {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            let take = usize::try_from(h.cap).unwrap_or(usize::MAX).min(data.len());
            let written = match chain::scatter(ctx.dma.as_ref(), &h.segs, &data[..take]) {
                Ok(w) => w,
                Err(e) => {
                    faulted = true;
                    ctx.log.warn(format_args!("rx queue {}: {e}", self.index));
                    0
                }
            };
            data = &data[take..];
            // `written` is at most the chain's capacity, which fits u32.
            let used = u32::try_from(written).unwrap_or(u32::MAX);
            self.queue.add_used(&*ctx.mem, h.head, used)?;
            self.used_any = true;
        }
        if faulted {
            ctx.counters.net.rx_dropped.inc();
        } else {
            ctx.counters.net.rx_frames.inc();
            ctx.counters
                .net
                .rx_bytes
                .add(len.saturating_sub(HDR_LEN) as u64);
        }
        Ok(())
    }
}

/// Checks a receive chain: device-writable only, room for the header,
/// inside guest memory.
fn check_chain(
    descs: impl Iterator<Item = virtio_queue::desc::split::Descriptor>,
    dma: &dyn dma::Dma,
) -> Result<Held, String> {
    let layout = chain::layout(descs, u64::from(u32::MAX)).map_err(|e| e.to_string())?;
    if layout.readable_len > 0 {
        return Err("device-readable descriptor in a receive chain".into());
    }
    if layout.writable_len < HDR_LEN as u64 {
        return Err(format!("{} bytes, less than a header", layout.writable_len));
    }
    if !chain::writable_in_memory(dma, &layout.writable) {
        return Err("buffer outside guest memory".into());
    }
    Ok(Held {
        head: 0,
        segs: layout.writable,
        cap: layout.writable_len,
    })
}
