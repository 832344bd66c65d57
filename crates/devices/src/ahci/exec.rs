//! Running a port's command list (AHCI 1.3.1 §5.3–§5.6): fetching the
//! command header and FIS of each slot set in PxCI, and executing the ATA
//! command against the disk (ACS-3 §7): data-in commands answered at
//! once, media commands handed to the backend.

use backend::{Op, Request};
use counters::BlockOp;
use dma::{Direction, GuestBuffers};

use super::ata::{self, AtaCommand, SECTOR};
use super::command::{self, CommandHeader, PrdError, CFIS_SIZE, HEADER_SIZE, PRDT_OFFSET};
use super::fis::{self, rfis, Outputs, Taskfile, CONTROL_SRST};
use super::hba::{Hba, InFlight};
use super::identify::{DSM_MAX_BLOCKS, MAX_MULTIPLE};
use super::log;
use super::regs::{pcmd, pis, port, status};

/// What executing a command came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exec {
    /// Backend requests were queued; the completion comes later.
    Later,
    /// Done now: outputs, bytes of PIO data in (for a PIO Setup FIS), and
    /// bytes transferred (PRDBC).
    Done(Outputs, Option<u16>, u32),
    /// A fatal port error with this PxIS cause.
    Fatal(u32),
}

fn done(out: Outputs) -> Exec {
    Exec::Done(out, None, 0)
}

/// What a command needs from its slot.
struct Slot {
    port: usize,
    slot: u8,
    header: CommandHeader,
    queued: bool,
}

impl Hba {
    /// Fetches and runs the commands waiting in port `p`'s list: non-queued
    /// ones one at a time, queued ones as they come; nothing while Bus
    /// Master Enable is off, the list is stopped or halted, or no device
    /// is up.
    pub(super) fn process_port(&mut self, p: usize) {
        if !self.bus_master() {
            return;
        }
        for _ in 0..32 {
            let pt = &self.ports[p];
            if !pt.runnable() || pt.nonqueued.is_some() {
                return;
            }
            let waiting = pt.get(port::CI) & !pt.busy;
            if waiting == 0 {
                return;
            }
            self.issue(p, waiting.trailing_zeros() as u8);
        }
    }

    fn issue(&mut self, p: usize, slot: u8) {
        let bit = 1u32 << slot;
        let pt = &mut self.ports[p];
        let ccs = (pt.get(port::CMD) & !pcmd::CCS) | u32::from(slot) << pcmd::CCS_SHIFT;
        pt.set(port::CMD, ccs);
        let at = pt.clb().wrapping_add(u64::from(slot) * HEADER_SIZE);
        let mut raw = [0u8; 32];
        if self.dma.read(at, &mut raw).is_err() {
            return self.fatal(
                p,
                pis::HBFS,
                format_args!("command header {at:#x} unreadable"),
            );
        }
        let header = CommandHeader::parse(&raw);
        let mut cfis = [0u8; CFIS_SIZE];
        if self.dma.read(header.ctba, &mut cfis).is_err() {
            let a = header.ctba;
            return self.fatal(
                p,
                pis::HBFS,
                format_args!("command table {a:#x} unreadable"),
            );
        }
        let tf = header
            .cfl_valid()
            .then(|| Taskfile::from_h2d(&cfis[..usize::from(header.cfl) * 4]))
            .flatten();
        let Some(tf) = tf else {
            let cfl = header.cfl;
            return self.fatal(
                p,
                pis::IFS,
                format_args!("slot {slot}: bad command FIS (CFL {cfl})"),
            );
        };
        if !tf.is_command {
            return self.device_control(p, bit, &tf);
        }
        let cmd = AtaCommand::decode(&tf);
        let queued = cmd.queued();
        let pt = &mut self.ports[p];
        let ncq_active = pt.busy & pt.get(port::SACT) != 0;
        pt.busy |= bit;
        if !queued {
            pt.nonqueued = Some(slot);
            if ncq_active {
                self.warn(format_args!(
                    "port {p}: non-queued command while queued ones run"
                ));
                return self.complete_nonqueued(p, slot, ata::abort(), None, 0);
            }
        }
        let s = Slot {
            port: p,
            slot,
            header,
            queued,
        };
        if queued {
            let AtaCommand::ReadWrite { tag, .. } = cmd else {
                return;
            };
            if tag != Some(slot) || self.ports[p].get(port::SACT) & bit == 0 {
                // Not a valid queued command for this slot: aborted as a
                // non-queued one.
                self.warn(format_args!(
                    "port {p}: FPDMA tag {tag:?} in slot {slot} (SACT bit set: {})",
                    self.ports[p].get(port::SACT) & bit != 0
                ));
                self.ports[p].nonqueued = Some(slot);
                return self.complete_nonqueued(p, slot, ata::abort(), None, 0);
            }
            // Accepted: the device's D2H FIS with BSY clear releases CI.
            let pt = &mut self.ports[p];
            pt.update(port::CI, bit, false);
            pt.set_tfd(status::DRDY, 0);
            self.write_fis(
                p,
                rfis::RFIS,
                &fis::d2h(
                    &Outputs {
                        status: status::DRDY,
                        ..Default::default()
                    },
                    false,
                ),
            );
            if self.ports[p]
                .disk
                .as_ref()
                .is_some_and(|d| d.ncq_error.is_some())
            {
                let (lba, n) = rw_range(&cmd);
                return self.ncq_failed(p, slot, ata::abort(), lba, n);
            }
        }
        let result = self.execute(&s, &cmd);
        match result {
            Exec::Fatal(_) => self.counters.block.errors_dma.inc(),
            Exec::Done(out, ..) if out.status & status::ERR != 0 => {
                self.counters.block.errors_invalid.inc();
            }
            _ => {}
        }
        match result {
            Exec::Later => {}
            Exec::Fatal(cause) => {
                self.fatal(
                    p,
                    cause,
                    format_args!(
                        "slot {slot}: command {:#04x} failed its transfer",
                        tf.command
                    ),
                );
            }
            Exec::Done(out, pio, bytes) => {
                if !queued {
                    self.complete_nonqueued(p, slot, out, pio, bytes);
                } else if out.status & status::ERR != 0 {
                    let (lba, n) = rw_range(&cmd);
                    self.ncq_failed(p, slot, out, lba, n);
                } else {
                    self.ports[p].ncq_done |= bit;
                }
            }
        }
    }

    /// A Register H2D FIS with C clear: a Device Control update. SRST set
    /// starts a software reset (BSY), SRST cleared ends it with the
    /// signature; either way the slot completes at once.
    fn device_control(&mut self, p: usize, bit: u32, tf: &Taskfile) {
        let pt = &mut self.ports[p];
        pt.update(port::CI, bit, false);
        if tf.control & CONTROL_SRST != 0 {
            pt.abandon();
            if let Some(d) = pt.disk.as_mut() {
                d.reset();
            }
            pt.set_tfd(status::BSY, 0);
        } else if pt.get(port::TFD) & u32::from(status::BSY) != 0 {
            pt.set_tfd(status::DRDY | status::DSC, 1);
            pt.sig_pending = true;
            if pt.fis_receive() {
                let o = Outputs {
                    status: status::DRDY | status::DSC,
                    error: 1,
                    count: 1,
                    lba: 1,
                    device: 0,
                };
                pt.sig_pending = false;
                self.write_fis(p, rfis::RFIS, &fis::d2h(&o, false));
            }
        }
    }

    fn execute(&mut self, s: &Slot, cmd: &AtaCommand) -> Exec {
        let p = s.port;
        let Some(disk) = self.ports[p].disk.as_mut() else {
            return done(ata::abort());
        };
        match *cmd {
            AtaCommand::Identify => {
                let page = disk.identify();
                self.pio_in(s, &page)
            }
            AtaCommand::ReadLogExt { log, page, pages } => {
                let n = u32::from(log::pages(log));
                if u32::from(page) + pages > n || n == 0 {
                    return done(ata::abort());
                }
                let ncq = disk.ncq_error.take();
                match log::page(log, ncq.as_ref()) {
                    Some(data) => {
                        if log != log::NCQ_ERROR {
                            disk.ncq_error = ncq;
                        }
                        self.pio_in(s, &data)
                    }
                    None => {
                        disk.ncq_error = ncq;
                        done(ata::abort())
                    }
                }
            }
            AtaCommand::ReadWrite {
                write,
                lba,
                sectors,
                fua,
                ..
            } => self.read_write(s, write, lba, sectors, fua),
            AtaCommand::Flush => {
                disk.settings.standby = false;
                self.backend(s, vec![Op::Flush], 0, true, (0, 0))
            }
            AtaCommand::Dsm { blocks, trim } => self.dsm(s, blocks, trim),
            AtaCommand::SetFeatures { sub, count } => done(set_features(disk, sub, count)),
            AtaCommand::SetMultiple(n) => {
                if n == 0 || (n.is_power_of_two() && n <= MAX_MULTIPLE) {
                    disk.settings.multiple = n;
                    done(ata::ok())
                } else {
                    done(ata::abort())
                }
            }
            AtaCommand::Standby => {
                // The cache goes to the media before the spindle would stop.
                disk.settings.standby = true;
                self.backend(s, vec![Op::Flush], 0, true, (0, 0))
            }
            AtaCommand::Idle => {
                disk.settings.standby = false;
                done(ata::ok())
            }
            AtaCommand::CheckPowerMode => {
                let mut out = ata::ok();
                out.count = if disk.settings.standby { 0x00 } else { 0xff };
                done(out)
            }
            AtaCommand::Unsupported(op) => {
                tracing::debug!("AHCI: port {p}: command {op:#04x} aborted");
                done(ata::abort())
            }
        }
    }

    /// The segments of a `len`-byte transfer through slot `s`'s PRDT.
    fn segments(&self, s: &Slot, len: u64) -> Result<Vec<(u64, u64)>, Exec> {
        let prdt = s.header.ctba.wrapping_add(PRDT_OFFSET);
        let dma = &self.dma;
        command::walk(prdt, s.header.prdtl, len, |a, b| {
            dma.read(a, b).map_err(|_| ())
        })
        .map_err(|e| match e {
            PrdError::TooShort { .. } => Exec::Fatal(pis::OFS),
            PrdError::Unreadable(_) => Exec::Fatal(pis::HBFS),
            PrdError::TooManySegments => done(ata::abort()),
        })
    }

    /// PIO data in: `data` copied through the PRDT.
    fn pio_in(&mut self, s: &Slot, data: &[u8]) -> Exec {
        let segs = match self.segments(s, data.len() as u64) {
            Ok(segs) => segs,
            Err(e) => return e,
        };
        let mut at = 0usize;
        for (addr, n) in segs {
            let n = n as usize;
            if self.dma.write(addr, &data[at..at + n]).is_err() {
                return Exec::Fatal(pis::HBDS);
            }
            at += n;
        }
        Exec::Done(ata::ok(), Some(data.len() as u16), data.len() as u32)
    }

    fn read_write(&mut self, s: &Slot, write: bool, lba: u64, sectors: u32, fua: bool) -> Exec {
        let Some(disk) = self.ports[s.port].disk.as_mut() else {
            return done(ata::abort());
        };
        if write && disk.readonly {
            return done(ata::abort());
        }
        let Some((offset, len)) = disk.byte_range(lba, u64::from(sectors)) else {
            let mut out = ata::fail(ata::error::IDNF);
            out.lba = lba;
            return done(out);
        };
        disk.settings.standby = false;
        let dsync = fua || !disk.settings.write_cache;
        let segs = match self.segments(s, len) {
            Ok(segs) => segs,
            Err(e) => return e,
        };
        let dir = if write {
            Direction::ToDevice
        } else {
            Direction::FromDevice
        };
        let Ok(buffers) = GuestBuffers::new(self.dma.clone(), &segs, dir) else {
            return Exec::Fatal(pis::HBDS);
        };
        let op = if write {
            Op::Write {
                offset,
                buffers,
                dsync,
            }
        } else {
            Op::Read { offset, buffers }
        };
        self.backend(s, vec![op], len as u32, !write, (lba, sectors))
    }

    /// DATA SET MANAGEMENT: TRIM ranges (8 bytes each: LBA 47:0, length
    /// 63:48; length 0 ends nothing, it is skipped) become discards; any
    /// range past the end aborts the whole command before anything is
    /// discarded. With the write cache off (SET FEATURES 82h) they are
    /// durable on completion, as writes are.
    fn dsm(&mut self, s: &Slot, blocks: u32, trim: bool) -> Exec {
        let Some(disk) = self.ports[s.port].disk.as_ref() else {
            return done(ata::abort());
        };
        if !trim || !disk.trim || disk.readonly || blocks > u32::from(DSM_MAX_BLOCKS) {
            return done(ata::abort());
        }
        let len = u64::from(blocks) * SECTOR;
        let segs = match self.segments(s, len) {
            Ok(segs) => segs,
            Err(e) => return e,
        };
        let mut payload = Vec::with_capacity(len as usize);
        for (addr, n) in segs {
            let mut b = vec![0u8; n as usize];
            if self.dma.read(addr, &mut b).is_err() {
                return Exec::Fatal(pis::HBDS);
            }
            payload.extend_from_slice(&b);
        }
        let dsync = !disk.settings.write_cache;
        let mut ops = Vec::new();
        for e in payload.chunks_exact(8) {
            let v = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let (lba, n) = (v & 0xffff_ffff_ffff, v >> 48);
            if n == 0 {
                continue;
            }
            match disk.byte_range(lba, n) {
                Some((offset, len)) => ops.push(Op::Discard { offset, len, dsync }),
                None => return done(ata::abort()),
            }
        }
        self.backend(s, ops, len as u32, false, (0, 0))
    }

    /// Queues `ops` for slot `s`; with none, done at once.
    fn backend(
        &mut self,
        s: &Slot,
        ops: Vec<Op>,
        bytes: u32,
        read: bool,
        range: (u64, u32),
    ) -> Exec {
        if ops.is_empty() {
            return Exec::Done(ata::ok(), None, bytes);
        }
        let generation = self.ports[s.port].generation;
        let tag = self.alloc_tag(InFlight {
            port: s.port,
            slot: s.slot,
            generation,
            remaining: ops.len() as u32,
            failed: None,
            queued: s.queued,
            bytes,
            read,
            lba: range.0,
            count: range.1,
            counted: match ops.first() {
                Some(Op::Write { .. }) => BlockOp::Write(u64::from(bytes)),
                Some(Op::Flush) => BlockOp::Flush,
                Some(Op::Discard { .. } | Op::WriteZeroes { .. }) => BlockOp::Discard,
                _ => BlockOp::Read(u64::from(bytes)),
            },
        });
        if let Some(d) = self.ports[s.port].disk.as_mut() {
            for op in ops {
                d.engine.push(Request { tag, op });
            }
        }
        Exec::Later
    }
}

/// LBA and count of a read/write command, for the NCQ error log.
fn rw_range(cmd: &AtaCommand) -> (u64, u32) {
    match *cmd {
        AtaCommand::ReadWrite { lba, sectors, .. } => (lba, sectors),
        _ => (0, 0),
    }
}

/// SET FEATURES (ACS-3 §7.45): the subcommands a disk here honours;
/// others are aborted.
fn set_features(disk: &mut super::disk::Disk, sub: u8, count: u8) -> Outputs {
    let s = &mut disk.settings;
    match sub {
        0x02 => s.write_cache = true,
        0x82 => s.write_cache = false,
        0xaa => s.look_ahead = true,
        0x55 => s.look_ahead = false,
        0x66 | 0xcc => {}
        0x03 => match count {
            0x00 | 0x01 | 0x08..=0x0c | 0x20..=0x22 => s.udma = None,
            0x40..=0x46 => s.udma = Some(count - 0x40),
            _ => return ata::abort(),
        },
        _ => return ata::abort(),
    }
    ata::ok()
}
