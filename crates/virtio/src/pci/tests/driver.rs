//! A fake guest driver: guest RAM, a recording device, recorded
//! interrupts, and the steps Linux's virtio_pci_modern driver takes
//! (find the capabilities, place the BAR, negotiate, set up queues,
//! program MSI-X, DRIVER_OK); the PCI steps are `pci::testing`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use dma::{Dma, FunctionContext, GuestDma};
use irq::recording::{RecordingLine, RecordingVectors};
use pci::caps::id;
use pci::config::command;
use pci::function::PciFunction;
use pci::message::MsiMessage;
use pci::testing::{BarDriver, ConfigDriver, MsixDriver};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::device::{ActivateError, Activation, Memory, QueueSetup, Signals, VirtioDevice};
use crate::features::{F_VERSION_1, ID_BLOCK};
use crate::pci::caps::{cfg_type, field};
use crate::pci::status::{ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK};
use crate::pci::{VirtioPci, VirtioPciConfig};
pub use crate::testutil::{FakeIommu, IOVA_OFFSET, TEST_RID};

/// Guest RAM size.
pub const RAM: u64 = 1 << 20;
/// Where the driver puts queue N's rings: RINGS + N * 0x1000.
pub const RINGS: u64 = 0x1_0000;
/// Where the driver places BAR 0.
pub const BAR_ADDR: u64 = 0xe000_0000;
/// The fake device's feature bits.
pub const DEVICE_FEATURES: u64 = 1 << 5 | 1 << 9;
/// The fake device's configuration space.
pub const DEVICE_CONFIG: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
/// Common configuration field offsets (§4.1.4.3).
pub mod cc {
    pub const DFSELECT: u64 = 0x00;
    pub const DF: u64 = 0x04;
    pub const GFSELECT: u64 = 0x08;
    pub const GF: u64 = 0x0c;
    pub const MSIX_CONFIG: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const STATUS: u64 = 0x14;
    pub const GENERATION: u64 = 0x15;
    pub const Q_SELECT: u64 = 0x16;
    pub const Q_SIZE: u64 = 0x18;
    pub const Q_MSIX: u64 = 0x1a;
    pub const Q_ENABLE: u64 = 0x1c;
    pub const Q_NOFF: u64 = 0x1e;
    pub const Q_DESC: u64 = 0x20;
    pub const Q_DRIVER: u64 = 0x28;
    pub const Q_DEVICE: u64 = 0x30;
}

/// What the fake device saw.
#[derive(Debug, Default)]
pub struct DeviceLog {
    /// Features of each activation.
    pub activations: Vec<u64>,
    /// The queues of the last activation.
    pub queues: Vec<QueueSetup>,
    /// The signals of the last activation.
    pub signals: Option<Arc<dyn Signals>>,
    /// The queues' memory and the buffers' DMA of the last activation.
    pub dma: Option<(Arc<Memory>, Arc<dyn Dma>)>,
    /// Number of resets.
    pub resets: usize,
    /// Every config write.
    pub config_writes: Vec<(u64, Vec<u8>)>,
}

/// A device that records what the transport does to it; with `worker`, it
/// runs a thread that signals queue 0 until reset joins it.
#[derive(Debug)]
pub struct FakeDevice {
    pub log: Arc<Mutex<DeviceLog>>,
    pub max_sizes: Vec<u16>,
    pub fail_activate: bool,
    pub worker: bool,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl FakeDevice {
    pub fn new(max_sizes: Vec<u16>) -> Self {
        Self {
            log: Arc::default(),
            max_sizes,
            fail_activate: false,
            worker: false,
            running: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VirtioDevice for FakeDevice {
    fn device_id(&self) -> u16 {
        ID_BLOCK
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        self.max_sizes.clone()
    }

    fn features(&self) -> u64 {
        DEVICE_FEATURES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|o| DEVICE_CONFIG.get(o)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        lock(&self.log).config_writes.push((offset, data.to_vec()));
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if self.fail_activate {
            return Err(ActivateError::Backend("refused by the test".into()));
        }
        if self.worker {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, signals) = (stop.clone(), activation.signals.clone());
            let handle = std::thread::spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    signals.used(0);
                    std::thread::yield_now();
                }
            });
            self.running = Some((stop, handle));
        }
        let mut log = lock(&self.log);
        log.activations.push(activation.features);
        log.queues = activation.queues;
        log.signals = Some(activation.signals);
        log.dma = Some((activation.memory, activation.dma));
        Ok(())
    }

    fn reset(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            handle.join().ok();
        }
        let mut log = lock(&self.log);
        log.resets += 1;
        log.queues.clear();
        log.signals = None;
        log.dma = None;
    }
}

/// Where each virtio structure is, as the capabilities say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Located {
    pub common: u64,
    pub isr: u64,
    pub device: u64,
    pub notify: u64,
    pub multiplier: u32,
    pub pci_cfg: usize,
}

/// A transport with its device, memory and interrupt recorders.
#[derive(Debug)]
pub struct Rig {
    pub pci: VirtioPci,
    pub log: Arc<Mutex<DeviceLog>>,
    pub mem: Arc<GuestMemoryMmap>,
    pub vectors: Arc<RecordingVectors>,
    pub intx: Arc<RecordingLine>,
    pub at: Located,
}

/// Builds a transport for `device`, letting `tweak` edit the config.
pub fn rig_with(device: FakeDevice, tweak: impl FnOnce(&mut VirtioPciConfig)) -> Rig {
    rig_on(ram(), device, tweak)
}

/// Guest RAM of [`RAM`] bytes.
fn ram() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap())
}

/// A transport around a two-queue fake device in a machine with an
/// IOMMU: its platform DMA is a [`FakeIommu`] (bus address = guest
/// address + [`IOVA_OFFSET`]) for a function with Bus Master Enable on.
pub fn rig_with_iommu() -> (Rig, Arc<FakeIommu>) {
    let mem = ram();
    let ctx = FunctionContext::new(TEST_RID);
    ctx.set_bus_master(true);
    let iommu = FakeIommu::new(ctx, mem.clone());
    let platform: Arc<dyn Dma> = iommu.clone();
    let rig = rig_on(mem, FakeDevice::new(vec![16, 8]), |c| {
        c.platform_dma = Some(platform);
    });
    (rig, iommu)
}

fn rig_on(
    mem: Arc<GuestMemoryMmap>,
    device: FakeDevice,
    tweak: impl FnOnce(&mut VirtioPciConfig),
) -> Rig {
    let vectors = Arc::new(RecordingVectors::new());
    let intx = Arc::new(RecordingLine::new());
    let log = device.log.clone();
    let mut cfg = VirtioPciConfig::new(
        Box::new(device),
        Arc::new(GuestDma::new(mem.clone())),
        vectors.clone(),
        intx.clone(),
    );
    tweak(&mut cfg);
    let mut rig = Rig {
        pci: VirtioPci::new(cfg).unwrap(),
        log,
        mem,
        vectors,
        intx,
        at: Located::default(),
    };
    rig.at = rig.locate();
    rig
}

/// A transport around a two-queue fake device (sizes 16 and 8), 3 vectors.
pub fn rig() -> Rig {
    rig_with(FakeDevice::new(vec![16, 8]), |_| {})
}

impl Rig {
    pub fn device(&self) -> MutexGuard<'_, DeviceLog> {
        lock(&self.log)
    }

    /// The vendor capabilities as `(offset, cfg_type)`.
    pub fn vendor_caps(&self) -> Vec<(usize, u8)> {
        self.pci
            .capabilities()
            .into_iter()
            .filter(|c| c.id == u16::from(id::VENDOR))
            .map(|c| (c.offset, self.pci.config_read8(c.offset + field::CFG_TYPE)))
            .collect()
    }

    fn locate(&self) -> Located {
        let mut at = Located::default();
        for (off, ty) in self.vendor_caps() {
            let offset = u64::from(self.pci.config_read32(off + field::OFFSET));
            match ty {
                cfg_type::COMMON => at.common = offset,
                cfg_type::ISR => at.isr = offset,
                cfg_type::DEVICE => at.device = offset,
                cfg_type::NOTIFY => {
                    at.notify = offset;
                    at.multiplier = self.pci.config_read32(off + field::NOTIFY_OFF_MULTIPLIER);
                }
                cfg_type::PCI_CFG => at.pci_cfg = off,
                _ => {}
            }
        }
        at
    }

    /// Sizes BAR 0 (returns the size) and places it at [`BAR_ADDR`] with
    /// memory decoding and bus mastering on.
    pub fn place_bar(&mut self) -> u64 {
        let bar = self.pci.size_bar(0).expect("BAR 0");
        self.pci.place_bar(0, BAR_ADDR);
        self.pci.set_command(command::MEMORY | command::BUS_MASTER);
        bar.size
    }

    // ---- BAR -------------------------------------------------------------

    pub fn bar_read(&mut self, offset: u64, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        self.pci.bar_read(0, offset, &mut buf[..len]);
        u64::from_le_bytes(buf)
    }

    pub fn bar_write(&mut self, offset: u64, len: usize, value: u64) {
        self.pci.bar_write(0, offset, &value.to_le_bytes()[..len]);
    }

    pub fn common_read(&mut self, field: u64, len: usize) -> u64 {
        self.bar_read(self.at.common + field, len)
    }

    pub fn common_write(&mut self, field: u64, len: usize, value: u64) {
        self.bar_write(self.at.common + field, len, value);
    }

    pub fn status(&mut self) -> u8 {
        self.common_read(cc::STATUS, 1) as u8
    }

    pub fn set_status(&mut self, status: u8) {
        self.common_write(cc::STATUS, 1, status.into());
    }

    pub fn read_isr(&mut self) -> u8 {
        self.bar_read(self.at.isr, 1) as u8
    }

    /// The 64 device feature bits, read through both windows.
    pub fn device_features(&mut self) -> u64 {
        self.common_write(cc::DFSELECT, 4, 0);
        let low = self.common_read(cc::DF, 4);
        self.common_write(cc::DFSELECT, 4, 1);
        low | self.common_read(cc::DF, 4) << 32
    }

    /// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK; the status read back.
    pub fn negotiate(&mut self, features: u64) -> u8 {
        self.set_status(0);
        self.set_status(ACKNOWLEDGE);
        self.set_status(ACKNOWLEDGE | DRIVER);
        self.write_features(features);
        self.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
        self.status()
    }

    pub fn write_features(&mut self, features: u64) {
        self.common_write(cc::GFSELECT, 4, 0);
        self.common_write(cc::GF, 4, features & 0xffff_ffff);
        self.common_write(cc::GFSELECT, 4, 1);
        self.common_write(cc::GF, 4, features >> 32);
    }

    /// Ring addresses of queue `q` at [`RINGS`] + q·0x1000, for `size`.
    pub fn rings(q: u16, size: u16) -> (u64, u64, u64) {
        let base = RINGS + u64::from(q) * 0x1000;
        let avail = base + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
        (base, avail, used)
    }

    /// Sets up queue `q` with `size` entries at [`Rig::rings`], vector
    /// `vector`, and enables it.
    pub fn setup_queue(&mut self, q: u16, size: u16, vector: u16) {
        let (desc, avail, used) = Self::rings(q, size);
        self.set_queue_addresses(q, size, desc, avail, used);
        self.common_write(cc::Q_MSIX, 2, vector.into());
        self.common_write(cc::Q_ENABLE, 2, 1);
    }

    pub fn set_queue_addresses(&mut self, q: u16, size: u16, desc: u64, avail: u64, used: u64) {
        self.common_write(cc::Q_SELECT, 2, q.into());
        self.common_write(cc::Q_SIZE, 2, size.into());
        for (field, addr) in [
            (cc::Q_DESC, desc),
            (cc::Q_DRIVER, avail),
            (cc::Q_DEVICE, used),
        ] {
            self.common_write(field, 4, addr & 0xffff_ffff);
            self.common_write(field + 4, 4, addr >> 32);
        }
    }

    pub fn driver_ok(&mut self) {
        self.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// Negotiates VERSION_1, gives configuration changes vector 0, sets up
    /// queue 0 with vector 1, DRIVER_OK.
    pub fn bring_up(&mut self) {
        self.place_bar();
        self.negotiate(F_VERSION_1);
        self.common_write(cc::MSIX_CONFIG, 2, 0);
        self.setup_queue(0, 16, 1);
        self.driver_ok();
    }

    // ---- MSI-X -------------------------------------------------------------

    /// Enables MSI-X and programs every entry `v` to vector 0x30 + v, unmasked.
    pub fn enable_msix(&mut self) {
        let all = self.pci.msix_layout().expect("MSI-X capability").vectors;
        self.pci.enable_msix(all, |v| MsiMessage {
            address: 0xfee0_0000,
            data: 0x30 + u32::from(v),
        });
    }

    /// The signals the device got at its last activation.
    pub fn signals(&self) -> Arc<dyn Signals> {
        self.device().signals.clone().unwrap()
    }
}
