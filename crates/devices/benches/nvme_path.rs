//! The NVMe device path without a VM: a synthetic guest driver brings the
//! controller up through BAR0 as Linux's `nvme` driver would (PCI memory
//! and bus mastering, MSI-X table, CC.EN with the admin queue, Set
//! Features Number of Queues, Create I/O CQ and SQ), then keeps `--depth`
//! 4 KiB reads or writes (PRP1 only, random 4 KiB-aligned LBAs) in flight
//! on I/O queue 1. Like Linux's driver on iovm, it sets up shadow
//! doorbells (Doorbell Buffer Config): each batch of submissions writes the
//! shadow SQ tail and, only when the controller's EventIdx asks for it,
//! writes the SQ's doorbell eventfd (in iovm, KVM's ioeventfd on the
//! doorbell does that write); completions are found by the phase bit in
//! guest RAM and handed back through the shadow CQ head, with a trapped
//! CQ head doorbell write only when the EventIdx asks for one. The
//! controller runs its I/O queues on its worker thread with the io_uring
//! backend, as in iovm.
//!
//! ```text
//! cargo bench -p devices --bench nvme_path -- --file PATH --seconds 10 \
//!     --depth 32 --rw randread --json OUT
//! ```
//!
//! Measured: IOPS, mean latency, CPU per I/O of the whole process (the
//! driver thread included: it spins with `--reap poll`), of the driver
//! thread, and of the controller's worker thread (`nvme-worker`), which is
//! the device's own cost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use benchkit::{Args, DevicePath, Interrupts, Parser, Rw, IO_SIZE};
use devices::nvme::command::Sqe;
use devices::nvme::regs::{self, cc, csts};
use devices::nvme::{NamespaceConfig, Nvme, NvmeConfig, PciRole, DOORBELL_BASE, NVME_BAR};
use dma::{FunctionContext, FunctionDma, GuestDma, RequesterId};
use irq::msi::{MsiMessage, MsiVectors};
use irq::recording::RecordingLine;
use pci::config::command;
use pci::testing::{BarDriver, ConfigDriver, MsixDriver};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Guest RAM.
const RAM: u64 = 64 << 20;
/// Admin submission and completion queues.
const ASQ: u64 = 0x1_0000;
const ACQ: u64 = 0x1_1000;
const ADMIN_ENTRIES: u32 = 16;
/// I/O queue pair 1 (room for 4096 entries each).
const IOSQ: u64 = 0x10_0000;
const IOCQ: u64 = 0x14_0000;
/// Data buffers: slot `s` at `DATA + s * 4 KiB`.
const DATA: u64 = 0x20_0000;
/// The I/O queue pair driven.
const QID: u16 = 1;
/// Shadow doorbells and EventIdx buffers (one page each).
const SHADOW: u64 = 0x1_2000;
const EVENTIDX: u64 = 0x1_3000;

/// The MSI port of the controller: counts each message sent.
#[derive(Debug)]
struct CountingMsi(Arc<Interrupts>);

impl MsiVectors for CountingMsi {
    fn update(&self, _changes: &[irq::msi::RouteChange]) {}

    fn send(&self, _vector: u16, _message: MsiMessage) {
        self.0.send();
    }
}

/// One ring as the driver keeps it.
#[derive(Debug)]
struct Ring {
    base: u64,
    entries: u32,
    /// SQ: next free slot. CQ: next entry to look at.
    index: u32,
    /// CQ: the phase tag of new entries.
    phase: bool,
}

impl Ring {
    fn new(base: u64, entries: u32) -> Self {
        Self {
            base,
            entries,
            index: 0,
            phase: true,
        }
    }

    fn advance(&mut self) {
        self.index += 1;
        if self.index == self.entries {
            self.index = 0;
            self.phase = !self.phase;
        }
    }
}

/// The synthetic guest driver of one controller.
struct NvmeDriver {
    nvme: Nvme,
    mem: Arc<GuestMemoryMmap>,
    admin_sq: Ring,
    admin_cq: Ring,
    sq: Ring,
    cq: Ring,
    lba_shift: u32,
    next_admin_cid: u16,
    /// The eventfd behind queue 1's SQ tail doorbell.
    sq_kick: EventFd,
    /// The shadow SQ tail and CQ head last written.
    shadow_tail: u32,
    shadow_head: u32,
}

/// Linux's `nvme_dbbuf_need_event`: ring when the EventIdx lies in
/// [old, new) of 16-bit counters.
fn need_event(event_idx: u32, new: u32, old: u32) -> bool {
    let (e, n, o) = (event_idx as u16, new as u16, old as u16);
    n.wrapping_sub(e).wrapping_sub(1) < n.wrapping_sub(o)
}

fn doorbell_sq(qid: u16) -> u64 {
    DOORBELL_BASE + 8 * u64::from(qid)
}

fn doorbell_cq(qid: u16) -> u64 {
    DOORBELL_BASE + 8 * u64::from(qid) + 4
}

fn sqe(opcode: u8, nsid: u32, prp1: u64, cdw: [u32; 6]) -> Sqe {
    Sqe {
        cdw0: u32::from(opcode),
        nsid,
        prp1,
        prp2: 0,
        cdw,
    }
}

impl NvmeDriver {
    fn write32(&mut self, offset: u64, v: u32) {
        self.nvme.bar_write32(NVME_BAR, offset, v);
    }

    fn write64(&mut self, offset: u64, v: u64) {
        self.nvme.bar_write64(NVME_BAR, offset, v);
    }

    fn read32(&mut self, offset: u64) -> u32 {
        self.nvme.bar_read32(NVME_BAR, offset)
    }

    fn zero(&self, addr: u64, len: usize) -> Result<()> {
        self.mem
            .write_slice(&vec![0u8; len], GuestAddress(addr))
            .context("guest RAM write")
    }

    /// Memory decoding, bus mastering, and MSI-X with vector `v` → APIC
    /// vector 0x40 + v.
    fn enable_pci(&mut self) -> Result<()> {
        self.nvme.set_command(command::MEMORY | command::BUS_MASTER);
        let msix = self.nvme.msix_layout().context("no MSI-X capability")?;
        self.nvme.enable_msix(msix.vectors, |v| MsiMessage {
            address: 0xfee0_0000,
            data: 0x40 + u32::from(v),
        });
        Ok(())
    }

    /// Linux's order: disable, admin queue, enable, wait for ready.
    fn enable_controller(&mut self) -> Result<()> {
        self.write32(regs::CC as u64, 0);
        self.zero(ACQ, ADMIN_ENTRIES as usize * 16)?;
        let aqa = (ADMIN_ENTRIES - 1) << 16 | (ADMIN_ENTRIES - 1);
        self.write32(regs::AQA as u64, aqa);
        self.write64(regs::ASQ as u64, ASQ);
        self.write64(regs::ACQ as u64, ACQ);
        self.write32(
            regs::CC as u64,
            cc::EN | 6 << cc::IOSQES_SHIFT | 4 << cc::IOCQES_SHIFT,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.read32(regs::CSTS as u64);
            ensure!(s & csts::CFS == 0, "controller fatal status after enable");
            if s & csts::RDY != 0 {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "controller not ready after 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs one admin command and checks it succeeded.
    fn admin(&mut self, mut cmd: Sqe, what: &str) -> Result<()> {
        self.next_admin_cid = self.next_admin_cid.wrapping_add(1);
        let cid = self.next_admin_cid;
        cmd.cdw0 |= u32::from(cid) << 16;
        let addr = self.admin_sq.base + u64::from(self.admin_sq.index) * 64;
        self.mem
            .write_slice(&cmd.to_bytes(), GuestAddress(addr))
            .context("guest RAM write")?;
        self.admin_sq.advance();
        self.write32(doorbell_sq(0), self.admin_sq.index);
        let deadline = Instant::now() + Duration::from_secs(5);
        let dw3 = loop {
            let at = self.admin_cq.base + u64::from(self.admin_cq.index) * 16 + 12;
            let dw3: u32 = self
                .mem
                .load(GuestAddress(at), Ordering::Acquire)
                .context("guest RAM read")?;
            if (dw3 & 1 << 16 != 0) == self.admin_cq.phase {
                break dw3;
            }
            ensure!(Instant::now() < deadline, "{what}: no completion");
            std::thread::yield_now();
        };
        self.admin_cq.advance();
        self.write32(doorbell_cq(0), self.admin_cq.index);
        ensure!(
            dw3 as u16 == cid,
            "{what}: completion for CID {}",
            dw3 as u16
        );
        let status = dw3 >> 17;
        ensure!(status == 0, "{what}: status {status:#x}");
        Ok(())
    }

    /// Brings the controller up with I/O queue pair 1 of `entries`
    /// entries, its CQ on MSI-X vector 1.
    fn bring_up(&mut self, entries: u32) -> Result<()> {
        self.enable_pci()?;
        self.enable_controller()?;
        // Set Features, Number of Queues: one SQ and one CQ.
        self.admin(sqe(0x09, 0, 0, [0x07, 0, 0, 0, 0, 0]), "Set Features")?;
        self.zero(IOCQ, entries as usize * 16)?;
        let size = u32::from(QID) | (entries - 1) << 16;
        // Create I/O CQ: physically contiguous, interrupts on, vector 1.
        let cdw11 = 0b11 | 1 << 16;
        self.admin(
            sqe(0x05, 0, IOCQ, [size, cdw11, 0, 0, 0, 0]),
            "Create I/O CQ",
        )?;
        // Create I/O SQ: physically contiguous, on CQ 1.
        let cdw11 = 1 | u32::from(QID) << 16;
        self.admin(
            sqe(0x01, 0, IOSQ, [size, cdw11, 0, 0, 0, 0]),
            "Create I/O SQ",
        )?;
        self.sq = Ring::new(IOSQ, entries);
        self.cq = Ring::new(IOCQ, entries);
        self.zero(SHADOW, 4096)?;
        self.zero(EVENTIDX, 4096)?;
        let mut dbbc = sqe(0x7c, 0, SHADOW, [0; 6]);
        dbbc.prp2 = EVENTIDX;
        self.admin(dbbc, "Doorbell Buffer Config")?;
        ensure!(
            self.nvme.take_doorbell_mode_change() == Some(true),
            "the controller did not switch to shadow doorbells"
        );
        Ok(())
    }

    /// Writes `new` to the shadow doorbell of the register at `offset`
    /// and tells whether the controller's EventIdx asks for the doorbell
    /// itself (Linux's `nvme_dbbuf_update_and_check_event`).
    fn shadow_update(&self, offset: u64, new: u32, old: u32) -> Result<bool> {
        let at = offset - DOORBELL_BASE;
        self.mem
            .store(new, GuestAddress(SHADOW + at), Ordering::Release)
            .context("guest RAM write")?;
        std::sync::atomic::fence(Ordering::SeqCst);
        let event_idx: u32 = self
            .mem
            .load(GuestAddress(EVENTIDX + at), Ordering::Acquire)
            .context("guest RAM read")?;
        Ok(need_event(event_idx, new, old))
    }
}

impl DevicePath for NvmeDriver {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn worker_thread(&self) -> &'static str {
        "nvme-worker"
    }

    fn queue(&mut self, slot: u16, rw: Rw, offset: u64) -> Result<()> {
        let opcode = match rw {
            Rw::RandRead => 0x02,
            Rw::RandWrite => 0x01,
        };
        let slba = offset >> self.lba_shift;
        let nlb = (IO_SIZE >> self.lba_shift) as u32 - 1;
        let mut cmd = sqe(
            opcode,
            1,
            DATA + u64::from(slot) * IO_SIZE,
            [slba as u32, (slba >> 32) as u32, nlb, 0, 0, 0],
        );
        cmd.cdw0 |= u32::from(slot) << 16;
        let addr = self.sq.base + u64::from(self.sq.index) * 64;
        self.mem
            .write_slice(&cmd.to_bytes(), GuestAddress(addr))
            .context("guest RAM write")?;
        self.sq.advance();
        Ok(())
    }

    fn notify(&mut self) -> Result<bool> {
        let (old, new) = (self.shadow_tail, self.sq.index);
        self.shadow_tail = new;
        if self.shadow_update(doorbell_sq(QID), new, old)? {
            self.sq_kick.write(1).context("SQ doorbell eventfd")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn reap(&mut self, done: &mut Vec<u16>) -> Result<()> {
        let before = done.len();
        loop {
            let at = self.cq.base + u64::from(self.cq.index) * 16 + 12;
            let dw3: u32 = self
                .mem
                .load(GuestAddress(at), Ordering::Acquire)
                .context("guest RAM read")?;
            if (dw3 & 1 << 16 != 0) != self.cq.phase {
                break;
            }
            let status = dw3 >> 17;
            if status != 0 {
                bail!("command {} failed: status {status:#x}", dw3 as u16);
            }
            done.push(dw3 as u16);
            self.cq.advance();
        }
        if done.len() > before {
            let (old, new) = (self.shadow_head, self.cq.index);
            self.shadow_head = new;
            if self.shadow_update(doorbell_cq(QID), new, old)? {
                self.write32(doorbell_cq(QID), new);
            }
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    benchkit::init_logging();
    let args = Args::parse();
    benchkit::sandbox(&args)?;
    let block_size = args.block_size.unwrap_or(512);
    let lba_shift = match block_size {
        512 => 9,
        4096 => 12,
        b => bail!("--block-size {b}: 512 or 4096"),
    };
    let entries = u32::from(args.depth) + 1;
    ensure!(entries <= 4096, "--depth at most 4095");
    ensure!(
        DATA + u64::from(args.depth) * IO_SIZE <= RAM,
        "--depth too large for {} MiB of guest RAM",
        RAM >> 20
    );

    let mem = benchkit::guest_ram(RAM)?;
    let readonly = args.rw == Rw::RandRead;
    let disk = benchkit::open_disk(&args)?;
    let (bytes, direct) = (disk.size(), disk.is_direct());
    let interrupts = Arc::new(Interrupts::new(args.reap)?);
    let cfg = NvmeConfig {
        max_io_queues: 1,
        max_queue_entries: entries.max(1024),
        engine: args.engine,
        namespaces: vec![NamespaceConfig {
            disk: Arc::new(disk),
            block_size,
            readonly,
        }],
        role: match args.role {
            benchkit::Role::Function => PciRole::Function,
            benchkit::Role::Pf => PciRole::PhysicalFunction { total_vfs: 4 },
            benchkit::Role::Vf => PciRole::VirtualFunction,
        },
        ..NvmeConfig::default()
    };
    // The function's DMA as the VMM gives it: its context (Bus Master
    // Enable on, as the guest's driver leaves it) in front of guest RAM.
    let ctx = FunctionContext::new(RequesterId::new(0, 3, 0));
    ctx.set_bus_master(true);
    let mut nvme = Nvme::new(
        cfg,
        Arc::new(FunctionDma::new(ctx, Arc::new(GuestDma::new(mem.clone())))),
        Arc::new(CountingMsi(interrupts.clone())),
        Arc::new(RecordingLine::new()),
    )
    .context("building the controller")?;
    nvme.start_worker().context("starting the worker")?;
    let sq_kick = nvme
        .sq_doorbell_eventfds()
        .find(|(slot, _)| slot.qid == QID)
        .context("no doorbell eventfd for I/O queue 1")?
        .1
        .try_clone()
        .context("cloning the doorbell eventfd")?;
    benchkit::fill_data(&mem, DATA, args.depth)?;

    let mut driver = NvmeDriver {
        nvme,
        mem,
        admin_sq: Ring::new(ASQ, ADMIN_ENTRIES),
        admin_cq: Ring::new(ACQ, ADMIN_ENTRIES),
        sq: Ring::new(IOSQ, entries),
        cq: Ring::new(IOCQ, entries),
        lba_shift,
        next_admin_cid: 0,
        sq_kick,
        shadow_tail: 0,
        shadow_head: 0,
    };
    driver.bring_up(entries)?;
    let m = benchkit::run(&mut driver, &interrupts, &args, bytes)?;
    let ctx = benchkit::RunInfo {
        device: driver.name(),
        direct,
        block_size,
    };
    benchkit::report(&args, &ctx, &m)
}
