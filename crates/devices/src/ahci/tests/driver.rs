//! A fake guest driver: guest RAM, temporary backing files, recorded
//! interrupts, and the register dance Linux's `ahci`/`libahci` do (HBA
//! reset, port init, FIS receive and list start, COMRESET, command
//! headers, tables and PRDTs) on top of the PCI steps of `pci::testing`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use backend::{BlockFile, DiskConfig, EngineKind};
use dma::{Dma, GuestDma};
use irq::recording::{RecordingLine, RecordingVectors};
use pci::config::command;
use pci::message::MsiMessage;
use pci::testing::{BarDriver, ConfigDriver, MsiDriver};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::ahci::command::{CommandHeader, Prd, PRDT_OFFSET};
use crate::ahci::fis::Taskfile;
use crate::ahci::regs::{self, pcmd, port};
use crate::ahci::{Ahci, AhciConfig, SataDiskConfig, ABAR};

/// Guest RAM size.
pub const RAM: u64 = 16 << 20;
/// Data buffers.
pub const DATA: u64 = 0x20_0000;
/// An address past guest RAM.
pub const OUTSIDE: u64 = 0x4000_0000;

pub fn clb(p: usize) -> u64 {
    0x1_0000 + p as u64 * 0x1000
}

pub fn fb(p: usize) -> u64 {
    clb(p) + 0x800
}

pub fn ctba(p: usize, slot: u8) -> u64 {
    0x4_0000 + p as u64 * 0x2_0000 + u64::from(slot) * 0x1000
}

/// A file removed on drop.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(len: u64) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "iovm-ahci-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        Self(path)
    }

    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; len];
        std::fs::File::open(&self.0)
            .unwrap()
            .read_exact_at(&mut b, offset)
            .unwrap();
        b
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.0)
            .unwrap()
            .write_all_at(data, offset)
            .unwrap();
    }

    /// 512-byte blocks allocated to the file.
    pub fn allocated_blocks(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.0).unwrap().blocks()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One disk to build.
#[derive(Clone, Copy, Debug)]
pub struct DiskSpec {
    pub bytes: u64,
    pub readonly: bool,
    pub discard: bool,
}

impl Default for DiskSpec {
    fn default() -> Self {
        Self {
            bytes: 4 << 20,
            readonly: false,
            discard: true,
        }
    }
}

/// Wraps the device's guest memory handle.
pub type WrapDma = fn(Arc<dyn Dma>) -> Arc<dyn Dma>;

pub struct Setup {
    pub ports: usize,
    /// Disks by port.
    pub disks: Vec<Option<DiskSpec>>,
    pub msi: bool,
    pub engine: EngineKind,
    pub wrap_dma: Option<WrapDma>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            ports: 2,
            disks: vec![Some(DiskSpec::default())],
            msi: true,
            engine: EngineKind::Sync,
            wrap_dma: None,
        }
    }
}

/// The fake guest.
pub struct Driver {
    pub ahci: Ahci,
    pub dma: Arc<dyn Dma>,
    pub vectors: Arc<RecordingVectors>,
    pub line: Arc<RecordingLine>,
    /// Backing files by port.
    pub files: Vec<Option<TempFile>>,
    /// The disks as the device got them, by port (to count syncs).
    pub block_files: Vec<Option<Arc<BlockFile>>>,
    /// The function's I/O counters.
    pub counters: Arc<counters::FunctionCounters>,
}

/// Status a successful command leaves in PxTFD.
pub const TFD_OK: u32 = 0x50;

impl Driver {
    pub fn new() -> Self {
        Self::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let dma: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
        let mut files = Vec::new();
        let mut disks = Vec::new();
        let mut block_files = Vec::new();
        for (i, spec) in setup.disks.iter().enumerate() {
            match spec {
                Some(s) => {
                    let f = TempFile::new(s.bytes);
                    let disk = BlockFile::open(&DiskConfig {
                        path: f.0.clone(),
                        readonly: s.readonly,
                        direct: false,
                    })
                    .unwrap();
                    let disk = Arc::new(disk);
                    block_files.push(Some(disk.clone()));
                    disks.push(Some(SataDiskConfig {
                        disk,
                        readonly: s.readonly,
                        serial: format!("SER{i}"),
                        model: "iovm SATA disk".into(),
                        discard: s.discard,
                    }));
                    files.push(Some(f));
                }
                None => {
                    disks.push(None);
                    files.push(None);
                    block_files.push(None);
                }
            }
        }
        let cfg = AhciConfig {
            ports: setup.ports,
            disks,
            engine: setup.engine,
            msi: setup.msi,
            ..AhciConfig::default()
        };
        let counters = cfg.counters.clone();
        let vectors = Arc::new(RecordingVectors::new());
        let line = Arc::new(RecordingLine::new());
        let device_dma = setup.wrap_dma.map_or(dma.clone(), |w| w(dma.clone()));
        let ahci = Ahci::new(cfg, device_dma, vectors.clone(), line.clone()).unwrap();
        Self {
            ahci,
            dma,
            vectors,
            line,
            files,
            block_files,
            counters,
        }
    }

    // ---- registers ---------------------------------------------------------

    pub fn r32(&mut self, offset: u64) -> u32 {
        self.ahci.bar_read32(ABAR, offset)
    }

    pub fn w32(&mut self, offset: u64, v: u32) {
        self.ahci.bar_write32(ABAR, offset, v);
    }

    pub fn pr(&mut self, p: usize, reg: usize) -> u32 {
        self.r32(port_offset(p, reg))
    }

    pub fn pw(&mut self, p: usize, reg: usize, v: u32) {
        self.w32(port_offset(p, reg), v);
    }

    pub fn file(&self, p: usize) -> &TempFile {
        self.files[p].as_ref().unwrap()
    }

    // ---- PCI -----------------------------------------------------------------

    pub fn enable_pci(&mut self) {
        self.ahci.set_command(command::MEMORY | command::BUS_MASTER);
    }

    /// One MSI message, vector 0x50.
    pub fn enable_msi(&mut self) {
        let m = MsiMessage {
            address: 0xfee0_0000,
            data: 0x50,
        };
        self.ahci.enable_msi(m, 1).expect("MSI capability");
    }

    pub fn msi_count(&self) -> usize {
        self.vectors.sent_vectors().len()
    }

    // ---- bring-up, as libahci does it ----------------------------------------

    /// AE, then HR polled until it clears, then AE again.
    pub fn reset_hba(&mut self) {
        let ghc = self.r32(regs::GHC as u64);
        self.w32(regs::GHC as u64, ghc | regs::ghc::AE);
        assert_ne!(self.r32(regs::GHC as u64) & regs::ghc::AE, 0);
        self.w32(regs::GHC as u64, ghc | regs::ghc::HR);
        for _ in 0..100 {
            if self.r32(regs::GHC as u64) & regs::ghc::HR == 0 {
                break;
            }
            self.ahci.wait_idle();
        }
        assert_eq!(self.r32(regs::GHC as u64) & regs::ghc::HR, 0, "HR clears");
        self.w32(regs::GHC as u64, regs::ghc::AE);
    }

    /// Clears ST and waits for CR; clears FRE and waits for FR.
    pub fn stop_port(&mut self, p: usize) {
        let cmd = self.pr(p, port::CMD);
        self.pw(p, port::CMD, cmd & !pcmd::ST);
        for _ in 0..100 {
            if self.pr(p, port::CMD) & pcmd::CR == 0 {
                break;
            }
            self.ahci.wait_idle();
        }
        assert_eq!(self.pr(p, port::CMD) & pcmd::CR, 0, "CR clears");
    }

    /// Port init: engine and FIS receive off, SERR and IS cleared, IE set.
    pub fn init_port(&mut self, p: usize) {
        self.stop_port(p);
        let cmd = self.pr(p, port::CMD);
        self.pw(p, port::CMD, cmd & !pcmd::FRE);
        assert_eq!(self.pr(p, port::CMD) & pcmd::FR, 0);
        let e = self.pr(p, port::SERR);
        self.pw(p, port::SERR, e);
        let is = self.pr(p, port::IS);
        self.pw(p, port::IS, is);
        self.w32(regs::IS as u64, 1 << p);
        self.pw(
            p,
            port::IE,
            0xfdc0_00ff & !regs::pis::PRCS & !regs::pis::PCS,
        );
    }

    /// CLB/FB programmed, FRE set, then ST.
    pub fn start_port(&mut self, p: usize) {
        self.dma.write(clb(p), &[0u8; 0x400]).unwrap();
        self.dma.write(fb(p), &[0u8; 0x100]).unwrap();
        self.pw(p, port::CLB, clb(p) as u32);
        self.pw(p, port::CLBU, 0);
        self.pw(p, port::FB, fb(p) as u32);
        self.pw(p, port::FBU, 0);
        let cmd = self.pr(p, port::CMD);
        self.pw(p, port::CMD, cmd | pcmd::FRE);
        assert_ne!(self.pr(p, port::CMD) & pcmd::FR, 0);
        let cmd = self.pr(p, port::CMD);
        self.pw(p, port::CMD, cmd | pcmd::ST | 1 << 28);
        assert_ne!(self.pr(p, port::CMD) & pcmd::CR, 0);
    }

    /// libahci's hardreset: engine stopped, COMRESET pulsed, SSTS.DET = 3
    /// awaited, BSY polled, SError cleared, engine restarted; returns SIG,
    /// or `None` when the link stays down.
    pub fn hardreset(&mut self, p: usize) -> Option<u32> {
        self.stop_port(p);
        self.pw(p, port::SCTL, 0x301);
        self.pw(p, port::SCTL, 0x300);
        let up = self.pr(p, port::SSTS) & 0xf == 3;
        if up {
            assert_eq!(self.pr(p, port::TFD) & 0x80, 0, "BSY clears");
        }
        let e = self.pr(p, port::SERR);
        self.pw(p, port::SERR, e);
        let is = self.pr(p, port::IS);
        self.pw(p, port::IS, is);
        let cmd = self.pr(p, port::CMD);
        self.pw(p, port::CMD, cmd | pcmd::ST);
        up.then(|| self.pr(p, port::SIG))
    }

    /// PCI, MSI (if offered), HBA reset, every port initialised and
    /// started, GHC.IE, then a hardreset of every port.
    pub fn bring_up(&mut self) {
        self.enable_pci();
        if self.ahci.msi_layout().is_some() {
            self.enable_msi();
        }
        self.reset_hba();
        let ports = (self.r32(regs::CAP as u64) & 0x1f) as usize + 1;
        for p in 0..ports {
            self.init_port(p);
        }
        self.w32(regs::GHC as u64, regs::ghc::AE | regs::ghc::IE);
        for p in 0..ports {
            self.start_port(p);
            self.hardreset(p);
        }
    }

    // ---- commands --------------------------------------------------------------

    /// Writes slot `slot`'s header and table: `tf` as the CFIS, the PRDT
    /// from `prds` (address, bytes).
    pub fn prepare(&mut self, p: usize, slot: u8, tf: &Taskfile, prds: &[(u64, u32)], write: bool) {
        let t = ctba(p, slot);
        let h = CommandHeader {
            cfl: 5,
            write,
            prdtl: prds.len() as u16,
            ctba: t,
            ..Default::default()
        };
        self.prepare_raw(p, slot, &h.to_bytes(), &tf.to_h2d(), prds);
    }

    /// Writes a header and a CFIS as given.
    pub fn prepare_raw(
        &mut self,
        p: usize,
        slot: u8,
        header: &[u8; 32],
        cfis: &[u8],
        prds: &[(u64, u32)],
    ) {
        self.dma
            .write(clb(p) + u64::from(slot) * 32, header)
            .unwrap();
        let t = ctba(p, slot);
        let mut table = vec![0u8; 0x80];
        table[..cfis.len()].copy_from_slice(cfis);
        for &(addr, bytes) in prds {
            table.extend_from_slice(&Prd::encode(addr, bytes));
        }
        assert!(table.len() <= 0x1000);
        self.dma.write(t, &table).unwrap();
        assert_eq!(PRDT_OFFSET, 0x80);
    }

    /// Issues slot `slot` (PxCI) and waits for the backend.
    pub fn issue(&mut self, p: usize, slot: u8) {
        self.pw(p, port::CI, 1 << slot);
        self.ahci.wait_idle();
    }

    /// A non-queued command through slot 0; returns PxTFD afterwards.
    pub fn run(&mut self, p: usize, tf: &Taskfile, prds: &[(u64, u32)], write: bool) -> u32 {
        self.prepare(p, 0, tf, prds, write);
        self.issue(p, 0);
        self.pr(p, port::TFD)
    }

    /// IDENTIFY DEVICE into DATA.
    pub fn identify(&mut self, p: usize) -> (u32, Vec<u8>) {
        self.dma.write(DATA, &[0xee; 512]).unwrap();
        let tfd = self.run(p, &cmd(0xec, 0, 0, 0), &[(DATA, 512)], false);
        (tfd, self.read_mem(DATA, 512))
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.dma.read(addr, &mut b).unwrap();
        b
    }

    /// The received-FIS area of port `p`.
    pub fn rfis(&self, p: usize) -> Vec<u8> {
        self.read_mem(fb(p), 256)
    }

    /// PRDBC of slot `slot`.
    pub fn prdbc(&self, p: usize, slot: u8) -> u32 {
        let b = self.read_mem(clb(p) + u64::from(slot) * 32 + 4, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Queues an FPDMA command in `slot` (tag = slot) without issuing it.
    pub fn prepare_ncq(
        &mut self,
        p: usize,
        slot: u8,
        write: bool,
        lba: u64,
        sectors: u16,
        buf: u64,
    ) {
        let tf = fpdma(write, slot, lba, sectors);
        self.prepare(p, slot, &tf, &[(buf, u32::from(sectors) * 512)], write);
    }
}

pub fn port_offset(p: usize, reg: usize) -> u64 {
    (regs::HBA_SIZE + p * regs::PORT_SIZE + reg) as u64
}

/// A command taskfile (LBA mode).
pub fn cmd(command: u8, features: u16, count: u16, lba: u64) -> Taskfile {
    Taskfile {
        is_command: true,
        command,
        features,
        count,
        lba,
        device: 0x40,
        ..Default::default()
    }
}

/// READ/WRITE DMA EXT.
pub fn dma_ext(write: bool, lba: u64, sectors: u16) -> Taskfile {
    cmd(if write { 0x35 } else { 0x25 }, 0, sectors, lba)
}

/// READ/WRITE FPDMA QUEUED with `tag`.
pub fn fpdma(write: bool, tag: u8, lba: u64, sectors: u16) -> Taskfile {
    cmd(
        if write { 0x61 } else { 0x60 },
        sectors,
        u16::from(tag) << 3,
        lba,
    )
}

/// A pattern that differs per sector and per seed.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}
