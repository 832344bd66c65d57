//! What a machine is made of: one plain config struct per concern, filled by
//! the command line (or, later, an API) and checked when the machine is built.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything needed to build and run one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Kernel, initramfs and command line.
    pub boot: BootConfig,
    /// Guest RAM.
    pub memory: MemoryConfig,
    /// vCPUs.
    pub cpus: CpusConfig,
    /// Where COM1 goes.
    pub serial: SerialConfig,
    /// What guest power events do.
    pub lifecycle: LifecycleConfig,
    /// The host's KVM.
    pub host: HostConfig,
    /// Extra devices, in the order given.
    pub devices: Vec<DeviceConfig>,
    /// The emulated Intel VT-d unit (`--device intel-iommu`), if any. It is
    /// not a PCI function: a register page at a fixed address and a DMAR
    /// ACPI table, covering every PCI function (see docs/iommu.md).
    pub iommu: Option<IommuConfig>,
}

/// The emulated Intel VT-d unit (VT-d 4.1): DMA remapping in legacy mode
/// for the emulated devices that are not virtio, and interrupt remapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuConfig {
    /// Interrupt remapping offered (ECAP.IR with EIM, the DMAR's
    /// INTR_REMAP flag): every MSI and IOAPIC message is translated through
    /// the guest's interrupt remapping table (default on).
    pub interrupt_remapping: bool,
    /// The widest guest address width (CAP.MGAW, SAGAW; the DMAR's HAW).
    pub address_width: AddressWidth,
    /// Caching Mode (CAP.CM): the guest invalidates every change to its
    /// tables, so that iovm can mirror them into the host IOMMU of an
    /// assigned function. On whenever the machine assigns a host function.
    pub caching_mode: bool,
}

impl Default for IommuConfig {
    fn default() -> Self {
        Self {
            interrupt_remapping: true,
            address_width: AddressWidth::Bits48,
            caching_mode: false,
        }
    }
}

/// The guest address widths an IOMMU domain can have (`aw-bits=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressWidth {
    /// 39 bits, 3-level page tables only.
    Bits39,
    /// 48 bits: 4-level page tables, and 3-level ones too.
    Bits48,
}

impl AddressWidth {
    /// The width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::Bits39 => 39,
            Self::Bits48 => 48,
        }
    }
}

/// A device the user asked for, and where it goes in the PCI tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// What the device is.
    pub kind: DeviceKind,
    /// A name other devices refer to (`bus=ID`), unique in the machine.
    pub id: Option<String>,
    /// The bus it sits on: a root port's or bridge's id, or `None` for the
    /// root bus (`pcie.0`).
    pub bus: Option<String>,
    /// Its device and function number on that bus, or `None` for the next
    /// free slot, function 0.
    pub addr: Option<PciSlot>,
}

impl DeviceConfig {
    /// A device of `kind` with no id, on the next free slot of the root bus.
    pub fn new(kind: DeviceKind) -> Self {
        Self {
            kind,
            id: None,
            bus: None,
            addr: None,
        }
    }
}

/// A device number and function number on one bus (`addr=SLOT[.FN]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciSlot {
    /// Device number, 0-31.
    pub device: u8,
    /// Function number, 0-7.
    pub function: u8,
}

/// The kinds of device iovm can build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A PCI 16550 serial card.
    PciSerial(PciSerialConfig),
    /// A PCIe root port: a bus of its own with one slot (a link).
    RootPort(RootPortConfig),
    /// A PCI-to-PCI bridge: a bus of its own with 32 slots.
    PciBridge,
    /// An NVMe controller; its namespaces are `NvmeNamespace` devices
    /// whose `bus` is the controller's id.
    Nvme(NvmeConfig),
    /// A namespace of an NVMe controller, backed by a file or block device.
    NvmeNamespace(NvmeNamespaceConfig),
    /// An AHCI SATA controller; its disks are `SataDisk` devices whose
    /// `bus` is the controller's id.
    Ahci(AhciConfig),
    /// A SATA disk on a port of an AHCI controller, backed by a file or
    /// block device.
    SataDisk(SataDiskConfig),
    /// An emulated Intel 82574L gigabit NIC on a TAP interface.
    E1000e(E1000eConfig),
    /// A virtio-pci device.
    Virtio(VirtioConfig),
    /// A host PCI function assigned to the guest through VFIO.
    VfioPci(VfioPciConfig),
}

/// A PCIe root port (`root-port`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootPortConfig {
    /// Its slot has a native PCIe hot-plug controller (`hotplug=on`, the
    /// default): devices can be added to it and removed from it while the
    /// machine runs ([`crate::control`], docs/pci.md).
    pub hotplug: bool,
}

impl Default for RootPortConfig {
    fn default() -> Self {
        Self { hotplug: true }
    }
}

/// A host PCI function to assign (`vfio-pci,host=...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfioPciConfig {
    /// Its sysfs directory (`/sys/bus/pci/devices/DDDD:BB:DD.F`).
    pub sysfs: PathBuf,
    /// Hide the device's MSI-X capability (the guest then uses MSI).
    pub no_msix: bool,
    /// Hide the device's MSI capability (with `no_msix`: INTx only).
    pub no_msi: bool,
    /// Trap every BAR access instead of mapping the device's pages into
    /// the guest (slower; for diagnosis).
    pub no_mmap: bool,
}

/// A virtio-pci device: its type and what every type shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioConfig {
    /// The device type and its own options.
    pub device: VirtioKind,
    /// Leave out MSI-X: the driver then uses INTx and the ISR register.
    pub no_msix: bool,
}

/// The virtio device types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtioKind {
    /// A block device on a file or host block device.
    Blk(VirtioBlkConfig),
    /// A network card on a TAP interface.
    Net(VirtioNetConfig),
    /// A console (`hvc0`) on iovm's console (what `--serial` names).
    Console,
    /// An entropy source fed by the host's `getrandom`.
    Rng,
}

/// A virtio block device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtioBlkConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// The guest may not write.
    pub readonly: bool,
    /// Request queues; default one per vCPU.
    pub queues: Option<u16>,
    /// What `VIRTIO_BLK_T_GET_ID` returns (up to 20 bytes).
    pub serial: Option<String>,
}

/// A virtio network card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetConfig {
    /// The TAP interface: opened if it exists, created otherwise; default
    /// a new one named by the kernel (`tapN`).
    pub tap: Option<String>,
    /// TAP descriptors someone else opened (one per queue pair, of one
    /// interface, with `IFF_VNET_HDR`), instead of `tap`: how a management
    /// stack that holds `CAP_NET_ADMIN` hands an interface over (over the
    /// API socket with `SCM_RIGHTS`), so iovm needs no privilege. The card
    /// keeps copies; these stay open while the config lives.
    pub tap_fds: Vec<TapFd>,
    /// The MAC address; default 52:54:00:12:34:NN.
    pub mac: Option<[u8; 6]>,
    /// Queue pairs; default 1.
    pub queues: Option<u16>,
}

/// A descriptor of a TAP interface handed over to iovm, shared by the
/// configs that name it (equal when they hold the same descriptor).
#[derive(Clone, Debug)]
pub struct TapFd(Arc<OwnedFd>);

impl TapFd {
    /// Takes `fd` over.
    pub fn new(fd: OwnedFd) -> Self {
        Self(Arc::new(fd))
    }

    /// A new descriptor of the same open TAP queue (`dup`), for a card.
    pub fn try_clone(&self) -> std::io::Result<OwnedFd> {
        self.0.try_clone()
    }
}

impl PartialEq for TapFd {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_raw_fd() == other.0.as_raw_fd()
    }
}

impl Eq for TapFd {}

/// An emulated Intel 82574L NIC (docs/e1000e.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct E1000eConfig {
    /// The TAP interface: opened if it exists, created otherwise; default
    /// a new one named by the kernel (`tapN`).
    pub tap: Option<String>,
    /// The MAC address; default 52:54:00:12:35:NN.
    pub mac: Option<[u8; 6]>,
    /// Leave out the MSI-X capability (the driver then uses MSI).
    pub no_msix: bool,
    /// Leave out the MSI capability (with no MSI-X: INTx).
    pub no_msi: bool,
}

/// An NVMe controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NvmeConfig {
    /// Serial number the guest sees (`nvme list`); default `IOVM` + a number.
    pub serial: Option<String>,
    /// I/O queue pairs offered (1-64); default one per vCPU, at most 8.
    pub queues: Option<u16>,
    /// Leave out the MSI-X capability (the driver then uses MSI).
    pub no_msix: bool,
    /// Leave out the MSI capability (with no MSI-X: INTx).
    pub no_msi: bool,
    /// Make it an SR-IOV physical function with this many virtual
    /// functions (TotalVFs; 0: an ordinary controller). It must sit behind
    /// a root port, at function 0 of its link.
    pub sriov_vfs: u16,
}

/// An AHCI SATA controller (Intel ICH9 AHCI, docs/ahci.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AhciConfig {
    /// Ports (1-6); default 6.
    pub ports: Option<u8>,
    /// Leave out the MSI capability (the driver then uses INTx).
    pub no_msi: bool,
}

/// A SATA disk on an AHCI controller's port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SataDiskConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// The port (0-5); default the lowest free one.
    pub port: Option<u8>,
    /// The guest may not write.
    pub readonly: bool,
    /// Serial number IDENTIFY reports (up to 20 ASCII characters);
    /// default `IOVM` + controller and port numbers.
    pub serial: Option<String>,
    /// Model number IDENTIFY reports (up to 40); default `iovm SATA disk`.
    pub model: Option<String>,
    /// Offer TRIM and punch holes in the file for it (default on).
    pub discard: bool,
}

impl Default for SataDiskConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            port: None,
            readonly: false,
            serial: None,
            model: None,
            discard: true,
        }
    }
}

/// Most VFs an NVMe PF can have: every ARI function number after the PF's.
pub const MAX_SRIOV_VFS: u16 = 255;

/// One namespace of an NVMe controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvmeNamespaceConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// The guest may not write.
    pub readonly: bool,
    /// Logical block size, 512 or 4096.
    pub block_size: u32,
    /// The virtual function (0-based, as the guest's `virtfnK`) of an
    /// SR-IOV controller whose private namespace it is; `None`: the
    /// controller's own (the PF's).
    pub vf: Option<u16>,
}

impl DeviceKind {
    /// The name users write on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PciSerial(_) => "pci-serial",
            Self::RootPort(_) => "root-port",
            Self::PciBridge => "pci-bridge",
            Self::Nvme(_) => "nvme",
            Self::NvmeNamespace(_) => "nvme-ns",
            Self::Ahci(_) => "ahci",
            Self::SataDisk(_) => "sata-disk",
            Self::E1000e(_) => "e1000e",
            Self::Virtio(v) => match v.device {
                VirtioKind::Blk(_) => "virtio-blk",
                VirtioKind::Net(_) => "virtio-net",
                VirtioKind::Console => "virtio-console",
                VirtioKind::Rng => "virtio-rng",
            },
            Self::VfioPci(_) => "vfio-pci",
        }
    }

    /// Whether it is a PCI function (namespaces and SATA disks are not:
    /// they live inside their controller).
    pub fn is_pci(&self) -> bool {
        self.controller_kind().is_none()
    }

    /// For a part of a controller (an NVMe namespace, a SATA disk), the
    /// kind of controller its `bus=` must name; `None` for a PCI function.
    pub fn controller_kind(&self) -> Option<&'static str> {
        match self {
            Self::NvmeNamespace(_) => Some("nvme"),
            Self::SataDisk(_) => Some("ahci"),
            Self::PciSerial(_)
            | Self::RootPort(_)
            | Self::PciBridge
            | Self::Nvme(_)
            | Self::Ahci(_)
            | Self::E1000e(_)
            | Self::Virtio(_)
            | Self::VfioPci(_) => None,
        }
    }

    /// Whether other devices can sit behind it.
    pub fn is_bus(&self) -> bool {
        matches!(self, Self::RootPort(_) | Self::PciBridge)
    }

    /// The disk it is backed by and whether it is read-only, for the checks
    /// made before anything is built. No catch-all: a new kind says here
    /// whether it has a disk.
    pub fn disk(&self) -> Option<(&Path, bool)> {
        match self {
            Self::NvmeNamespace(ns) => Some((&ns.path, ns.readonly)),
            Self::SataDisk(d) => Some((&d.path, d.readonly)),
            Self::Virtio(v) => match &v.device {
                VirtioKind::Blk(b) => Some((&b.path, b.readonly)),
                VirtioKind::Net(_) | VirtioKind::Console | VirtioKind::Rng => None,
            },
            Self::PciSerial(_)
            | Self::RootPort(_)
            | Self::PciBridge
            | Self::Nvme(_)
            | Self::Ahci(_)
            | Self::E1000e(_)
            | Self::VfioPci(_) => None,
        }
    }
}

/// A PCI serial card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciSerialConfig {
    /// Echo what the guest sends back to it.
    pub loopback: bool,
    /// A file that receives what the guest sends.
    pub output: Option<PathBuf>,
}

/// The guest's kernel and what it boots with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// A bzImage.
    pub kernel: PathBuf,
    /// An initramfs (cpio, optionally compressed), if any.
    pub initramfs: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
}

/// Guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Bytes of RAM.
    pub size: u64,
}

/// vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpusConfig {
    /// How many.
    pub count: u32,
}

/// Where the first serial port's bytes go and come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialConfig {
    /// This process's standard input and output.
    Stdio,
    /// Output appended to a file; no input.
    File(PathBuf),
    /// A Unix stream socket iovm listens on; one client at a time.
    Socket(PathBuf),
    /// The port exists but goes nowhere.
    Off,
}

/// What happens when the guest resets the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnReboot {
    /// iovm exits with [`crate::vm::EXIT_REBOOT`].
    Exit,
    /// The machine is built anew from the same config and boots again.
    Restart,
}

/// Guest power events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Reset behaviour.
    pub on_reboot: OnReboot,
    /// How long a guest asked to shut down (SIGTERM, SIGINT: the ACPI power
    /// button) has to power off before iovm ends it.
    pub shutdown_timeout: std::time::Duration,
}

/// The default of [`LifecycleConfig::shutdown_timeout`]: long enough for a
/// systemd guest to stop its services and sync its disks, short enough
/// that a stuck guest does not hold a host's shutdown for long.
pub const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The host side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// The KVM device node, normally `/dev/kvm`.
    pub kvm_device: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_disk_is_a_namespace_or_virtio_blk_file() {
        let ns = DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
            path: "/ns.img".into(),
            readonly: true,
            block_size: 512,
            vf: None,
        });
        assert_eq!(ns.disk(), Some((Path::new("/ns.img"), true)));
        let blk = DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Blk(VirtioBlkConfig {
                path: "/blk.img".into(),
                ..Default::default()
            }),
            no_msix: false,
        });
        assert_eq!(blk.disk(), Some((Path::new("/blk.img"), false)));
        assert_eq!(DeviceKind::Nvme(NvmeConfig::default()).disk(), None);
        assert_eq!(DeviceKind::RootPort(RootPortConfig::default()).disk(), None);
    }
}
