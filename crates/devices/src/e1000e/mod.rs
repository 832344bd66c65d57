//! An emulated Intel 82574L Gigabit Ethernet controller (`8086:10D3`,
//! the "e1000e" Linux binds; Intel 82574 GbE Controller Family
//! datasheet) on a PCIe endpoint, moving frames through a
//! [`backend::net::FrameIo`] (a TAP queue).
//!
//! # The path of a frame
//!
//! ```text
//!  vCPU: BAR0 write ─▶ core.rs: regs.rs masks (CTRL, RCTL, TCTL, IMS, ...)
//!        │                ├─ CTRL.RST: reset   ├─ EERD: nvm.rs   ├─ MDIC: phy.rs
//!        └─ TDT/RDT write ─▶ kick the worker (without one: served at once)
//!  worker (worker.rs): TX ring ─▶ desc.rs parse ─▶ tx.rs gather, checksum, TSO
//!        ─▶ backend write (or back into RX: PHY or MAC loopback)
//!  worker: backend readable (only while the ring has room) ─▶ rx.rs filter
//!        ─▶ legacy / extended / packet-split placement ─▶ RDH
//!  causes ─▶ ICR ─▶ intr.rs: IVAR ─▶ MSI-X vector, or MSI, or INTA; ITR/EITR gaps
//! ```
//!
//! # PCI function
//! Header type 0, INTA. BAR0: 128 KiB of registers; BAR1: 128 KiB flash
//! window (reads 0: the driver uses EERD); BAR2: 32-byte I/O window
//! (IOADDR/IODATA onto BAR0); BAR3: 16 KiB with the MSI-X table (5
//! vectors, as on the chip; Linux uses 3 through IVAR) and PBA. Power
//! Management, MSI (one 64-bit message) and PCI Express endpoint
//! capabilities. `msix = false` or `msi = false` leave those out, so the
//! driver falls back to MSI or INTx.
//!
//! # Threat table
//!
//! | the guest writes                                   | the device                                              |
//! |----------------------------------------------------|---------------------------------------------------------|
//! | any register, any width or alignment               | merged into the 32-bit registers it touches; RO bits stay |
//! | TDH/TDT or RDH/RDT outside the ring, RDLEN 0       | that ring stalls (TX) or the frame is dropped (RX, MPC) |
//! | a descriptor ring or buffer outside guest memory, its own BARs included | DMA reaches guest RAM only: dropped, counted |
//! | a NULL receive buffer                              | skipped; write-back with RXE so the driver drops it      |
//! | a ring with no EOP                                 | each descriptor served once per pass; the packet is dropped past 256 KiB |
//! | TSO with MSS 0, header past the packet, offsets outside it, > 1024 segments | the packet is dropped (TSCTFC) |
//! | unknown descriptor type                            | the packet is dropped                                   |
//! | EERD past the NVM, MDIC to another PHY address      | reads 0 / MDIC.E                                        |
//! | IVAR naming a vector the table lacks or not valid  | nothing sent; the cause is masked                       |
//! | a full receive ring                                | the backend is not read until RDT moves; other devices are untouched |
//! | anything that ends in a warning                    | at most 32 warnings a minute per device, then debug    |

mod core;
pub mod desc;
mod intr;
pub mod nvm;
pub mod phy;
pub mod regs;
pub mod rx;
mod stats;
#[cfg(test)]
mod tests;
pub mod tx;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backend::net::FrameIo;
use dma::Dma;
use irq::msi::MsiVectors;
use irq::IrqLine;
use pci::bar::{BarKind, BarSpec};
use pci::caps::endpoint::EndpointConfig;
use pci::caps::msi::MsiConfig;
use pci::caps::msix::{BarLocation, MsixConfig};
use pci::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use pci::caps::pm::PmConfig;
use pci::caps::routing::MsiRouting;
use pci::config::{command as pci_command, BarWindow, ConfigWriteEffects, Identity, Type0Config};
use pci::function::PciFunction;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use self::core::{Core, Drops, RxOutcome, MAX_JUMBO_FRAME};
pub use worker::Worker;

use intr::Interrupts;

/// Intel's PCI vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;
/// 82574L Gigabit Network Connection.
pub const DEVICE_82574L: u16 = 0x10d3;
/// Class: network controller, Ethernet.
pub const CLASS_ETHERNET: u32 = 0x02_00_00;
/// The register BAR.
pub const MMIO_BAR: usize = 0;
/// The flash BAR.
pub const FLASH_BAR: usize = 1;
/// The I/O BAR.
pub const IO_BAR: usize = 2;
/// The MSI-X BAR.
pub const MSIX_BAR: usize = 3;
/// Size of the flash window.
pub const FLASH_SIZE: u64 = 0x2_0000;
/// Size of the I/O window.
pub const IO_SIZE: u64 = 0x20;
/// Size of the MSI-X BAR.
pub const MSIX_BAR_SIZE: u64 = 0x4000;
/// MSI-X table entries.
pub const MSIX_VECTORS: u16 = 5;
/// Where the PBA sits in the MSI-X BAR.
const MSIX_PBA_OFFSET: u32 = 0x2000;

/// Why a device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum E1000eError {
    /// The PCI capabilities could not be built.
    #[error("e1000e PCI configuration space")]
    Pci(#[from] pci::caps::CapError),
    /// The PCI header could not be built.
    #[error("e1000e PCI header")]
    Header(#[from] pci::config::ConfigError),
    /// An eventfd, epoll or thread could not be created.
    #[error("e1000e worker setup")]
    Worker(#[source] std::io::Error),
    /// The MAC address is multicast or zero.
    #[error("e1000e MAC address {0} is not a unicast address")]
    Mac(String),
}

/// How a device is built.
#[derive(Clone, Debug)]
pub struct E1000eConfig {
    /// MAC address (stored in the NVM).
    pub mac: [u8; 6],
    /// Offer MSI-X.
    pub msix: bool,
    /// Offer MSI.
    pub msi: bool,
    /// The function's I/O counters, which the device counts its frames,
    /// drops and doorbells in.
    pub counters: Arc<counters::FunctionCounters>,
}

/// State shared by the PCI function (vCPU threads) and the worker.
#[derive(Debug)]
struct Shared {
    core: Mutex<Core>,
    kick: EventFd,
    stop: EventFd,
    worker_running: AtomicBool,
}

/// The 82574L as a PCI function.
#[derive(Debug)]
pub struct E1000e {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

fn endpoint(cfg: &E1000eConfig) -> Result<EndpointConfig, E1000eError> {
    let id = Identity {
        vendor: VENDOR_INTEL,
        device: DEVICE_82574L,
        class: CLASS_ETHERNET,
        revision: 0,
        subsystem_vendor: VENDOR_INTEL,
        subsystem: 0x0000,
    };
    let mem = BarKind::Mem32 {
        prefetchable: false,
    };
    let bars = [
        BarSpec {
            index: MMIO_BAR,
            kind: mem,
            size: regs::MMIO_SIZE as u64,
        },
        BarSpec {
            index: FLASH_BAR,
            kind: mem,
            size: FLASH_SIZE,
        },
        BarSpec {
            index: IO_BAR,
            kind: BarKind::Io,
            size: IO_SIZE,
        },
        BarSpec {
            index: MSIX_BAR,
            kind: mem,
            size: MSIX_BAR_SIZE,
        },
    ];
    let config = Type0Config::new(id, &bars, 1)?;
    let (msi, msix) = (cfg.msi, cfg.msix);
    Ok(EndpointConfig::new(config, |list| {
        list.power_management(PmConfig::default())?;
        if msi {
            list.msi(MsiConfig {
                vectors: 1,
                address64: true,
                per_vector_mask: false,
            })?;
        }
        list.pci_express(PcieConfig {
            device: PcieDevice::Endpoint {
                link: LinkConfig {
                    max_speed: LinkSpeed::Gen1,
                    max_width: LinkWidth::X1,
                    speed: LinkSpeed::Gen1,
                    width: LinkWidth::X1,
                },
            },
            max_payload: MaxPayload::B256,
        })?;
        if msix {
            list.msix(MsixConfig {
                vectors: MSIX_VECTORS,
                table: BarLocation {
                    bar: MSIX_BAR,
                    offset: 0,
                },
                pba: BarLocation {
                    bar: MSIX_BAR,
                    offset: MSIX_PBA_OFFSET,
                },
            })?;
        }
        Ok(())
    })?)
}

/// Whether `mac` may be a NIC's own address (unicast, not zero).
pub fn valid_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != &[0; 6]
}

impl E1000e {
    /// A device at power-on: guest memory through `dma`, messages through
    /// `msi`, INTA through `intx`, frames through `backend` (none: the
    /// wire is unplugged, loopback still works).
    pub fn new(
        cfg: E1000eConfig,
        dma: Arc<dyn Dma>,
        msi: Arc<dyn MsiVectors>,
        intx: Arc<dyn IrqLine>,
        backend: Option<Arc<dyn FrameIo>>,
    ) -> Result<Self, E1000eError> {
        if !valid_mac(&cfg.mac) {
            let m = cfg.mac;
            return Err(E1000eError::Mac(format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )));
        }
        if let Some(io) = &backend {
            // Frames are whole and fully checksummed in both directions.
            io.set_offloads(backend::net::Offloads::default())
                .map_err(E1000eError::Worker)?;
        }
        let intr = Interrupts::new(endpoint(&cfg)?, MsiRouting::new(msi), intx);
        cfg.counters.set_class(counters::IoClass::Net);
        let core = Core::new(cfg.mac, intr, dma, backend, cfg.counters.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                core: Mutex::new(core),
                kick: EventFd::new(EFD_NONBLOCK).map_err(E1000eError::Worker)?,
                stop: EventFd::new(EFD_NONBLOCK).map_err(E1000eError::Worker)?,
                worker_running: AtomicBool::new(false),
            }),
            worker: None,
        })
    }

    /// Starts the worker thread that serves the rings and the backend.
    /// Stopped when the device is dropped.
    pub fn start_worker(&mut self) -> Result<(), E1000eError> {
        if self.worker.is_none() {
            self.worker = Some(Worker::start(self.shared.clone())?);
        }
        Ok(())
    }

    /// Runs `f` on the core (tests and diagnostics).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut worker::lock(&self.shared))
    }

    fn wake(&self) {
        if let Err(e) = self.shared.kick.write(1) {
            tracing::warn!("e1000e: cannot wake the worker: {e}");
        }
    }
}

impl PciFunction for E1000e {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        worker::lock(&self.shared).intr.pci.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let mut guard = worker::lock(&self.shared);
        let c = &mut *guard;
        let master_before = c.intr.pci.config().command() & pci_command::BUS_MASTER != 0;
        let effects = c.intr.pci.write(offset, data);
        c.intr.routing.after_config_write(&c.intr.pci, &effects);
        let master = c.intr.pci.config().command() & pci_command::BUS_MASTER != 0;
        if master && !master_before {
            if c.defer {
                c.kick = true;
            } else {
                c.process_tx();
                c.retry_pending();
            }
        }
        c.flush_interrupts();
        let kick = std::mem::take(&mut c.kick);
        drop(guard);
        if kick {
            self.wake();
        }
        effects.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let mut c = worker::lock(&self.shared);
        match bar {
            MMIO_BAR => c.read(offset, data),
            IO_BAR => c.io_read(offset, data),
            MSIX_BAR => {
                c.intr.pci.bar_read(bar, offset, data);
            }
            _ => {}
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let mut guard = worker::lock(&self.shared);
        let c = &mut *guard;
        match bar {
            MMIO_BAR => c.write(offset, data),
            IO_BAR => c.io_write(offset, data),
            MSIX_BAR => {
                if let Some(effects) = c.intr.pci.bar_write(bar, offset, data) {
                    c.intr.routing.after_table_write(&c.intr.pci, &effects);
                    c.flush_interrupts();
                }
            }
            _ => {}
        }
        // A held (moderated) interrupt is the worker's to send: it learns
        // the new deadline when woken.
        let kick = std::mem::take(&mut c.kick) || c.deadline().is_some();
        drop(guard);
        if kick && self.shared.worker_running.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        worker::lock(&self.shared).intr.pci.config().bar_windows()
    }
}
