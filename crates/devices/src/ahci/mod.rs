//! An emulated AHCI SATA controller (AHCI 1.3.1, SATA 3.x, ATA/ATAPI
//! ACS-3) on PCI: Intel ICH9 `8086:2922`, class 01/06/01, which Linux's
//! `ahci` driver binds; up to 6 ports, each with at most one SATA disk.
//!
//! # The path of a command
//!
//! ```text
//!  vCPU: ABAR (BAR5) write ─▶ hba.rs: regs.rs masks (GHC, IS, PxCMD, PxSCTL, PxCI, ...)
//!        │                      ├─ GHC.HR: HBA reset    ├─ PxSCTL.DET: COMRESET, link up
//!        │                      └─ PxCMD.ST/FRE: list and FIS receive (port.rs)
//!        └─ PxCI write ─▶ kick the worker (without one: at once, on the vCPU)
//!  worker (worker.rs) ─▶ exec.rs: header (command.rs) ─▶ CFIS (fis.rs) ─▶ ata.rs decode
//!             ─▶ IDENTIFY / READ LOG EXT / SET FEATURES ...: answered now (PIO Setup or D2H FIS)
//!             ─▶ READ/WRITE DMA [EXT], FPDMA QUEUED, FLUSH, DSM TRIM:
//!                PRDT walk (command.rs) ─▶ dma::GuestBuffers ─▶ backend::Engine (io_uring)
//!  worker (worker.rs) ◀─ completion eventfd ◀─ backend
//!        ─▶ D2H FIS (non-queued) or one SDB FIS per pass for the queued commands done
//!        ─▶ PxIS ─▶ IS ─▶ one MSI message (or the INTx level)
//! ```
//!
//! # Threads
//! Register accesses arrive on vCPU threads. Once [`Ahci::start_worker`]
//! ran, a PxCI write only records the work and wakes the worker through
//! an eventfd, so the vCPU's exit ends at once; the worker fetches the
//! commands, submits them to the backends, and posts their completions.
//! Without a worker (unit tests), PxCI writes fetch on the caller's thread
//! and register reads collect completions.
//!
//! # PCI function
//! Header type 0, INTA, BAR5 = ABAR (32-bit memory, 4 KiB: host registers
//! at 0, port *n* at 0x100 + 0x80·*n*), a Power Management capability and
//! an MSI capability with one 64-bit message; without MSI (or with
//! `msi = false`) the driver uses INTx. The legacy index/data pair
//! (BAR4) and the SATA capability are not offered: `ahci` needs neither.
//!
//! # Threat table
//!
//! | the guest writes                                  | the device                                             |
//! |---------------------------------------------------|--------------------------------------------------------|
//! | any register, any width or alignment             | split per register block; masks apply; RO bits stay    |
//! | PxCI / PxSACT while PxCMD.ST = 0                  | ignored (rate-limited warning)                          |
//! | CLB, FB or CTBA outside RAM                      | PxIS.HBFS, the list halts; nothing else is touched      |
//! | CFL < 5 or > 16, a CFIS that is not H2D           | PxIS.IFS, the list halts                                |
//! | PRDTL 65535                                       | entries read only until the transfer is covered         |
//! | DBC odd or 0                                      | rounded up to even (bit 0 treated as 1)                 |
//! | PRDs shorter than the transfer                   | PxIS.OFS, the list halts, no data moves                 |
//! | PRDs longer than the transfer                    | the rest is ignored; PRDBC = bytes moved                |
//! | more than 1024 segments                          | the command is aborted (ERR, ABRT)                      |
//! | data buffers outside RAM                         | PxIS.HBDS, the list halts                               |
//! | FPDMA with tag ≠ slot, or SACT bit clear          | aborted as non-queued (TFES), CI stays set              |
//! | non-queued command while queued ones run          | aborted (TFES)                                          |
//! | LBA range past the end                           | ERR with IDNF (NCQ: SDB with ERR, log 10h names it)     |
//! | DSM range past the end, > 8 blocks, TRIM off      | aborted; nothing discarded                              |
//! | unknown command                                   | ERR with ABRT, TFES, CI stays set                       |
//! | PxCMD.ST cleared, COMRESET, SRST, GHC.HR with I/O | completions of those commands are dropped; CR (or HR) stays 1 until the backend is done with them |
//! | anything that ends in a warning                  | at most 16 warnings a minute per HBA, then debug level  |

mod ata;
pub mod command;
mod disk;
mod exec;
pub mod fis;
pub mod hba;
mod identify;
mod log;
mod port;
pub mod regs;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backend::EngineKind;
use dma::Dma;
use irq::msi::MsiVectors;
use irq::IrqLine;
use pci::bar::{BarKind, BarSpec};
use pci::caps::endpoint::EndpointConfig;
use pci::caps::msi::MsiConfig;
use pci::caps::pm::PmConfig;
use pci::caps::routing::MsiRouting;
use pci::config::{command as pci_command, BarWindow, ConfigWriteEffects, Identity, Type0Config};
use pci::function::PciFunction;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use ata::{AtaCommand, SECTOR};
pub use disk::SataDiskConfig;
pub use hba::Hba;
pub use worker::Worker;

use port::Port;
use regs::HostCaps;

/// Intel's PCI vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;
/// ICH9 AHCI controller (6 ports).
pub const DEVICE_ICH9_AHCI: u16 = 0x2922;
/// Class: mass storage, SATA, AHCI 1.0.
pub const CLASS_AHCI: u32 = 0x01_06_01;
/// The BAR holding the ABAR.
pub const ABAR: usize = 5;
/// Size of the ABAR.
pub const ABAR_SIZE: u64 = 0x1000;
/// Most ports a controller has.
pub const MAX_PORTS: usize = 6;

/// Why a controller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AhciError {
    /// A configuration value is out of range.
    #[error("invalid AHCI configuration: {0}")]
    Config(&'static str),
    /// A disk smaller than one sector.
    #[error("disk of {0} bytes holds no 512-byte sector")]
    DiskTooSmall(u64),
    /// The backend failed.
    #[error("AHCI backend")]
    Backend(#[from] backend::BackendError),
    /// The PCI capabilities could not be built.
    #[error("AHCI PCI configuration space")]
    Pci(#[from] pci::caps::CapError),
    /// The PCI header could not be built.
    #[error("AHCI PCI header")]
    Header(#[from] pci::config::ConfigError),
    /// An eventfd, epoll or thread could not be created.
    #[error("AHCI worker setup")]
    Worker(#[source] std::io::Error),
}

/// How a controller is built.
#[derive(Clone, Debug)]
pub struct AhciConfig {
    /// Ports (1–6).
    pub ports: usize,
    /// The disk of each port, by port number (`None`: no device).
    pub disks: Vec<Option<SataDiskConfig>>,
    /// Backend engine for every disk.
    pub engine: EngineKind,
    /// Offer an MSI capability (off: INTx only).
    pub msi: bool,
    /// The function's I/O counters, which the HBA counts its commands and
    /// command issues in.
    pub counters: Arc<counters::FunctionCounters>,
}

impl Default for AhciConfig {
    fn default() -> Self {
        Self {
            ports: MAX_PORTS,
            disks: Vec::new(),
            engine: EngineKind::IoUring,
            msi: true,
            counters: Arc::default(),
        }
    }
}

/// State shared by the PCI function (vCPU threads) and the worker.
#[derive(Debug)]
struct Shared {
    hba: Mutex<Hba>,
    completions: EventFd,
    kick: EventFd,
    stop: EventFd,
    worker_running: AtomicBool,
}

/// The AHCI controller as a PCI function.
#[derive(Debug)]
pub struct Ahci {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

fn endpoint(msi: bool) -> Result<EndpointConfig, AhciError> {
    let id = Identity {
        vendor: VENDOR_INTEL,
        device: DEVICE_ICH9_AHCI,
        class: CLASS_AHCI,
        revision: 2,
        subsystem_vendor: VENDOR_INTEL,
        subsystem: DEVICE_ICH9_AHCI,
    };
    let bar = BarSpec {
        index: ABAR,
        kind: BarKind::Mem32 {
            prefetchable: false,
        },
        size: ABAR_SIZE,
    };
    let config = Type0Config::new(id, &[bar], 1)?;
    Ok(EndpointConfig::new(config, |list| {
        list.power_management(PmConfig::default())?;
        if msi {
            list.msi(MsiConfig {
                vectors: 1,
                address64: true,
                per_vector_mask: false,
            })?;
        }
        Ok(())
    })?)
}

impl Ahci {
    /// A controller at power-on: guest memory through `dma`, MSI through
    /// `msi`, INTA through `intx`.
    pub fn new(
        cfg: AhciConfig,
        dma: Arc<dyn Dma>,
        msi: Arc<dyn MsiVectors>,
        intx: Arc<dyn IrqLine>,
    ) -> Result<Self, AhciError> {
        if !(1..=MAX_PORTS).contains(&cfg.ports) {
            return Err(AhciError::Config("ports must be 1-6"));
        }
        if cfg.disks.len() > cfg.ports {
            return Err(AhciError::Config(
                "a disk on a port the controller does not have",
            ));
        }
        let completions = EventFd::new(EFD_NONBLOCK).map_err(AhciError::Worker)?;
        let mut ports = Vec::with_capacity(cfg.ports);
        for p in 0..cfg.ports {
            let disk = match cfg.disks.get(p).and_then(Option::as_ref) {
                Some(d) => Some(disk::Disk::new(d, cfg.engine, &completions)?),
                None => None,
            };
            ports.push(Port::new(disk));
        }
        let hba = Hba::new(
            HostCaps { ports: cfg.ports },
            ports,
            dma,
            endpoint(cfg.msi)?,
            MsiRouting::new(msi),
            intx,
            cfg.counters.clone(),
        );
        cfg.counters.set_class(counters::IoClass::Block);
        Ok(Self {
            shared: Arc::new(Shared {
                hba: Mutex::new(hba),
                completions,
                kick: EventFd::new(EFD_NONBLOCK).map_err(AhciError::Worker)?,
                stop: EventFd::new(EFD_NONBLOCK).map_err(AhciError::Worker)?,
                worker_running: AtomicBool::new(false),
            }),
            worker: None,
        })
    }

    /// Starts the worker thread that posts backend completions. Stopped
    /// when the `Ahci` is dropped.
    pub fn start_worker(&mut self) -> Result<(), AhciError> {
        if self.worker.is_none() {
            self.worker = Some(Worker::start(self.shared.clone())?);
        }
        Ok(())
    }

    /// Waits for every backend request and posts its completion (for use
    /// without a worker).
    pub fn wait_idle(&self) {
        worker::lock(&self.shared).wait_idle();
    }

    /// Runs `f` on the HBA core (tests and diagnostics).
    pub fn with_hba<R>(&self, f: impl FnOnce(&mut Hba) -> R) -> R {
        f(&mut worker::lock(&self.shared))
    }
}

impl PciFunction for Ahci {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        worker::lock(&self.shared).pci.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let mut guard = worker::lock(&self.shared);
        let h = &mut *guard;
        let master_before = h.bus_master();
        let effects = h.pci.write(offset, data);
        h.routing.after_config_write(&h.pci, &effects);
        if !master_before && h.pci.config().command() & pci_command::BUS_MASTER != 0 {
            for p in 0..h.ports.len() {
                h.process_port(p);
            }
            h.submit_backends();
            h.flush_interrupts();
        }
        h.update_intx();
        effects.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != ABAR {
            return;
        }
        let mut h = worker::lock(&self.shared);
        // Without a worker, a guest polling PxCI, PxCMD.CR or GHC.HR is
        // what collects the backend's completions.
        if !self.shared.worker_running.load(Ordering::SeqCst) {
            h.reap_completions();
        }
        h.read(offset, data);
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != ABAR {
            return;
        }
        let kick = {
            let mut h = worker::lock(&self.shared);
            h.write(offset, data);
            h.take_issue_pending()
        };
        if kick {
            if let Err(e) = self.shared.kick.write(1) {
                tracing::warn!("AHCI: cannot wake the worker: {e}");
            }
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        worker::lock(&self.shared).pci.config().bar_windows()
    }
}
