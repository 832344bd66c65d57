//! The virtio-console worker thread: waits (epoll) on both queues'
//! notification eventfds, the input handle's eventfd and its stop eventfd.
//!
//! Transmit: every available chain is copied to the output, returned with
//! used length 0, and the output flushed once per batch. Receive: while
//! input is waiting, each posted receive chain is filled and returned
//! with the bytes written; when the guest has no buffer left the device
//! re-enables notifications (so the guest's next buffer wakes it) and the
//! input stays buffered.

use std::sync::{Arc, Mutex, PoisonError};

use dma::Dma;
use virtio_queue::{QueueOwnedT, QueueT};

use super::request::{self, Port};
use super::{ConsoleInput, Output, RECEIVEQ, TRANSMITQ};
use crate::device::{ActivateError, Activation, Memory, QueueSetup, Signals};
use crate::runtime::{drain_eventfd, pop_all, GuestWarnings, Poller, Worker, STOP};

const RX: u64 = 0;
const TX: u64 = 1;
const INPUT: u64 = 2;

/// Transmitted bytes are copied through a buffer this large.
const CHUNK: usize = 4096;

struct ConsoleWorker {
    memory: Arc<Memory>,
    dma: Arc<dyn Dma>,
    signals: Arc<dyn Signals>,
    rx: QueueSetup,
    tx: QueueSetup,
    max_descriptors: usize,
    output: Arc<Mutex<Output>>,
    input: ConsoleInput,
    dead: [bool; 2],
    reset_requested: bool,
    warnings: GuestWarnings,
    counters: Arc<counters::FunctionCounters>,
}

/// Starts the worker serving `act`'s receive and transmit queues.
pub(super) fn start(
    max_descriptors: usize,
    output: Arc<Mutex<Output>>,
    input: ConsoleInput,
    act: Activation,
) -> Result<Worker, ActivateError> {
    let mut rx = None;
    let mut tx = None;
    for q in act.queues {
        match q.index {
            RECEIVEQ => rx = Some(q),
            TRANSMITQ => tx = Some(q),
            other => tracing::warn!("virtio-console: ignoring queue {other} (no MULTIPORT)"),
        }
    }
    let rx = rx.ok_or(ActivateError::MissingQueue(RECEIVEQ))?;
    let tx = tx.ok_or(ActivateError::MissingQueue(TRANSMITQ))?;
    let mut poller = Poller::new().map_err(ActivateError::Thread)?;
    poller.add(&rx.notify, RX).map_err(ActivateError::Thread)?;
    poller.add(&tx.notify, TX).map_err(ActivateError::Thread)?;
    poller
        .add(input.event(), INPUT)
        .map_err(ActivateError::Thread)?;
    let w = ConsoleWorker {
        memory: act.memory,
        dma: act.dma,
        signals: act.signals,
        rx,
        tx,
        max_descriptors,
        output,
        input,
        dead: [false; 2],
        reset_requested: false,
        warnings: GuestWarnings::new("virtio-console"),
        counters: act.counters,
    };
    Worker::spawn(sandbox::ThreadKind::VirtioConsole, poller, move |p| {
        w.run(p)
    })
    .map_err(ActivateError::Thread)
}

impl ConsoleWorker {
    fn run(mut self, mut poller: Poller) {
        self.transmit();
        self.receive();
        let mut tokens = Vec::new();
        loop {
            tokens.clear();
            if let Err(e) = poller.wait(&mut tokens) {
                tracing::error!("virtio-console: epoll failed, stopping the worker: {e}");
                self.signals.needs_reset();
                return;
            }
            if tokens.contains(&STOP) {
                return;
            }
            for &t in &tokens {
                let notified = match t {
                    RX => drain_eventfd(&self.rx.notify),
                    TX => drain_eventfd(&self.tx.notify),
                    INPUT => {
                        drain_eventfd(self.input.event());
                        0
                    }
                    _ => 0,
                };
                self.counters.doorbells.doorbells_shared.add(notified);
            }
            if tokens.contains(&TX) {
                self.transmit();
            }
            self.receive();
        }
    }

    /// Copies every available transmit chain to the output.
    fn transmit(&mut self) {
        if self.dead[1] {
            return;
        }
        let mem = self.memory.clone();
        let max = self.max_descriptors;
        let mut chains = Vec::new();
        let popped = pop_all(&mut self.tx.queue, &mem, |chain| {
            let head = chain.head_index();
            chains.push((head, request::parse(chain, Port::Transmit, max)));
        });
        let output = self.output.clone();
        let mut out = output.lock().unwrap_or_else(PoisonError::into_inner);
        let mut chunk = vec![0u8; CHUNK];
        for (head, parsed) in &chains {
            match parsed {
                Ok(bufs) => {
                    if bufs.skipped > 0 {
                        self.warnings.warn(format_args!(
                            "transmit chain {head}: {} device-writable descriptors skipped",
                            bufs.skipped
                        ));
                    }
                    for &(addr, len) in &bufs.buffers {
                        self.copy_out(&mut **out, &mut chunk, addr, len);
                    }
                }
                Err(e) => self
                    .warnings
                    .warn(format_args!("transmit chain {head} dropped: {e}")),
            }
        }
        if let Err(e) = out.flush() {
            self.warnings.warn(format_args!("output flush: {e}"));
        }
        drop(out);
        let added = !chains.is_empty();
        for (head, _) in chains {
            self.used(TRANSMITQ, head, 0);
        }
        if let Err(e) = popped {
            self.broken(TRANSMITQ, format_args!("{e}"));
        }
        if added {
            self.signal(TRANSMITQ);
        }
    }

    /// Copies `len` guest bytes at `addr` to `out` through `chunk`.
    fn copy_out(&mut self, out: &mut dyn std::io::Write, chunk: &mut [u8], addr: u64, len: u64) {
        let mut done = 0u64;
        while done < len {
            let n = chunk
                .len()
                .min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let Some(at) = addr.checked_add(done) else {
                break;
            };
            if let Err(e) = self.dma.read(at, &mut chunk[..n]) {
                self.warnings.warn(format_args!("transmit buffer: {e}"));
                break;
            }
            if let Err(e) = out.write_all(&chunk[..n]) {
                self.warnings.warn(format_args!("output: {e}"));
                break;
            }
            done += n as u64;
        }
    }

    /// Delivers waiting input into posted receive buffers.
    fn receive(&mut self) {
        let mem = self.memory.clone();
        let mut empty_passes = 0;
        let mut added = false;
        while !self.dead[0] && self.input.pending() > 0 {
            let chain = match self.rx.queue.iter(&*mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    self.broken(RECEIVEQ, format_args!("available ring: {e}"));
                    break;
                }
            };
            let Some(chain) = chain else {
                // No buffer: ask to hear about the next one, then look again
                // in case it was posted meanwhile.
                match self.rx.queue.enable_notification(&*mem) {
                    Ok(false) => break,
                    Ok(true) if empty_passes == 0 => empty_passes = 1,
                    Ok(true) => {
                        self.broken(RECEIVEQ, format_args!("available ring entry unreadable"));
                        break;
                    }
                    Err(e) => {
                        self.broken(RECEIVEQ, format_args!("{e}"));
                        break;
                    }
                }
                continue;
            };
            empty_passes = 0;
            let head = chain.head_index();
            let len = match request::parse(chain, Port::Receive, self.max_descriptors) {
                Ok(bufs) => {
                    if bufs.skipped > 0 {
                        self.warnings.warn(format_args!(
                            "receive chain {head}: {} device-readable descriptors skipped",
                            bufs.skipped
                        ));
                    }
                    self.fill(&bufs.buffers)
                }
                Err(e) => {
                    self.warnings
                        .warn(format_args!("receive chain {head} dropped: {e}"));
                    0
                }
            };
            self.used(RECEIVEQ, head, len);
            added = true;
        }
        if added {
            self.signal(RECEIVEQ);
        }
    }

    /// Moves input into `buffers`; returns the bytes written.
    fn fill(&mut self, buffers: &[(u64, u64)]) -> u32 {
        let mut written = 0u32;
        for &(addr, len) in buffers {
            let bytes = self.input.take(usize::try_from(len).unwrap_or(usize::MAX));
            if bytes.is_empty() {
                break;
            }
            if let Err(e) = self.dma.write(addr, &bytes) {
                self.warnings.warn(format_args!(
                    "receive buffer: {e}; {} bytes lost",
                    bytes.len()
                ));
                break;
            }
            written = written.saturating_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        }
        written
    }

    fn queue(&mut self, index: u16) -> &mut QueueSetup {
        if index == RECEIVEQ {
            &mut self.rx
        } else {
            &mut self.tx
        }
    }

    fn used(&mut self, index: u16, head: u16, len: u32) {
        if self.dead[usize::from(index)] {
            return;
        }
        let mem = self.memory.clone();
        if let Err(e) = self.queue(index).queue.add_used(&*mem, head, len) {
            self.broken(index, format_args!("cannot return chain {head}: {e}"));
        }
    }

    fn signal(&mut self, index: u16) {
        if self.dead[usize::from(index)] {
            return;
        }
        let mem = self.memory.clone();
        match self.queue(index).queue.needs_notification(&*mem) {
            Ok(true) => {
                let q = self.queue(index).index;
                self.signals.used(q);
            }
            Ok(false) => {}
            Err(e) => self.broken(index, format_args!("used_event: {e}")),
        }
    }

    fn broken(&mut self, index: u16, why: std::fmt::Arguments<'_>) {
        self.warnings.warn(format_args!(
            "queue {index} unusable, device needs reset: {why}"
        ));
        self.dead[usize::from(index)] = true;
        if !std::mem::replace(&mut self.reset_requested, true) {
            self.signals.needs_reset();
        }
    }
}
