//! The device core: register accesses with their side effects (reset,
//! EERD, MDIC, interrupt registers, doorbells), the transmit ring, frames
//! in from the backend, loopback, and the link. Plain methods without
//! threads: [`super::E1000e`] wraps one `Core` in a mutex shared by vCPU
//! threads and the worker; unit tests call it directly.
//!
//! This part is the e1000 family's (an igb model would keep it and add
//! queues, pools and its own interrupt registers); the 82574 specifics
//! are its identity, PHY, NVM and the IVAR/EIAC interrupt routing.

use counters::FunctionCounters;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use backend::net::{FrameIo, VNET_HDR_LEN};
use dma::Dma;
use pci::config::command;

use super::desc::{TxDesc, DESC_SIZE, STAT_DD, TX_STATUS};
use super::intr::Interrupts;
use super::nvm::Nvm;
use super::phy::{self, Phy};
use super::regs::{self, ctrl, ctrl_ext, icr, mdic, rctl, status, tctl, Regs};
use super::rx::{self, RxError, RxRing};
use super::stats;
use super::tx::{self, Step, TxError, TxMachine};

/// Warnings a device logs per minute for guest-caused trouble before the
/// rest go to debug level.
const WARN_BUDGET: u32 = 32;
/// Largest frame accepted without RCTL.LPE (with a VLAN tag).
const MAX_STD_FRAME: usize = 1522;
/// Largest frame accepted with RCTL.LPE.
pub const MAX_JUMBO_FRAME: usize = 16_128;
/// Frames read from the backend in one pass before others get the lock.
const RX_BATCH: usize = 64;

/// Counters of what the device dropped or refused, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Transmit packets dropped (bad descriptors, offload errors, DMA).
    pub tx_packets: u64,
    /// Transmit passes refused because TDH/TDT were outside the ring.
    pub tx_ring: u64,
    /// Frames not placed because the receive ring was unusable.
    pub rx_ring: u64,
    /// Receive buffers skipped (NULL or outside guest memory).
    pub rx_buffers: u64,
    /// Frames the filter refused.
    pub rx_filtered: u64,
    /// Frames dropped as too long.
    pub rx_oversize: u64,
}

/// What became of a frame offered to the receive side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Placed in the ring.
    Delivered,
    /// Dropped (filter, receiver off, link down, oversize, bad ring).
    Dropped,
    /// The ring has no room: offer it again after the driver adds buffers.
    NoBuffers,
}

/// The device core.
#[derive(Debug)]
pub struct Core {
    /// Registers.
    pub regs: Regs,
    nvm: Nvm,
    /// PHY.
    pub phy: Phy,
    /// Interrupt side and PCI function.
    pub intr: Interrupts,
    dma: Arc<dyn Dma>,
    backend: Option<Arc<dyn FrameIo>>,
    /// The host side has carrier.
    pub carrier: bool,
    link: bool,
    tx: TxMachine,
    /// A frame that found the ring full, waiting for RDT to move.
    pending: Option<Vec<u8>>,
    /// IOADDR of the I/O BAR.
    io_addr: u32,
    /// Drop counters.
    pub drops: Drops,
    /// The function's I/O counters.
    counters: Arc<FunctionCounters>,
    warnings: ratelimit::LogLimit,
    /// Work for the worker is waiting (set by doorbells when deferred).
    pub kick: bool,
    /// Doorbells leave the rings to the worker.
    pub defer: bool,
    rx_buf: Vec<u8>,
}

impl Core {
    /// A device after power-on.
    pub fn new(
        mac: [u8; 6],
        intr: Interrupts,
        dma: Arc<dyn Dma>,
        backend: Option<Arc<dyn FrameIo>>,
        counters: Arc<FunctionCounters>,
    ) -> Self {
        let mut c = Self {
            regs: Regs::new(),
            nvm: Nvm::new(mac),
            phy: Phy::new(),
            intr,
            dma,
            backend,
            carrier: true,
            link: false,
            tx: TxMachine::default(),
            pending: None,
            io_addr: 0,
            drops: Drops::default(),
            counters,
            warnings: ratelimit::LogLimit::new(WARN_BUDGET, ratelimit::WINDOW),
            kick: false,
            defer: false,
            rx_buf: vec![0; VNET_HDR_LEN + 65_536],
        };
        c.load_mac();
        c.link = c.phy.link(c.carrier);
        c
    }

    /// A warning about something the guest caused, rate limited.
    pub fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        ratelimit::warn_with!(self.warnings, "e1000e: {msg}");
    }

    /// RAL0/RAH0 from the NVM, as the chip loads them after reset.
    fn load_mac(&mut self) {
        let m = self.nvm.mac();
        self.regs
            .set(regs::RA, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs.set(
            regs::RA + 4,
            u32::from(u16::from_le_bytes([m[4], m[5]])) | 1 << 31,
        );
    }

    /// Device reset (CTRL.RST): every MAC register back to its reset
    /// value, the MAC address reloaded, rings and interrupts forgotten;
    /// the PHY and PCI state stay.
    pub fn reset(&mut self) {
        self.regs = Regs::new();
        self.load_mac();
        self.tx.abort();
        self.pending = None;
        self.intr.reset();
        self.update_link();
    }

    fn bus_master(&self) -> bool {
        self.intr.pci.config().command() & command::BUS_MASTER != 0
    }

    /// Whether transmitted frames come back to the receive side.
    pub fn loopback(&self) -> bool {
        self.phy.loopback() || self.regs.get(regs::RCTL) & rctl::LBM_MASK != 0
    }

    /// Recomputes the link; a change sets ICR.LSC.
    pub fn update_link(&mut self) {
        let up = self.phy.link(self.carrier);
        if up != self.link {
            self.link = up;
            self.intr.raise(&mut self.regs, icr::LSC);
        }
    }

    /// Whether the link is up.
    pub fn link_up(&self) -> bool {
        self.link
    }

    fn status(&self) -> u32 {
        let mut s = status::FD | status::SPEED_1000;
        if self.link {
            s |= status::LU;
        }
        if self.regs.get(regs::CTRL) & ctrl::GIO_MASTER_DISABLE == 0 {
            s |= status::GIO_MASTER_ENABLE;
        }
        s
    }

    // ---- register accesses --------------------------------------------------

    /// A guest read of BAR0 of any width: each 32-bit register touched is
    /// read once (with its side effects), the bytes asked for returned.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let mut i = 0;
        while i < data.len() {
            let o = start + i;
            let base = o & !3;
            if base >= regs::MMIO_SIZE {
                break;
            }
            let v = self.read32(base).to_le_bytes();
            let from = o - base;
            let n = (4 - from).min(data.len() - i);
            data[i..i + n].copy_from_slice(&v[from..from + n]);
            i += n;
        }
    }

    /// A guest write to BAR0 of any width: bytes merged into each 32-bit
    /// register they touch, then the register written whole.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let mut i = 0;
        while i < data.len() {
            let o = start + i;
            let base = o & !3;
            if base >= regs::MMIO_SIZE {
                break;
            }
            let from = o - base;
            let n = (4 - from).min(data.len() - i);
            let mut v = self.regs.get(base).to_le_bytes();
            v[from..from + n].copy_from_slice(&data[i..i + n]);
            self.write32(base, u32::from_le_bytes(v));
            i += n;
        }
        self.flush_interrupts();
    }

    /// Reads one register.
    pub fn read32(&mut self, off: usize) -> u32 {
        match off {
            regs::STATUS => self.status(),
            regs::ICR => {
                let v = self.intr.read_icr(&mut self.regs);
                self.flush_interrupts();
                v
            }
            regs::ICS | regs::IMC => 0,
            _ if regs::is_stat(off) => {
                let v = self.regs.get(off);
                self.regs.set(off, 0);
                v
            }
            _ => self.regs.get(off),
        }
    }

    /// Writes one register.
    pub fn write32(&mut self, off: usize, v: u32) {
        match off {
            regs::CTRL => self.write_ctrl(v),
            regs::EERD => {
                let r = self.nvm.eerd(v);
                self.regs.set(regs::EERD, r);
            }
            regs::CTRL_EXT => {
                self.regs.set(regs::CTRL_EXT, v & !ctrl_ext::EE_RST);
                if v & ctrl_ext::EE_RST != 0 {
                    self.load_mac();
                }
            }
            regs::MDIC => self.write_mdic(v),
            regs::ICR => self.regs.update(regs::ICR, v, false),
            regs::ICS => self.intr.raise(&mut self.regs, v),
            regs::IMS => self.regs.update(regs::IMS, v, true),
            regs::IMC => self.regs.update(regs::IMS, v, false),
            regs::TDT | regs::TCTL => {
                if off == regs::TDT {
                    self.counters.doorbells.doorbells_trapped.inc();
                }
                self.regs.write_masked(off, v);
                self.doorbell(true);
            }
            regs::RDT | regs::RCTL => {
                if off == regs::RDT {
                    self.counters.doorbells.doorbells_trapped.inc();
                }
                self.regs.write_masked(off, v);
                self.doorbell(false);
            }
            _ if regs::is_stat(off) => {}
            _ => self.regs.write_masked(off, v),
        }
    }

    fn write_ctrl(&mut self, v: u32) {
        if v & ctrl::RST != 0 {
            self.reset();
            return;
        }
        if v & ctrl::PHY_RST != 0 {
            self.phy = Phy::new();
        }
        self.regs.set(regs::CTRL, v & !ctrl::PHY_RST);
        self.update_link();
    }

    fn write_mdic(&mut self, v: u32) {
        let reg = (v >> mdic::REG_SHIFT) & 0x1f;
        let addr = (v >> mdic::PHY_SHIFT) & 0x1f;
        let op = (v >> mdic::OP_SHIFT) & 3;
        let mut out = v & !(mdic::READY | mdic::ERROR);
        if addr != phy::ADDRESS || !(op == 1 || op == 2) {
            out |= mdic::ERROR;
        } else if op == 1 {
            self.phy.write(reg, (v & mdic::DATA_MASK) as u16);
            self.update_link();
        } else {
            out = (out & !mdic::DATA_MASK) | u32::from(self.phy.read(reg, self.carrier));
        }
        self.regs.set(regs::MDIC, out | mdic::READY);
        if v & mdic::INT != 0 {
            self.intr.raise(&mut self.regs, icr::MDAC);
        }
    }

    /// A guest access to the I/O BAR (IOADDR at 0, IODATA at 4): an
    /// indirect window onto BAR0.
    pub fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v = match offset {
            0 => self.io_addr,
            4 => {
                let a = self.io_addr as usize & (regs::MMIO_SIZE - 1) & !3;
                self.read32(a)
            }
            _ => return,
        };
        let n = data.len().min(4);
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// See [`Core::io_read`].
    pub fn io_write(&mut self, offset: u64, data: &[u8]) {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(b);
        match offset {
            0 => self.io_addr = v,
            4 => {
                let a = self.io_addr as usize & (regs::MMIO_SIZE - 1) & !3;
                self.write32(a, v);
                self.flush_interrupts();
            }
            _ => {}
        }
    }

    /// A doorbell (TDT, RDT) or enable bit changed: serve now, or leave it
    /// to the worker.
    fn doorbell(&mut self, tx: bool) {
        if self.defer {
            self.kick = true;
            return;
        }
        if tx {
            self.process_tx();
        } else {
            self.retry_pending();
        }
    }

    /// Sends the interrupts due now.
    pub fn flush_interrupts(&mut self) {
        let mut warns = Vec::new();
        self.intr
            .update(&mut self.regs, Instant::now(), &mut |m| warns.push(m));
        for w in warns {
            self.warn(format_args!("{w}"));
        }
    }

    /// When a held (moderated) interrupt may go out.
    pub fn deadline(&self) -> Option<Instant> {
        self.intr.deadline(&self.regs)
    }

    // ---- transmit -------------------------------------------------------------

    /// Serves the transmit ring from TDH up to TDT: each descriptor once,
    /// so a pass ends whatever the ring holds.
    pub fn process_tx(&mut self) {
        if !self.bus_master() || self.regs.get(regs::TCTL) & tctl::EN == 0 {
            return;
        }
        let count = self.regs.get(regs::TDLEN) / DESC_SIZE as u32;
        if count == 0 {
            return;
        }
        let (mut head, tail) = (self.regs.get(regs::TDH), self.regs.get(regs::TDT));
        if head >= count || tail >= count {
            self.drops.tx_ring += 1;
            self.warn(format_args!(
                "TDH {head} or TDT {tail} outside a ring of {count}; transmit stalls"
            ));
            return;
        }
        let base = self.regs.addr64(regs::TDBAL);
        let mut wrote_back = false;
        let mut data = Vec::new();
        while head != tail {
            let at = base.wrapping_add(u64::from(head) * DESC_SIZE as u64);
            let mut raw = [0u8; DESC_SIZE];
            if self.dma.read(at, &mut raw).is_err() {
                self.drops.tx_ring += 1;
                self.warn(format_args!(
                    "transmit descriptor at {at:#x} not in guest memory"
                ));
                break;
            }
            let desc = TxDesc::parse(&raw);
            let fetched = self.fetch(&desc, &mut data);
            let step = self.tx.push(&desc, fetched.map(|()| data.as_slice()));
            self.finish_step(step);
            if desc.cmd() & super::desc::cmd::RS != 0 {
                let st = raw[TX_STATUS] | STAT_DD;
                if self.dma.write(at + TX_STATUS as u64, &[st]).is_ok() {
                    wrote_back = true;
                }
            }
            head = (head + 1) % count;
        }
        self.regs.set(regs::TDH, head);
        let mut causes = icr::TXQE;
        if wrote_back {
            causes |= icr::TXDW;
        }
        self.intr.raise(&mut self.regs, causes);
    }

    /// Reads a descriptor's buffer into `out`.
    fn fetch(&mut self, desc: &TxDesc, out: &mut Vec<u8>) -> Result<(), TxError> {
        out.clear();
        let (addr, len) = match *desc {
            TxDesc::Legacy { addr, len, .. } => (addr, len as usize),
            TxDesc::Data { addr, len, .. } => (addr, len as usize),
            _ => return Ok(()),
        };
        if len > tx::MAX_PACKET {
            return Err(TxError::TooLong);
        }
        out.resize(len, 0);
        self.dma.read(addr, out).map_err(|_| TxError::Dma)
    }

    fn finish_step(&mut self, step: Step) {
        let p = match step {
            Step::More => return,
            Step::Dropped(e) => {
                self.drops.tx_packets += 1;
                self.counters.net.tx_dropped.inc();
                self.warn(format_args!("transmit packet dropped: {e}"));
                return;
            }
            Step::Done(p) => p,
        };
        let vet = self.regs.get(regs::VET) as u16;
        let pad = self.regs.get(regs::TCTL) & (1 << 3) != 0;
        let frames = match tx::finish(&p, vet, pad) {
            Ok(f) => f,
            Err(e) => {
                self.drops.tx_packets += 1;
                self.counters.net.tx_dropped.inc();
                if p.tse {
                    stats::add(&mut self.regs, stats::TSCTFC, 1);
                }
                self.warn(format_args!("transmit packet dropped: {e}"));
                return;
            }
        };
        if p.tse {
            stats::add(&mut self.regs, stats::TSCTC, 1);
        }
        for f in frames {
            self.send(&f);
        }
    }

    /// Puts one frame on the wire (or back into the receive side).
    fn send(&mut self, frame: &[u8]) {
        if !self.link && !self.loopback() {
            return;
        }
        stats::transmitted(&mut self.regs, frame);
        let net = &self.counters.net;
        if self.loopback() {
            net.tx_frames.inc();
            net.tx_bytes.add(frame.len() as u64);
            self.deliver(frame);
            return;
        }
        let Some(io) = self.backend.clone() else {
            return;
        };
        let hdr = [0u8; VNET_HDR_LEN];
        match io.write_frame(&[IoSlice::new(&hdr), IoSlice::new(frame)]) {
            Ok(_) => {
                net.tx_frames.inc();
                net.tx_bytes.add(frame.len() as u64);
            }
            Err(e) => {
                net.tx_dropped.inc();
                tracing::debug!("e1000e: backend write failed: {e}");
            }
        }
    }

    // ---- receive ----------------------------------------------------------------

    /// Whether the receive side can take a frame now (the worker polls the
    /// backend only then; while the receiver is off frames are drained
    /// and dropped, so the host queue never holds stale ones).
    pub fn wants_frames(&self) -> bool {
        if self.pending.is_some() {
            return false;
        }
        if self.regs.get(regs::RCTL) & rctl::EN == 0 || !self.link || !self.bus_master() {
            return true;
        }
        // An unusable ring drops what arrives (MPC) rather than hold it.
        RxRing::from_regs(&self.regs).map_or(true, |r| r.free() > 0)
    }

    /// Offers one frame (without FCS) to the receive side.
    pub fn receive(&mut self, frame: &[u8]) -> RxOutcome {
        if self.regs.get(regs::RCTL) & rctl::EN == 0 || !self.link || !self.bus_master() {
            return RxOutcome::Dropped;
        }
        let mut f = frame.to_vec();
        let mut vlan = None;
        let vet = self.regs.get(regs::VET) as u16;
        if f.len() >= 18 && u16::from_be_bytes([f[12], f[13]]) == vet {
            let tci = u16::from_be_bytes([f[14], f[15]]);
            vlan = Some(tci);
            if self.regs.get(regs::CTRL) & ctrl::VME != 0 {
                f.drain(12..16);
            }
        }
        if !rx::accept(&self.regs, &f, vlan) {
            self.drops.rx_filtered += 1;
            return RxOutcome::Dropped;
        }
        let stripped = vlan.filter(|_| self.regs.get(regs::CTRL) & ctrl::VME != 0);
        let max = if self.regs.get(regs::RCTL) & rctl::LPE != 0 {
            MAX_JUMBO_FRAME
        } else {
            MAX_STD_FRAME
        };
        if f.len() > max {
            self.drops.rx_oversize += 1;
            self.counters.net.rx_dropped.inc();
            stats::add(&mut self.regs, stats::ROC, 1);
            return RxOutcome::Dropped;
        }
        if f.len() < tx::MIN_FRAME {
            f.resize(tx::MIN_FRAME, 0);
        }
        let counted = f.clone();
        if self.regs.get(regs::RCTL) & rctl::SECRC == 0 {
            let crc = rx::crc32(&f);
            f.extend_from_slice(&crc.to_le_bytes());
        }
        self.place(&f, &counted, stripped)
    }

    fn place(&mut self, f: &[u8], counted: &[u8], vlan: Option<u16>) -> RxOutcome {
        let mut ring = match RxRing::from_regs(&self.regs) {
            Ok(r) => r,
            Err(e) => return self.ring_failed(e),
        };
        match rx::place(&mut ring, self.dma.as_ref(), f, vlan) {
            Ok(p) => {
                self.regs.set(regs::RDH, ring.rdh());
                if p.bad_buffers > 0 {
                    self.counters.net.rx_dropped.inc();
                    self.drops.rx_buffers += u64::from(p.bad_buffers);
                    self.warn(format_args!(
                        "{} receive buffers NULL or outside guest memory",
                        p.bad_buffers
                    ));
                } else {
                    stats::received(&mut self.regs, counted);
                    self.counters.net.rx_frames.inc();
                    self.counters.net.rx_bytes.add(counted.len() as u64);
                }
                let mut causes = icr::RXT0;
                if ring.free() <= ring.count / 8 {
                    causes |= icr::RXDMT0;
                }
                self.intr.raise(&mut self.regs, causes);
                RxOutcome::Delivered
            }
            Err(RxError::NoBuffers) => RxOutcome::NoBuffers,
            Err(e) => self.ring_failed(e),
        }
    }

    fn ring_failed(&mut self, e: RxError) -> RxOutcome {
        self.drops.rx_ring += 1;
        self.counters.net.rx_dropped.inc();
        stats::add(&mut self.regs, stats::MPC, 1);
        self.warn(format_args!("receive frame dropped: {e}"));
        RxOutcome::Dropped
    }

    /// Offers `frame` and keeps it when the ring is full (counted once in
    /// RNBC), to offer it again when RDT moves.
    pub fn deliver(&mut self, frame: &[u8]) -> RxOutcome {
        let r = self.receive(frame);
        if r == RxOutcome::NoBuffers {
            if self.pending.is_none() {
                stats::add(&mut self.regs, stats::RNBC, 1);
            }
            self.pending = Some(frame.to_vec());
        }
        r
    }

    /// Offers the frame that found the ring full again.
    pub fn retry_pending(&mut self) {
        if let Some(f) = self.pending.take() {
            self.deliver(&f);
        }
    }

    /// Whether a frame waits for room in the ring.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Reads frames from the backend while the receive side takes them,
    /// at most a batch; returns how many were read.
    pub fn poll_backend(&mut self) -> usize {
        let Some(io) = self.backend.clone() else {
            return 0;
        };
        let mut buf = std::mem::take(&mut self.rx_buf);
        let mut n = 0;
        while n < RX_BATCH && self.wants_frames() {
            match io.read_frame(&mut buf) {
                Ok(len) if len > VNET_HDR_LEN => {
                    n += 1;
                    self.deliver(&buf[VNET_HDR_LEN..len]);
                }
                Ok(_) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("e1000e: backend read failed: {e}");
                    break;
                }
            }
        }
        self.rx_buf = buf;
        n
    }

    /// The backend, if any.
    pub fn backend(&self) -> Option<&Arc<dyn FrameIo>> {
        self.backend.as_ref()
    }
}
