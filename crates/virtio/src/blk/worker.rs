//! The virtio-blk worker thread: waits (epoll) on each request queue's
//! notification eventfd, the engine's completion eventfd and its stop
//! eventfd.
//!
//! On a notification it pops every available chain (with notifications
//! disabled, re-enabling and re-checking afterwards so none is lost),
//! parses each, pushes the disk operations to the engine and submits them
//! together (the engine hands `O_DIRECT` requests to the kernel two per
//! call, so the disk's queue is not plugged). On completions it writes each
//! request's status byte, returns the chain to the used ring and interrupts
//! the driver for each queue only if event-index suppression says so.

use std::collections::HashMap;
use std::sync::Arc;

use backend::{Completion, Engine, Op};
use counters::{BlockOp, FunctionCounters, IoClass};
use dma::{Direction, Dma, GuestBuffers};
use virtio_queue::{DescriptorChain, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::request::{self, total, Limits, RequestKind, Status, ID_BYTES};
use crate::device::{ActivateError, Activation, Memory, QueueSetup, Signals};
use crate::runtime::{drain_eventfd, pop_all, pop_quiet, GuestWarnings, Poller, Worker, STOP};

/// Epoll token of the engine's completion eventfd (queues use their
/// position in the activation's list).
const COMPLETIONS: u64 = u64::MAX - 1;

/// What the device prepares for its worker.
#[derive(Debug)]
pub(super) struct Setup {
    /// Request checks.
    pub limits: Limits,
    /// Writes are durable on completion (FLUSH not negotiated).
    pub dsync: bool,
    /// Write-zeroes with UNMAP may punch a hole (reads as zeros).
    pub regular_file: bool,
    /// GET_ID's answer.
    pub serial: [u8; ID_BYTES],
    /// The disk.
    pub engine: Box<dyn Engine>,
    /// Written by the engine when completions are ready.
    pub completions: EventFd,
}

/// A request the engine is working on.
#[derive(Debug)]
struct Pending {
    queue: usize,
    head: u16,
    status: u64,
    /// Used length on success: data written into the guest + status.
    ok_len: u32,
    /// Engine operations not yet completed.
    remaining: usize,
    failed: bool,
    /// What it counts as if it succeeds.
    op: Option<BlockOp>,
}

struct BlkWorker {
    setup: Setup,
    memory: Arc<Memory>,
    dma: Arc<dyn Dma>,
    signals: Arc<dyn Signals>,
    queues: Vec<QueueSetup>,
    /// Queues given up on after a fatal ring error.
    dead: Vec<bool>,
    /// Queues with used entries not yet signalled.
    dirty: Vec<bool>,
    /// Queues whose notifications are left off while requests are in
    /// flight: each completion's wake-up looks at them instead, so a busy
    /// driver adds requests without a notification (and a VM exit) each.
    quiet: Vec<bool>,
    pending: HashMap<u64, Pending>,
    next_tag: u64,
    reaped: Vec<Completion>,
    warnings: GuestWarnings,
    reset_requested: bool,
    counters: Arc<FunctionCounters>,
}

/// Starts the worker serving `act`'s queues.
pub(super) fn start(setup: Setup, act: Activation) -> Result<Worker, ActivateError> {
    let mut poller = Poller::new().map_err(ActivateError::Thread)?;
    poller
        .add(&setup.completions, COMPLETIONS)
        .map_err(ActivateError::Thread)?;
    for (i, q) in act.queues.iter().enumerate() {
        poller
            .add(&q.notify, i as u64)
            .map_err(ActivateError::Thread)?;
    }
    let n = act.queues.len();
    let w = BlkWorker {
        setup,
        memory: act.memory,
        dma: act.dma,
        signals: act.signals,
        queues: act.queues,
        dead: vec![false; n],
        dirty: vec![false; n],
        quiet: vec![false; n],
        pending: HashMap::new(),
        next_tag: 0,
        reaped: Vec::new(),
        warnings: GuestWarnings::new("virtio-blk"),
        reset_requested: false,
        counters: act.counters,
    };
    w.counters.set_class(IoClass::Block);
    Worker::spawn(sandbox::ThreadKind::VirtioBlk, poller, move |p| w.run(p))
        .map_err(ActivateError::Thread)
}

impl BlkWorker {
    fn run(mut self, mut poller: Poller) {
        // Requests made available before activation have no notification.
        for i in 0..self.queues.len() {
            self.process_queue(i);
        }
        self.setup.engine.submit();
        self.reap();
        self.signal();
        let mut tokens = Vec::new();
        loop {
            tokens.clear();
            if let Err(e) = poller.wait(&mut tokens) {
                tracing::error!("virtio-blk: epoll failed, stopping the worker: {e}");
                self.signals.needs_reset();
                break;
            }
            for &t in &tokens {
                match t {
                    STOP => {
                        self.drain();
                        return;
                    }
                    COMPLETIONS => {
                        drain_eventfd(&self.setup.completions);
                    }
                    i => {
                        let Ok(i) = usize::try_from(i) else { continue };
                        if let Some(q) = self.queues.get(i) {
                            let n = drain_eventfd(&q.notify);
                            self.counters.doorbells.doorbells_shared.add(n);
                            self.quiet[i] = true;
                        }
                    }
                }
            }
            for i in 0..self.queues.len() {
                if self.quiet[i] {
                    self.process_queue(i);
                }
            }
            self.setup.engine.submit();
            self.reap();
            if self.pending.is_empty() {
                // Nothing left to wake the worker but the driver: re-arm.
                for i in 0..self.queues.len() {
                    if self.quiet[i] {
                        self.process_queue(i);
                    }
                }
                self.setup.engine.submit();
            }
            self.signal();
        }
        self.drain();
    }

    /// Pops and starts every available request of queue `i`. While other
    /// requests are in flight the driver's notifications stay off (see
    /// [`BlkWorker::quiet`]); with none, they are re-armed and the queue
    /// checked once more, so no request waits for a wake-up that never comes.
    fn process_queue(&mut self, i: usize) {
        if self.dead[i] {
            self.quiet[i] = false;
            return;
        }
        self.pop_and_execute(i, true);
        if self.pending.is_empty() {
            self.pop_and_execute(i, false);
            self.quiet[i] = false;
        } else {
            self.quiet[i] = true;
        }
    }

    /// Pops queue `i` (leaving notifications off if `quiet`) and starts
    /// what it got.
    fn pop_and_execute(&mut self, i: usize, quiet: bool) {
        if self.dead[i] {
            return;
        }
        let mem = self.memory.clone();
        let (dma, limits) = (&*self.dma, &self.setup.limits);
        let mut requests = Vec::new();
        let take = |chain: DescriptorChain<&Memory>| {
            let head = chain.head_index();
            requests.push((head, request::parse(chain, dma, limits)));
        };
        let popped = if quiet {
            pop_quiet(&mut self.queues[i].queue, &mem, take)
        } else {
            pop_all(&mut self.queues[i].queue, &mem, take)
        };
        for (head, parsed) in requests {
            match parsed {
                Ok(req) => self.execute(i, head, req.status, req.kind),
                Err(e @ request::ParseError::StatusOutsideMemory(_)) => {
                    self.status_lost(i, head, format_args!("{e}"));
                }
                Err(e) => {
                    self.warnings
                        .warn(format_args!("queue {i} chain {head} dropped: {e}"));
                    self.add_used(i, head, 0);
                }
            }
        }
        if let Err(e) = popped {
            self.queue_broken(i, format_args!("{e}"));
        }
    }

    fn execute(&mut self, i: usize, head: u16, status: u64, kind: RequestKind) {
        let dsync = self.setup.dsync;
        let counted = match &kind {
            RequestKind::Read { data, .. } => Some(BlockOp::Read(total(data))),
            RequestKind::Write { data, .. } => Some(BlockOp::Write(total(data))),
            RequestKind::Flush => Some(BlockOp::Flush),
            RequestKind::Discard { .. } | RequestKind::WriteZeroes { .. } => Some(BlockOp::Discard),
            RequestKind::GetId { .. } | RequestKind::Fail { .. } => None,
        };
        let ops = match kind {
            RequestKind::Read { offset, data } => {
                let len = used_len(total(&data));
                match GuestBuffers::new(self.dma.clone(), &data, Direction::FromDevice) {
                    Ok(buffers) => (vec![Op::Read { offset, buffers }], len),
                    Err(e) => return self.fail(i, head, status, format_args!("read buffers: {e}")),
                }
            }
            RequestKind::Write { offset, data } => {
                match GuestBuffers::new(self.dma.clone(), &data, Direction::ToDevice) {
                    Ok(buffers) => (
                        vec![Op::Write {
                            offset,
                            buffers,
                            dsync,
                        }],
                        1,
                    ),
                    Err(e) => {
                        return self.fail(i, head, status, format_args!("write buffers: {e}"))
                    }
                }
            }
            // A read-only disk has no dirty data; its descriptor may not
            // accept fdatasync.
            RequestKind::Flush if self.setup.limits.readonly => (Vec::new(), 1),
            RequestKind::Flush => (vec![Op::Flush], 1),
            RequestKind::GetId { data } => match self.write_id(&data) {
                Ok(n) => (Vec::new(), used_len(n)),
                Err(e) => return self.fail(i, head, status, format_args!("GET_ID buffer: {e}")),
            },
            RequestKind::Discard { ranges } => (
                ranges
                    .into_iter()
                    .map(|(offset, len)| Op::Discard { offset, len })
                    .collect(),
                1,
            ),
            RequestKind::WriteZeroes { ranges, unmap } => {
                let punch = unmap && self.setup.regular_file;
                let op = |(offset, len)| {
                    if punch {
                        Op::Discard { offset, len }
                    } else {
                        Op::WriteZeroes { offset, len }
                    }
                };
                (ranges.into_iter().map(op).collect(), 1)
            }
            RequestKind::Fail { status: s, reason } => {
                self.warnings
                    .warn(format_args!("queue {i} request {head}: {reason}"));
                self.counters.block.errors_invalid.inc();
                return self.complete(i, head, status, s, 1);
            }
        };
        let (ops, ok_len) = ops;
        if ops.is_empty() {
            if let Some(op) = counted {
                self.counters.block.completed(op);
            }
            return self.complete(i, head, status, Status::Ok, ok_len);
        }
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        self.pending.insert(
            tag,
            Pending {
                queue: i,
                head,
                status,
                ok_len,
                remaining: ops.len(),
                failed: false,
                op: counted,
            },
        );
        for op in ops {
            self.setup.engine.push(backend::Request { tag, op });
        }
    }

    /// Writes the identifier into `data`; returns the bytes written.
    fn write_id(&self, data: &[(u64, u64)]) -> Result<u64, dma::DmaError> {
        let mut done = 0usize;
        for &(addr, len) in data {
            let n = usize::try_from(len)
                .unwrap_or(ID_BYTES)
                .min(ID_BYTES - done);
            self.dma.write(addr, &self.setup.serial[done..done + n])?;
            done += n;
        }
        Ok(done as u64)
    }

    fn fail(&mut self, i: usize, head: u16, status: u64, why: std::fmt::Arguments<'_>) {
        self.counters.block.errors_dma.inc();
        self.warnings
            .warn(format_args!("queue {i} request {head}: {why}"));
        self.complete(i, head, status, Status::IoErr, 1);
    }

    /// Writes the status byte and returns the chain.
    fn complete(&mut self, i: usize, head: u16, status_addr: u64, status: Status, len: u32) {
        match self.dma.write(status_addr, &[status as u8]) {
            Ok(()) => self.add_used(i, head, len),
            Err(e) => self.status_lost(i, head, format_args!("status byte: {e}")),
        }
    }

    /// The request's status byte cannot be written (outside memory, or an
    /// IOMMU fault): the driver cannot learn how it ended, so the device
    /// asks to be reset (§2.1.2: `DEVICE_NEEDS_RESET` and a configuration
    /// change) and returns the chain with used length 0.
    fn status_lost(&mut self, i: usize, head: u16, why: std::fmt::Arguments<'_>) {
        self.warnings.warn(format_args!(
            "queue {i} request {head}: {why}; device needs reset"
        ));
        if !std::mem::replace(&mut self.reset_requested, true) {
            self.signals.needs_reset();
        }
        self.add_used(i, head, 0);
    }

    fn add_used(&mut self, i: usize, head: u16, len: u32) {
        if self.dead[i] {
            return;
        }
        let mem = self.memory.clone();
        match self.queues[i].queue.add_used(&*mem, head, len) {
            Ok(()) => self.dirty[i] = true,
            Err(e) => self.queue_broken(i, format_args!("cannot return chain {head}: {e}")),
        }
    }

    /// Completes the requests the engine finished.
    fn reap(&mut self) {
        self.setup.engine.reap(&mut self.reaped);
        let done = std::mem::take(&mut self.reaped);
        for c in &done {
            let Some(p) = self.pending.get_mut(&c.tag) else {
                continue;
            };
            if let Err(errno) = c.result {
                p.failed = true;
                let err = std::io::Error::from_raw_os_error(errno);
                let (q, h) = (p.queue, p.head);
                self.warnings
                    .warn(format_args!("queue {q} request {h}: host I/O error: {err}"));
            }
            let Some(p) = self.pending.get_mut(&c.tag) else {
                continue;
            };
            p.remaining = p.remaining.saturating_sub(1);
            if p.remaining > 0 {
                continue;
            }
            if let Some(p) = self.pending.remove(&c.tag) {
                let (status, len) = if p.failed {
                    self.counters.block.errors_io.inc();
                    (Status::IoErr, 1)
                } else {
                    if let Some(op) = p.op {
                        self.counters.block.completed(op);
                    }
                    (Status::Ok, p.ok_len)
                };
                self.complete(p.queue, p.head, p.status, status, len);
            }
        }
        self.reaped = done;
        self.reaped.clear();
    }

    /// Interrupts the driver for each queue with new used entries, unless
    /// it asked not to be (event index).
    fn signal(&mut self) {
        let mem = self.memory.clone();
        for i in 0..self.queues.len() {
            if !std::mem::take(&mut self.dirty[i]) || self.dead[i] {
                continue;
            }
            match self.queues[i].queue.needs_notification(&*mem) {
                Ok(true) => self.signals.used(self.queues[i].index),
                Ok(false) => {}
                Err(e) => self.queue_broken(i, format_args!("used_event: {e}")),
            }
        }
    }

    /// The ring of queue `i` is unusable: stop serving it and ask the
    /// driver to reset the device (§2.1.2).
    fn queue_broken(&mut self, i: usize, why: std::fmt::Arguments<'_>) {
        self.warnings.warn(format_args!(
            "queue {i} unusable, device needs reset: {why}"
        ));
        self.dead[i] = true;
        if !std::mem::replace(&mut self.reset_requested, true) {
            self.signals.needs_reset();
        }
    }

    /// Waits for every request in flight; their results are dropped (the
    /// driver is resetting the device).
    fn drain(&mut self) {
        let mut rounds = 0usize;
        let limit = 4 * self.setup.engine.in_flight() + 16;
        while self.setup.engine.in_flight() > 0 && rounds < limit {
            self.setup.engine.wait();
            self.setup.engine.reap(&mut self.reaped);
            self.reaped.clear();
            rounds += 1;
        }
        self.pending.clear();
    }
}

/// A used length: `data` bytes written into the guest plus the status
/// byte (the chain's total is below 2^32, checked by the chain walk).
fn used_len(data: u64) -> u32 {
    u32::try_from(data.saturating_add(1)).unwrap_or(u32::MAX)
}
