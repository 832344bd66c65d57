//! The HBA core (AHCI 1.3.1 §3.1, §5, §10): ABAR accesses, HBA and port
//! resets, the link (COMRESET), interrupts, and the completion of
//! commands, as plain methods without threads. [`super::Ahci`] wraps one
//! `Hba` in a mutex shared by vCPU threads and the worker; unit tests call
//! it directly. Command fetching and ATA execution are in `exec.rs`.

use std::sync::Arc;

use backend::Completion;
use counters::{BlockOp, FunctionCounters};
use dma::Dma;
use irq::IrqLine;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::routing::{MsiRouting, Signal};
use pci::config::command;
use pci::regs::RegisterMask;

use super::ata;
use super::command::HEADER_SIZE;
use super::fis::{self, rfis, Outputs};
use super::log::NcqError;
use super::port::{Link, Port};
use super::regs::{self, ghc, pcmd, pis, port, serr, ssts, status, HostCaps, HBA_SIZE, PORT_SIZE};

/// Warnings an HBA logs per minute for guest-caused trouble before the rest
/// go to debug level.
const WARN_BUDGET: u32 = 16;

/// A command waiting for backend requests.
#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    /// Port.
    pub port: usize,
    /// Command slot.
    pub slot: u8,
    /// The port's generation when it was issued.
    pub generation: u32,
    /// Backend requests not yet completed.
    pub remaining: u32,
    /// The first failure's outputs.
    pub failed: Option<Outputs>,
    /// Whether it is a queued command.
    pub queued: bool,
    /// Bytes it transfers (PRDBC).
    pub bytes: u32,
    /// Whether it reads (failures are UNC) or writes (ABRT).
    pub read: bool,
    /// LBA and count, for the NCQ error log.
    pub lba: u64,
    /// Sectors.
    pub count: u32,
    /// What it counts as once it completes.
    pub counted: BlockOp,
}

/// The HBA.
#[derive(Debug)]
pub struct Hba {
    pub(super) caps: HostCaps,
    pub(super) host: RegisterMask,
    pub(super) ports: Vec<Port>,
    pub(super) dma: Arc<dyn Dma>,
    pub(super) pci: EndpointConfig,
    pub(super) routing: MsiRouting,
    /// The function's I/O counters.
    pub(super) counters: Arc<FunctionCounters>,
    intx: Arc<dyn IrqLine>,
    intx_level: bool,
    msi_due: bool,
    inflight: Vec<Option<InFlight>>,
    free_tags: Vec<usize>,
    reaped: Vec<Completion>,
    warnings: ratelimit::LogLimit,
    /// PxCI writes leave fetching to the worker ([`Hba::set_defer_issue`]).
    defer_issue: bool,
    /// A PxCI write found work the worker has not fetched yet.
    issue_pending: bool,
}

impl Hba {
    /// An HBA at power-on: links come up for the ports with a disk.
    pub(super) fn new(
        caps: HostCaps,
        ports: Vec<Port>,
        dma: Arc<dyn Dma>,
        pci: EndpointConfig,
        routing: MsiRouting,
        intx: Arc<dyn IrqLine>,
        counters: Arc<FunctionCounters>,
    ) -> Self {
        let mut h = Self {
            caps,
            host: regs::host_block(caps),
            ports,
            dma,
            pci,
            routing,
            counters,
            intx,
            intx_level: false,
            msi_due: false,
            inflight: Vec::new(),
            free_tags: Vec::new(),
            reaped: Vec::new(),
            warnings: ratelimit::LogLimit::new(WARN_BUDGET, ratelimit::WINDOW),
            defer_issue: false,
            issue_pending: false,
        };
        for p in 0..h.ports.len() {
            h.link_up(p);
        }
        h
    }

    /// A warning about something the guest caused, rate limited.
    pub(super) fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        ratelimit::warn_with!(self.warnings, "AHCI: {msg}");
    }

    /// A port's register (tests and diagnostics).
    pub fn port_reg(&self, p: usize, offset: usize) -> u32 {
        self.ports.get(p).map_or(0, |port| port.get(offset))
    }

    /// With `on`, a PxCI write only records that there is work and the
    /// caller wakes the worker ([`Hba::take_issue_pending`]), which fetches
    /// the commands ([`Hba::run_lists`]): the vCPU's exit then ends at once.
    pub fn set_defer_issue(&mut self, on: bool) {
        self.defer_issue = on;
    }

    /// Whether a PxCI write left work for the worker since the last call.
    pub fn take_issue_pending(&mut self) -> bool {
        std::mem::take(&mut self.issue_pending)
    }

    /// Fetches what every port's list holds, submits it and sends the
    /// interrupts due (the worker's pass for deferred PxCI writes).
    pub fn run_lists(&mut self) {
        for p in 0..self.ports.len() {
            self.process_port(p);
        }
        self.submit_backends();
        self.flush_interrupts();
    }

    /// Backend requests in flight over all ports.
    pub fn in_flight(&self) -> usize {
        self.ports.iter().map(|p| p.outstanding as usize).sum()
    }

    // ---- ABAR accesses -------------------------------------------------------

    /// A guest read of the ABAR.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .map_or(0, |o| self.read_byte(o));
        }
    }

    fn read_byte(&self, o: usize) -> u8 {
        let mut b = [0u8];
        if o < HBA_SIZE {
            self.host.read(o, &mut b);
        } else if let Some(p) = self.ports.get((o - HBA_SIZE) / PORT_SIZE) {
            p.regs.read((o - HBA_SIZE) % PORT_SIZE, &mut b);
        }
        b[0]
    }

    /// A guest write to the ABAR, of any width at any offset: split at
    /// register block boundaries, each piece with its block's semantics.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(mut o) = usize::try_from(offset) else {
            return;
        };
        let end = HBA_SIZE + self.ports.len() * PORT_SIZE;
        let mut rest = data;
        while !rest.is_empty() && o < end {
            let (block_end, p) = if o < HBA_SIZE {
                (HBA_SIZE, None)
            } else {
                let p = (o - HBA_SIZE) / PORT_SIZE;
                (HBA_SIZE + (p + 1) * PORT_SIZE, Some(p))
            };
            let n = rest.len().min(block_end - o);
            match p {
                None => self.host_write(o, &rest[..n]),
                Some(p) => self.port_write(p, o - HBA_SIZE - p * PORT_SIZE, &rest[..n]),
            }
            rest = &rest[n..];
            o += n;
        }
        self.submit_backends();
        self.flush_interrupts();
    }

    fn host_write(&mut self, off: usize, data: &[u8]) {
        let before = regs::get(&self.host, regs::GHC);
        self.host.write(off, data);
        let after = regs::get(&self.host, regs::GHC);
        if regs::touches(off, data.len(), regs::GHC) {
            if after & ghc::HR != 0 {
                self.hba_reset();
                return;
            }
            if before & ghc::IE == 0 && after & ghc::IE != 0 && self.host_is() != 0 {
                self.msi_due = true;
            }
        }
        if regs::touches(off, data.len(), regs::IS) {
            // A port whose enabled causes are still pending keeps its bit.
            let still: u32 = (0..self.ports.len())
                .filter(|&p| self.ports[p].pending() != 0)
                .fold(0, |a, p| a | 1 << p);
            if still & !self.host_is() != 0 {
                self.msi_due = true;
            }
            let v = self.host_is() | still;
            regs::set(&mut self.host, regs::IS, v);
        }
    }

    fn port_write(&mut self, p: usize, off: usize, data: &[u8]) {
        let touches = |reg| regs::touches(off, data.len(), reg);
        let (cmd, sctl, sact, ci) = {
            let pt = &self.ports[p];
            (
                pt.get(port::CMD),
                pt.get(port::SCTL),
                pt.get(port::SACT),
                pt.get(port::CI),
            )
        };
        let pending = self.ports[p].pending();
        self.ports[p].regs.write(off, data);
        if touches(port::SERR) {
            self.mirror_serr(p);
        }
        if touches(port::IE) {
            self.note_pending(p, pending);
        }
        if touches(port::CMD) {
            self.on_cmd(p, cmd);
        }
        if touches(port::SCTL) {
            self.on_sctl(p, sctl & 0xf);
        }
        let started = self.ports[p].started();
        if touches(port::SACT) && !started {
            self.warn(format_args!(
                "port {p}: PxSACT written while PxCMD.ST is 0; ignored"
            ));
            self.ports[p].set(port::SACT, sact);
        }
        if touches(port::CI) {
            self.counters.doorbells.doorbells_trapped.inc();
            if started && self.defer_issue {
                self.issue_pending = true;
            } else if started {
                self.process_port(p);
            } else {
                self.warn(format_args!(
                    "port {p}: PxCI written while PxCMD.ST is 0; ignored"
                ));
                self.ports[p].set(port::CI, ci);
            }
        }
    }

    /// PxIS.PCS, PRCS and UFS mirror PxSERR.DIAG.X, N and F.
    fn mirror_serr(&mut self, p: usize) {
        let pt = &mut self.ports[p];
        let e = pt.get(port::SERR);
        pt.update(port::IS, pis::PCS, e & serr::DIAG_X != 0);
        pt.update(port::IS, pis::PRCS, e & serr::DIAG_N != 0);
        pt.update(port::IS, pis::UFS, e & serr::DIAG_F != 0);
    }

    fn on_cmd(&mut self, p: usize, before: u32) {
        let pt = &mut self.ports[p];
        let now = pt.get(port::CMD);
        // Interface Communication Control: the transition is immediate.
        pt.update(port::CMD, pcmd::ICC, false);
        if now & pcmd::CLO != 0 {
            if now & pcmd::ST == 0 {
                let tfd = pt.get(port::TFD) & !u32::from(status::BSY | status::DRQ);
                pt.set(port::TFD, tfd);
            }
            pt.update(port::CMD, pcmd::CLO, false);
        }
        let fre = now & pcmd::FRE != 0;
        pt.update(port::CMD, pcmd::FR, fre);
        if fre && before & pcmd::FRE == 0 && pt.sig_pending {
            self.post_signature(p);
        }
        let pt = &mut self.ports[p];
        match (before & pcmd::ST != 0, now & pcmd::ST != 0) {
            (false, true) => {
                pt.halted = false;
                pt.update(port::CMD, pcmd::CCS, false);
                pt.refresh_cr();
                self.process_port(p);
            }
            (true, false) => pt.stop_list(),
            _ => {}
        }
    }

    fn on_sctl(&mut self, p: usize, before: u32) {
        let det = self.ports[p].get(port::SCTL) & 0xf;
        match (before, det) {
            (b, 1) if b != 1 => self.comreset(p),
            (b, 0) if b != 0 => self.link_up(p),
            (b, 4) if b != 4 => {
                self.comreset(p);
                let pt = &mut self.ports[p];
                pt.link = Link::Offline;
                pt.set(port::SSTS, ssts::OFFLINE);
            }
            _ => {}
        }
    }

    /// COMRESET asserted (PxSCTL.DET = 1): the link drops, the device resets.
    fn comreset(&mut self, p: usize) {
        let pt = &mut self.ports[p];
        if pt.started() {
            self.warn(format_args!("port {p}: COMRESET while PxCMD.ST is 1"));
        }
        let pt = &mut self.ports[p];
        pt.abandon();
        pt.link = Link::Down;
        pt.sig_pending = false;
        pt.set(port::SSTS, ssts::NONE);
        if let Some(d) = pt.disk.as_mut() {
            d.reset();
            pt.set_tfd(status::BSY, 0);
        }
    }

    /// The link comes up (power-on, HBA reset, COMRESET released): a disk
    /// sends its signature.
    fn link_up(&mut self, p: usize) {
        let pt = &mut self.ports[p];
        if pt.disk.is_none() {
            pt.link = Link::Down;
            pt.set(port::SSTS, ssts::NONE);
            pt.set(port::TFD, regs::TFD_NONE);
            return;
        }
        if let Some(d) = pt.disk.as_mut() {
            d.reset();
        }
        pt.link = Link::Up;
        pt.set(port::SSTS, ssts::UP);
        pt.set(port::SIG, regs::SIG_DISK);
        pt.set_tfd(status::DRDY | status::DSC, 1);
        let e = pt.get(port::SERR) | serr::DIAG_N | serr::DIAG_X;
        pt.set(port::SERR, e);
        pt.sig_pending = true;
        let pending = pt.pending();
        self.mirror_serr(p);
        self.note_pending(p, pending);
        if self.ports[p].fis_receive() {
            self.post_signature(p);
        }
    }

    fn post_signature(&mut self, p: usize) {
        self.ports[p].sig_pending = false;
        let o = Outputs {
            status: status::DRDY | status::DSC,
            error: 1,
            count: 1,
            lba: 1,
            device: 0,
        };
        self.write_fis(p, rfis::RFIS, &fis::d2h(&o, false));
    }

    /// HBA reset (GHC.HR, §10.4.3): every port and the host block back to
    /// reset; GHC.HR reads 1 until no abandoned command holds the backend.
    fn hba_reset(&mut self) {
        for p in 0..self.ports.len() {
            let pt = &mut self.ports[p];
            pt.abandon();
            pt.regs = regs::port_block();
            pt.busy = 0;
            pt.nonqueued = None;
            pt.halted = false;
            pt.refresh_cr();
            self.link_up(p);
        }
        self.host = regs::host_block(self.caps);
        self.msi_due = false;
        self.finish_hba_reset();
    }

    fn finish_hba_reset(&mut self) {
        let busy = self.in_flight() > 0;
        let v = regs::get(&self.host, regs::GHC);
        regs::set(
            &mut self.host,
            regs::GHC,
            if busy { v | ghc::HR } else { v & !ghc::HR },
        );
    }

    // ---- interrupts ------------------------------------------------------------

    fn host_is(&self) -> u32 {
        regs::get(&self.host, regs::IS)
    }

    /// Sets PxIS bits from the device side.
    pub(super) fn raise(&mut self, p: usize, bits: u32) {
        let pending = self.ports[p].pending();
        self.ports[p].update(port::IS, bits, true);
        self.note_pending(p, pending);
    }

    /// After a change of PxIS or PxIE: a newly enabled cause sets the
    /// port's IS bit and asks for a message.
    fn note_pending(&mut self, p: usize, before: u32) {
        let now = self.ports[p].pending();
        if now & !before != 0 {
            let v = self.host_is() | 1 << p;
            regs::set(&mut self.host, regs::IS, v);
            self.msi_due = true;
        }
    }

    /// Sends the message due (at most one per call: completions found in
    /// one pass share it) and drives INTx.
    pub fn flush_interrupts(&mut self) {
        let ie = regs::get(&self.host, regs::GHC) & ghc::IE != 0;
        if std::mem::take(&mut self.msi_due) && ie && MsiRouting::enabled(&self.pci) {
            match self.routing.signal(&mut self.pci, 0) {
                Signal::Sent | Signal::Pending | Signal::UseIntx => {}
                Signal::NoBusMaster => tracing::debug!("AHCI: message lost: bus master off"),
                Signal::NoSuchVector => tracing::debug!("AHCI: MSI vector 0 not enabled"),
            }
        }
        self.update_intx();
    }

    /// INTx: asserted while MSI is off, GHC.IE is set and IS has a port
    /// bit; gated by the command register's INTx Disable.
    pub fn update_intx(&mut self) {
        let ie = regs::get(&self.host, regs::GHC) & ghc::IE != 0;
        let pending = !MsiRouting::enabled(&self.pci) && ie && self.host_is() != 0;
        self.pci.config_mut().set_interrupt_status(pending);
        let level = pending && self.pci.config().command() & command::INTX_DISABLE == 0;
        if level != self.intx_level {
            self.intx_level = level;
            if let Err(e) = self.intx.set_level(level) {
                tracing::warn!("AHCI: INTx not delivered: {e}");
            }
        }
    }

    // ---- received FISes and completions ---------------------------------------

    /// Copies a FIS into the port's received-FIS area (only while FIS
    /// receive runs); an area outside guest memory is a host bus fatal
    /// error.
    pub(super) fn write_fis(&mut self, p: usize, at: u64, bytes: &[u8]) {
        if !self.ports[p].fis_receive() {
            return;
        }
        let addr = self.ports[p].fb().wrapping_add(at);
        if self.dma.write(addr, bytes).is_err() {
            self.fatal(
                p,
                pis::HBFS,
                format_args!("received-FIS area {addr:#x} not in guest memory"),
            );
        }
    }

    /// A fatal port error (§6.1.2): the cause in PxIS, the list halts with
    /// CI and SACT as they are.
    pub(super) fn fatal(&mut self, p: usize, cause: u32, why: std::fmt::Arguments<'_>) {
        self.warn(format_args!("port {p}: {why}"));
        self.ports[p].halted = true;
        self.raise(p, cause);
    }

    /// Completes non-queued command `slot`: PRDBC, then a D2H FIS (or, for
    /// PIO data-in, a PIO Setup FIS) with the I bit. Success clears its CI
    /// bit; an error sets TFES and leaves CI set (§6.1.2).
    pub(super) fn complete_nonqueued(
        &mut self,
        p: usize,
        slot: u8,
        out: Outputs,
        pio_in: Option<u16>,
        bytes: u32,
    ) {
        let bit = 1u32 << slot;
        self.ports[p].nonqueued = None;
        let hdr = self.ports[p]
            .clb()
            .wrapping_add(u64::from(slot) * HEADER_SIZE + 4);
        if self.dma.write(hdr, &bytes.to_le_bytes()).is_err() {
            self.fatal(
                p,
                pis::HBFS,
                format_args!("command header {hdr:#x} not in guest memory"),
            );
            return;
        }
        let failed = out.status & status::ERR != 0;
        match pio_in {
            Some(n) if !failed => {
                self.write_fis(p, rfis::PSFIS, &fis::pio_setup_in(n, out.status));
                self.ports[p].set_tfd(out.status, 0);
                self.finish_slot(p, bit, pis::PSS);
            }
            _ => {
                self.write_fis(p, rfis::RFIS, &fis::d2h(&out, true));
                self.ports[p].set_tfd(out.status, out.error);
                if failed {
                    self.ports[p].halted = true;
                    self.raise(p, pis::DHRS | pis::TFES);
                } else {
                    self.finish_slot(p, bit, pis::DHRS);
                }
            }
        }
    }

    fn finish_slot(&mut self, p: usize, bit: u32, cause: u32) {
        let pt = &mut self.ports[p];
        pt.busy &= !bit;
        pt.update(port::CI, bit, false);
        self.raise(p, cause);
    }

    /// Announces the queued commands completed so far with one SDB FIS.
    pub(super) fn flush_ncq(&mut self, p: usize) {
        let done = std::mem::take(&mut self.ports[p].ncq_done);
        if done == 0 {
            return;
        }
        let ok = status::DRDY | status::DSC;
        self.write_fis(p, rfis::SDBFIS, &fis::sdb(done, ok, 0));
        let pt = &mut self.ports[p];
        pt.busy &= !done;
        pt.update(port::SACT, done, false);
        pt.set_tfd(status::DRDY, 0);
        self.raise(p, pis::SDBS);
    }

    /// A queued command failed (SATA 3.x §13.6.3.2): earlier completions are
    /// announced, then an SDB FIS with ERR; the device keeps the error for
    /// log 10h and drops its other queued commands; the HBA sets TFES and
    /// halts with SACT as it is.
    pub(super) fn ncq_failed(&mut self, p: usize, slot: u8, out: Outputs, lba: u64, count: u32) {
        self.flush_ncq(p);
        let err = NcqError {
            tag: slot,
            status: out.status,
            error: out.error,
            lba,
            count: count as u16,
        };
        let pt = &mut self.ports[p];
        if let Some(d) = pt.disk.as_mut() {
            d.ncq_error = Some(err);
        }
        pt.abandon();
        pt.halted = true;
        pt.set_tfd(out.status, out.error);
        self.write_fis(p, rfis::SDBFIS, &fis::sdb(0, out.status, out.error));
        self.raise(p, pis::SDBS | pis::TFES);
    }

    // ---- backend requests --------------------------------------------------------

    /// Registers a command waiting for `f.remaining` backend requests.
    pub(super) fn alloc_tag(&mut self, f: InFlight) -> u64 {
        self.ports[f.port].outstanding += f.remaining;
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

    /// Hands queued backend requests to the kernel.
    pub fn submit_backends(&mut self) {
        for d in self.ports.iter_mut().filter_map(|p| p.disk.as_mut()) {
            d.engine.submit();
        }
    }

    /// Collects backend completions, posts what they finish, runs the
    /// lists further and sends the interrupt due; returns how many
    /// completions came in.
    pub fn reap_completions(&mut self) -> usize {
        let mut done = std::mem::take(&mut self.reaped);
        for d in self.ports.iter_mut().filter_map(|p| p.disk.as_mut()) {
            d.engine.reap(&mut done);
        }
        let n = done.len();
        for c in done.drain(..) {
            self.finish(c);
        }
        self.reaped = done;
        if n > 0 {
            for p in 0..self.ports.len() {
                self.flush_ncq(p);
                self.process_port(p);
            }
            if regs::get(&self.host, regs::GHC) & ghc::HR != 0 {
                self.finish_hba_reset();
            }
            self.submit_backends();
        }
        self.flush_interrupts();
        n
    }

    /// Blocks until no backend request is in flight, posting every
    /// completion (tests, and use without a worker).
    pub fn wait_idle(&mut self) {
        for _ in 0..1_000_000 {
            self.submit_backends();
            self.reap_completions();
            if self.in_flight() == 0 {
                return;
            }
            for d in self.ports.iter_mut().filter_map(|p| p.disk.as_mut()) {
                if d.engine.in_flight() > 0 {
                    d.engine.wait();
                }
            }
        }
    }

    fn finish(&mut self, c: Completion) {
        let Some(idx) = usize::try_from(c.tag).ok() else {
            return;
        };
        let Some(mut f) = self.inflight.get(idx).copied().flatten() else {
            return;
        };
        let p = f.port;
        self.ports[p].outstanding = self.ports[p].outstanding.saturating_sub(1);
        if let Err(errno) = c.result {
            if f.failed.is_none() {
                self.warn(format_args!(
                    "port {p} slot {}: backend error {errno}",
                    f.slot
                ));
                f.failed = Some(ata::fail(if f.read {
                    ata::error::UNC
                } else {
                    ata::error::ABRT
                }));
            }
        }
        f.remaining = f.remaining.saturating_sub(1);
        if f.remaining > 0 {
            self.inflight[idx] = Some(f);
            return;
        }
        self.inflight[idx] = None;
        self.free_tags.push(idx);
        self.ports[p].refresh_cr();
        if f.generation != self.ports[p].generation {
            return; // abandoned: its completion is never posted
        }
        self.count(&f);
        match (f.queued, f.failed) {
            (true, None) => self.ports[p].ncq_done |= 1 << f.slot,
            (true, Some(out)) => self.ncq_failed(p, f.slot, out, f.lba, f.count),
            (false, out) => {
                let out = out.unwrap_or_else(ata::ok);
                self.complete_nonqueued(p, f.slot, out, None, f.bytes);
            }
        }
    }

    /// Counts a command whose backend requests all completed.
    fn count(&self, f: &InFlight) {
        let block = &self.counters.block;
        if f.failed.is_some() {
            block.errors_io.inc();
            return;
        }
        block.completed(f.counted);
    }

    /// Bus Master Enable.
    pub(super) fn bus_master(&self) -> bool {
        self.pci.config().command() & command::BUS_MASTER != 0
    }
}
