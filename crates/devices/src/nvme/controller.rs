//! The controller core: register and doorbell handling, queue processing,
//! completion posting and interrupts, as plain methods without threads.
//!
//! [`super::Nvme`] wraps one `Controller` in a mutex shared between the
//! vCPU threads (register accesses) and the worker thread (I/O queues and
//! backend completions); unit tests call the methods directly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{Completion, Op, Request};
use counters::{BlockOp, FunctionCounters};
use dma::Dma;
use irq::IrqLine;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::routing::{MsiRouting, Signal};
use pci::config::command;

use super::coalesce::{vector_due, Due};
use super::command::{Sqe, SQE_SIZE};
use super::namespace::Namespace;
use super::prp;
use super::queue::{
    validate_cq_head, validate_sq_tail, CompletionQueue, Doorbell, DoorbellError, PendingCqe,
    SubmissionQueue,
};
use super::regs::{cc, csts, RegWrite, Registers};
use super::state::{
    AsyncEvent, AsyncEvents, ControllerState, ErrorEntry, Features, Phase, Shadow,
    ERROR_LOG_ENTRIES,
};
use super::status::Status;
use super::{admin, io};

/// Memory page size (CC.MPS = 0 is the only one supported).
pub const PAGE_SIZE: u64 = 4096;
/// Outstanding Asynchronous Event Requests allowed (AERL + 1).
pub const AER_LIMIT: usize = 4;
/// Events kept while no request is outstanding.
const EVENT_QUEUE_LIMIT: usize = 16;
/// Commands waiting for the backend, over all queues: bounds the host
/// memory a guest can pin with deep queues.
pub const MAX_IN_FLIGHT: usize = 4096;
/// Warnings a controller logs per minute for guest-caused trouble before
/// the rest go to debug level (a guest must not be able to flood the
/// host's log).
const WARN_BUDGET: u32 = 16;

/// Fixed properties of a controller.
#[derive(Clone, Debug)]
pub struct Limits {
    /// I/O queue pairs supported.
    pub max_io_queues: u16,
    /// Largest queue, in entries.
    pub max_queue_entries: u32,
    /// MDTS in bytes.
    pub max_transfer: u64,
    /// MSI-X vectors.
    pub vectors: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// MDTS as a power of two of pages (Identify).
    pub mdts: u8,
    /// PCI vendor and subsystem vendor IDs.
    pub vendor: (u16, u16),
    /// NSID of the first namespace (the others follow).
    pub first_nsid: u32,
    /// NN: the largest NSID of the subsystem.
    pub max_nsid: u32,
    /// SUBNQN, CNTLID, CMIC.
    pub subsystem: super::SubsystemConfig,
    /// The kind of PCI function.
    pub role: super::PciRole,
    /// The function's I/O counters.
    pub counters: Arc<FunctionCounters>,
}

/// What originated a backend request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A guest command.
    Guest {
        /// Submission queue.
        sqid: u16,
        /// Command identifier.
        cid: u16,
    },
    /// The flush that completes a shutdown.
    Shutdown,
}

/// Counters a command adds to SMART when it succeeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoKind {
    /// A read of this many bytes.
    Read(u64),
    /// A write of this many bytes.
    Write(u64),
    /// A flush.
    Flush,
    /// A deallocation or Write Zeroes.
    Discard,
    /// Anything else.
    #[default]
    Other,
}

/// A command waiting for backend requests.
#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    /// Who to answer.
    pub origin: Origin,
    /// Backend requests not yet completed.
    pub remaining: u32,
    /// Status so far (the first failure wins).
    pub status: Status,
    /// For SMART.
    pub kind: IoKind,
    /// Namespace (for the error log).
    pub nsid: u32,
}

/// The result of executing an admin or I/O command right away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Post a completion now.
    Done {
        /// Status.
        status: Status,
        /// Command specific DW0.
        dw0: u32,
    },
    /// The completion comes later (backend I/O, AER, queue deletion).
    Later,
}

impl Outcome {
    /// Successful, with `dw0`.
    pub fn ok(dw0: u32) -> Self {
        Self::Done {
            status: Status::SUCCESS,
            dw0,
        }
    }

    /// Failed with `status`.
    pub fn err(status: Status) -> Self {
        Self::Done { status, dw0: 0 }
    }
}

impl From<Result<u32, Status>> for Outcome {
    fn from(r: Result<u32, Status>) -> Self {
        match r {
            Ok(dw0) => Self::ok(dw0),
            Err(s) => Self::err(s),
        }
    }
}

/// What a doorbell write asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Nothing more.
    None,
    /// Admin queue work: process it now.
    Admin,
    /// I/O queue work: wake the worker (or process now without one).
    Io,
}

/// One NVMe controller.
#[derive(Debug)]
pub struct Controller {
    /// Guest-visible state.
    pub st: ControllerState,
    /// Fixed properties.
    pub limits: Limits,
    pub(super) dma: Arc<dyn Dma>,
    pub(super) namespaces: Vec<Namespace>,
    pub(super) pci: EndpointConfig,
    pub(super) routing: MsiRouting,
    intx: Arc<dyn IrqLine>,
    intx_level: bool,
    inflight: Vec<Option<InFlight>>,
    free_tags: Vec<usize>,
    inflight_count: usize,
    /// An SQ's EventIdx was left a lap behind in this pass (see
    /// [`Controller::process_submissions`]).
    sq_quiet: bool,
    shutdown_flushed: bool,
    pending_vectors: BTreeSet<u16>,
    /// How long a message may wait for a host still consuming the last
    /// one's entries (`coalesce.rs`); `None` sends at once. Only a worker,
    /// which wakes at [`Controller::next_deadline`], sets it.
    deferral: Option<Duration>,
    /// Vectors held back, with the time they must go out by.
    deferred: BTreeMap<u16, Instant>,
    msi_masked_pending: u32,
    doorbell_mode: Option<bool>,
    reaped: Vec<Completion>,
    warnings: ratelimit::LogLimit,
    /// The registers as built, for a Function Level Reset.
    regs_at_reset: Registers,
}

fn get<T>(v: &[Option<T>], qid: u16) -> Option<&T> {
    v.get(usize::from(qid)).and_then(Option::as_ref)
}

fn get_mut<T>(v: &mut [Option<T>], qid: u16) -> Option<&mut T> {
    v.get_mut(usize::from(qid)).and_then(Option::as_mut)
}

impl Controller {
    /// A controller at reset.
    pub(super) fn new(
        limits: Limits,
        regs: Registers,
        dma: Arc<dyn Dma>,
        namespaces: Vec<Namespace>,
        pci: EndpointConfig,
        routing: MsiRouting,
        intx: Arc<dyn IrqLine>,
    ) -> Self {
        let queues = usize::from(limits.max_io_queues) + 1;
        let regs_at_reset = regs.clone();
        let st = ControllerState {
            regs,
            phase: Phase::Disabled,
            sqs: vec![None; queues],
            cqs: vec![None; queues],
            features: Features::new(limits.vectors),
            events: AsyncEvents::default(),
            errors: VecDeque::new(),
            smart: Default::default(),
            shadow: None,
        };
        Self {
            st,
            limits,
            dma,
            namespaces,
            pci,
            routing,
            intx,
            intx_level: false,
            inflight: Vec::new(),
            free_tags: Vec::new(),
            inflight_count: 0,
            sq_quiet: false,
            shutdown_flushed: false,
            pending_vectors: BTreeSet::new(),
            deferral: None,
            deferred: BTreeMap::new(),
            msi_masked_pending: 0,
            doorbell_mode: None,
            reaped: Vec::new(),
            warnings: ratelimit::LogLimit::new(WARN_BUDGET, ratelimit::WINDOW),
            regs_at_reset,
        }
    }

    /// The guest memory handle.
    pub fn dma(&self) -> &Arc<dyn Dma> {
        &self.dma
    }

    /// Namespace `nsid`, if it is one of this controller's.
    pub(super) fn namespace(&self, nsid: u32) -> Option<&Namespace> {
        self.namespace_index(nsid).map(|i| &self.namespaces[i])
    }

    /// Index in `namespaces` of namespace `nsid`, if it is one of this
    /// controller's (they have consecutive NSIDs from
    /// [`Limits::first_nsid`]).
    pub(super) fn namespace_index(&self, nsid: u32) -> Option<usize> {
        let i = usize::try_from(nsid.checked_sub(self.limits.first_nsid)?).ok()?;
        (i < self.namespaces.len()).then_some(i)
    }

    /// Backend requests (guest commands and shutdown flushes) outstanding.
    pub fn in_flight(&self) -> usize {
        self.inflight_count
    }

    /// Takes the last change of the shadow doorbell mode: `Some(true)` when
    /// the guest configured shadow doorbells (SQ doorbell writes may now go
    /// to ioeventfds), `Some(false)` when a reset turned them off.
    pub fn take_doorbell_mode_change(&mut self) -> Option<bool> {
        self.doorbell_mode.take()
    }

    // ---- registers -------------------------------------------------------

    /// A guest write to the register block.
    pub fn write_register(&mut self, offset: usize, data: &[u8]) {
        let RegWrite { cc, unmasked } = self.st.regs.write(offset, data);
        if let Some((old, new)) = cc {
            self.on_cc(old, new);
        }
        if unmasked != 0 {
            self.on_unmask(unmasked);
        }
        self.update_intx();
    }

    fn on_cc(&mut self, old: u32, new: u32) {
        let was = old & cc::EN != 0;
        let now = new & cc::EN != 0;
        match (was, now) {
            (false, true) => self.enable(new),
            (true, false) => self.reset(),
            (true, true) => {
                let shn = (new >> cc::SHN_SHIFT) & 0b11;
                let old_shn = (old >> cc::SHN_SHIFT) & 0b11;
                if shn != 0 && old_shn == 0 {
                    self.begin_shutdown();
                }
            }
            (false, false) => {}
        }
    }

    fn enable(&mut self, cc_value: u32) {
        if self.st.phase != Phase::Disabled {
            tracing::debug!("NVMe: CC.EN set while {:?}; ignored", self.st.phase);
            return;
        }
        let field = |shift: u32, mask: u32| (cc_value >> shift) & mask;
        let (sq_entries, cq_entries) = self.st.regs.admin_queue_sizes();
        let valid = field(cc::CSS_SHIFT, 7) == 0
            && field(cc::MPS_SHIFT, 0xf) == 0
            && field(cc::AMS_SHIFT, 7) == 0
            && sq_entries >= 2
            && cq_entries >= 2;
        if !valid {
            tracing::debug!("NVMe: enable with invalid CC {cc_value:#x} or AQA");
            self.st.regs.set_csts(csts::CFS);
            self.st.phase = Phase::Fatal;
            return;
        }
        let mut cq = CompletionQueue::new(self.st.regs.acq(), cq_entries, true, 0);
        cq.sq_refs = 1;
        self.st.cqs[0] = Some(cq);
        self.st.sqs[0] = Some(SubmissionQueue::new(self.st.regs.asq(), sq_entries, 0));
        self.st.regs.set_csts(csts::RDY);
        self.st.phase = Phase::Ready;
    }

    /// Controller reset (CC.EN 1→0): every queue and pending event goes;
    /// CSTS.RDY clears once no backend request can still touch guest memory.
    fn reset(&mut self) {
        for q in &mut self.st.sqs {
            *q = None;
        }
        for q in &mut self.st.cqs {
            *q = None;
        }
        self.st.features = Features::new(self.limits.vectors);
        self.st.events = AsyncEvents::default();
        if self.st.shadow.take().is_some() {
            self.doorbell_mode = Some(false);
        }
        self.pending_vectors.clear();
        self.deferred.clear();
        self.msi_masked_pending = 0;
        self.st.regs.reset();
        if self.inflight_count > 0 {
            self.st.regs.set_csts(csts::RDY);
            self.st.phase = Phase::Resetting;
        } else {
            self.st.phase = Phase::Disabled;
        }
    }

    /// Function Level Reset (PCIe 6.0 §6.6.2), after the PCI side put its
    /// configuration space back: every queue goes as in a controller reset,
    /// and the registers (CC, AQA, ASQ, ACQ included) return to their
    /// values as built. I/O already handed to the backend completes into
    /// nothing: CSTS.RDY stays set until it has, as after a controller
    /// reset, so the driver's wait for RDY = 0 covers it.
    pub(super) fn function_level_reset(&mut self) {
        let in_flight = self.inflight_count > 0;
        self.reset();
        self.st.regs = self.regs_at_reset.clone();
        if in_flight {
            self.st.regs.set_csts(csts::RDY);
        }
    }

    fn begin_shutdown(&mut self) {
        if self.st.phase != Phase::Ready {
            return;
        }
        let v = (self.st.regs.csts() & !csts::SHST_MASK) | csts::SHST_OCCURRING;
        self.st.regs.set_csts(v);
        self.st.phase = Phase::ShuttingDown;
        self.shutdown_flushed = false;
        self.try_finish_shutdown();
    }

    fn try_finish_shutdown(&mut self) {
        if self.st.phase != Phase::ShuttingDown || self.inflight_count > 0 {
            return;
        }
        if !self.shutdown_flushed {
            // Guest I/O is drained: make it durable, then report complete.
            self.shutdown_flushed = true;
            for i in 0..self.namespaces.len() {
                let tag = self.alloc_tag(InFlight {
                    origin: Origin::Shutdown,
                    remaining: 1,
                    status: Status::SUCCESS,
                    kind: IoKind::Other,
                    nsid: 0,
                });
                self.namespaces[i]
                    .engine
                    .push(Request { tag, op: Op::Flush });
                self.namespaces[i].engine.submit();
            }
            if self.inflight_count > 0 {
                return;
            }
        }
        let v = (self.st.regs.csts() & !csts::SHST_MASK) | csts::SHST_COMPLETE;
        self.st.regs.set_csts(v);
        self.st.phase = Phase::ShutDown;
    }

    /// A warning about something the guest caused, rate limited.
    fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        ratelimit::warn_with!(self.warnings, "NVMe: {msg}");
    }

    fn fatal(&mut self, why: &str) {
        self.warn(format_args!("controller fatal status: {why}"));
        let v = self.st.regs.csts() | csts::CFS;
        self.st.regs.set_csts(v);
        self.st.phase = Phase::Fatal;
    }

    // ---- doorbells -------------------------------------------------------

    /// A guest write to the doorbell area (`offset` from BAR0 + 0x1000).
    pub fn write_doorbell(&mut self, offset: u64, data: &[u8]) -> Kick {
        if self.st.phase != Phase::Ready {
            return Kick::None;
        }
        let (Some(db), Ok(bytes)) = (Doorbell::decode(offset), <[u8; 4]>::try_from(data)) else {
            tracing::debug!(
                "NVMe: {}-byte doorbell access at {offset:#x} ignored",
                data.len()
            );
            return Kick::None;
        };
        let value = u32::from_le_bytes(bytes);
        match self.doorbell(db, value) {
            Ok(kick) => kick,
            Err(e) => {
                tracing::debug!("NVMe: invalid doorbell write {db:?} = {value}: {e:?}");
                self.queue_event(AsyncEvent {
                    kind: 0,
                    info: e.event_info(),
                    log_page: 0x01,
                });
                self.flush_interrupts();
                Kick::None
            }
        }
    }

    fn doorbell(&mut self, db: Doorbell, value: u32) -> Result<Kick, DoorbellError> {
        match db {
            Doorbell::SqTail(qid) => {
                let sq = get_mut(&mut self.st.sqs, qid).ok_or(DoorbellError::InvalidRegister)?;
                validate_sq_tail(sq.size, value)?;
                sq.tail = value;
                Ok(if qid == 0 { Kick::Admin } else { Kick::Io })
            }
            Doorbell::CqHead(qid) => {
                let cq = get_mut(&mut self.st.cqs, qid).ok_or(DoorbellError::InvalidRegister)?;
                validate_cq_head(cq.size, cq.head, cq.tail, value)?;
                cq.head = value;
                let had_backlog = !cq.backlog.is_empty();
                self.drain_backlog(qid);
                self.update_intx();
                Ok(match (had_backlog, qid) {
                    (false, _) => Kick::None,
                    (true, 0) => Kick::Admin,
                    (true, _) => Kick::Io,
                })
            }
        }
    }

    // ---- shadow doorbells ------------------------------------------------

    /// Configures shadow doorbell and EventIdx buffers (both page aligned).
    pub(super) fn set_shadow(&mut self, shadow: Shadow) {
        self.st.shadow = Some(shadow);
        self.doorbell_mode = Some(true);
        // The shadow buffers now hold the host's view of every I/O queue.
        let qids: Vec<u16> = (1..self.st.sqs.len() as u16).collect();
        for qid in qids {
            if let Some(sq) = get(&self.st.sqs, qid) {
                let tail = sq.tail;
                self.write_event_idx(Doorbell::SqTail(qid), tail);
            }
        }
    }

    fn read_shadow(&self, db: Doorbell) -> Option<u32> {
        let s = self.st.shadow?;
        let mut b = [0u8; 4];
        self.dma
            .read(s.doorbells.wrapping_add(db.offset()), &mut b)
            .ok()?;
        Some(u32::from_le_bytes(b))
    }

    fn write_event_idx(&self, db: Doorbell, value: u32) {
        if let Some(s) = self.st.shadow {
            let addr = s.event_idx.wrapping_add(db.offset());
            if self.dma.write(addr, &value.to_le_bytes()).is_err() {
                tracing::debug!("NVMe: EventIdx buffer outside guest memory");
            }
        }
    }

    /// Refreshes SQ `qid`'s tail from the shadow doorbell (I/O queues only).
    fn refresh_sq_tail(&mut self, qid: u16) -> Result<(), DoorbellError> {
        if qid == 0 {
            return Ok(());
        }
        let Some(value) = self.read_shadow(Doorbell::SqTail(qid)) else {
            return Ok(());
        };
        fence(Ordering::Acquire);
        let Some(sq) = get_mut(&mut self.st.sqs, qid) else {
            return Ok(());
        };
        validate_sq_tail(sq.size, value)?;
        sq.tail = value;
        Ok(())
    }

    /// Refreshes CQ `qid`'s head from the shadow doorbell and sets its
    /// EventIdx (NVMe 1.4 §5.8, Doorbell Buffer Config).
    ///
    /// The host rings the MMIO doorbell only when its new head passes the
    /// EventIdx. We read the shadow head whenever we post, so with MSI or
    /// MSI-X and room left in the queue the EventIdx stays one lap behind
    /// the head and the host never needs to ring. When the queue is full
    /// (completions wait), or with INTx (whose level follows the head), it
    /// sits at the head, so the host rings on its next update; then the
    /// shadow is read again after the EventIdx is published, so a head the
    /// host wrote meanwhile (and did not ring for) is not missed.
    fn refresh_cq_head(&mut self, qid: u16) {
        if qid == 0 {
            return;
        }
        let lap_behind = MsiRouting::enabled(&self.pci);
        for _ in 0..4 {
            let Some(value) = self.read_shadow(Doorbell::CqHead(qid)) else {
                return;
            };
            let Some(cq) = get_mut(&mut self.st.cqs, qid) else {
                return;
            };
            if validate_cq_head(cq.size, cq.head, cq.tail, value).is_ok() {
                cq.head = value;
            }
            let ring_next = !lap_behind || cq.is_full();
            let head = cq.head;
            // The host compares EventIdx values as 16-bit counters.
            let event_idx = if ring_next {
                head
            } else {
                head.wrapping_sub(1) & 0xffff
            };
            self.write_event_idx(Doorbell::CqHead(qid), event_idx);
            if !ring_next {
                return;
            }
            fence(Ordering::SeqCst);
            if self.read_shadow(Doorbell::CqHead(qid)) == Some(head) {
                return;
            }
        }
    }

    // ---- submission processing ---------------------------------------------

    /// Fetches and executes the commands waiting in SQ `qid`. Nothing is
    /// fetched while Bus Master Enable is clear: the function cannot read
    /// guest memory then (PCI 3.0 §6.2.2).
    ///
    /// Returns whether work may remain that no event will announce: a
    /// shadow tail that kept moving while we ran, or a queue left
    /// unfinished for fairness. The caller runs another pass then.
    ///
    /// With shadow doorbells, while backend requests are in flight the SQ
    /// EventIdx is left a lap behind the tail, so the host writes its
    /// shadow tail without ringing: the requests' completions wake the
    /// worker, whose next pass reads every shadow tail anyway. Only with
    /// nothing in flight is the EventIdx set to the tail (the host rings
    /// for its next command) and the shadow read once more after it.
    pub fn process_submissions(&mut self, qid: u16) -> bool {
        if self.pci.config().command() & command::BUS_MASTER == 0 {
            return false;
        }
        for _round in 0..16 {
            if let Err(e) = self.refresh_sq_tail(qid) {
                self.queue_event(AsyncEvent {
                    kind: 0,
                    info: e.event_info(),
                    log_page: 0x01,
                });
                return false;
            }
            let Some(size) = get(&self.st.sqs, qid).map(|sq| sq.size) else {
                return false;
            };
            for _ in 0..size {
                if !self.fetch_one(qid) {
                    break;
                }
            }
            let Some(tail) = get(&self.st.sqs, qid).map(|sq| sq.tail) else {
                return false;
            };
            if qid == 0 || self.st.shadow.is_none() {
                return self.can_fetch(qid);
            }
            if self.inflight_count > 0 {
                // The host compares EventIdx values as 16-bit counters.
                self.write_event_idx(Doorbell::SqTail(qid), tail.wrapping_sub(1) & 0xffff);
                self.sq_quiet = true;
                return self.can_fetch(qid);
            }
            // Shadow protocol: publish how far we got (the host rings the
            // MMIO doorbell only for a tail past it), then look again for
            // a tail it wrote meanwhile without ringing.
            self.write_event_idx(Doorbell::SqTail(qid), tail);
            fence(Ordering::SeqCst);
            if self.read_shadow(Doorbell::SqTail(qid)) == Some(tail) {
                return self.can_fetch(qid);
            }
        }
        true
    }

    /// Whether SQ `qid` has a command that could be fetched now.
    fn can_fetch(&self, qid: u16) -> bool {
        if self.st.phase != Phase::Ready {
            return false;
        }
        let Some(sq) = get(&self.st.sqs, qid) else {
            return false;
        };
        // I/O queues keep at most size - 1 commands in flight, so completions
        // always fit their CQ eventually; admin commands run at once (AERs are
        // bounded by AER_LIMIT).
        let full =
            qid != 0 && (sq.in_flight + 1 >= sq.size || self.inflight_count >= MAX_IN_FLIGHT);
        let cq_busy = get(&self.st.cqs, sq.cqid).is_none_or(|cq| !cq.backlog.is_empty());
        !(sq.is_empty() || sq.deleting.is_some() || full || cq_busy)
    }

    /// Fetches and runs one command; `false` when nothing (more) can run.
    fn fetch_one(&mut self, qid: u16) -> bool {
        if !self.can_fetch(qid) {
            return false;
        }
        let Some(addr) = get(&self.st.sqs, qid).map(SubmissionQueue::head_addr) else {
            return false;
        };
        let mut bytes = [0u8; SQE_SIZE];
        if self.dma.read(addr, &mut bytes).is_err() {
            self.fatal("submission queue entry outside guest memory");
            return false;
        }
        if let Some(sq) = get_mut(&mut self.st.sqs, qid) {
            sq.advance_head();
            sq.in_flight += 1;
        }
        let sqe = Sqe::from_bytes(&bytes);
        let outcome = if qid == 0 {
            admin::execute(self, &sqe)
        } else {
            io::submit(self, qid, &sqe)
        };
        if let Outcome::Done { status, dw0 } = outcome {
            self.complete(qid, sqe.cid(), status, dw0, sqe.nsid);
        }
        true
    }

    /// Processes every queue, collects backend completions and sends the
    /// interrupts due: one pass of the worker. Returns whether another pass
    /// should follow at once (see [`Controller::process_submissions`]).
    pub fn run_pass(&mut self) -> bool {
        // Completion queues waiting for room: the host may have moved a
        // head through its shadow doorbell without ringing.
        for cqid in 0..self.st.cqs.len() as u16 {
            if get(&self.st.cqs, cqid).is_some_and(|cq| !cq.backlog.is_empty()) {
                self.drain_backlog(cqid);
            }
        }
        let mut more = false;
        for _ in 0..4 {
            let qids: Vec<u16> = (0..self.st.sqs.len() as u16)
                .filter(|&q| get(&self.st.sqs, q).is_some())
                .collect();
            more = false;
            self.sq_quiet = false;
            for qid in qids {
                more |= self.process_submissions(qid);
            }
            self.submit_backends();
            if self.reap_completions() == 0 && !more {
                break;
            }
        }
        self.send_interrupts(self.deferral.is_some());
        // An EventIdx left behind with nothing in flight any more: no
        // completion will wake the worker, so the next pass re-arms it.
        more || (self.sq_quiet && self.inflight_count == 0)
    }

    /// Hands queued backend requests to the kernel.
    pub fn submit_backends(&mut self) {
        for ns in &mut self.namespaces {
            ns.engine.submit();
        }
    }

    // ---- backend requests --------------------------------------------------

    /// Registers a command waiting for backend requests; returns its tag.
    pub(super) fn alloc_tag(&mut self, f: InFlight) -> u64 {
        self.inflight_count += 1;
        match self.free_tags.pop() {
            Some(i) => {
                self.inflight[i] = Some(f);
                i as u64
            }
            None => {
                self.inflight.push(Some(f));
                (self.inflight.len() - 1) as u64
            }
        }
    }

    /// Collects backend completions and posts the commands they finish;
    /// returns how many completions came in.
    pub fn reap_completions(&mut self) -> usize {
        let mut done = std::mem::take(&mut self.reaped);
        for ns in &mut self.namespaces {
            ns.engine.reap(&mut done);
        }
        let n = done.len();
        for c in done.drain(..) {
            self.finish(c);
        }
        self.reaped = done;
        n
    }

    /// Blocks until every backend request has completed, posting them
    /// (for tests and shutdown without a worker).
    pub fn wait_idle(&mut self) {
        for _ in 0..1_000_000 {
            self.submit_backends();
            self.reap_completions();
            self.flush_interrupts();
            if self.inflight_count == 0 {
                return;
            }
            for ns in &mut self.namespaces {
                if ns.engine.in_flight() > 0 {
                    ns.engine.wait();
                }
            }
        }
    }

    fn finish(&mut self, c: Completion) {
        let Ok(idx) = usize::try_from(c.tag) else {
            return;
        };
        let Some(mut f) = self.inflight.get(idx).copied().flatten() else {
            return;
        };
        if let Err(errno) = c.result {
            if f.status.is_success() {
                let origin = f.origin;
                self.warn(format_args!("backend error {errno} for {origin:?}"));
                f.status = match f.kind {
                    IoKind::Read(_) => Status::UNRECOVERED_READ_ERROR,
                    IoKind::Write(_) => Status::WRITE_FAULT,
                    IoKind::Flush | IoKind::Discard | IoKind::Other => Status::INTERNAL_ERROR,
                };
            }
        }
        f.remaining = f.remaining.saturating_sub(1);
        if f.remaining > 0 {
            self.inflight[idx] = Some(f);
            return;
        }
        self.inflight[idx] = None;
        self.free_tags.push(idx);
        self.inflight_count -= 1;
        match f.origin {
            Origin::Shutdown => {}
            Origin::Guest { sqid, cid } => {
                if self.st.phase == Phase::Resetting {
                    // The queues are gone: the completion is dropped.
                } else {
                    self.count(f.kind, f.status);
                    let smart = &mut self.st.smart;
                    match (f.kind, f.status.is_success()) {
                        (IoKind::Read(b), true) => {
                            smart.units_read += b.div_ceil(512);
                            smart.host_reads += 1;
                        }
                        (IoKind::Write(b), true) => {
                            smart.units_written += b.div_ceil(512);
                            smart.host_writes += 1;
                        }
                        (IoKind::Read(_) | IoKind::Write(_), false) => smart.media_errors += 1,
                        _ => {}
                    }
                    self.complete(sqid, cid, f.status, 0, f.nsid);
                }
            }
        }
        if self.st.phase == Phase::Resetting && self.inflight_count == 0 {
            self.st.regs.set_csts(0);
            self.st.phase = Phase::Disabled;
            // A guest that set CC.EN again without waiting for RDY = 0
            // gets its enable now.
            let cc_now = self.st.regs.cc();
            if cc_now & cc::EN != 0 {
                self.enable(cc_now);
            }
        }
        self.try_finish_shutdown();
    }

    /// Counts a finished guest command of `kind` in the function's
    /// block counters.
    fn count(&self, kind: IoKind, status: Status) {
        let block = &self.limits.counters.block;
        if !status.is_success() {
            if kind != IoKind::Other {
                block.errors_io.inc();
            }
            return;
        }
        let op = match kind {
            IoKind::Read(b) => BlockOp::Read(b),
            IoKind::Write(b) => BlockOp::Write(b),
            IoKind::Flush => BlockOp::Flush,
            IoKind::Discard => BlockOp::Discard,
            IoKind::Other => return,
        };
        block.completed(op);
    }

    // ---- completions -------------------------------------------------------

    /// Completes command `cid` of SQ `sqid`: posts the entry (or queues it
    /// while the CQ is full), logs errors, finishes a pending SQ deletion.
    pub(super) fn complete(&mut self, sqid: u16, cid: u16, status: Status, dw0: u32, nsid: u32) {
        if !status.is_success() {
            self.log_error(sqid, cid, status, nsid);
        }
        let Some(sq) = get_mut(&mut self.st.sqs, sqid) else {
            return;
        };
        sq.in_flight = sq.in_flight.saturating_sub(1);
        let cqid = sq.cqid;
        let deleting = sq.deleting.filter(|_| sq.in_flight == 0);
        self.post(
            cqid,
            PendingCqe {
                dw0,
                sqid,
                cid,
                status: status.field(),
            },
        );
        if let Some(delete_cid) = deleting {
            admin::finish_sq_deletion(self, sqid, delete_cid);
        }
    }

    /// Posts `e` to CQ `cqid`, or queues it behind earlier ones.
    pub(super) fn post(&mut self, cqid: u16, e: PendingCqe) {
        self.refresh_cq_head(cqid);
        let Some(cq) = get_mut(&mut self.st.cqs, cqid) else {
            return;
        };
        cq.backlog.push_back(e);
        self.drain_backlog(cqid);
    }

    fn drain_backlog(&mut self, cqid: u16) {
        loop {
            let Some(cq) = get_mut(&mut self.st.cqs, cqid) else {
                return;
            };
            if cq.is_full() {
                self.refresh_cq_head(cqid);
            }
            let Some(cq) = get_mut(&mut self.st.cqs, cqid) else {
                return;
            };
            if cq.is_full() {
                return;
            }
            let Some(e) = cq.backlog.pop_front() else {
                return;
            };
            let sqhd = get(&self.st.sqs, e.sqid).map_or(0, |sq| sq.head);
            let Some(cq) = get_mut(&mut self.st.cqs, cqid) else {
                return;
            };
            let (addr, bytes) = cq.encode(&e, sqhd);
            let (ien, vector) = (cq.ien, cq.vector);
            // The phase tag (DW3) must not become visible before DW0–DW2.
            let ok = self.dma.write(addr, &bytes[..12]).is_ok() && {
                fence(Ordering::Release);
                self.dma.write(addr.wrapping_add(12), &bytes[12..]).is_ok()
            };
            if !ok {
                self.fatal("completion queue outside guest memory");
                return;
            }
            if let Some(cq) = get_mut(&mut self.st.cqs, cqid) {
                cq.advance_tail();
            }
            if ien {
                self.pending_vectors.insert(vector);
            }
        }
    }

    fn log_error(&mut self, sqid: u16, cid: u16, status: Status, nsid: u32) {
        self.st.smart.error_entries += 1;
        self.st.errors.push_front(ErrorEntry {
            count: self.st.smart.error_entries,
            sqid,
            cid,
            status: status.field(),
            nsid,
        });
        self.st.errors.truncate(ERROR_LOG_ENTRIES);
    }

    // ---- asynchronous events ---------------------------------------------

    /// Reports `ev` through an outstanding Asynchronous Event Request, or
    /// keeps it until one arrives. Events of a type already reported and
    /// not yet cleared (by reading its log page) are dropped; SMART and
    /// notice events obey Asynchronous Event Configuration.
    pub(super) fn queue_event(&mut self, ev: AsyncEvent) {
        let bit = 1u8 << (ev.kind & 7);
        if self.st.events.masked & bit != 0
            || self.st.events.queued.iter().any(|q| q.kind == ev.kind)
            || self.st.events.queued.len() >= EVENT_QUEUE_LIMIT
        {
            return;
        }
        self.st.events.queued.push_back(ev);
        self.deliver_events();
    }

    /// Pairs queued events with outstanding requests.
    pub(super) fn deliver_events(&mut self) {
        while !self.st.events.queued.is_empty() && !self.st.events.outstanding.is_empty() {
            let (Some(ev), Some(cid)) = (
                self.st.events.queued.pop_front(),
                self.st.events.outstanding.pop_front(),
            ) else {
                return;
            };
            self.st.events.masked |= 1 << (ev.kind & 7);
            self.complete(0, cid, Status::SUCCESS, ev.dw0(), 0);
        }
    }

    // ---- interrupts --------------------------------------------------------

    /// Sends the interrupts of every CQ that received entries.
    pub fn flush_interrupts(&mut self) {
        self.send_interrupts(false);
    }

    /// Lets messages wait up to `deferral` for a host still consuming the
    /// previous one's entries (`coalesce.rs`), or, with `None`, sends
    /// every message due (held ones included) at the next flush. The
    /// caller must run a pass by [`Controller::next_deadline`].
    pub fn set_interrupt_deferral(&mut self, deferral: Option<Duration>) {
        self.deferral = deferral;
    }

    /// When the earliest held-back message must go out: the worker runs a
    /// pass then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deferred.values().min().copied()
    }

    /// Sends the messages due: those of queues that received entries and
    /// those held back earlier. With `defer`, a vector whose hosts are all
    /// still behind waits until its deadline (`coalesce.rs`).
    fn send_interrupts(&mut self, defer: bool) {
        let mut vectors = std::mem::take(&mut self.pending_vectors);
        vectors.extend(self.deferred.keys().copied());
        let now = Instant::now();
        for v in vectors {
            let due = self.vector_due(v);
            match (due, self.deferral) {
                (Due::Nothing, _) => {
                    self.deferred.remove(&v);
                }
                (Due::Later, Some(wait)) if defer => {
                    let by = *self.deferred.entry(v).or_insert(now + wait);
                    if by <= now {
                        self.deferred.remove(&v);
                        self.send_vector(v);
                    }
                }
                _ => {
                    self.deferred.remove(&v);
                    self.send_vector(v);
                }
            }
        }
        self.update_intx();
    }

    /// What vector `v`'s queues ask for, with their heads read afresh.
    fn vector_due(&mut self, v: u16) -> Due {
        let on_v = |cq: &CompletionQueue| cq.ien && cq.vector == v;
        for q in 0..self.st.cqs.len() as u16 {
            if get(&self.st.cqs, q).is_some_and(on_v) {
                self.refresh_cq_head(q);
            }
        }
        let coalesce = MsiRouting::enabled(&self.pci)
            && self
                .st
                .features
                .coalescing_disabled
                .get(usize::from(v))
                .is_some_and(|disabled| !disabled);
        let cqs = (0u16..)
            .zip(&self.st.cqs)
            .filter_map(|(q, cq)| cq.as_ref().filter(|cq| on_v(cq)).map(|cq| (q, cq)));
        vector_due(cqs, coalesce)
    }

    /// Sends vector `v`, announcing what its queues hold.
    fn send_vector(&mut self, v: u16) {
        for cq in self.st.cqs.iter_mut().flatten() {
            if cq.ien && cq.vector == v {
                cq.posted_since_message = 0;
            }
        }
        self.raise(v);
    }

    fn msi_only(&self) -> bool {
        let caps = self.pci.caps();
        let msix = caps.msix_table().is_some_and(|t| t.control().enabled);
        let msi = caps
            .msi()
            .is_some_and(|m| m.state(self.pci.config().regs()).enabled);
        msi && !msix
    }

    fn raise(&mut self, vector: u16) {
        // INTMS masks MSI vectors (not MSI-X, NVMe 1.4 §3.1.3).
        if self.msi_only() && vector < 32 && self.st.regs.ivms() & (1 << vector) != 0 {
            self.msi_masked_pending |= 1 << vector;
            return;
        }
        match self.routing.signal(&mut self.pci, vector) {
            Signal::Sent | Signal::Pending | Signal::UseIntx => {}
            Signal::NoBusMaster => tracing::debug!("NVMe: vector {vector} lost: bus master off"),
            Signal::NoSuchVector => tracing::debug!("NVMe: vector {vector} not enabled"),
        }
    }

    fn on_unmask(&mut self, unmasked: u32) {
        let due = self.msi_masked_pending & unmasked;
        self.msi_masked_pending &= !unmasked;
        for v in 0..32u16 {
            if due & (1 << v) != 0 {
                self.raise(v);
            }
        }
    }

    /// Drives INTx: asserted while MSI and MSI-X are off, some CQ with
    /// interrupts enabled holds entries the host has not consumed, and
    /// INTMS bit 0 is clear (NVMe 1.4 §7.5.1); gated by the command
    /// register's INTx Disable, reflected in the status register.
    pub fn update_intx(&mut self) {
        let msi_on = MsiRouting::enabled(&self.pci);
        let pending = !msi_on
            && self.st.regs.ivms() & 1 == 0
            && self
                .st
                .cqs
                .iter()
                .flatten()
                .any(|cq| cq.ien && cq.has_unconsumed());
        self.pci.config_mut().set_interrupt_status(pending);
        let level = pending && self.pci.config().command() & command::INTX_DISABLE == 0;
        if level != self.intx_level {
            self.intx_level = level;
            if let Err(e) = self.intx.set_level(level) {
                tracing::warn!("NVMe: INTx not delivered: {e}");
            }
        }
    }

    // ---- helpers for command execution ------------------------------------

    /// The guest segments of a `len`-byte transfer described by PRPs.
    pub(super) fn prp_segments(
        &self,
        prp: (u64, u64),
        len: u64,
    ) -> Result<Vec<(u64, u64)>, Status> {
        let dma = &self.dma;
        let mut read_list = |addr: u64, out: &mut [u64]| {
            let mut bytes = vec![0u8; out.len() * 8];
            dma.read(addr, &mut bytes).map_err(|_| ())?;
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut q = [0u8; 8];
                q.copy_from_slice(b);
                *o = u64::from_le_bytes(q);
            }
            Ok(())
        };
        prp::walk(
            prp.0,
            prp.1,
            len,
            PAGE_SIZE,
            self.limits.max_transfer,
            &mut read_list,
        )
        .map_err(Status::from)
    }

    /// Copies `data` to the guest buffer described by `prp`.
    pub(super) fn write_data(&self, prp: (u64, u64), data: &[u8]) -> Result<(), Status> {
        let segs = self.prp_segments(prp, data.len() as u64)?;
        let mut done = 0usize;
        for (addr, len) in segs {
            let len = len as usize;
            self.dma
                .write(addr, &data[done..done + len])
                .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
            done += len;
        }
        Ok(())
    }

    /// Reads `len` bytes from the guest buffer described by `prp`.
    pub(super) fn read_data(&self, prp: (u64, u64), len: usize) -> Result<Vec<u8>, Status> {
        let segs = self.prp_segments(prp, len as u64)?;
        let mut data = vec![0u8; len];
        let mut done = 0usize;
        for (addr, seg) in segs {
            let seg = seg as usize;
            self.dma
                .read(addr, &mut data[done..done + seg])
                .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
            done += seg;
        }
        Ok(data)
    }

    /// Number of interrupt vectors a CQ may use now.
    pub(super) fn usable_vectors(&self) -> u16 {
        let caps = self.pci.caps();
        if let Some(t) = caps.msix_table().filter(|t| t.control().enabled) {
            return t.vectors();
        }
        if let Some(m) = caps.msi() {
            let s = m.state(self.pci.config().regs());
            if s.enabled {
                return u16::from(s.vectors);
            }
        }
        1
    }
}
