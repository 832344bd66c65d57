//! The virtio-pci transport, modern interface only (virtio 1.2 §4.1): a
//! PCI function `1af4:1040+id` whose one memory BAR holds the common
//! configuration, ISR status, device-specific configuration, per-queue
//! notification addresses and the MSI-X table, each located by a
//! vendor-specific capability ([`caps`], [`layout`]).
//!
//! # The path of a request
//!
//! ```text
//!  vCPU: config write ─▶ EndpointConfig (BARs, MSI-X enable/mask, PCI_CFG fields)
//!        BAR write ─┬─ common cfg ─▶ features, queue setup, device_status
//!                   │                 └─ DRIVER_OK: Activation ─▶ device.activate
//!                   ├─ device cfg ─▶ device.write_config
//!                   ├─ notify ─────▶ queue N's EventFd (or the VMM's ioeventfd)
//!                   └─ MSI-X table ─▶ routes, pending vectors delivered on unmask
//!  device worker: EventFd readable ─▶ rings ─▶ Signals::used(N)
//!        ─▶ MSI-X vector of N (pci::caps::routing::MsiRouting), or ISR + INTx
//! ```
//!
//! # DMA with and without an IOMMU
//! A transport built with [`VirtioPciConfig::platform_dma`] (the machine
//! has an IOMMU) offers `VIRTIO_F_ACCESS_PLATFORM` (virtio 1.2 §6). The
//! route is picked once, at `DRIVER_OK`, from the features the driver
//! accepted: with the bit, every access of the device (descriptor tables,
//! avail and used rings with their event-index fields, buffers) goes
//! through the translated handle, whose faults the IOMMU records;
//! without it, through [`VirtioPciConfig::dma`] at guest-physical
//! addresses, as QEMU does for a driver that did not accept it. Either
//! way the device's worker gets one [`Activation::memory`] and
//! [`Activation::dma`] over the same handle, and a machine without an
//! IOMMU keeps the untranslated fast path ([`dma::Dma::direct`]).
//!
//! # What the VMM does
//! 1. Builds a [`VirtioPci`] from a [`VirtioPciConfig`] and places it on
//!    the PCI tree like any [`PciFunction`].
//! 2. Registers each of [`VirtioPci::notify_eventfds`] as a KVM ioeventfd
//!    (no data match, any length) at the BAR's base plus its offset, and
//!    moves them when the BAR moves; without that, notifications trap and
//!    still work.
//! 3. Backs the vectors of the [`irq::msi::MsiVectors`] with irqfds, and
//!    the [`irq::IrqLine`] with INTA of the slot.
//!
//! # Threads and locks
//! The VMM calls the [`PciFunction`] methods on vCPU threads, holding its
//! own lock around the function. Device workers signal through
//! [`Signals`], which touches only [`signals::Shared`]: configuration
//! space, MSI-X routes, ISR, vectors, device status and generation, behind
//! their own mutex. Lock order, outermost first:
//!
//! ```text
//!  VMM's lock around VirtioPci ─▶ (device calls: reset, activate, config)
//!                              ─▶ Shared's mutex ─▶ MsiVectors / IrqLine
//! ```
//!
//! The transport never calls into the device while holding Shared's
//! mutex, and a worker never needs the VMM's lock, so
//! [`VirtioDevice::reset`] may join a worker that is inside
//! [`Signals::used`]. `MsiVectors` and `IrqLine` implementations must not
//! call back into the transport. A reset makes the previous activation's
//! [`Signals`] inert before it resets the device.
//!
//! # Threat table
//!
//! | the guest writes                                   | the transport                                     |
//! |----------------------------------------------------|---------------------------------------------------|
//! | any BAR offset, any width                          | fields only at their natural width; else reads 0, write ignored |
//! | feature bits not offered, or no `VERSION_1`        | `FEATURES_OK` does not stick                       |
//! | `driver_feature` after `FEATURES_OK`               | ignored                                            |
//! | status bits cleared without a reset, `DEVICE_NEEDS_RESET` | ignored                                     |
//! | `DRIVER_OK` without `FEATURES_OK`, or after `DEVICE_NEEDS_RESET` | dropped                              |
//! | queue registers after `DRIVER_OK`                  | ignored                                            |
//! | `queue_select` past the last queue                 | its fields read 0, writes ignored                  |
//! | `queue_size` 0, above the maximum, or not a power of two | 0 / too big: ignored; not a power of two: no activation, `DEVICE_NEEDS_RESET` |
//! | rings misaligned or outside guest memory           | no activation, `DEVICE_NEEDS_RESET` + config interrupt |
//! | rings at addresses its IOMMU does not map (`ACCESS_PLATFORM`) | the same; the IOMMU records the fault |
//! | MSI-X vectors beyond the table                     | read back `NO_VECTOR`, nothing is sent             |
//! | notifications of missing queues, odd addresses     | dropped                                            |
//! | PCI_CFG access with another BAR, bad length or offset | no BAR access                                  |
//! | PCI_CFG aimed at ISR, then config space dumped     | the dump reads (and clears) ISR, as the spec says |
//! | bus mastering off                                  | MSI-X messages are lost, as on hardware            |
//! | anything else that ends in a log line              | 16 warnings a minute per function, then debug level |

pub mod caps;
pub mod common;
pub mod layout;
pub mod notify;
pub mod queues;
pub mod signals;
pub mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use counters::FunctionCounters;
use dma::Dma;
use irq::msi::MsiVectors;
use irq::IrqLine;
use pci::bar::BarSpec;
use pci::caps::routing::MsiRouting;
use pci::config::{BarWindow, ConfigWriteEffects};
use pci::function::PciFunction;
use vmm_sys_util::eventfd::EventFd;

use crate::device::{Activation, Memory, Signals, VirtioDevice};
use crate::features::{F_ACCESS_PLATFORM, F_RING_EVENT_IDX, F_VERSION_1, TRANSPORT_FEATURES};
use caps::{field, PciCfgCap};
use common::{decode, le, put_le, CommonState, Field, Part};
use layout::{Layout, Region, VIRTIO_BAR};
use notify::{Notified, Notifiers};
use signals::{DeviceSignals, Shared, NO_VECTOR};
use status::{Transition, DRIVER_OK, FEATURES_OK};

/// Most queues a device may have here.
pub const MAX_QUEUES: usize = 1024;
/// Most MSI-X vectors (the MSI-X table's limit).
pub const MAX_VECTORS: u16 = 2048;

/// Why a transport could not be built (a bug in the VMM's configuration
/// or the device model, or a host resource failure).
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    /// The device offers no queue, or more than [`MAX_QUEUES`].
    #[error("device offers {0} queues; 1 to 1024 are supported")]
    QueueCount(usize),
    /// A queue's maximum size is not a power of two up to 32768.
    #[error("queue {index}: maximum size {size} is not a power of two up to 32768")]
    QueueMaxSize {
        /// Queue index.
        index: usize,
        /// The maximum size the device gave.
        size: u16,
    },
    /// More MSI-X vectors than a table holds.
    #[error("{0} MSI-X vectors requested; at most 2048")]
    Vectors(u16),
    /// The PCI device ID 0x1040 + id does not fit in 16 bits.
    #[error("virtio device ID {0} has no PCI device ID")]
    DeviceId(u16),
    /// The capabilities could not be laid out.
    #[error("virtio-pci capabilities")]
    Caps(#[from] pci::caps::CapError),
    /// The PCI header could not be built.
    #[error("virtio-pci header")]
    Header(#[from] pci::config::ConfigError),
    /// A notification eventfd could not be created.
    #[error("virtio-pci notification eventfd")]
    Eventfd(#[source] std::io::Error),
}

/// One way the device may reach memory: a DMA handle and the queues'
/// [`Memory`] view of it, made once when the transport is built so that
/// activation only picks one.
#[derive(Debug)]
struct DmaView {
    dma: Arc<dyn Dma>,
    memory: Arc<Memory>,
}

impl DmaView {
    fn new(dma: Arc<dyn Dma>) -> Self {
        Self {
            memory: Arc::new(Memory::new(dma.clone())),
            dma,
        }
    }
}

/// How a transport is built.
#[derive(Debug)]
pub struct VirtioPciConfig {
    /// The device type behind the transport.
    pub device: Box<dyn VirtioDevice>,
    /// The function's DMA at guest-physical addresses: the queues' rings
    /// and the buffers' contents both go through it, unless the driver
    /// negotiates `VIRTIO_F_ACCESS_PLATFORM`.
    pub dma: Arc<dyn Dma>,
    /// The function's MSI-X vectors.
    pub msi: Arc<dyn MsiVectors>,
    /// INTA of the function's slot.
    pub intx: Arc<dyn IrqLine>,
    /// MSI-X table entries (0: no MSI-X, INTx only).
    pub msix_vectors: u16,
    /// The function's DMA through the platform's IOMMU, in a machine that
    /// has one. With it the transport offers `VIRTIO_F_ACCESS_PLATFORM`
    /// (virtio 1.2 §6), and a driver that accepts it gets rings and
    /// buffers translated through this handle instead of `dma`.
    pub platform_dma: Option<Arc<dyn Dma>>,
    /// The function's I/O counters: the transport counts trapped
    /// notifications in them, the device its requests.
    pub counters: Arc<FunctionCounters>,
}

impl VirtioPciConfig {
    /// A configuration with one MSI-X vector per queue plus one for
    /// configuration changes, and without an IOMMU (no
    /// `VIRTIO_F_ACCESS_PLATFORM`).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        dma: Arc<dyn Dma>,
        msi: Arc<dyn MsiVectors>,
        intx: Arc<dyn IrqLine>,
    ) -> Self {
        let queues = device.queue_max_sizes().len();
        let msix_vectors = u16::try_from(queues + 1)
            .unwrap_or(MAX_VECTORS)
            .min(MAX_VECTORS);
        Self {
            device,
            dma,
            msi,
            intx,
            msix_vectors,
            platform_dma: None,
            counters: Arc::default(),
        }
    }
}

/// A virtio device on PCI.
#[derive(Debug)]
pub struct VirtioPci {
    device: Box<dyn VirtioDevice>,
    bypass: DmaView,
    platform: Option<DmaView>,
    offered: u64,
    layout: Layout,
    common: CommonState,
    notifiers: Notifiers,
    pci_cfg: PciCfgCap,
    shared: Arc<Shared>,
    counters: Arc<FunctionCounters>,
}

impl VirtioPci {
    /// A transport at reset around `cfg.device`.
    pub fn new(cfg: VirtioPciConfig) -> Result<Self, VirtioPciError> {
        let max_sizes = cfg.device.queue_max_sizes();
        let queues = u16::try_from(max_sizes.len())
            .ok()
            .filter(|&n| n > 0 && usize::from(n) <= MAX_QUEUES)
            .ok_or(VirtioPciError::QueueCount(max_sizes.len()))?;
        if let Some((index, &size)) = max_sizes
            .iter()
            .enumerate()
            .find(|(_, &s)| !s.is_power_of_two() || s > 32768)
        {
            return Err(VirtioPciError::QueueMaxSize { index, size });
        }
        if cfg.msix_vectors > MAX_VECTORS {
            return Err(VirtioPciError::Vectors(cfg.msix_vectors));
        }
        let layout = Layout::new(queues, cfg.msix_vectors);
        let (ep, pci_cfg) = caps::endpoint(cfg.device.device_id(), &layout)?;
        let mut offered = cfg.device.features() | TRANSPORT_FEATURES;
        if cfg.platform_dma.is_some() {
            offered |= F_ACCESS_PLATFORM;
        }
        let shared = Shared::new(ep, MsiRouting::new(cfg.msi), cfg.intx, usize::from(queues));
        Ok(Self {
            device: cfg.device,
            bypass: DmaView::new(cfg.dma),
            platform: cfg.platform_dma.map(DmaView::new),
            offered,
            layout,
            common: CommonState::new(&max_sizes),
            notifiers: Notifiers::new(usize::from(queues)).map_err(VirtioPciError::Eventfd)?,
            pci_cfg,
            shared: Arc::new(shared),
            counters: cfg.counters,
        })
    }

    /// Each queue's notification address as `(BAR index, offset in the
    /// BAR, eventfd)`: the VMM registers the eventfd as a KVM ioeventfd
    /// (no data match; the driver writes 16 bits) at the BAR's guest
    /// address plus the offset, re-registering when the guest moves the
    /// BAR. The eventfds are clones of the ones the device waits on, so a
    /// registered notification never reaches [`PciFunction::bar_write`].
    pub fn notify_eventfds(&self) -> Vec<(usize, u64, EventFd)> {
        self.notifiers.ioeventfds()
    }

    /// The feature bits offered to the driver.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    /// The BAR layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn status(&self) -> u8 {
        self.shared.lock().status
    }

    // ---- BAR ---------------------------------------------------------------

    fn read_bar(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match self.layout.region(offset) {
            Region::Common(rel) => self.read_common(rel, data),
            Region::Isr(0) => {
                if let Some(b) = data.first_mut() {
                    *b = self.shared.read_isr();
                }
            }
            Region::Device(rel) => self.device.read_config(rel, data),
            Region::Msix => {
                self.shared.lock().pci.bar_read(VIRTIO_BAR, offset, data);
            }
            Region::Isr(_) | Region::Notify(_) | Region::Unused => {}
        }
    }

    fn write_bar(&mut self, offset: u64, data: &[u8]) {
        match self.layout.region(offset) {
            Region::Common(rel) => self.write_common(rel, data),
            Region::Device(rel) => self.device.write_config(rel, data),
            Region::Notify(rel) => {
                self.counters.doorbells.doorbells_trapped.inc();
                if let Notified::NoQueue(rel) = self.notifiers.write(rel) {
                    self.shared
                        .warn(format_args!("notification at {rel:#x} names no queue"));
                }
            }
            Region::Msix => {
                let mut guard = self.shared.lock();
                let st = &mut *guard;
                if let Some(effects) = st.pci.bar_write(VIRTIO_BAR, offset, data) {
                    st.routing.after_table_write(&st.pci, &effects);
                    self.shared.update_intx(st);
                }
            }
            Region::Isr(_) | Region::Unused => {
                tracing::debug!("virtio-pci: write to read-only BAR offset {offset:#x} ignored");
            }
        }
    }

    // ---- common configuration ---------------------------------------------

    fn read_common(&self, rel: u64, data: &mut [u8]) {
        let Some((field, part)) = decode(rel, data.len()) else {
            tracing::debug!(
                "virtio-pci: common config read of {} bytes at {rel:#x} matches no field",
                data.len()
            );
            return;
        };
        let c = &self.common;
        let q = c.selected();
        let value: u64 = match field {
            Field::DeviceFeatureSelect => c.device_feature_select.into(),
            Field::DeviceFeature => {
                CommonState::window(self.offered, c.device_feature_select).into()
            }
            Field::DriverFeatureSelect => c.driver_feature_select.into(),
            Field::DriverFeature => {
                CommonState::window(c.driver_features, c.driver_feature_select).into()
            }
            Field::ConfigMsixVector => self.shared.lock().config_vector.into(),
            Field::NumQueues => c.queues.len() as u64,
            Field::DeviceStatus => self.status().into(),
            Field::ConfigGeneration => self.shared.lock().config_generation.into(),
            Field::QueueSelect => c.queue_select.into(),
            Field::QueueSize => q.map_or(0, |q| q.size).into(),
            Field::QueueMsixVector => {
                let st = self.shared.lock();
                let v = st.queue_vectors.get(usize::from(c.queue_select));
                v.copied().unwrap_or(NO_VECTOR).into()
            }
            Field::QueueEnable => q.map_or(0, |q| u64::from(q.enabled)),
            Field::QueueNotifyOff => q.map_or(0, |_| c.queue_select.into()),
            Field::QueueDesc => q.map_or(0, |q| q.desc),
            Field::QueueDriver => q.map_or(0, |q| q.driver),
            Field::QueueDevice => q.map_or(0, |q| q.device),
        };
        put_le(data, part.extract(value));
    }

    fn write_common(&mut self, rel: u64, data: &[u8]) {
        let Some((field, part)) = decode(rel, data.len()) else {
            tracing::debug!(
                "virtio-pci: common config write of {} bytes at {rel:#x} matches no field",
                data.len()
            );
            return;
        };
        let value = le(data);
        match field {
            Field::DeviceFeatureSelect => self.common.device_feature_select = value as u32,
            Field::DriverFeatureSelect => self.common.driver_feature_select = value as u32,
            Field::DriverFeature => self.write_driver_features(value as u32),
            Field::ConfigMsixVector => {
                let mut st = self.shared.lock();
                st.config_vector = st.valid_vector(value as u16);
            }
            Field::DeviceStatus => self.write_status(value as u8),
            Field::QueueSelect => self.common.queue_select = value as u16,
            Field::QueueSize
            | Field::QueueMsixVector
            | Field::QueueEnable
            | Field::QueueDesc
            | Field::QueueDriver
            | Field::QueueDevice => self.write_queue(field, part, value),
            Field::DeviceFeature
            | Field::NumQueues
            | Field::ConfigGeneration
            | Field::QueueNotifyOff => {
                tracing::debug!("virtio-pci: write to read-only {field:?} ignored");
            }
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status() & FEATURES_OK != 0 {
            self.shared
                .warn(format_args!("driver_feature written after FEATURES_OK"));
            return;
        }
        let part = match self.common.driver_feature_select {
            0 => Part::Low,
            1 => Part::High,
            s => {
                if value != 0 {
                    self.shared
                        .warn(format_args!("driver features {value:#x} in window {s}"));
                }
                return;
            }
        };
        let c = &mut self.common;
        c.driver_features = part.merge(c.driver_features, value.into());
    }

    fn write_queue(&mut self, field: Field, part: Part, value: u64) {
        let sel = self.common.queue_select;
        if self.status() & DRIVER_OK != 0 {
            self.shared.warn(format_args!(
                "queue {sel}: {field:?} written after DRIVER_OK"
            ));
            return;
        }
        if field == Field::QueueMsixVector {
            let mut st = self.shared.lock();
            let vector = st.valid_vector(value as u16);
            match st.queue_vectors.get_mut(usize::from(sel)) {
                Some(v) => *v = vector,
                None => {
                    drop(st);
                    self.shared.warn(format_args!(
                        "queue {sel} does not exist ({field:?} written)"
                    ));
                }
            }
            return;
        }
        let Some(q) = self.common.selected_mut() else {
            self.shared.warn(format_args!(
                "queue {sel} does not exist ({field:?} written)"
            ));
            return;
        };
        match field {
            Field::QueueSize if value == 0 || value > u64::from(q.max_size) => {
                let max = q.max_size;
                self.shared
                    .warn(format_args!("queue {sel}: size {value} outside 1-{max}"));
            }
            Field::QueueSize => q.size = value as u16,
            Field::QueueEnable if value == 1 => q.enabled = true,
            Field::QueueEnable => {
                self.shared
                    .warn(format_args!("queue {sel}: queue_enable {value} ignored"));
            }
            Field::QueueDesc => q.desc = part.merge(q.desc, value),
            Field::QueueDriver => q.driver = part.merge(q.driver, value),
            Field::QueueDevice => q.device = part.merge(q.device, value),
            _ => {}
        }
    }

    // ---- device status ----------------------------------------------------

    fn features_acceptable(&self) -> bool {
        let accepted = self.common.driver_features;
        let unoffered = accepted & !self.offered;
        if unoffered != 0 {
            self.shared.warn(format_args!(
                "driver accepted features {unoffered:#x} that were not offered"
            ));
            return false;
        }
        if accepted & F_VERSION_1 == 0 {
            self.shared
                .warn(format_args!("driver did not accept VERSION_1"));
            return false;
        }
        true
    }

    fn write_status(&mut self, value: u8) {
        let old = self.status();
        match status::transition(old, value, || self.features_acceptable()) {
            Transition::Reset => self.reset(),
            Transition::Ignored(why) => {
                self.shared
                    .warn(format_args!("status {value:#x} after {old:#x}: {why}"));
            }
            Transition::Set {
                status,
                activate,
                refused,
            } => {
                if let Some(why) = refused {
                    self.shared.warn(format_args!("status {value:#x}: {why}"));
                }
                {
                    let mut st = self.shared.lock();
                    st.status = status | (st.status & status::DEVICE_NEEDS_RESET);
                }
                if activate {
                    self.activate();
                }
            }
        }
    }

    /// Device reset (§2.4): the old activation's signals go inert, the
    /// device stops (joining its workers, with no transport lock held),
    /// then every virtio register returns to its reset value.
    /// `config_generation` keeps counting; the PCI configuration space
    /// and the MSI-X table are untouched.
    fn reset(&mut self) {
        self.shared.lock().epoch += 1;
        self.device.reset();
        self.notifiers.drain();
        self.common.reset();
        let mut st = self.shared.lock();
        st.reset_virtio();
        self.shared.update_intx(&mut st);
    }

    /// Where the device's DMA goes for a driver that accepted `features`:
    /// through the IOMMU if it accepted `VIRTIO_F_ACCESS_PLATFORM` (it
    /// hands out I/O virtual addresses), at guest-physical addresses
    /// otherwise, as QEMU does.
    fn route(&self, features: u64) -> &DmaView {
        match &self.platform {
            Some(platform) if features & F_ACCESS_PLATFORM != 0 => platform,
            _ => &self.bypass,
        }
    }

    fn activate(&mut self) {
        let features = self.common.driver_features;
        let event_idx = features & F_RING_EVENT_IDX != 0;
        let route = self.route(features);
        let (memory, dma) = (route.memory.clone(), route.dma.clone());
        let queues = match queues::setups(&self.common.queues, &memory, event_idx, &self.notifiers)
        {
            Ok(queues) => queues,
            Err(e) => {
                self.shared
                    .warn(format_args!("not activating: {e}; device needs reset"));
                let mut st = self.shared.lock();
                self.shared.needs_reset(&mut st);
                return;
            }
        };
        let epoch = self.shared.lock().epoch;
        let signals: Arc<dyn Signals> = Arc::new(DeviceSignals::new(self.shared.clone(), epoch));
        let activation = Activation {
            features,
            memory,
            dma,
            queues,
            signals,
            counters: self.counters.clone(),
        };
        if let Err(e) = self.device.activate(activation) {
            self.shared.warn(format_args!(
                "device activation failed: {e}; device needs reset"
            ));
            let mut st = self.shared.lock();
            self.shared.needs_reset(&mut st);
        }
    }

    // ---- PCI configuration access capability (§4.1.4.9) --------------------

    /// The BAR access the PCI_CFG capability's fields describe, if valid.
    fn pci_cfg_target(&self) -> Option<(u64, usize)> {
        let base = self.pci_cfg.offset;
        let (bar, offset, len) = {
            let st = self.shared.lock();
            let regs = st.pci.config().regs();
            (
                regs.read_le(base + field::BAR, 1),
                regs.read_le(base + field::OFFSET, 4),
                regs.read_le(base + field::LENGTH, 4),
            )
        };
        if len == 0 {
            // Not aimed anywhere yet: a configuration-space dump reading
            // pci_cfg_data is no access at all.
            return None;
        }
        let valid = bar == VIRTIO_BAR as u64
            && matches!(len, 1 | 2 | 4)
            && offset % len == 0
            && offset + len <= self.layout.bar_size;
        if !valid {
            self.shared.warn(format_args!(
                "PCI_CFG access to BAR {bar} offset {offset:#x} length {len} refused"
            ));
            return None;
        }
        Some((offset, len as usize))
    }

    fn pci_cfg_read(&self) {
        let Some((offset, len)) = self.pci_cfg_target() else {
            return;
        };
        let mut buf = [0u8; 4];
        self.read_bar(offset, &mut buf[..len]);
        let data = self.pci_cfg.data_range().start;
        let mut st = self.shared.lock();
        st.pci
            .config_mut()
            .regs_mut()
            .set_value(data, len, le(&buf[..len]))
            .ok();
    }

    fn pci_cfg_write(&mut self) {
        let Some((offset, len)) = self.pci_cfg_target() else {
            return;
        };
        let mut buf = [0u8; 4];
        self.shared
            .lock()
            .pci
            .read(self.pci_cfg.data_range().start, &mut buf);
        self.write_bar(offset, &buf[..len]);
    }
}

impl PciFunction for VirtioPci {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        if self.pci_cfg.touches_data(offset, data.len()) {
            self.pci_cfg_read();
        }
        self.shared.lock().pci.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let effects = {
            let mut guard = self.shared.lock();
            let st = &mut *guard;
            let effects = st.pci.write(offset, data);
            st.routing.after_config_write(&st.pci, &effects);
            self.shared.update_intx(st);
            effects
        };
        if self.pci_cfg.touches_data(offset, data.len()) {
            self.pci_cfg_write();
        }
        effects.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar == VIRTIO_BAR {
            self.read_bar(offset, data);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == VIRTIO_BAR {
            self.write_bar(offset, data);
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.shared.lock().pci.config().bar_windows()
    }
}
