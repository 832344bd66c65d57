//! The device's worker: [`Core`] holds the queues and backends of one
//! activation and serves them as events arrive; [`Worker`] runs it on a
//! thread of its own, waiting with epoll on the stop eventfd, the queues'
//! notification eventfds and the backends' fds (a backend's fd only while
//! its receive queue can take frames).

use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use backend::net::{FrameIo, Offloads};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::chain;
use super::ctrl::{self, CtrlState};
use super::rx::RxQueue;
use super::tx::TxQueue;
use super::{
    NetConfig, F_CTRL_VQ, F_GUEST_CSUM, F_GUEST_ECN, F_GUEST_TSO4, F_GUEST_TSO6, F_GUEST_UFO, F_MQ,
};
use crate::device::{ActivateError, Activation, Memory, Signals};
use counters::FunctionCounters;

/// Warnings about the guest's doings logged at `warn` per minute.
const WARN_LIMIT: u32 = 32;

/// Guest-caused warnings: [`WARN_LIMIT`] a minute at `warn`, the rest at
/// `debug`.
#[derive(Debug)]
pub(crate) struct GuestLog(ratelimit::LogLimit);

impl Default for GuestLog {
    fn default() -> Self {
        Self(ratelimit::LogLimit::new(WARN_LIMIT, ratelimit::WINDOW))
    }
}

impl GuestLog {
    /// Logs one guest-caused problem.
    pub fn warn(&mut self, msg: fmt::Arguments<'_>) {
        ratelimit::warn_with!(self.0, "virtio-net: {msg}");
    }
}

/// What every queue needs from the activation.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Guest memory for the rings.
    pub mem: Arc<Memory>,
    /// Guest memory for the buffers.
    pub dma: Arc<dyn dma::Dma>,
    /// Interrupts.
    pub signals: Arc<dyn Signals>,
    /// Negotiated features.
    pub features: u64,
    /// Guest-caused warnings.
    pub log: GuestLog,
    /// The function's counters.
    pub counters: Arc<FunctionCounters>,
}

impl Ctx {
    /// Ends a pass over queue `index`: interrupts the driver if chains
    /// were used and it asked for it; a ring fault marks the queue broken
    /// and asks for a device reset (§2.1.2).
    pub fn finish(
        &mut self,
        queue: &mut Queue,
        index: u16,
        pass: Result<bool, virtio_queue::Error>,
        broken: &mut bool,
    ) {
        let r = pass.and_then(|used| Ok(used && queue.needs_notification(&*self.mem)?));
        match r {
            Ok(true) => self.signals.used(index),
            Ok(false) => {}
            Err(e) => {
                tracing::error!("virtio-net: queue {index} unusable, device needs reset: {e}");
                *broken = true;
                self.signals.needs_reset();
            }
        }
    }
}

/// Serves every chain the driver made available: `f` handles one chain
/// and returns its used length. Notifications are off while the ring is
/// drained and re-enabled with a final check, so a chain made available
/// meanwhile is not missed. Returns whether any chain was used.
pub(crate) fn drain(
    queue: &mut Queue,
    mem: &Memory,
    mut f: impl FnMut(virtio_queue::DescriptorChain<&Memory>) -> u32,
) -> Result<bool, virtio_queue::Error> {
    let mut used = false;
    loop {
        queue.disable_notification(mem)?;
        while let Some(chain) = queue.iter(mem)?.next() {
            let head = chain.head_index();
            let len = f(chain);
            queue.add_used(mem, head, len)?;
            used = true;
        }
        if !queue.enable_notification(mem)? {
            return Ok(used);
        }
    }
}

/// One queue pair.
#[derive(Debug)]
pub(crate) struct Pair {
    /// The backend.
    pub io: Arc<dyn FrameIo>,
    /// Its receive queue, if the driver enabled it.
    pub rx: Option<RxQueue>,
    /// Its transmit queue, if the driver enabled it.
    pub tx: Option<TxQueue>,
}

/// The control queue.
#[derive(Debug)]
pub(crate) struct CtrlQueue {
    queue: Queue,
    index: u16,
    broken: bool,
    buf: Vec<u8>,
}

/// What an event concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The receive queue of a pair (notification or backend readable).
    Rx(usize),
    /// The transmit queue of a pair.
    Tx(usize),
    /// The control queue.
    Ctrl,
}

/// One activation's queues, backends and state.
#[derive(Debug)]
pub(crate) struct Core {
    pub ctx: Ctx,
    pub pairs: Vec<Pair>,
    pub ctrl: Option<CtrlQueue>,
    pub state: CtrlState,
    /// Backends of pairs the driver cannot use (kept disabled).
    spare: Vec<Arc<dyn FrameIo>>,
    mac: [u8; 6],
    notify: Vec<(EventFd, Target)>,
}

impl Core {
    /// Takes over the queues of `act` (rx0 and tx0 are required), applies
    /// the negotiated offloads to the backends and enables the first pair.
    pub fn new(
        act: Activation,
        cfg: &NetConfig,
        counters: Arc<FunctionCounters>,
    ) -> Result<Self, ActivateError> {
        let features = act.features;
        let max_pairs = cfg.backends.len();
        let pairs_on_offer = if features & F_MQ != 0 { max_pairs } else { 1 };
        let ctrl_index = if features & F_CTRL_VQ != 0 {
            Some(2 * pairs_on_offer)
        } else {
            None
        };
        let mut pairs: Vec<Pair> = cfg.backends[..pairs_on_offer]
            .iter()
            .map(|io| Pair {
                io: io.clone(),
                rx: None,
                tx: None,
            })
            .collect();
        let mut ctrl = None;
        let mut notify = Vec::new();
        for q in act.queues {
            let i = usize::from(q.index);
            let target = if Some(i) == ctrl_index {
                ctrl = Some(CtrlQueue {
                    queue: q.queue,
                    index: q.index,
                    broken: false,
                    buf: Vec::new(),
                });
                Target::Ctrl
            } else if let Some(pair) = pairs.get_mut(i / 2) {
                if i % 2 == 0 {
                    pair.rx = Some(RxQueue::new(q.queue, q.index));
                    Target::Rx(i / 2)
                } else {
                    pair.tx = Some(TxQueue::new(q.queue, q.index));
                    Target::Tx(i / 2)
                }
            } else {
                tracing::warn!("virtio-net: queue {i} enabled but not in use, ignored");
                continue;
            };
            notify.push((q.notify, target));
        }
        match pairs.first() {
            Some(p) if p.rx.is_none() => return Err(ActivateError::MissingQueue(0)),
            Some(p) if p.tx.is_none() => return Err(ActivateError::MissingQueue(1)),
            _ => {}
        }
        let offloads = Offloads {
            csum: features & F_GUEST_CSUM != 0,
            tso4: features & F_GUEST_TSO4 != 0,
            tso6: features & F_GUEST_TSO6 != 0,
            tso_ecn: features & F_GUEST_ECN != 0,
            ufo: features & F_GUEST_UFO != 0,
        };
        for io in &cfg.backends {
            io.set_offloads(offloads)
                .map_err(|e| ActivateError::Backend(format!("cannot set offloads: {e}")))?;
        }
        let mut core = Self {
            ctx: Ctx {
                mem: act.memory,
                dma: act.dma,
                signals: act.signals,
                features,
                log: GuestLog::default(),
                counters,
            },
            pairs,
            ctrl,
            state: CtrlState::default(),
            spare: cfg.backends[pairs_on_offer..].to_vec(),
            mac: cfg.mac,
            notify,
        };
        core.apply_pairs();
        Ok(core)
    }

    /// Pairs the driver can switch on: leading pairs with both queues.
    fn usable_pairs(&self) -> u16 {
        let n = self
            .pairs
            .iter()
            .take_while(|p| p.rx.is_some() && p.tx.is_some())
            .count();
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// Enables the backends of active pairs and disables the rest.
    fn apply_pairs(&mut self) {
        let active = usize::from(self.state.active_pairs);
        let all = self.pairs.iter().map(|p| &p.io).chain(self.spare.iter());
        for (i, io) in all.enumerate() {
            if let Err(e) = io.set_enabled(i < active) {
                tracing::warn!("virtio-net: cannot switch backend {i}: {e}");
            }
        }
    }

    /// Whether the backend of pair `p` should be polled for frames.
    pub fn wants_frames(&self, p: usize) -> bool {
        p < usize::from(self.state.active_pairs)
            && self
                .pairs
                .get(p)
                .and_then(|pair| pair.rx.as_ref())
                .is_some_and(RxQueue::wants_frames)
    }

    /// Serves `target` after a notification or a readable backend.
    pub fn serve(&mut self, target: Target) {
        let active = usize::from(self.state.active_pairs);
        match target {
            Target::Rx(p) => {
                let Some(pair) = self.pairs.get_mut(p) else {
                    return;
                };
                if let Some(rx) = pair.rx.as_mut() {
                    let io = pair.io.as_ref();
                    rx.run(&mut self.ctx, io, p < active, &self.state.filter, &self.mac);
                }
            }
            Target::Tx(p) => {
                // A pair switched off still drains its transmit queue,
                // through the first pair's backend.
                let io = match self.pairs.get(p) {
                    Some(pair) if p < active => pair.io.clone(),
                    Some(_) => self.pairs[0].io.clone(),
                    None => return,
                };
                if let Some(tx) = self.pairs.get_mut(p).and_then(|pr| pr.tx.as_mut()) {
                    tx.run(&mut self.ctx, io.as_ref());
                }
            }
            Target::Ctrl => self.serve_ctrl(),
        }
    }

    /// Serves every queue once (on start).
    pub fn serve_all(&mut self) {
        for p in 0..self.pairs.len() {
            self.serve(Target::Tx(p));
            self.serve(Target::Rx(p));
        }
        self.serve(Target::Ctrl);
    }

    fn serve_ctrl(&mut self) {
        let usable = self.usable_pairs();
        let Some(cq) = self.ctrl.as_mut() else {
            return;
        };
        if cq.broken {
            return;
        }
        let before = self.state.active_pairs;
        let ctx = &mut self.ctx;
        let state = &mut self.state;
        let buf = &mut cq.buf;
        let mem = ctx.mem.clone();
        let r = drain(&mut cq.queue, &mem, |descs| {
            control(descs, ctx, state, usable, buf)
        });
        ctx.finish(&mut cq.queue, cq.index, r, &mut cq.broken);
        if self.state.active_pairs != before {
            self.apply_pairs();
        }
    }

    /// The notification eventfds and what they concern.
    pub fn notifiers(&self) -> &[(EventFd, Target)] {
        &self.notify
    }
}

/// Handles one control chain; returns the used length.
fn control(
    descs: impl Iterator<Item = Descriptor>,
    ctx: &mut Ctx,
    state: &mut CtrlState,
    usable: u16,
    buf: &mut Vec<u8>,
) -> u32 {
    let layout = match chain::layout(descs, ctrl::MAX_COMMAND) {
        Ok(l) => l,
        Err(e) => {
            ctx.log.warn(format_args!("control chain dropped: {e}"));
            return 0;
        }
    };
    let Some(ack_seg) = layout.writable.first() else {
        ctx.log
            .warn(format_args!("control chain without an ack byte dropped"));
        return 0;
    };
    // A command is carried out only if its ack can be reported: otherwise
    // the driver would read failure for a change the device made.
    if !chain::writable_in_memory(ctx.dma.as_ref(), &layout.writable[..1]) {
        ctx.log.warn(format_args!(
            "control chain dropped: its ack byte at {:#x} is outside guest memory",
            ack_seg.addr
        ));
        return 0;
    }
    buf.clear();
    let ack = match chain::gather(ctx.dma.as_ref(), &layout.readable, buf) {
        Ok(()) => {
            let (ack, err) = ctrl::execute(buf, ctx.features, state, usable);
            if let Some(e) = err {
                ctx.log.warn(format_args!("control command failed: {e}"));
            }
            ack
        }
        Err(e) => {
            ctx.log
                .warn(format_args!("control command unreadable: {e}"));
            ctrl::ERR
        }
    };
    match ctx.dma.write(ack_seg.addr, &[ack]) {
        Ok(()) => 1,
        Err(e) => {
            ctx.log.warn(format_args!("control ack not written: {e}"));
            0
        }
    }
}

/// The token of the stop eventfd.
const STOP: u64 = u64::MAX;
/// Tokens of backends: `BACKEND + pair`.
const BACKEND: u64 = 1 << 32;

/// A running worker thread; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts a thread serving `core`.
    pub fn start(core: Core) -> Result<Self, ActivateError> {
        let stop = EventFd::new(EFD_NONBLOCK).map_err(ActivateError::Thread)?;
        let epoll = Epoll::new().map_err(ActivateError::Thread)?;
        let add = |fd: i32, token: u64| {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(ActivateError::Thread)
        };
        add(stop.as_raw_fd(), STOP)?;
        for (i, (fd, _)) in core.notifiers().iter().enumerate() {
            add(fd.as_raw_fd(), i as u64)?;
        }
        // Backends join the set when their receive queue wants frames and
        // leave it otherwise: a disabled TAP queue polls as EPOLLERR, which
        // epoll reports whatever the event mask, so it must not stay in.
        let armed = vec![Arm::Off; core.pairs.len()];
        let thread = std::thread::Builder::new()
            .name("virtio-net".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::VirtioNet);
                run(core, &epoll, armed)
            })
            .map_err(ActivateError::Thread)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

/// Whether a backend's fd is in the epoll set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arm {
    Off,
    On,
    /// It reported an error or hang-up: left out for this activation.
    Failed,
}

/// Adds or removes each backend's fd as its receive queue wants frames.
fn sync(core: &Core, epoll: &Epoll, armed: &mut [Arm]) {
    for (p, a) in armed.iter_mut().enumerate() {
        let want = core.wants_frames(p);
        let (op, next) = match (*a, want) {
            (Arm::Off, true) => (ControlOperation::Add, Arm::On),
            (Arm::On, false) => (ControlOperation::Delete, Arm::Off),
            _ => continue,
        };
        let fd = core.pairs[p].io.as_raw_fd();
        match epoll.ctl(op, fd, EpollEvent::new(EventSet::IN, BACKEND + p as u64)) {
            Ok(()) => *a = next,
            Err(e) => {
                tracing::error!("virtio-net: epoll failed for backend {p}, left out: {e}");
                *a = Arm::Failed;
            }
        }
    }
}

/// Takes a backend that reported an error or hang-up out of the set.
fn fail(core: &Core, epoll: &Epoll, armed: &mut [Arm], p: usize) {
    let Some(a) = armed.get_mut(p) else { return };
    if *a == Arm::On {
        let fd = core.pairs[p].io.as_raw_fd();
        let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
    }
    *a = Arm::Failed;
    tracing::error!("virtio-net: backend {p} reported an error or hang-up; its receive path stops");
}

fn run(mut core: Core, epoll: &Epoll, mut armed: Vec<Arm>) {
    core.serve_all();
    sync(&core, epoll, &mut armed);
    let mut events = vec![EpollEvent::default(); 16 + core.notifiers().len() + core.pairs.len()];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("virtio-net: epoll failed, worker stops: {e}");
                return;
            }
        };
        for ev in &events[..n] {
            let token = ev.data();
            let target = if token == STOP {
                return;
            } else if token >= BACKEND {
                let p = usize::try_from(token - BACKEND).unwrap_or(usize::MAX);
                let bad = EventSet::ERROR | EventSet::HANG_UP;
                if ev.event_set().intersects(bad) && !ev.event_set().contains(EventSet::IN) {
                    fail(&core, epoll, &mut armed, p);
                    continue;
                }
                Target::Rx(p)
            } else {
                let Some((fd, target)) = usize::try_from(token)
                    .ok()
                    .and_then(|i| core.notifiers().get(i))
                else {
                    continue;
                };
                // Nonblocking: a spurious wake-up reads EAGAIN.
                let notified = fd.read().unwrap_or(0);
                core.ctx.counters.doorbells.doorbells_shared.add(notified);
                *target
            };
            core.serve(target);
        }
        sync(&core, epoll, &mut armed);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Err(e) = self.stop.write(1) {
            tracing::error!("virtio-net: cannot stop the worker: {e}");
            return;
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("virtio-net: the worker panicked");
            }
        }
    }
}
