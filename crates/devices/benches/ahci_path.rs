//! The AHCI device path without a VM: a synthetic guest driver brings the
//! controller up through the ABAR as Linux's `libahci` would (PCI memory
//! and bus mastering, one MSI message, HBA reset, port 0's command list
//! and received-FIS area, FIS receive and the list started), then keeps
//! `--depth` (at most 32) 4 KiB READ/WRITE FPDMA QUEUED commands in flight
//! on port 0, one command slot per request, as NCQ tags. Each batch of
//! submissions writes PxSACT and then PxCI (two trapped writes in a VM);
//! completions are found, as Linux's interrupt handler finds them, by
//! reading PxSACT (and PxIS and IS are cleared when something completed).
//! The controller posts completions on its worker thread with the
//! io_uring backend, as in iovm.
//!
//! ```text
//! cargo bench -p devices --bench ahci_path -- --file PATH --seconds 10 \
//!     --depth 32 --rw randread --json OUT
//! ```
//!
//! Measured: IOPS, mean latency, CPU per I/O of the whole process, of the
//! driver thread, and of the controller's worker thread (`ahci-worker`).

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use benchkit::{Args, DevicePath, Interrupts, Parser, Rw, IO_SIZE};
use devices::ahci::command::{CommandHeader, Prd, PRDT_OFFSET};
use devices::ahci::fis::Taskfile;
use devices::ahci::regs::{self, ghc, pcmd, port, HBA_SIZE};
use devices::ahci::{Ahci, AhciConfig, SataDiskConfig, ABAR};
use dma::{FunctionContext, FunctionDma, GuestDma, RequesterId};
use irq::msi::{MsiMessage, MsiVectors};
use irq::recording::RecordingLine;
use pci::config::command;
use pci::testing::{BarDriver, ConfigDriver, MsiDriver};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM.
const RAM: u64 = 16 << 20;
/// Port 0's command list and received-FIS area.
const CLB: u64 = 0x1_0000;
const FB: u64 = 0x1_0800;
/// Command tables: slot `s` at `TABLES + s * 256`.
const TABLES: u64 = 0x2_0000;
/// Data buffers: slot `s` at `DATA + s * 4 KiB`.
const DATA: u64 = 0x20_0000;
/// Sectors per request.
const SECTORS: u16 = (IO_SIZE / 512) as u16;

/// The MSI port of the controller: counts each message sent.
#[derive(Debug)]
struct CountingMsi(Arc<Interrupts>);

impl MsiVectors for CountingMsi {
    fn update(&self, _changes: &[irq::msi::RouteChange]) {}

    fn send(&self, _vector: u16, _message: MsiMessage) {
        self.0.send();
    }
}

struct AhciDriver {
    ahci: Ahci,
    mem: Arc<GuestMemoryMmap>,
    /// Slots queued since the last notify.
    queued: u32,
    /// Slots issued and not seen completed.
    active: u32,
}

fn port_reg(reg: usize) -> u64 {
    (HBA_SIZE + reg) as u64
}

impl AhciDriver {
    fn read32(&mut self, offset: u64) -> u32 {
        self.ahci.bar_read32(ABAR, offset)
    }

    fn write32(&mut self, offset: u64, v: u32) {
        self.ahci.bar_write32(ABAR, offset, v);
    }

    fn bring_up(&mut self) -> Result<()> {
        self.ahci.set_command(command::MEMORY | command::BUS_MASTER);
        let m = MsiMessage {
            address: 0xfee0_0000,
            data: 0x50,
        };
        self.ahci.enable_msi(m, 1).context("no MSI capability")?;
        self.write32(regs::GHC as u64, ghc::AE | ghc::HR);
        ensure!(
            self.read32(regs::GHC as u64) & ghc::HR == 0,
            "HBA reset did not end"
        );
        self.mem
            .write_slice(&[0u8; 0x900], GuestAddress(CLB))
            .context("guest RAM write")?;
        self.write32(port_reg(port::CLB), CLB as u32);
        self.write32(port_reg(port::FB), FB as u32);
        // As libahci: SError (the link came up: DIAG.N and X) and the
        // port's interrupt status cleared before interrupts are enabled.
        let serr = self.read32(port_reg(port::SERR));
        self.write32(port_reg(port::SERR), serr);
        let is = self.read32(port_reg(port::IS));
        self.write32(port_reg(port::IS), is);
        self.write32(port_reg(port::IE), u32::MAX);
        self.write32(regs::GHC as u64, ghc::AE | ghc::IE);
        self.write32(port_reg(port::CMD), pcmd::FRE);
        self.write32(port_reg(port::CMD), pcmd::FRE | pcmd::ST);
        ensure!(
            self.read32(port_reg(port::SSTS)) & 0xf == 3,
            "no link on port 0"
        );
        ensure!(
            self.read32(port_reg(port::SIG)) == regs::SIG_DISK,
            "no disk on port 0"
        );
        Ok(())
    }
}

impl DevicePath for AhciDriver {
    fn name(&self) -> &'static str {
        "ahci"
    }

    fn worker_thread(&self) -> &'static str {
        "ahci-worker"
    }

    fn queue(&mut self, slot: u16, rw: Rw, offset: u64) -> Result<()> {
        let write = rw == Rw::RandWrite;
        let tag = slot as u8;
        let table = TABLES + u64::from(slot) * 256;
        let header = CommandHeader {
            cfl: 5,
            write,
            prdtl: 1,
            ctba: table,
            ..Default::default()
        };
        let tf = Taskfile {
            is_command: true,
            command: if write { 0x61 } else { 0x60 },
            features: SECTORS,
            count: u16::from(tag) << 3,
            lba: offset / 512,
            device: 0x40,
            ..Default::default()
        };
        let mut t = [0u8; 0x90];
        t[..20].copy_from_slice(&tf.to_h2d());
        t[PRDT_OFFSET as usize..].copy_from_slice(&Prd::encode(
            DATA + u64::from(slot) * IO_SIZE,
            IO_SIZE as u32,
        ));
        self.mem
            .write_slice(&t, GuestAddress(table))
            .context("guest RAM write")?;
        self.mem
            .write_slice(&header.to_bytes(), GuestAddress(CLB + u64::from(slot) * 32))
            .context("guest RAM write")?;
        self.queued |= 1 << slot;
        Ok(())
    }

    fn notify(&mut self) -> Result<bool> {
        let q = std::mem::take(&mut self.queued);
        if q == 0 {
            return Ok(false);
        }
        self.active |= q;
        self.write32(port_reg(port::SACT), q);
        self.write32(port_reg(port::CI), q);
        Ok(true)
    }

    fn reap(&mut self, done: &mut Vec<u16>) -> Result<()> {
        let sact = self.read32(port_reg(port::SACT));
        let finished = self.active & !sact;
        if finished == 0 {
            return Ok(());
        }
        let is = self.read32(port_reg(port::IS));
        ensure!(
            is & regs::pis::TFES == 0,
            "task file error: TFD {:#x}",
            self.read32(port_reg(port::TFD))
        );
        self.write32(port_reg(port::IS), is);
        self.write32(regs::IS as u64, 1);
        self.active &= !finished;
        done.extend((0..32u16).filter(|s| finished & (1 << s) != 0));
        Ok(())
    }
}

fn main() -> Result<()> {
    benchkit::init_logging();
    let args = Args::parse();
    benchkit::sandbox(&args)?;
    ensure!(args.depth <= 32, "--depth at most 32 (NCQ tags)");
    let mem = benchkit::guest_ram(RAM)?;
    let readonly = args.rw == Rw::RandRead;
    let disk = benchkit::open_disk(&args)?;
    let (bytes, direct) = (disk.size(), disk.is_direct());
    let interrupts = Arc::new(Interrupts::new(args.reap)?);
    let cfg = AhciConfig {
        ports: 1,
        disks: vec![Some(SataDiskConfig {
            disk: Arc::new(disk),
            readonly,
            serial: "BENCH".into(),
            model: "iovm SATA disk".into(),
            discard: false,
        })],
        engine: args.engine,
        msi: true,
        counters: Arc::default(),
    };
    let ctx = FunctionContext::new(RequesterId::new(0, 3, 0));
    ctx.set_bus_master(true);
    let mut ahci = Ahci::new(
        cfg,
        Arc::new(FunctionDma::new(ctx, Arc::new(GuestDma::new(mem.clone())))),
        Arc::new(CountingMsi(interrupts.clone())),
        Arc::new(RecordingLine::new()),
    )
    .context("building the controller")?;
    ahci.start_worker().context("starting the worker")?;
    benchkit::fill_data(&mem, DATA, args.depth)?;
    let mut driver = AhciDriver {
        ahci,
        mem,
        queued: 0,
        active: 0,
    };
    driver.bring_up()?;
    // Every request is whole sectors inside the disk.
    let bytes = bytes / IO_SIZE * IO_SIZE;
    let m = benchkit::run(&mut driver, &interrupts, &args, bytes)?;
    let info = benchkit::RunInfo {
        device: driver.name(),
        direct,
        block_size: 512,
    };
    benchkit::report(&args, &info, &m)
}
