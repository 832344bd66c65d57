//! An emulated NVMe controller (NVM Express Base 1.4, NVM command set) on
//! PCI: class 01/08/02, Red Hat `1b36:0010` (the ID QEMU's controller
//! uses), which Linux's `nvme` driver binds by class.
//!
//! # The path of a command
//!
//! ```text
//!  vCPU: BAR0 write ─▶ regs.rs (CAP/CC/CSTS/AQA/ASQ/ACQ/INTMS/INTMC)
//!        │               └─ CC.EN/SHN state machine (controller.rs)
//!        └─ doorbell ─▶ queue.rs: validate value ─┬─ bad: async error event
//!             (or ioeventfd + shadow doorbell)    └─ ok: SQ tail
//!                                                       │ admin: now, on the vCPU
//!                                                       │ I/O: kick the worker
//!  worker (worker.rs, epoll) ─▶ controller.rs: fetch SQE by DMA
//!        ─▶ command.rs: parse ─▶ admin.rs / io.rs: execute
//!        ─▶ prp.rs: PRP walk ─▶ dma::GuestBuffers ─▶ backend::Engine (io_uring)
//!        ◀─ completion eventfd ◀─ backend
//!        ─▶ CQE by DMA (DW3 with the phase tag last) ─▶ MSI-X / MSI vector
//!           (pci::caps::routing::MsiRouting), or the INTx level
//! ```
//!
//! # BAR0 (64-bit, non-prefetchable, 16 KiB)
//!
//! | offset          | contents                                           |
//! |-----------------|----------------------------------------------------|
//! | 0x0000–0x0fff   | controller registers ([`regs`])                    |
//! | 0x1000–         | doorbells, 8 bytes per queue pair (CAP.DSTRD = 0)  |
//! | 0x2000–0x2fff   | MSI-X table (one vector per queue pair)            |
//! | 0x3000–0x3fff   | MSI-X PBA                                          |
//!
//! # Threads
//! Register accesses arrive on vCPU threads; admin commands run there.
//! I/O queues run on one worker thread per controller ([`Nvme::start_worker`]),
//! woken by a kick eventfd (trapped doorbell writes), by per-SQ eventfds the
//! VMM may register as ioeventfds once the guest configured shadow
//! doorbells ([`Nvme::sq_doorbell_eventfds`]), and by the backends'
//! completion eventfd. Without a worker, doorbells run the queues inline
//! (unit tests).
//!
//! # SR-IOV
//! A controller built as [`PciRole::PhysicalFunction`] carries the SR-IOV
//! and ARI capabilities (PCIe 6.0 §9.3.3, §7.8.7) and offers FLR; its VF
//! BAR0 has this BAR0's layout. Each VF is a whole controller of its own
//! ([`PciRole::VirtualFunction`]: own queues, doorbells, MSI-X vectors and
//! worker) with a VF header (IDs FFFFh, BAR placed by the PF, no INTx),
//! in the PF's NVM subsystem: same SUBNQN and serial, its own CNTLID, CMIC
//! bits 1 (several controllers) and 2 (a VF's), and private namespaces
//! whose NSIDs no other controller of the subsystem has
//! ([`SubsystemConfig`]). Creating and removing VFs when the guest sets
//! VF Enable is the VMM's ([`pci::caps::sriov::SriovEffect`]).
//!
//! # Threat table
//!
//! | the guest writes                              | the device                                      |
//! |-----------------------------------------------|-------------------------------------------------|
//! | any register, any width                       | masks apply; RO bits stay; INTMS/INTMC only mask |
//! | CC.EN with bad CSS/MPS/AMS/AQA                | CSTS.CFS = 1, nothing runs until reset           |
//! | doorbell of a missing queue, value ≥ size, CQ head past tail | write dropped; error async event (once until Error log read) |
//! | SQ/CQ/PRP list/data addresses outside RAM     | Data Transfer Error, or CSTS.CFS for queue memory; never a partial access |
//! | PRP offsets, list chains, huge lengths        | PRP Offset Invalid / Invalid Field; walk bounded by MDTS |
//! | LBA ranges past the end, wrapping ranges      | LBA Out of Range; backend re-checks file bounds  |
//! | unknown opcodes, fused/SGL commands, bad fields | Invalid Opcode / Invalid Field, logged in Error log |
//! | queue create/delete in any order              | every spec check; deleting an SQ with I/O waits for it |
//! | shadow doorbell values                        | validated like MMIO values                      |
//! | endless AERs, CQ never consumed, deep queues | AER limit 4; a full CQ holds entries and stops fetching; at most 4096 commands in flight per controller |
//! | bus mastering off                            | nothing is fetched until it is back on            |
//! | anything that ends in a host-side warning    | 16 warnings a minute per controller, then debug level |
//! | Initiate FLR (PF or VF), I/O in flight       | PCI state and registers as built, queues gone; RDY stays 1 until the backend drained, nothing completes into the old queues |
//! | a VF's NSID on another controller            | Invalid Namespace for I/O; Identify returns zeroes (valid, inactive) |
//!
//! Interrupt Coalescing (feature 08h) is recorded and reported; the
//! aggregation it asks for is approximated by sending at most one message
//! per vector per processing pass, and, on the worker, by holding a
//! message back for at most [`INTERRUPT_DEFERRAL`] while the host is still
//! consuming the entries of the previous one (`coalesce.rs`; never for the
//! admin queue or a vector whose Coalescing Disable bit is set).

mod admin;
mod coalesce;
pub mod command;
pub mod controller;
mod features;
pub mod identify;
mod io;
mod log;
pub mod namespace;
pub mod prp;
pub mod queue;
pub mod regs;
pub mod state;
pub mod status;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backend::EngineKind;
use counters::{FunctionCounters, IoClass};
use dma::Dma;
use irq::msi::MsiVectors;
use irq::IrqLine;
use pci::bar::{BarKind, BarSpec};
use pci::caps::ari::Ari;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::ltr::Ltr;
use pci::caps::msi::MsiConfig;
use pci::caps::msix::{BarLocation, MsixConfig};
use pci::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use pci::caps::pm::PmConfig;
use pci::caps::routing::MsiRouting;
use pci::caps::sriov::SriovConfig;
use pci::caps::sriov_regs::page_size;
use pci::config::{BarWindow, ConfigWriteEffects, Identity, Type0Config};
use pci::function::PciFunction;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use controller::Controller;
pub use namespace::NamespaceConfig;
pub use worker::Worker;

use controller::{Kick, Limits};
use regs::{Capabilities, Registers, REGS_SIZE};

/// Red Hat's PCI vendor ID.
pub const VENDOR_REDHAT: u16 = 0x1b36;
/// QEMU's NVMe controller device ID.
pub const DEVICE_NVME: u16 = 0x0010;
/// Class: mass storage, non-volatile memory, NVM Express.
pub const CLASS_NVME: u32 = 0x01_08_02;
/// The BAR holding registers, doorbells and the MSI-X table and PBA.
pub const NVME_BAR: usize = 0;
/// Size of BAR0.
pub const BAR0_SIZE: u64 = 0x4000;
/// Offset of the first doorbell in BAR0.
pub const DOORBELL_BASE: u64 = 0x1000;
/// Offset of the MSI-X table in BAR0.
pub const MSIX_TABLE_OFFSET: u32 = 0x2000;
/// Offset of the MSI-X PBA in BAR0.
pub const MSIX_PBA_OFFSET: u32 = 0x3000;
/// Most I/O queue pairs a controller can be built with.
pub const MAX_IO_QUEUES: u16 = 64;
/// The longest the worker holds an interrupt back while the host is still
/// consuming the previous one's entries (`coalesce.rs`). Short next to a
/// device's latency; long enough to let a running handler find the entries.
pub const INTERRUPT_DEFERRAL: std::time::Duration = std::time::Duration::from_micros(50);

/// Why a controller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    /// A configuration value is out of range.
    #[error("invalid NVMe configuration: {0}")]
    Config(&'static str),
    /// A namespace block size other than 512 or 4096.
    #[error("namespace block size {0} is not 512 or 4096")]
    BlockSize(u32),
    /// A disk smaller than one block.
    #[error("disk of {0} bytes holds no block")]
    DiskTooSmall(u64),
    /// The backend failed.
    #[error("NVMe backend")]
    Backend(#[from] backend::BackendError),
    /// The PCI header or capabilities could not be built.
    #[error("NVMe PCI configuration space")]
    Pci(#[from] pci::caps::CapError),
    /// The PCI header could not be built.
    #[error("NVMe PCI header")]
    Header(#[from] pci::config::ConfigError),
    /// An eventfd, epoll or thread could not be created.
    #[error("NVMe worker setup")]
    Worker(#[source] std::io::Error),
}

/// How a controller is built.
#[derive(Clone, Debug)]
pub struct NvmeConfig {
    /// Serial number (up to 20 ASCII characters).
    pub serial: String,
    /// Model number (up to 40).
    pub model: String,
    /// Firmware revision (up to 8).
    pub firmware: String,
    /// I/O queue pairs (1–64); MSI-X vectors = this + 1.
    pub max_io_queues: u16,
    /// Entries of the largest queue (2–4096); CAP.MQES = this − 1.
    pub max_queue_entries: u32,
    /// Maximum Data Transfer Size, as a power of two of 4 KiB pages (1–9).
    pub mdts: u8,
    /// Backend engine for every namespace.
    pub engine: EngineKind,
    /// Namespaces, NSID 1 first.
    pub namespaces: Vec<NamespaceConfig>,
    /// Offer an MSI-X capability (off: the driver falls back to MSI).
    pub msix: bool,
    /// Offer an MSI capability (off with MSI-X off: the driver uses INTx).
    /// A VF never has one.
    pub msi: bool,
    /// Where the controller sits in its NVM subsystem.
    pub subsystem: SubsystemConfig,
    /// What kind of PCI function it is.
    pub role: PciRole,
    /// The function's I/O counters, which the controller counts its
    /// commands and doorbells in.
    pub counters: Arc<FunctionCounters>,
}

/// Where a controller sits in an NVM subsystem (NVMe 1.4 §1.4.2): the
/// subsystem's name, the controller's ID in it, and the NSIDs its private
/// namespaces have. Linux's nvme core refuses a second controller with the
/// same SUBNQN unless CMIC says the subsystem has several and the CNTLIDs
/// differ, and a namespace ID that two controllers report unless the
/// namespace is shared: a subsystem of several controllers with private
/// namespaces gives each controller NSIDs of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsystemConfig {
    /// SUBNQN (Identify Controller bytes 768–1023); `None`: one made from
    /// the serial number.
    pub nqn: Option<String>,
    /// CNTLID (Identify Controller bytes 79:78).
    pub cntlid: u16,
    /// CMIC bit 1: the subsystem may contain more than one controller.
    pub multi_controller: bool,
    /// NSID of the controller's first namespace; the others follow it.
    pub first_nsid: u32,
    /// NN, the largest NSID in the subsystem (at least this controller's
    /// last); `None`: this controller's last.
    pub max_nsid: Option<u32>,
}

impl Default for SubsystemConfig {
    fn default() -> Self {
        Self {
            nqn: None,
            cntlid: 0,
            multi_controller: false,
            first_nsid: 1,
            max_nsid: None,
        }
    }
}

/// What kind of PCI function a controller is (PCIe 6.0 §9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PciRole {
    /// An ordinary function.
    #[default]
    Function,
    /// An SR-IOV physical function (§9.3.3) offering `total_vfs` virtual
    /// functions, each an NVMe controller with the same BAR0 layout; with
    /// ARI (§7.8.7) and Function Level Reset.
    PhysicalFunction {
        /// TotalVFs (1–255).
        total_vfs: u16,
    },
    /// A virtual function (§9.3.4): its PF places its BAR
    /// ([`Nvme::set_vf_bar_windows`]); MSI-X only, no INTx; FLR; CMIC bit 2.
    VirtualFunction,
}

impl Default for NvmeConfig {
    fn default() -> Self {
        Self {
            serial: "IOVM0001".into(),
            model: "iovm NVMe".into(),
            firmware: "1.0".into(),
            max_io_queues: 8,
            max_queue_entries: 1024,
            mdts: 7,
            engine: EngineKind::IoUring,
            namespaces: Vec::new(),
            msix: true,
            msi: true,
            subsystem: SubsystemConfig::default(),
            role: PciRole::Function,
            counters: Arc::default(),
        }
    }
}

/// Where one SQ tail doorbell sits, for ioeventfd registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellSlot {
    /// Submission queue.
    pub qid: u16,
    /// BAR index.
    pub bar: usize,
    /// Offset inside the BAR.
    pub offset: u64,
    /// Access width in bytes.
    pub len: u32,
}

/// State shared by the PCI function (vCPU threads) and the worker.
#[derive(Debug)]
struct Shared {
    ctrl: Mutex<Controller>,
    kick: EventFd,
    completions: EventFd,
    stop: EventFd,
    sq_kicks: Vec<EventFd>,
    worker_running: AtomicBool,
    counters: Arc<FunctionCounters>,
}

/// The NVMe controller as a PCI function.
#[derive(Debug)]
pub struct Nvme {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

/// The VF Device ID of an SR-IOV PF: the same controller.
pub const VF_DEVICE_NVME: u16 = DEVICE_NVME;

fn bar0() -> BarSpec {
    BarSpec {
        index: NVME_BAR,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: BAR0_SIZE,
    }
}

fn endpoint(
    vectors: u16,
    msix: bool,
    msi: bool,
    role: PciRole,
) -> Result<EndpointConfig, NvmeError> {
    let id = Identity {
        vendor: VENDOR_REDHAT,
        device: DEVICE_NVME,
        class: CLASS_NVME,
        revision: 2,
        subsystem_vendor: VENDOR_REDHAT,
        subsystem: DEVICE_NVME,
    };
    let vf = role == PciRole::VirtualFunction;
    let config = if vf {
        Type0Config::virtual_function(id, &[bar0()])?
    } else {
        Type0Config::new(id, &[bar0()], 1)?
    };
    Ok(EndpointConfig::new(config, |list| {
        if !vf {
            list.power_management(PmConfig::default())?;
        }
        if msi && !vf {
            list.msi(MsiConfig {
                vectors: 32,
                address64: true,
                per_vector_mask: true,
            })?;
        }
        if msix || vf {
            list.msix(MsixConfig {
                vectors,
                table: BarLocation {
                    bar: NVME_BAR,
                    offset: MSIX_TABLE_OFFSET,
                },
                pba: BarLocation {
                    bar: NVME_BAR,
                    offset: MSIX_PBA_OFFSET,
                },
            })?;
        }
        list.pci_express(PcieConfig {
            device: PcieDevice::Endpoint {
                link: LinkConfig {
                    max_speed: LinkSpeed::Gen3,
                    max_width: LinkWidth::X4,
                    speed: LinkSpeed::Gen3,
                    width: LinkWidth::X4,
                },
            },
            max_payload: MaxPayload::B256,
        })?;
        if role != PciRole::Function {
            list.function_level_reset()?;
            list.add_extended(&Ari { next_function: 0 })?;
        }
        if let PciRole::PhysicalFunction { total_vfs } = role {
            list.sriov(SriovConfig {
                total_vfs,
                pf_function: 0,
                vf_device_id: VF_DEVICE_NVME,
                vf_bars: vec![bar0()],
                supported_page_sizes: page_size::REQUIRED,
            })?;
        }
        list.add_extended(&Ltr).map(|_| ())
    })?)
}

impl Nvme {
    /// A controller at reset: guest memory through `dma`, MSI/MSI-X
    /// vectors through `msi`, INTA through `intx`.
    pub fn new(
        cfg: NvmeConfig,
        dma: Arc<dyn Dma>,
        msi: Arc<dyn MsiVectors>,
        intx: Arc<dyn IrqLine>,
    ) -> Result<Self, NvmeError> {
        if cfg.max_io_queues == 0 || cfg.max_io_queues > MAX_IO_QUEUES {
            return Err(NvmeError::Config("max_io_queues must be 1-64"));
        }
        if !(2..=4096).contains(&cfg.max_queue_entries) {
            return Err(NvmeError::Config("max_queue_entries must be 2-4096"));
        }
        if !(1..=9).contains(&cfg.mdts) {
            return Err(NvmeError::Config("mdts must be 1-9"));
        }
        let first_nsid = cfg.subsystem.first_nsid;
        let count = u32::try_from(cfg.namespaces.len()).unwrap_or(u32::MAX);
        let last_nsid = first_nsid
            .checked_add(count)
            .and_then(|n| n.checked_sub(1))
            .filter(|&n| first_nsid >= 1 && n < identify::NSID_ALL - 1)
            .ok_or(NvmeError::Config("namespace IDs must lie in 1-FFFFFFFDh"))?;
        let max_nsid = cfg.subsystem.max_nsid.unwrap_or(last_nsid);
        if max_nsid < last_nsid || max_nsid >= identify::NSID_ALL - 1 {
            return Err(NvmeError::Config("NN must hold every namespace ID"));
        }
        let new_fd = || EventFd::new(EFD_NONBLOCK).map_err(NvmeError::Worker);
        let completions = new_fd()?;
        let depth = cfg.max_queue_entries.min(1024);
        let namespaces = cfg
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                namespace::Namespace::new(
                    first_nsid + i as u32,
                    &cfg.serial,
                    ns,
                    cfg.engine,
                    depth,
                    &completions,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vectors = cfg.max_io_queues + 1;
        let limits = Limits {
            max_io_queues: cfg.max_io_queues,
            max_queue_entries: cfg.max_queue_entries,
            max_transfer: 4096 << cfg.mdts,
            vectors,
            serial: cfg.serial,
            model: cfg.model,
            firmware: cfg.firmware,
            mdts: cfg.mdts,
            vendor: (VENDOR_REDHAT, VENDOR_REDHAT),
            first_nsid,
            max_nsid,
            subsystem: cfg.subsystem,
            role: cfg.role,
            counters: cfg.counters.clone(),
        };
        let regs = Registers::new(Capabilities {
            mqes: (cfg.max_queue_entries - 1) as u16,
            timeout: 20,
        });
        let ctrl = Controller::new(
            limits,
            regs,
            dma,
            namespaces,
            endpoint(vectors, cfg.msix, cfg.msi, cfg.role)?,
            MsiRouting::new(msi),
            intx,
        );
        cfg.counters.set_class(IoClass::Block);
        let sq_kicks = (0..cfg.max_io_queues)
            .map(|_| new_fd())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            shared: Arc::new(Shared {
                ctrl: Mutex::new(ctrl),
                kick: new_fd()?,
                completions,
                stop: new_fd()?,
                sq_kicks,
                worker_running: AtomicBool::new(false),
                counters: cfg.counters,
            }),
            worker: None,
        })
    }

    /// Starts the worker thread that runs the I/O queues; from now on
    /// doorbell writes only wake it. Stopped when the `Nvme` is dropped.
    pub fn start_worker(&mut self) -> Result<(), NvmeError> {
        if self.worker.is_none() {
            self.worker = Some(Worker::start(self.shared.clone())?);
        }
        Ok(())
    }

    /// The SQ tail doorbells of the I/O queues and the eventfd the worker
    /// watches for each. Once [`Nvme::take_doorbell_mode_change`] returned
    /// `Some(true)`, the VMM may register each as an ioeventfd (no data
    /// match) at BAR0 + offset; on `Some(false)` it must unregister them
    /// before the guest runs again (the values written would be lost).
    pub fn sq_doorbell_eventfds(&self) -> impl Iterator<Item = (DoorbellSlot, &EventFd)> {
        self.shared.sq_kicks.iter().enumerate().map(|(i, fd)| {
            let qid = i as u16 + 1;
            let slot = DoorbellSlot {
                qid,
                bar: NVME_BAR,
                offset: DOORBELL_BASE + queue::Doorbell::SqTail(qid).offset(),
                len: 4,
            };
            (slot, fd)
        })
    }

    /// Whether the shadow doorbell mode changed since the last call (check
    /// after every BAR write): `Some(true)` the guest configured shadow
    /// doorbells, `Some(false)` a controller reset removed them.
    pub fn take_doorbell_mode_change(&self) -> Option<bool> {
        worker::lock(&self.shared).take_doorbell_mode_change()
    }

    /// Runs every queue and collects backend completions once, on the
    /// caller's thread (for use without a worker).
    pub fn poll(&self) {
        for _ in 0..64 {
            if !worker::lock(&self.shared).run_pass() {
                break;
            }
        }
    }

    /// Waits for every backend request and posts its completion (for use
    /// without a worker).
    pub fn wait_idle(&self) {
        worker::lock(&self.shared).wait_idle();
    }

    /// Where the BARs of this PF's VF `vf` (0-based) decode now, as its
    /// SR-IOV capability says (empty for a controller that is no PF): for
    /// [`Nvme::set_vf_bar_windows`] of that VF.
    pub fn vf_bar_windows(&self, vf: u16) -> Vec<(BarSpec, Option<BarWindow>)> {
        worker::lock(&self.shared).pci.vf_bar_windows(vf)
    }

    /// The function number VF `vf` (0-based) of this PF has on its bus
    /// (ARI numbering: 0–255), if it is a PF and the number fits.
    pub fn vf_function(&self, vf: u16) -> Option<u8> {
        let c = worker::lock(&self.shared);
        let sriov = c.pci.caps().sriov()?;
        sriov.vf_function(c.pci.config().regs(), vf)
    }

    /// A VF: sets where its BAR decodes, as its PF says now; returns
    /// whether that changed (the VMM then maps it anew). Ignored for a
    /// controller that is no VF.
    pub fn set_vf_bar_windows(&self, windows: Vec<(BarSpec, Option<BarWindow>)>) -> bool {
        worker::lock(&self.shared)
            .pci
            .config_mut()
            .set_vf_bar_windows(windows)
    }

    /// Runs `f` on the controller core (tests and diagnostics).
    pub fn with_controller<R>(&self, f: impl FnOnce(&mut Controller) -> R) -> R {
        f(&mut worker::lock(&self.shared))
    }
}

impl PciFunction for Nvme {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        worker::lock(&self.shared).pci.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let mut guard = worker::lock(&self.shared);
        let c = &mut *guard;
        let effects = c.pci.write(offset, data);
        if effects.caps.flr {
            c.function_level_reset();
        }
        c.routing.after_config_write(&c.pci, &effects);
        c.update_intx();
        effects.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != NVME_BAR {
            return;
        }
        let mut c = worker::lock(&self.shared);
        if let Ok(off) = usize::try_from(offset) {
            if off < REGS_SIZE {
                // Without a worker, a guest polling CSTS through a reset or
                // shutdown is what collects the backend's last completions.
                if !self.shared.worker_running.load(Ordering::SeqCst) {
                    c.reap_completions();
                }
                c.st.regs.read(off, data);
                return;
            }
        }
        // Doorbells read as zero; the MSI-X table and PBA answer for
        // themselves; the rest is reserved.
        c.pci.bar_read(bar, offset, data);
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != NVME_BAR {
            return;
        }
        let mut guard = worker::lock(&self.shared);
        let c = &mut *guard;
        if let Some(off) = usize::try_from(offset).ok().filter(|&o| o < REGS_SIZE) {
            c.write_register(off, data);
            c.reap_completions();
            c.flush_interrupts();
            return;
        }
        if offset < u64::from(MSIX_TABLE_OFFSET) {
            self.shared.counters.doorbells.doorbells_trapped.inc();
            match c.write_doorbell(offset - DOORBELL_BASE, data) {
                Kick::None => {}
                Kick::Admin => {
                    c.process_submissions(0);
                    c.flush_interrupts();
                }
                Kick::Io => {
                    if self.shared.worker_running.load(Ordering::SeqCst) {
                        drop(guard);
                        if let Err(e) = self.shared.kick.write(1) {
                            tracing::warn!("NVMe: cannot wake the worker: {e}");
                        }
                    } else {
                        drop(guard);
                        self.poll();
                    }
                }
            }
            return;
        }
        if let Some(effects) = c.pci.bar_write(bar, offset, data) {
            c.routing.after_table_write(&c.pci, &effects);
            c.update_intx();
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        worker::lock(&self.shared).pci.config().bar_windows()
    }
}
