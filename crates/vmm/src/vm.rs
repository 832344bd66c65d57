//! Building a machine from a [`VmConfig`]; [`crate::lifecycle`] runs it
//! to its end and takes it down.
//!
//! ```text
//!  validate config ─▶ open files ─▶ open /dev/kvm ─▶ create VM, split irqchip
//!   ─▶ map RAM ─▶ load kernel, ACPI, page tables ─▶ platform devices, PCI
//!   tree ─▶ create vCPUs ─▶ Vm
//! ```
//!
//! Exit codes of the `iovm` binary are defined here, next to the outcomes
//! they report.

use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::legacy::acpi_pm::{ACPI_PM_PORT, ACPI_PM_SIZE};
use devices::legacy::cmos::{CMOS_PORT, CMOS_SIZE};
use devices::legacy::ged::{GED_IRQ, GED_PORT, GED_SIZE};
use devices::legacy::i8042::I8042_COMMAND_OFFSET;
use devices::legacy::pvpanic::PVPANIC_PORT;
use devices::legacy::serial::SERIAL_PORT_SIZE;
use devices::legacy::{AcpiPowerDevice, Cmos, Ged, PvPanic, Serial, I8042};
use devices::{GuestRequest, LifecycleSink};
use dma::{Dma, GuestDma};
use irq::ioapic::WirePolarity;
use kvm_bindings::{Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

use crate::acpi::{self, AcpiConfig, COM1_IRQ, COM1_PORT, IOAPIC_PINS};
use crate::boot::{cpu_state, loader, page_tables, reset_vector};
use crate::bus::Bus;
use crate::config::{DeviceConfig, DeviceKind, VmConfig};
use crate::console::Console;
use crate::cpuid::{self, Topology};
use crate::host::{self, KvmAccessError};
use crate::interrupts::{GsiRouter, KvmMsiSink};
use crate::ioevents::KvmIoEvents;
use crate::irqchip::{self, Irqchip, IOAPIC_WINDOW};
use crate::layout::{
    MemoryLayout, ECAM_SIZE, ECAM_START, IOAPIC_START, MIB, MIN_MEMORY, VTD_SIZE, VTD_START,
};
use crate::manage::pause::PauseGate;
use crate::memory_slots::KvmMemorySlots;
use crate::pci_devices;
use crate::pci_host::{PciRoot, CONFIG_PORTS_SIZE};
use crate::vcpu::{self, VcpuRunner};
use crate::vtd::Vtd;
use crate::wiring::KvmWiring;
use pci::address::CONFIG_ADDRESS_PORT;

/// Exit code: the guest powered off.
pub const EXIT_POWEROFF: i32 = 0;
/// Exit code: iovm could not build or run the machine (bad input, host problem).
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the command line could not be parsed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the guest reset the machine and `--on-reboot exit` is in force.
pub const EXIT_REBOOT: i32 = 3;
/// Exit code: the guest kernel panicked, or KVM could not go on running it.
pub const EXIT_CRASH: i32 = 4;
/// Exit code: the user ended iovm with the console escape (`Ctrl-A x`).
pub const EXIT_USER_QUIT: i32 = 5;
/// Exit code: the guest did not power off within the shutdown timeout after
/// the power button was pressed, or a second signal ended it.
pub const EXIT_FORCED_OFF: i32 = 6;
/// Exit code: an iovm thread panicked (a bug in iovm).
pub const EXIT_INTERNAL: i32 = 7;
/// Exit code: a thread made a system call its seccomp filter forbids (a bug
/// in iovm, or a guest exploiting one).
pub const EXIT_SECCOMP: i32 = sandbox::EXIT_SECCOMP;

/// The most vCPUs a machine may have: xAPIC IDs are 8 bits, 255 is broadcast,
/// and without interrupt remapping the guest cannot address more.
pub const MAX_CPUS: u32 = 254;
/// The most vCPUs with `intel-iommu` and interrupt remapping: x2APIC
/// destinations through the remapping table reach 32-bit APIC IDs, so
/// KVM's own limit (`KVM_MAX_VCPUS`, 1024 on x86) is the bound.
pub const MAX_CPUS_REMAPPED: u32 = 1024;

/// TSS area Intel VMX needs below 4 GiB, inside the MMIO hole.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Something the run loop acts on.
#[derive(Debug)]
pub enum VmEvent {
    /// The guest asked for it.
    Guest(GuestRequest),
    /// SIGTERM or SIGINT: press the power button (or, the second time,
    /// end the machine).
    ShutdownSignal(i32),
    /// The user typed the console escape.
    UserQuit,
    /// A management client (the API) asks something.
    Manage(crate::manage::Request),
    /// A vCPU cannot go on.
    VcpuFailed {
        /// Which.
        index: u32,
        /// Why.
        reason: String,
    },
    /// A request from a [`crate::control::ControlHandle`]: add or remove a
    /// device.
    Control(crate::control::ControlRequest),
    /// The guest wrote a hot-plug root port's Slot Control.
    Slot(crate::control::SlotEvent),
}

/// How a machine's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// ACPI power-off.
    PowerOff,
    /// Platform reset.
    Reboot,
    /// The guest reported a kernel panic.
    Panic,
    /// KVM could not continue.
    Crash(String),
    /// Console escape.
    UserQuit,
    /// Ended by iovm after the power button: why.
    ForcedOff(String),
    /// Ended by a management client.
    Stopped(ApiStop),
}

/// Which management request ended a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiStop {
    /// `vm.shutdown`: the machine ends; the VMM keeps its configuration.
    Shutdown,
    /// `vm.reboot`: the machine ends and is built and booted again.
    Reboot,
    /// `vm.delete`: the machine ends and its configuration is forgotten.
    Delete,
    /// `vmm.shutdown`: the machine ends, and the VMM with it.
    VmmShutdown,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::PowerOff => EXIT_POWEROFF,
            Outcome::Reboot => EXIT_REBOOT,
            Outcome::Panic | Outcome::Crash(_) => EXIT_CRASH,
            Outcome::UserQuit => EXIT_USER_QUIT,
            Outcome::ForcedOff(_) => EXIT_FORCED_OFF,
            Outcome::Stopped(ApiStop::Reboot) => EXIT_REBOOT,
            Outcome::Stopped(_) => EXIT_POWEROFF,
        }
    }
}

/// Why a machine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `--user`: iovm could not become the user after the first build.
    #[error("cannot give up root: {0}")]
    Privileges(#[from] sandbox::privileges::PrivilegeError),
    /// Interrupt remapping needs x2APIC destinations in KVM's routes.
    #[error("intel-iommu: interrupt remapping needs KVM_CAP_X2APIC_API, which this host's KVM lacks; give intremap=off")]
    IommuNeedsX2apicApi(#[source] kvm_ioctls::Error),
    /// `--memory` below the minimum.
    #[error("--memory {0} MiB is too small: a Linux guest needs at least {min} MiB", min = MIN_MEMORY / MIB)]
    MemoryTooSmall(u64),
    /// `--memory` above what the host has.
    #[error(
        "--memory {requested} MiB is more than this host's {host} MiB of RAM; pick a smaller size"
    )]
    MemoryTooLarge {
        /// Asked for, MiB.
        requested: u64,
        /// Host RAM, MiB.
        host: u64,
    },
    /// `--cpus 0`.
    #[error("--cpus must be at least 1")]
    NoCpus,
    /// Too many vCPUs.
    #[error("--cpus {requested} is more than the {max} vCPUs {why}")]
    TooManyCpus {
        /// Asked for.
        requested: u32,
        /// The limit.
        max: u32,
        /// Whose limit.
        why: &'static str,
    },
    /// The kernel file cannot be read.
    #[error("cannot read kernel {path}")]
    Kernel {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The initramfs file cannot be read.
    #[error("cannot read initramfs {path}")]
    Initramfs {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Loading the kernel failed.
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    /// The console could not be set up.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// `/dev/kvm` is unusable.
    #[error(transparent)]
    Host(#[from] KvmAccessError),
    /// A KVM call failed.
    #[error("KVM: cannot {what}")]
    Kvm {
        /// What iovm was doing.
        what: &'static str,
        /// KVM's answer.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be allocated.
    #[error("cannot allocate {0} MiB of guest memory")]
    Memory(u64, #[source] vm_memory::mmap::FromRangesError),
    /// Writing boot data failed.
    #[error("cannot write boot data into guest memory")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// A device could not be placed on a bus.
    #[error("device layout: {0}")]
    Bus(#[from] crate::bus::BusError),
    /// The PCI topology could not be built.
    #[error("PCI topology: {0}")]
    Pci(String),
    /// A disk cannot be opened.
    #[error("cannot open disk {path}")]
    Disk {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A disk path that is neither a file nor a block device.
    #[error("disk {0} is neither a regular file nor a block device")]
    NotADisk(String),
    /// A disk image iovm must not use: not raw, or in use elsewhere.
    #[error(transparent)]
    Image(backend::BackendError),
    /// One disk behind two namespaces.
    #[error("disk {0} backs two namespaces; give each its own file")]
    DiskTwice(String),
    /// A `--device` could not be placed or built.
    #[error(transparent)]
    Devices(#[from] crate::pci_devices::PciBuildError),
    /// A thread could not be started.
    #[error("cannot start a thread")]
    Thread(#[source] std::io::Error),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// Host RAM in bytes, from `/proc/meminfo`.
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Checks the parts of a config that need no files and no KVM.
pub fn validate(cfg: &VmConfig, host_ram: Option<u64>) -> Result<(), VmError> {
    let mem = cfg.memory.size;
    if mem < MIN_MEMORY {
        return Err(VmError::MemoryTooSmall(mem / MIB));
    }
    if let Some(host) = host_ram {
        if mem > host {
            return Err(VmError::MemoryTooLarge {
                requested: mem / MIB,
                host: host / MIB,
            });
        }
    }
    crate::topology::plan(&cfg.devices).map_err(crate::pci_devices::PciBuildError::from)?;
    check_disks(&cfg.devices)?;
    let (max, why) = if cfg.iommu.is_some_and(|i| i.interrupt_remapping) {
        (MAX_CPUS_REMAPPED, "KVM creates")
    } else {
        (
            MAX_CPUS,
            "an x86 machine without interrupt remapping (intel-iommu) can address",
        )
    };
    match cfg.cpus.count {
        0 => Err(VmError::NoCpus),
        n if n > max => Err(VmError::TooManyCpus {
            requested: n,
            max,
            why,
        }),
        _ => Ok(()),
    }
}

/// Checks a configuration an API client sent (`vm.create`) the way the
/// command line's is checked: the kernel is one iovm can boot, the
/// initramfs exists, and [`validate`]. Runs on the main thread, the only
/// one whose seccomp filter lets it open files. The error names the field.
pub fn check_create(cfg: &VmConfig) -> Result<(), String> {
    open_kernel(&cfg.boot.kernel).map_err(|e| format!("payload.kernel: {e}"))?;
    if let Some(i) = &cfg.boot.initramfs {
        std::fs::metadata(i).map_err(|e| format!("payload.initramfs: {}: {e}", i.display()))?;
    }
    validate(cfg, host_memory()).map_err(|e| e.to_string())
}

/// Checks that the files a device to add names exist (its disk, or the
/// host function's sysfs directory); the error names the field `path`.
pub fn check_device_files(device: &DeviceConfig) -> Result<(), String> {
    let path = match &device.kind {
        DeviceKind::VfioPci(v) => Some(v.sysfs.as_path()),
        kind => kind.disk().map(|(p, _)| p),
    };
    match path {
        Some(p) => std::fs::metadata(p)
            .map(|_| ())
            .map_err(|e| format!("path: {}: {e}", p.display())),
        None => Ok(()),
    }
}

/// Checks, before anything is built, that every disk opens as asked and
/// that no disk backs two namespaces or virtio disks.
pub(crate) fn check_disks(devices: &[DeviceConfig]) -> Result<(), VmError> {
    let mut seen = std::collections::BTreeSet::new();
    for d in devices {
        let Some((disk, readonly)) = d.kind.disk() else {
            continue;
        };
        if crate::reopen::has_disk(disk, readonly) {
            // Checked on the first build and kept open (and locked) since.
            continue;
        }
        let path = disk.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(disk)
            .map_err(|source| VmError::Disk {
                path: path.clone(),
                source,
            })?;
        let meta = file.metadata().map_err(|source| VmError::Disk {
            path: path.clone(),
            source,
        })?;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !(meta.is_file() || meta.file_type().is_block_device()) {
            return Err(VmError::NotADisk(path));
        }
        if !seen.insert((meta.dev(), meta.ino())) {
            return Err(VmError::DiskTwice(path));
        }
        // Raw images only, and none another process holds (the device takes
        // the same lock again when it opens the disk, and keeps it).
        let format = backend::image::container_format(&file).map_err(|source| VmError::Disk {
            path: path.clone(),
            source,
        })?;
        if let Some(format) = format {
            return Err(VmError::Image(backend::BackendError::NotRaw {
                path,
                format,
            }));
        }
        match backend::image::lock(&file, !readonly) {
            Ok(()) => {}
            Err(backend::image::LockError::Busy) => {
                return Err(VmError::Image(backend::BackendError::Locked {
                    path,
                    readonly,
                }))
            }
            Err(backend::image::LockError::Io(source)) => {
                return Err(VmError::Disk { path, source })
            }
        }
    }
    Ok(())
}

/// Opens the kernel at `path` and checks that iovm can boot it: an ELF
/// vmlinux (PVH entry) or a bzImage of a supported boot protocol.
pub fn open_kernel(path: &std::path::Path) -> Result<File, VmError> {
    let kernel_path = path.display().to_string();
    let mut kernel = File::open(path).map_err(|source| VmError::Kernel {
        path: kernel_path.clone(),
        source,
    })?;
    let elf = crate::boot::pvh::is_elf(&mut kernel)
        .map_err(|_| loader::LoadError::NotBzImage(kernel_path.clone()))?;
    if !elf {
        let header = loader::read_setup_header(&mut kernel)
            .map_err(|_| loader::LoadError::NotBzImage(kernel_path.clone()))?;
        loader::check_bzimage(&header, &kernel_path)?;
    }
    Ok(kernel)
}

/// Sends guest requests into the run loop's channel.
#[derive(Debug)]
struct ChannelSink(Mutex<Sender<VmEvent>>);

impl LifecycleSink for ChannelSink {
    fn request(&self, request: GuestRequest) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(VmEvent::Guest(request));
    }
}

/// Moments worth reporting with `--timing`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootTimes {
    /// When vCPU 0 first entered the guest.
    pub first_entry: Option<Instant>,
}

/// Platform state that outlives one machine: on a PC, the battery-backed
/// CMOS RAM keeps its contents across a reset, and so does ours across
/// `--on-reboot restart`.
#[derive(Clone, Debug)]
pub struct Persistent {
    cmos: Arc<Mutex<Cmos>>,
}

impl Default for Persistent {
    fn default() -> Self {
        Self {
            cmos: Arc::new(Mutex::new(Cmos::new())),
        }
    }
}

/// A built machine, ready to run. It owns everything it built; nothing it
/// built holds it back (device models and buses hold the root complex
/// only weakly), so [`Vm::run`] can take it down in order
/// ([`crate::lifecycle`]).
pub struct Vm {
    pub(crate) vcpus: Vec<VcpuRunner>,
    pub(crate) events: Receiver<VmEvent>,
    pub(crate) event_sink: Sender<VmEvent>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) pause: Arc<PauseGate>,
    pub(crate) first_entry: Receiver<Instant>,
    pub(crate) power_button: Arc<Mutex<Ged>>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) pci: PciRoot,
    pub(crate) controls: crate::control::Controls,
    pub(crate) iommu: Option<Arc<Vtd>>,
    pub(crate) pio: Arc<Bus>,
    pub(crate) mmio: Arc<Bus>,
    pub(crate) irqchip: Irqchip,
    pub(crate) vm: Arc<VmFd>,
    pub(crate) kvm: Kvm,
    pub(crate) memory: Arc<GuestMemoryMmap>,
    pub(crate) config: VmConfig,
    pub(crate) devices: Mutex<Vec<DeviceConfig>>,
    pub(crate) boots: u32,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vcpus", &self.vcpus.len())
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// The machine's I/O counters: a handle that reads them while the
    /// machine runs, from any thread (`vm.counters`).
    pub fn counters(&self) -> crate::io_counters::Counters {
        self.pci.counters().clone()
    }

    /// Builds the machine `cfg` describes, its COM1 attached to `console`.
    pub fn build(
        cfg: &VmConfig,
        console: &Console,
        persistent: &Persistent,
    ) -> Result<Self, VmError> {
        validate(cfg, host_memory())?;
        let kernel_path = cfg.boot.kernel.display().to_string();
        let mut kernel = crate::reopen::input(
            &cfg.boot.kernel,
            || open_kernel(&cfg.boot.kernel),
            |source| VmError::Kernel {
                path: kernel_path.clone(),
                source,
            },
        )?;
        let initramfs_path = cfg.boot.initramfs.as_ref().map(|p| p.display().to_string());
        let mut initramfs = match (&cfg.boot.initramfs, &initramfs_path) {
            (Some(p), Some(name)) => {
                let error = |source| VmError::Initramfs {
                    path: name.clone(),
                    source,
                };
                Some(crate::reopen::input(
                    p,
                    || File::open(p).map_err(error),
                    error,
                )?)
            }
            _ => None,
        };

        let kvm_file = crate::reopen::kvm(&cfg.host.kvm_device, || {
            host::open_kvm(&cfg.host.kvm_device, host::detect())
        })?;
        // SAFETY: `kvm_file` is an open KVM device whose ownership moves into `Kvm`.
        let kvm = unsafe { Kvm::from_raw_fd(kvm_file.into_raw_fd()) };
        let max_vcpus = kvm.get_max_vcpus() as u32;
        if cfg.cpus.count > max_vcpus {
            return Err(VmError::TooManyCpus {
                requested: cfg.cpus.count,
                max: max_vcpus,
                why: "this host's KVM supports",
            });
        }
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create a VM"))?);
        vm.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(kvm_err("set the TSS address"))?;
        irqchip::enable_split(&vm, IOAPIC_PINS)
            .map_err(kvm_err("enable the split irqchip (local APICs in KVM)"))?;
        let router = Arc::new(GsiRouter::new(vm.clone(), IOAPIC_PINS));
        if cfg.iommu.is_some_and(|i| i.interrupt_remapping) {
            irqchip::enable_x2apic_api(&vm).map_err(VmError::IommuNeedsX2apicApi)?;
            router.set_x2apic_format();
        }
        let irqchip = Irqchip::new(router, IOAPIC_PINS as usize)
            .map_err(|e| VmError::Pci(format!("IOAPIC: {e}")))?;

        let layout = MemoryLayout::new(cfg.memory.size);
        let memory = Arc::new(
            GuestMemoryMmap::<()>::from_ranges(&layout.ram_regions())
                .map_err(|e| VmError::Memory(cfg.memory.size / MIB, e))?,
        );
        for (slot, region) in memory.iter().enumerate() {
            let host_addr = memory.get_host_address(region.start_addr())?;
            let region_info = kvm_bindings::kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host_addr as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping owned by `memory`, which the
            // `Vm` keeps until its vCPUs have stopped.
            unsafe { vm.set_user_memory_region(region_info) }
                .map_err(kvm_err("map guest memory"))?;
        }

        let tables = acpi::build(&AcpiConfig {
            cpus: cfg.cpus.count,
            pci_mmio64_start: layout.pci_mmio64_start(),
            iommu: cfg.iommu,
        });
        for (addr, blob) in &tables.blobs {
            memory.write_slice(blob, GuestAddress(*addr))?;
        }
        let entry = loader::load(
            &memory,
            &layout,
            loader::BootSource {
                kernel: &mut kernel,
                kernel_path: &kernel_path,
                initramfs: initramfs.as_mut().zip(initramfs_path.as_deref()),
                cmdline: &cfg.boot.cmdline,
                rsdp: tables.rsdp_addr(),
            },
        )?;
        let cr3 = page_tables::write_identity_map(&memory)?;
        cpu_state::write_gdt_idt(&memory)?;
        reset_vector::write(&memory)?;

        let (tx, events) = mpsc::channel();
        let sink: Arc<dyn LifecycleSink> = Arc::new(ChannelSink(Mutex::new(tx.clone())));
        let com1_line = irqchip
            .line(COM1_IRQ, WirePolarity::ActiveHigh)
            .map_err(|e| VmError::Pci(format!("COM1 interrupt: {e}")))?;
        let serial = Arc::new(Mutex::new(Serial::new(
            Arc::new(com1_line),
            console.writer(),
        )));
        console.attach(serial.clone(), tx.clone());
        let ged_line = irqchip
            .line(GED_IRQ, WirePolarity::ActiveHigh)
            .map_err(|e| VmError::Pci(format!("power button interrupt: {e}")))?;
        let power_button = Arc::new(Mutex::new(Ged::new(Arc::new(ged_line))));
        let pio = Arc::new(platform_bus(
            serial,
            persistent.cmos.clone(),
            power_button.clone(),
            sink,
        )?);
        let mmio = Arc::new(Bus::new());
        mmio.insert(
            IOAPIC_START,
            IOAPIC_WINDOW,
            0,
            Arc::new(Mutex::new(irqchip.mmio())),
        )?;
        let pci =
            PciRoot::new(pio.clone(), mmio.clone()).map_err(|e| VmError::Pci(e.to_string()))?;
        pci.set_io_events(Arc::new(KvmIoEvents::new(vm.clone())));
        pci.set_memory_slots(Arc::new(KvmMemorySlots::new(
            vm.clone(),
            memory.num_regions() as u32,
        )));
        pio.insert(
            u64::from(CONFIG_ADDRESS_PORT),
            CONFIG_PORTS_SIZE,
            0,
            Arc::new(Mutex::new(pci.config_ports())),
        )?;
        mmio.insert(ECAM_START, ECAM_SIZE, 0, Arc::new(Mutex::new(pci.ecam())))?;
        let iommu = cfg.iommu.as_ref().map(|c| {
            let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(memory.clone()));
            let assigns = cfg
                .devices
                .iter()
                .any(|d| matches!(d.kind, crate::config::DeviceKind::VfioPci(_)));
            let c = &crate::config::IommuConfig {
                caching_mode: c.caching_mode || assigns,
                ..*c
            };
            let unit = Vtd::new(
                c,
                ram,
                Arc::new(KvmMsiSink::unremapped(irqchip.router().clone())),
            );
            if c.interrupt_remapping {
                unit.remap_interrupts_of(irqchip.router());
            }
            unit
        });
        if let Some(unit) = &iommu {
            mmio.insert(
                VTD_START,
                VTD_SIZE,
                0,
                Arc::new(Mutex::new(unit.register_page())),
            )?;
        }
        let mut wiring = KvmWiring {
            irqchip: irqchip.clone(),
            memory: memory.clone(),
            console,
            iommu: iommu.clone(),
            vm: vm.clone(),
            vfio: None,
        };
        let slot_events = Mutex::new(tx.clone());
        let hotplug = pci_devices::build_hotplug(
            &cfg.devices,
            &pci,
            &mut wiring,
            cfg.cpus.count,
            Arc::new(move |port, effects| {
                let event = VmEvent::Slot(crate::control::SlotEvent::new(port, effects));
                let _ = slot_events
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send(event);
            }),
        )?;

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("read the supported CPUID"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(PauseGate::default());
        let (first_tx, first_entry) = mpsc::channel();
        let mut vcpus = Vec::new();
        for index in 0..cfg.cpus.count {
            let fd = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err("create a vCPU"))?;
            setup_vcpu(&fd, index, cfg.cpus.count, &supported)?;
            if index == 0 {
                let sregs = fd.get_sregs().map_err(kvm_err("read sregs"))?;
                let (sregs, regs) = match entry {
                    loader::Entry::Linux64(rip) => (
                        cpu_state::long_mode_sregs(sregs, cr3),
                        cpu_state::entry_regs(rip),
                    ),
                    loader::Entry::Pvh(p) => (
                        cpu_state::pvh_sregs(sregs),
                        cpu_state::pvh_regs(p.entry, p.start_info),
                    ),
                };
                fd.set_sregs(&sregs)
                    .map_err(kvm_err("set up the entry mode"))?;
                fd.set_regs(&regs).map_err(kvm_err("set the entry point"))?;
            }
            vcpus.push(VcpuRunner {
                index,
                fd,
                pio: pio.clone(),
                mmio: mmio.clone(),
                irqchip: irqchip.clone(),
                events: tx.clone(),
                stop: stop.clone(),
                pause: pause.clone(),
                first_entry: (index == 0).then(|| first_tx.clone()),
                exits: pci.counters().exits(),
            });
        }
        vcpu::install_kick_handler()
            .map_err(|e| VmError::Thread(std::io::Error::from_raw_os_error(e.errno())))?;
        Ok(Self {
            vcpus,
            events,
            event_sink: tx,
            stop,
            pause,
            first_entry,
            power_button,
            shutdown_timeout: cfg.lifecycle.shutdown_timeout,
            pci,
            controls: crate::control::Controls::new(hotplug),
            iommu,
            pio,
            mmio,
            irqchip,
            vm,
            kvm,
            memory,
            config: cfg.clone(),
            devices: Mutex::new(cfg.devices.clone()),
            boots: 1,
        })
    }

    /// The machine's devices now: those it was built with, and those
    /// added since.
    pub(crate) fn device_list(&self) -> std::sync::MutexGuard<'_, Vec<DeviceConfig>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn platform_bus(
    serial: Arc<Mutex<Serial>>,
    cmos: Arc<Mutex<Cmos>>,
    ged: Arc<Mutex<Ged>>,
    sink: Arc<dyn LifecycleSink>,
) -> Result<Bus, VmError> {
    let bus = Bus::new();
    bus.insert(u64::from(GED_PORT), GED_SIZE, 0, ged)?;
    bus.insert(u64::from(COM1_PORT), SERIAL_PORT_SIZE, 0, serial)?;
    let i8042 = Arc::new(Mutex::new(I8042::new(sink.clone())));
    bus.insert(0x60, 1, 0, i8042.clone())?;
    bus.insert(0x64, 1, I8042_COMMAND_OFFSET, i8042)?;
    bus.insert(u64::from(CMOS_PORT), CMOS_SIZE, 0, cmos)?;
    bus.insert(
        u64::from(PVPANIC_PORT),
        1,
        0,
        Arc::new(Mutex::new(PvPanic::new(sink.clone()))),
    )?;
    bus.insert(
        u64::from(ACPI_PM_PORT),
        ACPI_PM_SIZE,
        0,
        Arc::new(Mutex::new(AcpiPowerDevice::new(sink))),
    )?;
    Ok(bus)
}

fn setup_vcpu(
    fd: &VcpuFd,
    index: u32,
    cpus: u32,
    supported: &kvm_bindings::CpuId,
) -> Result<(), VmError> {
    let mut entries = supported.as_slice().to_vec();
    cpuid::make_coherent(&mut entries, index, Topology { cpus });
    let cpuid = kvm_bindings::CpuId::from_entries(&entries).map_err(|_| VmError::Kvm {
        what: "build the CPUID table",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    fd.set_cpuid2(&cpuid).map_err(kvm_err("set CPUID"))?;
    if let Some(xcr0) = cpuid::initial_xcr0(&entries) {
        let mut xcrs = kvm_bindings::kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        xcrs.xcrs[0] = kvm_bindings::kvm_xcr {
            xcr: 0,
            value: xcr0,
            ..Default::default()
        };
        fd.set_xcrs(&xcrs).map_err(kvm_err("set XCR0"))?;
    }
    let msrs: Vec<_> = cpu_state::boot_msrs()
        .into_iter()
        .map(|(index, data)| kvm_bindings::kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&msrs).map_err(|_| VmError::Kvm {
        what: "build the MSR list",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    fd.set_msrs(&msrs).map_err(kvm_err("set MSRs"))?;
    fd.set_fpu(&cpu_state::initial_fpu())
        .map_err(kvm_err("set the FPU state"))?;
    let mut lapic = fd.get_lapic().map_err(kvm_err("read the local APIC"))?;
    cpu_state::wire_lint_pins(&mut lapic);
    fd.set_lapic(&lapic)
        .map_err(kvm_err("set up the local APIC"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::*;
    use crate::layout::GIB;

    fn cfg(mem: u64, cpus: u32) -> VmConfig {
        VmConfig {
            boot: BootConfig {
                kernel: PathBuf::from("k"),
                initramfs: None,
                cmdline: String::new(),
            },
            memory: MemoryConfig { size: mem },
            cpus: CpusConfig { count: cpus },
            serial: SerialConfig::Off,
            lifecycle: LifecycleConfig {
                on_reboot: OnReboot::Exit,
                shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            },
            host: HostConfig {
                kvm_device: PathBuf::from("/dev/kvm"),
            },
            devices: vec![],
            iommu: None,
        }
    }

    #[test]
    fn test_validate_accepts_iommu_with_and_without_interrupt_remapping() {
        let mut c = cfg(512 * MIB, 1);
        for interrupt_remapping in [true, false] {
            c.iommu = Some(crate::config::IommuConfig {
                interrupt_remapping,
                ..Default::default()
            });
            assert!(validate(&c, None).is_ok());
        }
    }

    #[test]
    fn test_interrupt_remapping_lifts_the_254_vcpu_cap() {
        let mut c = cfg(512 * MIB, 300);
        assert!(matches!(
            validate(&c, None),
            Err(VmError::TooManyCpus { max: 254, .. })
        ));
        c.iommu = Some(crate::config::IommuConfig::default());
        assert!(validate(&c, None).is_ok());
        c.cpus.count = 1025;
        assert!(matches!(
            validate(&c, None),
            Err(VmError::TooManyCpus { max: 1024, .. })
        ));
        c.iommu = Some(crate::config::IommuConfig {
            interrupt_remapping: false,
            ..Default::default()
        });
        c.cpus.count = 255;
        assert!(validate(&c, None).is_err());
    }

    #[test]
    fn test_validate_accepts_sane_config() {
        assert!(validate(&cfg(512 * MIB, 2), Some(4 * GIB)).is_ok());
    }

    #[test]
    fn test_validate_memory_bounds() {
        let small = validate(&cfg(16 * MIB, 1), None).unwrap_err();
        assert!(small.to_string().contains("too small"), "{small}");
        let big = validate(&cfg(64 * GIB, 1), Some(8 * GIB)).unwrap_err();
        assert!(big.to_string().contains("8192 MiB of RAM"), "{big}");
    }

    #[test]
    fn test_validate_cpu_bounds() {
        assert!(matches!(
            validate(&cfg(512 * MIB, 0), None),
            Err(VmError::NoCpus)
        ));
        assert!(matches!(
            validate(&cfg(512 * MIB, MAX_CPUS + 1), None),
            Err(VmError::TooManyCpus { .. })
        ));
    }

    #[test]
    fn test_outcome_exit_codes_are_distinct() {
        let codes = [
            Outcome::PowerOff.exit_code(),
            Outcome::Reboot.exit_code(),
            Outcome::Panic.exit_code(),
            Outcome::UserQuit.exit_code(),
            Outcome::ForcedOff(String::new()).exit_code(),
            EXIT_INTERNAL,
            EXIT_ERROR,
            EXIT_USAGE,
        ];
        let mut sorted = codes.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        assert_eq!(
            Outcome::Crash("x".into()).exit_code(),
            Outcome::Panic.exit_code()
        );
    }
}
