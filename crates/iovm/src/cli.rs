//! The command line: `iovm run ...`, parsed by clap into a [`VmConfig`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vmm::config::{
    AddressWidth, AhciConfig, BootConfig, CpusConfig, DeviceConfig, DeviceKind, E1000eConfig,
    HostConfig, IommuConfig, LifecycleConfig, MemoryConfig, NvmeConfig, NvmeNamespaceConfig,
    OnReboot, PciSerialConfig, PciSlot, RootPortConfig, SataDiskConfig, SerialConfig,
    VfioPciConfig, VirtioBlkConfig, VirtioConfig, VirtioKind, VirtioNetConfig, VmConfig,
    MAX_SRIOV_VFS,
};

/// Kernel command line used when `--cmdline` is not given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";

const ABOUT: &str = "iovm: a KVM virtual machine monitor built around I/O virtualization";

const LONG_ABOUT: &str = "\
iovm: a KVM virtual machine monitor built around I/O virtualization.

It boots an unmodified Linux kernel (a bzImage such as Debian's vmlinuz, or
its ELF vmlinux through the PVH entry) with
an initramfs on /dev/kvm, with a 16550 serial console, ACPI, and as many vCPUs
and as much RAM as you give it.";

const RUN_AFTER_HELP: &str = "\
Examples:
  iovm run --kernel vmlinuz --initramfs initrd.img
  iovm run --kernel vmlinuz --initramfs initrd.img --memory 2G --cpus 4 \\
           --cmdline 'console=ttyS0 quiet'
  iovm run --kernel vmlinuz --initramfs initrd.img --serial socket=/tmp/iovm.sock
           (then: socat -,raw,echo=0 unix-connect:/tmp/iovm.sock)
  iovm run --api-socket /tmp/iovm.api
           (an empty VMM: create and boot it with curl --unix-socket or iovm remote;
            docs/api.md)

Console: with --serial stdio on a terminal, the terminal is put in raw mode
while the guest runs; type Ctrl-A x to end iovm, Ctrl-A Ctrl-A to send Ctrl-A.

Shutdown: SIGTERM or SIGINT (kill, systemd, Ctrl-C without a raw terminal)
presses the guest's ACPI power button; a guest that handles it (systemd-logind,
acpid) powers off and iovm exits 0. A guest that has not powered off after
--shutdown-timeout, or a second signal, ends the machine with status 6.

Exit status:
  0  the guest powered off, or an API client ended the VM or iovm
     (vm.shutdown, vm.delete, vmm.shutdown)
  1  iovm could not build or run the machine (the message says why)
  2  the command line is wrong
  3  the guest rebooted (with --on-reboot exit, the default)
  4  the guest kernel panicked, or KVM could not go on running it
  5  the user typed the console escape Ctrl-A x
  6  the guest did not power off after the power button (--shutdown-timeout)
     or a second SIGTERM/SIGINT ended it
  7  internal error: an iovm thread panicked (the message names it)
  8  a thread made a system call its seccomp filter forbids (the message
     names the thread kind and the call; see --seccomp)";

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(name = "iovm", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a Linux kernel in a new virtual machine and run it until it powers off.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Ask a running iovm something through its API socket (--api-socket).
    #[command(after_help = crate::remote::AFTER_HELP)]
    Remote(crate::remote::RemoteArgs),
}

/// `iovm run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Linux kernel to boot: a bzImage (e.g. Debian's /boot/vmlinuz-*), or
    /// an uncompressed ELF vmlinux, which starts through its PVH entry and
    /// skips the bzImage's self-decompression (cargo xtask guest writes
    /// target/guest/vmlinux).
    /// Required unless --api-socket is given: without it, iovm starts
    /// an empty VMM that waits for vm.create and vm.boot.
    #[arg(long, value_name = "PATH", required_unless_present = "api_socket")]
    pub kernel: Option<PathBuf>,

    /// Serve the management API (Cloud Hypervisor's REST dialect, HTTP/1.1)
    /// on a Unix socket at PATH, owner-only, removed on exit (docs/api.md).
    /// With --kernel the machine boots at once and the API manages it; iovm
    /// ends when it does. Without --kernel iovm waits for vm.create and
    /// vm.boot, outlives the machine (vm.info shows how it ended) and ends
    /// on vmm.shutdown or SIGTERM.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// Initramfs (a cpio archive, compressed or not) for the kernel to unpack as its root.
    #[arg(long, value_name = "PATH")]
    pub initramfs: Option<PathBuf>,

    /// Kernel command line.
    #[arg(long, value_name = "STRING", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Guest RAM: a number with an optional unit K, M, G or T (binary units; MiB when none).
    /// Above 3 GiB, RAM continues at 4 GiB, past the PCI hole.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    pub memory: u64,

    /// Number of vCPUs (one socket, one core each): 1 to 254, or up to 1024
    /// with `--device intel-iommu` and its interrupt remapping (x2APIC IDs).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,

    /// Where the guest's serial console (COM1, ttyS0) goes:
    /// stdio, file=PATH (output only), socket=PATH (Unix socket iovm listens on), or off.
    #[arg(long, value_name = "BACKEND", default_value = "stdio", value_parser = parse_serial)]
    pub serial: SerialConfig,

    /// What a guest reboot does: exit (status 3) or restart the guest.
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = RebootAction::Exit)]
    pub on_reboot: RebootAction,

    /// How long the guest has to power off after SIGTERM/SIGINT pressed its
    /// power button, before iovm ends it (status 6): e.g. 30s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: std::time::Duration,

    /// Seccomp filters, one per thread kind (vCPU, each device worker, the
    /// console, the API, the main thread; docs/security.md). `on`: a system
    /// call outside a thread's filter stops iovm with one line naming the
    /// thread and the call (exit status 8). `log`: such a call goes ahead
    /// and the kernel logs it (`dmesg | grep type=1326`), to find what a
    /// filter misses. `off`: no filters; unsafe, since a bug a guest
    /// reaches could then do anything iovm's user can.
    #[arg(long, value_name = "on|log|off", default_value = "on")]
    pub seccomp: sandbox::Mode,

    /// Give up root once the machine is built: iovm opens /dev/kvm, the disk
    /// images and the TAPs as root, then becomes USER (a name or number,
    /// e.g. nobody or 65534:65534) with no capabilities, for good. Later
    /// builds after a guest reboot reuse what was opened; disks and TAPs
    /// added through the API must be open to USER (docs/security.md).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<sandbox::privileges::Credentials>,

    /// Test hook: a thread of this kind makes a forbidden system call right
    /// after entering its filter (the tests' proof that filters kill).
    #[arg(long, value_name = "KIND", hide = true)]
    pub seccomp_selftest: Option<sandbox::ThreadKind>,

    /// Report on standard error how long the boot took: to the first guest
    /// instruction, and to the first console line containing --timing-marker.
    #[arg(long)]
    pub timing: bool,

    /// Console text that marks "the guest's init is running" for --timing.
    #[arg(long, value_name = "TEXT", default_value = "IOVM-GUEST: boot done")]
    pub timing_marker: String,

    /// Add a device (repeatable): KIND[,id=ID][,bus=ID][,addr=SLOT[.FN]][,OPTIONS].
    ///
    /// Kinds: `root-port` (a PCIe root port; one device behind it, at slot 0;
    /// its slot has a native hot-plug controller, so devices can be added to
    /// it and removed from it while the guest runs; `hotplug=off` leaves it
    /// out),
    /// `pci-bridge` (a PCI-to-PCI bridge; 32 slots behind it), `pci-serial`
    /// (a PCI 16550 card using INTx; `loopback=on` echoes what the guest sends,
    /// `output=PATH` writes it to a file), `nvme` (an NVMe controller;
    /// `serial=TEXT`, `queues=N` I/O queues, default one per vCPU up to 8;
    /// `msix=off` makes the driver use MSI, `msix=off,msi=off` INTx;
    /// `sriov-vfs=N` makes it an SR-IOV physical function with N virtual
    /// functions, each a controller of its own that the guest enables with
    /// `echo N > /sys/bus/pci/devices/<PF>/sriov_numvfs`; it must sit behind
    /// a root port: docs/sriov.md),
    /// `nvme-ns` (a namespace of the nvme controller `bus=` names:
    /// `path=FILE` a disk image or block device, `readonly=on`,
    /// `block-size=512|4096`, `vf=K` makes it private to VF K, from 0),
    /// `ahci` (an Intel ICH9 AHCI SATA controller, docs/ahci.md: `ports=N`
    /// 1-6, default 6; `msi=off` makes the driver use INTx),
    /// `sata-disk` (a disk on a port of the ahci controller `bus=` names:
    /// `path=FILE` a disk image or block device, `port=N` default the lowest
    /// free one, `readonly=on`, `serial=TEXT`, `model=TEXT`, `discard=off`
    /// to offer no TRIM),
    /// `virtio-blk` (`path=FILE`, `readonly=on`, `queues=N` default one per
    /// vCPU, `serial=TEXT`), `virtio-net` (`tap=NAME` opens that TAP interface
    /// or creates it, default a new `tapN`; `mac=52:54:00:12:34:56`;
    /// `queues=N` queue pairs), `virtio-console` (hvc0 on iovm's console:
    /// what --serial names; it takes the console's input from COM1) and
    /// `virtio-rng`; every virtio device takes `msix=off` (INTx instead).
    /// `e1000e` (an emulated Intel 82574L gigabit NIC for the guest's stock
    /// `e1000e` driver, docs/e1000e.md: `tap=NAME` as for virtio-net,
    /// `mac=52:54:00:12:35:56`; `msix=off` makes the driver use MSI,
    /// `msix=off,msi=off` INTx).
    ///
    /// `intel-iommu[,aw-bits=39|48][,intremap=on|off]` (at most once; not a
    /// PCI function, so no id/bus/addr) adds an emulated Intel VT-d unit and
    /// its DMAR ACPI table: DMA remapping for every emulated device; virtio
    /// devices offer VIRTIO_F_ACCESS_PLATFORM and are translated when their
    /// driver accepts it (guest-physical otherwise). Interrupt remapping
    /// (default on, with x2APIC destinations) puts every MSI and IOAPIC
    /// interrupt through the guest's remapping table, which vfio-pci in the
    /// guest needs; `aw-bits` defaults to 48.
    ///
    /// `vfio-pci,host=DDDD:BB:DD.F` (or `sysfs=PATH`) assigns a host PCI
    /// function bound to the host's vfio-pci driver: the guest's own driver
    /// drives it, its BAR pages are mapped into the guest and its MSI-X/MSI
    /// reach the guest through KVM directly (docs/vfio.md); `msix=off` and
    /// `msi=off` hide those capabilities (INTx, relayed through iovm, is
    /// left), `mmap=off` traps every BAR access. With intel-iommu in the
    /// same machine the function is behind it: the unit runs in caching
    /// mode and the guest's translations are mirrored into the host IOMMU.
    ///
    /// `bus=` puts a device behind a root port or bridge given earlier by its
    /// `id=` (default: the root bus, pcie.0). `addr=` picks the slot and
    /// function in hex as lspci shows them (default: next free slot, function 0);
    /// functions 1-7 of a slot make a multi-function device.
    /// Example: --device root-port,id=rp0 --device nvme,id=nvme0,bus=rp0
    /// --device nvme-ns,bus=nvme0,path=disk.img
    /// --device ahci,id=sata0 --device sata-disk,bus=sata0,path=disk2.img
    #[arg(long = "device", value_name = "SPEC", value_parser = parse_device_spec)]
    pub devices: Vec<DeviceSpec>,

    /// The KVM device node.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,
}

/// `--on-reboot` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RebootAction {
    /// End iovm with exit status 3.
    Exit,
    /// Boot the same kernel again in a fresh machine.
    Restart,
}

/// One `--device` value: a PCI device (or namespace), or the IOMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A device in the PCI tree.
    Pci(DeviceConfig),
    /// `intel-iommu`: the machine's VT-d unit.
    Iommu(IommuConfig),
}

impl RunArgs {
    /// The machine these options describe, or why they describe none
    /// (`intel-iommu` given twice).
    pub fn vm_config(&self) -> Result<VmConfig, String> {
        let mut devices = Vec::new();
        let mut iommu = None;
        for spec in &self.devices {
            match spec {
                DeviceSpec::Pci(d) => devices.push(d.clone()),
                DeviceSpec::Iommu(_) if iommu.is_some() => {
                    return Err("--device intel-iommu is given twice; a machine has one".into())
                }
                DeviceSpec::Iommu(c) => iommu = Some(*c),
            }
        }
        let kernel = self
            .kernel
            .clone()
            .ok_or("--kernel is required (or --api-socket, to create the VM through the API)")?;
        Ok(VmConfig {
            boot: BootConfig {
                kernel,
                initramfs: self.initramfs.clone(),
                cmdline: self.cmdline.clone(),
            },
            memory: MemoryConfig { size: self.memory },
            cpus: CpusConfig { count: self.cpus },
            serial: self.serial.clone(),
            lifecycle: LifecycleConfig {
                on_reboot: match self.on_reboot {
                    RebootAction::Exit => OnReboot::Exit,
                    RebootAction::Restart => OnReboot::Restart,
                },
                shutdown_timeout: self.shutdown_timeout,
            },
            host: HostConfig {
                kvm_device: self.kvm_device.clone(),
            },
            devices,
            iommu,
        })
    }
}

/// Parses a `--device` value: `intel-iommu` and its options, or a PCI
/// device ([`parse_device`]).
pub fn parse_device_spec(text: &str) -> Result<DeviceSpec, String> {
    match text.split_once(',').map_or(text, |(kind, _)| kind) {
        "intel-iommu" => parse_iommu(text).map(DeviceSpec::Iommu),
        _ => parse_device(text).map(DeviceSpec::Pci),
    }
}

/// Parses `intel-iommu[,aw-bits=39|48][,intremap=on|off]`.
fn parse_iommu(text: &str) -> Result<IommuConfig, String> {
    let mut cfg = IommuConfig::default();
    for opt in text.split(',').skip(1) {
        match opt.split_once('=') {
            Some(("aw-bits", "39")) => cfg.address_width = AddressWidth::Bits39,
            Some(("aw-bits", "48")) => cfg.address_width = AddressWidth::Bits48,
            Some(("aw-bits", v)) => {
                return Err(format!(
                    "aw-bits={v}: intel-iommu's address width is 39 or 48"
                ))
            }
            Some(("intremap", "off")) => cfg.interrupt_remapping = false,
            Some(("intremap", "on")) => cfg.interrupt_remapping = true,
            Some(("intremap", v)) => return Err(format!("intremap={v}: use on or off")),
            _ => {
                return Err(format!(
                    "'{opt}' is not an intel-iommu option; use aw-bits=39|48, intremap=off"
                ))
            }
        }
    }
    Ok(cfg)
}

/// Parses `512M`, `5G`, `2GiB`, `1024` (MiB) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size; write e.g. 512M or 4G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("'{text}' has an unknown unit; use K, M, G or T")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses `SLOT[.FN]` with hexadecimal numbers, as lspci prints them.
/// A duration: a number with `ms`, `s` or `m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        (t, 1000)
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 30s, 500ms, 2m)"))?;
    value
        .checked_mul(unit_ms)
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("'{text}': the duration must be above zero and sane"))
}

fn parse_slot(text: &str) -> Result<PciSlot, String> {
    let bad = || {
        format!(
            "addr={text} is not a PCI address; write SLOT[.FN] in hex, e.g. addr=3 or addr=1f.7"
        )
    };
    let (slot, function) = text.split_once('.').unwrap_or((text, "0"));
    let hex = |t: &str| u8::from_str_radix(t.trim_start_matches("0x"), 16).map_err(|_| bad());
    Ok(PciSlot {
        device: hex(slot)?,
        function: hex(function)?,
    })
}

/// Parses a `--device` value: a kind, then `key=value` options, the
/// placement ones (`id=`, `bus=`, `addr=`) common to every kind.
pub fn parse_device(text: &str) -> Result<DeviceConfig, String> {
    let mut parts = text.split(',');
    let kind_name = parts.next().unwrap_or_default();
    let mut kind = match kind_name {
        "pci-serial" => DeviceKind::PciSerial(PciSerialConfig::default()),
        "root-port" => DeviceKind::RootPort(RootPortConfig::default()),
        "pci-bridge" => DeviceKind::PciBridge,
        "nvme" => DeviceKind::Nvme(NvmeConfig::default()),
        "nvme-ns" => DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
            path: PathBuf::new(),
            readonly: false,
            block_size: 512,
            vf: None,
        }),
        "ahci" => DeviceKind::Ahci(AhciConfig::default()),
        "sata-disk" => DeviceKind::SataDisk(SataDiskConfig::default()),
        "e1000e" => DeviceKind::E1000e(E1000eConfig::default()),
        "virtio-blk" => virtio(VirtioKind::Blk(VirtioBlkConfig::default())),
        "virtio-net" => virtio(VirtioKind::Net(VirtioNetConfig::default())),
        "virtio-console" => virtio(VirtioKind::Console),
        "virtio-rng" => virtio(VirtioKind::Rng),
        "vfio-pci" => DeviceKind::VfioPci(VfioPciConfig::default()),
        _ => {
            return Err(format!(
                "'{kind_name}' is not a device iovm has; known: pci-serial, root-port, \
                 pci-bridge, nvme, nvme-ns, ahci, sata-disk, e1000e, virtio-blk, virtio-net, virtio-console, virtio-rng, \
                 vfio-pci, intel-iommu"
            ))
        }
    };
    let mut device = DeviceConfig::new(kind.clone());
    for opt in parts {
        match (opt.split_once('='), &mut kind) {
            (Some(("id", id)), _) => device.id = Some(id.to_string()),
            (Some(("bus", bus)), _) if !bus.is_empty() => device.bus = Some(bus.to_string()),
            (Some(("addr", addr)), _) => device.addr = Some(parse_slot(addr)?),
            (Some(("loopback", v @ ("on" | "off"))), DeviceKind::PciSerial(c)) => {
                c.loopback = v == "on";
            }
            (Some(("output", p)), DeviceKind::PciSerial(c)) if !p.is_empty() => {
                c.output = Some(PathBuf::from(p));
            }
            (Some(("serial", v)), DeviceKind::Nvme(c)) => {
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!(
                        "serial={v} is not an NVMe serial number: 1-20 printable ASCII characters"
                    ));
                }
                c.serial = Some(v.to_string());
            }
            (Some(("queues", v)), DeviceKind::Nvme(c)) => {
                c.queues = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|q| (1..=64).contains(q))
                        .ok_or_else(|| {
                            format!("queues={v}: an NVMe controller has 1-64 I/O queues")
                        })?,
                );
            }
            (Some(("msix", v @ ("on" | "off"))), DeviceKind::Nvme(c)) => c.no_msix = v == "off",
            (Some(("msi", v @ ("on" | "off"))), DeviceKind::Nvme(c)) => c.no_msi = v == "off",
            (Some(("sriov-vfs", v)), DeviceKind::Nvme(c)) => {
                c.sriov_vfs = v
                    .parse::<u16>()
                    .ok()
                    .filter(|n| (1..=MAX_SRIOV_VFS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "sriov-vfs={v}: an SR-IOV NVMe controller has 1-{MAX_SRIOV_VFS} \
                             virtual functions"
                        )
                    })?;
            }
            (Some(("vf", v)), DeviceKind::NvmeNamespace(c)) => {
                c.vf = Some(v.parse::<u16>().map_err(|_| {
                    format!(
                        "vf={v}: the number of a virtual function of the controller, \
                         from 0 (as the guest's virtfnK)"
                    )
                })?);
            }
            (Some(("path", p)), DeviceKind::NvmeNamespace(c)) if !p.is_empty() => {
                c.path = PathBuf::from(p);
            }
            (Some(("readonly", v @ ("on" | "off"))), DeviceKind::NvmeNamespace(c)) => {
                c.readonly = v == "on";
            }
            (Some(("block-size", v)), DeviceKind::NvmeNamespace(c)) => {
                c.block_size = match v {
                    "512" => 512,
                    "4096" => 4096,
                    _ => return Err(format!("block-size={v}: use 512 or 4096")),
                };
            }
            (Some(("ports", v)), DeviceKind::Ahci(c)) => {
                c.ports = Some(
                    v.parse::<u8>()
                        .ok()
                        .filter(|n| (1..=6).contains(n))
                        .ok_or_else(|| format!("ports={v}: an ahci controller has 1-6 ports"))?,
                );
            }
            (Some(("msi", v @ ("on" | "off"))), DeviceKind::Ahci(c)) => c.no_msi = v == "off",
            (Some(("path", p)), DeviceKind::SataDisk(c)) if !p.is_empty() => {
                c.path = PathBuf::from(p);
            }
            (Some(("port", v)), DeviceKind::SataDisk(c)) => {
                c.port = Some(
                    v.parse::<u8>()
                        .ok()
                        .filter(|n| *n < 6)
                        .ok_or_else(|| format!("port={v}: ahci ports are 0-5"))?,
                );
            }
            (Some(("readonly", v @ ("on" | "off"))), DeviceKind::SataDisk(c)) => {
                c.readonly = v == "on";
            }
            (Some(("discard", v @ ("on" | "off"))), DeviceKind::SataDisk(c)) => {
                c.discard = v == "on";
            }
            (Some(("serial", v)), DeviceKind::SataDisk(c)) => {
                c.serial = Some(ata_string(v, "serial", 20)?);
            }
            (Some(("model", v)), DeviceKind::SataDisk(c)) => {
                c.model = Some(ata_string(v, "model", 40)?);
            }
            (Some(("msix", v @ ("on" | "off"))), DeviceKind::E1000e(c)) => c.no_msix = v == "off",
            (Some(("msi", v @ ("on" | "off"))), DeviceKind::E1000e(c)) => c.no_msi = v == "off",
            (Some(("tap", t)), DeviceKind::E1000e(c)) => c.tap = Some(parse_tap(t)?),
            (Some(("mac", m)), DeviceKind::E1000e(c)) => c.mac = Some(parse_mac(m)?),
            (Some(("msix", v @ ("on" | "off"))), DeviceKind::Virtio(c)) => c.no_msix = v == "off",
            (Some(("hotplug", v @ ("on" | "off"))), DeviceKind::RootPort(c)) => {
                c.hotplug = v == "on";
            }
            (Some(("host", bdf)), DeviceKind::VfioPci(c)) => {
                c.sysfs = PathBuf::from("/sys/bus/pci/devices").join(parse_host_bdf(bdf)?);
            }
            (Some(("sysfs", p)), DeviceKind::VfioPci(c)) if !p.is_empty() => {
                c.sysfs = PathBuf::from(p);
            }
            (Some(("msix", v @ ("on" | "off"))), DeviceKind::VfioPci(c)) => c.no_msix = v == "off",
            (Some(("msi", v @ ("on" | "off"))), DeviceKind::VfioPci(c)) => c.no_msi = v == "off",
            (Some(("mmap", v @ ("on" | "off"))), DeviceKind::VfioPci(c)) => c.no_mmap = v == "off",
            (
                Some(("path", p)),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Blk(c),
                    ..
                }),
            ) if !p.is_empty() => {
                c.path = PathBuf::from(p);
            }
            (
                Some(("readonly", v @ ("on" | "off"))),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Blk(c),
                    ..
                }),
            ) => c.readonly = v == "on",
            (
                Some(("serial", v)),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Blk(c),
                    ..
                }),
            ) => {
                if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!(
                        "serial={v} is not a virtio-blk serial: up to 20 printable ASCII characters"
                    ));
                }
                c.serial = Some(v.to_string());
            }
            (
                Some(("queues", v)),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Blk(c),
                    ..
                }),
            ) => {
                c.queues = Some(parse_queues(
                    v,
                    64,
                    "a virtio-blk device has 1-64 request queues",
                )?);
            }
            (
                Some(("queues", v)),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Net(c),
                    ..
                }),
            ) => {
                c.queues = Some(parse_queues(
                    v,
                    16,
                    "a virtio-net card has 1-16 queue pairs",
                )?);
            }
            (
                Some(("tap", t)),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Net(c),
                    ..
                }),
            ) => c.tap = Some(parse_tap(t)?),
            (
                Some(("mac", m)),
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Net(c),
                    ..
                }),
            ) => {
                c.mac = Some(parse_mac(m)?);
            }
            (_, k) => {
                let own = match k {
                    DeviceKind::Virtio(v) => match v.device {
                        VirtioKind::Blk(_) => {
                            ", msix=on|off; and path=FILE, readonly=on|off, queues=N, serial=TEXT"
                        }
                        VirtioKind::Net(_) => {
                            ", msix=on|off, tap=NAME, mac=XX:XX:XX:XX:XX:XX, queues=N"
                        }
                        VirtioKind::Console | VirtioKind::Rng => ", msix=on|off",
                    },
                    DeviceKind::PciSerial(_) => ", loopback=on|off, output=PATH",
                    DeviceKind::RootPort(_) => ", hotplug=on|off",
                    DeviceKind::PciBridge => "",
                    DeviceKind::Nvme(_) => {
                        ", serial=TEXT, queues=N, msix=on|off, msi=on|off, sriov-vfs=N"
                    }
                    DeviceKind::NvmeNamespace(_) => {
                        "; and path=FILE, readonly=on|off, block-size=512|4096, vf=K"
                    }
                    DeviceKind::Ahci(_) => ", ports=1-6, msi=on|off",
                    DeviceKind::E1000e(_) => {
                        ", tap=NAME, mac=XX:XX:XX:XX:XX:XX, msix=on|off, msi=on|off"
                    }
                    DeviceKind::SataDisk(_) => {
                        "; and path=FILE, port=0-5, readonly=on|off, serial=TEXT, model=TEXT, \
                         discard=on|off"
                    }
                    DeviceKind::VfioPci(_) => {
                        "; and host=DDDD:BB:DD.F or sysfs=PATH, msix=on|off, msi=on|off, mmap=on|off"
                    }
                };
                return Err(format!(
                    "'{opt}' is not a {kind_name} option; use id=ID, bus=ID, addr=SLOT[.FN]{own}"
                ));
            }
        }
    }
    if let DeviceKind::Virtio(VirtioConfig {
        device: VirtioKind::Blk(b),
        ..
    }) = &kind
    {
        if b.path.as_os_str().is_empty() {
            return Err("virtio-blk needs path=FILE (a disk image or a block device)".into());
        }
    }
    if let DeviceKind::VfioPci(v) = &kind {
        if v.sysfs.as_os_str().is_empty() {
            return Err(
                "vfio-pci needs host=DDDD:BB:DD.F (the host function, bound to vfio-pci) \
                 or sysfs=PATH"
                    .into(),
            );
        }
    }
    if let DeviceKind::SataDisk(d) = &kind {
        if d.path.as_os_str().is_empty() {
            return Err("sata-disk needs path=FILE (a disk image or a block device)".into());
        }
        if device.bus.is_none() {
            return Err("sata-disk needs bus=ID, the id of its ahci controller".into());
        }
    }
    if let DeviceKind::NvmeNamespace(ns) = &kind {
        if ns.path.as_os_str().is_empty() {
            return Err("nvme-ns needs path=FILE (a disk image or a block device)".into());
        }
        if device.bus.is_none() {
            return Err("nvme-ns needs bus=ID, the id of its nvme controller".into());
        }
    }
    device.kind = kind;
    Ok(device)
}

/// An ATA IDENTIFY string option (`serial=`, `model=`): 1 to `max`
/// printable ASCII characters (spaces allowed inside, as drives pad).
fn ata_string(v: &str, what: &str, max: usize) -> Result<String, String> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(format!(
            "{what}={v} is not an ATA {what}: 1-{max} printable ASCII characters"
        ));
    }
    Ok(v.to_string())
}

/// Parses a host PCI address `[DDDD:]BB:DD.F` (hex, as lspci prints it)
/// into sysfs's spelling `DDDD:BB:DD.F`.
fn parse_host_bdf(text: &str) -> Result<String, String> {
    let bad = || {
        format!("host={text} is not a PCI address; write DDDD:BB:DD.F in hex, e.g. 0000:01:00.0")
    };
    let (rest, function) = text.rsplit_once('.').ok_or_else(bad)?;
    let mut parts: Vec<&str> = rest.split(':').collect();
    if parts.len() == 2 {
        parts.insert(0, "0");
    }
    let [domain, bus, device] = parts[..] else {
        return Err(bad());
    };
    let hex = |s: &str, max: u32| {
        u32::from_str_radix(s, 16)
            .ok()
            .filter(|&v| v <= max && !s.is_empty())
    };
    match (
        hex(domain, 0xffff),
        hex(bus, 0xff),
        hex(device, 0x1f),
        hex(function, 7),
    ) {
        (Some(d), Some(b), Some(s), Some(f)) => Ok(format!("{d:04x}:{b:02x}:{s:02x}.{f}")),
        _ => Err(bad()),
    }
}

/// A virtio device of type `device` with MSI-X.
fn virtio(device: VirtioKind) -> DeviceKind {
    DeviceKind::Virtio(VirtioConfig {
        device,
        no_msix: false,
    })
}

/// Parses a queue count of 1 to `max`; `what` explains the range.
fn parse_queues(text: &str, max: u16, what: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|q| (1..=max).contains(q))
        .ok_or_else(|| format!("queues={text}: {what}"))
}

/// Parses a MAC address `XX:XX:XX:XX:XX:XX` (hex), which must be unicast.
/// Parses a `tap=` value: an interface name.
fn parse_tap(t: &str) -> Result<String, String> {
    if t.is_empty() || t.len() > 15 || t.contains('/') {
        return Err(format!(
            "tap={t} is not an interface name: 1-15 characters, no '/'"
        ));
    }
    Ok(t.to_string())
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || format!("mac={text} is not a MAC address; write e.g. mac=52:54:00:12:34:56");
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "mac={text} is a multicast address; a card needs a unicast one"
        ));
    }
    if mac == [0; 6] {
        return Err(format!(
            "mac={text} is all zeros; a card needs a unicast address"
        ));
    }
    Ok(mac)
}

/// Parses a `--serial` value.
pub fn parse_serial(text: &str) -> Result<SerialConfig, String> {
    let path = |p: &str| {
        if p.is_empty() {
            Err(format!("'{text}' needs a path after '='"))
        } else {
            Ok(PathBuf::from(p))
        }
    };
    match text.split_once('=') {
        None if text == "stdio" => Ok(SerialConfig::Stdio),
        None if text == "off" => Ok(SerialConfig::Off),
        Some(("file", p)) => path(p).map(SerialConfig::File),
        Some(("socket", p)) => path(p).map(SerialConfig::Socket),
        _ => Err(format!(
            "'{text}' is not a serial backend; use stdio, file=PATH, socket=PATH or off"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_size_units() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("5G"), Ok(5 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1024"), Ok(1 << 30));
        assert_eq!(parse_size("65536k"), Ok(64 << 20));
    }

    #[test]
    fn test_parse_duration_units_and_errors() {
        use std::time::Duration;
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["", "0s", "-1s", "1h", "s", "1.5s", "99999999999999999999m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn test_parse_size_rejects_garbage() {
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("5X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("").is_err());
    }

    #[test]
    fn test_parse_serial_forms() {
        assert_eq!(parse_serial("stdio"), Ok(SerialConfig::Stdio));
        assert_eq!(parse_serial("off"), Ok(SerialConfig::Off));
        assert_eq!(
            parse_serial("file=/tmp/x"),
            Ok(SerialConfig::File("/tmp/x".into()))
        );
        assert_eq!(
            parse_serial("socket=/tmp/s"),
            Ok(SerialConfig::Socket("/tmp/s".into()))
        );
        assert!(parse_serial("file=").is_err());
        assert!(parse_serial("tcp=1234")
            .unwrap_err()
            .contains("not a serial backend"));
    }

    #[test]
    fn test_parse_device_pci_serial_options() {
        assert_eq!(
            parse_device("pci-serial,loopback=on,output=/tmp/o"),
            Ok(DeviceConfig::new(DeviceKind::PciSerial(PciSerialConfig {
                loopback: true,
                output: Some("/tmp/o".into())
            })))
        );
        assert!(parse_device("pci-serial,speed=9600")
            .unwrap_err()
            .contains("not a pci-serial option"));
        assert!(parse_device("floppy").unwrap_err().contains("not a device"));
    }

    #[test]
    fn test_parse_device_placement_options() {
        let d = parse_device("pci-serial,id=s0,bus=br0,addr=1f.7").unwrap();
        assert_eq!(
            (d.id.as_deref(), d.bus.as_deref(), d.addr),
            (
                Some("s0"),
                Some("br0"),
                Some(PciSlot {
                    device: 0x1f,
                    function: 7
                })
            )
        );
        let rp = parse_device("root-port,id=rp0,addr=0x3").unwrap();
        assert_eq!(
            (rp.kind, rp.addr),
            (
                DeviceKind::RootPort(RootPortConfig { hotplug: true }),
                Some(PciSlot {
                    device: 3,
                    function: 0
                })
            )
        );
        assert!(parse_device("pci-serial,addr=x1")
            .unwrap_err()
            .contains("not a PCI address"));
        assert!(parse_device("root-port,loopback=on")
            .unwrap_err()
            .contains("not a root-port option"));
    }

    #[test]
    fn test_parse_root_port_hotplug_is_on_by_default_and_can_be_off() {
        let on = parse_device("root-port,id=rp0").unwrap();
        let off = parse_device("root-port,id=rp1,hotplug=off").unwrap();
        let bad = parse_device("root-port,hotplug=yes").unwrap_err();

        assert_eq!(
            on.kind,
            DeviceKind::RootPort(RootPortConfig { hotplug: true })
        );
        assert_eq!(
            off.kind,
            DeviceKind::RootPort(RootPortConfig { hotplug: false })
        );
        assert!(bad.contains("hotplug=on|off"), "{bad}");
    }

    #[test]
    fn test_parse_device_virtio_blk_options() {
        let d = parse_device("virtio-blk,path=d.img,readonly=on,queues=4,serial=abc,msix=off");

        assert_eq!(
            d,
            Ok(DeviceConfig::new(DeviceKind::Virtio(VirtioConfig {
                device: VirtioKind::Blk(VirtioBlkConfig {
                    path: "d.img".into(),
                    readonly: true,
                    queues: Some(4),
                    serial: Some("abc".into()),
                }),
                no_msix: true,
            })))
        );
    }

    #[test]
    fn test_parse_device_virtio_bad_options_say_what_is_wrong() {
        let errors = [
            parse_device("virtio-blk").unwrap_err(),
            parse_device("virtio-blk,path=d,queues=0").unwrap_err(),
            parse_device("virtio-net,queues=17").unwrap_err(),
            parse_device("virtio-net,mac=01:00:00:00:00:01").unwrap_err(),
            parse_device("virtio-net,mac=52:54:00:12:34").unwrap_err(),
            parse_device("virtio-net,tap=a/b").unwrap_err(),
            parse_device("virtio-rng,path=x").unwrap_err(),
        ];

        let expected = [
            "needs path=FILE",
            "1-64 request queues",
            "1-16 queue pairs",
            "multicast",
            "not a MAC address",
            "not an interface name",
            "not a virtio-rng option",
        ];
        for (e, want) in errors.iter().zip(expected) {
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }

    #[test]
    fn test_parse_device_virtio_net_options() {
        let d = parse_device("virtio-net,tap=tap7,mac=52:54:00:ab:cd:ef,queues=2").unwrap();

        assert_eq!(
            d.kind,
            DeviceKind::Virtio(VirtioConfig {
                device: VirtioKind::Net(VirtioNetConfig {
                    tap: Some("tap7".into()),
                    mac: Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef]),
                    queues: Some(2),
                    tap_fds: Vec::new(),
                }),
                no_msix: false,
            })
        );
    }

    #[test]
    fn test_parse_device_e1000e_options_and_errors() {
        let d = parse_device("e1000e,tap=tap3,mac=52:54:00:12:35:99,msix=off,msi=off").unwrap();
        assert_eq!(
            d.kind,
            DeviceKind::E1000e(E1000eConfig {
                tap: Some("tap3".into()),
                mac: Some([0x52, 0x54, 0, 0x12, 0x35, 0x99]),
                no_msix: true,
                no_msi: true,
            })
        );
        assert_eq!(
            parse_device("e1000e").unwrap().kind,
            DeviceKind::E1000e(E1000eConfig::default())
        );
        let errors = [
            ("e1000e,mac=01:00:00:00:00:01", "multicast"),
            ("e1000e,mac=00:00:00:00:00:00", "all zeros"),
            ("e1000e,tap=", "not an interface name"),
            (
                "e1000e,queues=2",
                "not a e1000e option; use id=ID, bus=ID, addr=SLOT[.FN], tap=NAME",
            ),
            ("e1000e,msix=maybe", "not a e1000e option"),
        ];
        for (spec, want) in errors {
            let e = parse_device(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn test_cli_builds_config() {
        let cli = Cli::try_parse_from([
            "iovm", "run", "--kernel", "k", "--memory", "5G", "--cpus", "2",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let cfg = args.vm_config().unwrap();
        assert_eq!(cfg.memory.size, 5 << 30);
        assert_eq!(cfg.iommu, None);
        assert_eq!(cfg.cpus.count, 2);
        assert_eq!(cfg.boot.cmdline, DEFAULT_CMDLINE);
        assert_eq!(cfg.lifecycle.on_reboot, OnReboot::Exit);
        assert_eq!(
            cfg.lifecycle.shutdown_timeout,
            vmm::config::DEFAULT_SHUTDOWN_TIMEOUT
        );
    }

    #[test]
    fn test_ahci_and_sata_disk_options_and_errors() {
        let Ok(DeviceSpec::Pci(d)) = parse_device_spec("ahci,id=s0,ports=2,msi=off") else {
            panic!("ahci parses");
        };
        assert_eq!(
            d.kind,
            DeviceKind::Ahci(AhciConfig {
                ports: Some(2),
                no_msi: true,
            })
        );
        let spec = "sata-disk,bus=s0,port=1,path=/d.img,readonly=on,serial=S 1,model=M,discard=off";
        let Ok(DeviceSpec::Pci(d)) = parse_device_spec(spec) else {
            panic!("sata-disk parses");
        };
        assert_eq!(d.bus.as_deref(), Some("s0"));
        assert_eq!(
            d.kind,
            DeviceKind::SataDisk(SataDiskConfig {
                path: PathBuf::from("/d.img"),
                port: Some(1),
                readonly: true,
                serial: Some("S 1".into()),
                model: Some("M".into()),
                discard: false,
            })
        );
        let err = |t| match parse_device_spec(t) {
            Err(e) => e,
            Ok(d) => panic!("{t} parsed as {d:?}"),
        };
        assert!(err("ahci,ports=7").contains("an ahci controller has 1-6 ports"));
        assert!(err("ahci,ports=0").contains("1-6 ports"));
        assert!(err("ahci,queues=2").contains("ports=1-6, msi=on|off"));
        assert!(err("sata-disk,bus=s0").contains("sata-disk needs path=FILE"));
        assert!(err("sata-disk,path=/d.img").contains("needs bus=ID, the id of its ahci"));
        assert!(err("sata-disk,bus=s0,path=/d,port=6").contains("ahci ports are 0-5"));
        let long = format!("sata-disk,bus=s0,path=/d,serial={}", "x".repeat(21));
        assert!(err(&long).contains("1-20 printable ASCII"));
        assert!(err("sata-disk,bus=s0,path=/d,block-size=4096").contains("discard=on|off"));
    }

    #[test]
    fn test_vfio_pci_host_address_and_errors() {
        let Ok(DeviceSpec::Pci(d)) = parse_device_spec("vfio-pci,host=01:00.0,addr=5") else {
            panic!("vfio-pci parses");
        };
        assert_eq!(
            d.kind,
            DeviceKind::VfioPci(VfioPciConfig {
                sysfs: PathBuf::from("/sys/bus/pci/devices/0000:01:00.0"),
                no_msix: false,
                no_msi: false,
                no_mmap: false,
            })
        );
        let Ok(DeviceSpec::Pci(d)) = parse_device_spec("vfio-pci,sysfs=/x/y,msix=off") else {
            panic!("sysfs= parses");
        };
        assert_eq!(
            d.kind,
            DeviceKind::VfioPci(VfioPciConfig {
                sysfs: PathBuf::from("/x/y"),
                no_msix: true,
                no_msi: false,
                no_mmap: false,
            })
        );
        let err = |t| match parse_device_spec(t) {
            Err(e) => e,
            Ok(d) => panic!("{t} parsed as {d:?}"),
        };
        assert!(err("vfio-pci").contains("needs host=DDDD:BB:DD.F"));
        assert!(err("vfio-pci,host=01:20.0").contains("is not a PCI address"));
        assert!(err("vfio-pci,host=zz:00.0").contains("is not a PCI address"));
        assert!(err("vfio-pci,path=/x").contains("host=DDDD:BB:DD.F or sysfs=PATH"));
    }

    #[test]
    fn test_intel_iommu_defaults_options_and_errors() {
        let Ok(DeviceSpec::Iommu(c)) = parse_device_spec("intel-iommu") else {
            panic!("intel-iommu parses");
        };
        assert_eq!(c, IommuConfig::default());
        assert_eq!(c.address_width, AddressWidth::Bits48);
        assert!(c.interrupt_remapping);
        assert_eq!(
            parse_device_spec("intel-iommu,aw-bits=39,intremap=off"),
            Ok(DeviceSpec::Iommu(IommuConfig {
                interrupt_remapping: false,
                address_width: AddressWidth::Bits39,
                ..IommuConfig::default()
            }))
        );
        let err = |t| parse_device_spec(t).unwrap_err();
        assert!(err("intel-iommu,aw-bits=40").contains("39 or 48"));
        assert_eq!(
            parse_device_spec("intel-iommu,intremap=on"),
            Ok(DeviceSpec::Iommu(IommuConfig::default()))
        );
        assert!(err("intel-iommu,intremap=yes").contains("use on or off"));
        assert!(err("intel-iommu,bus=rp0").contains("not an intel-iommu option"));
        assert!(matches!(
            parse_device_spec("nvme"),
            Ok(DeviceSpec::Pci(DeviceConfig {
                kind: DeviceKind::Nvme(_),
                ..
            }))
        ));
    }

    #[test]
    fn test_nvme_sriov_options_parse_and_refuse_bad_values() {
        let Ok(DeviceSpec::Pci(pf)) = parse_device_spec("nvme,id=n0,bus=rp0,sriov-vfs=8") else {
            panic!("an SR-IOV nvme parses");
        };
        let Ok(DeviceSpec::Pci(ns)) = parse_device_spec("nvme-ns,bus=n0,vf=3,path=/d") else {
            panic!("a VF namespace parses");
        };
        let err = |t| parse_device_spec(t).unwrap_err();

        assert!(matches!(
            pf.kind,
            DeviceKind::Nvme(NvmeConfig { sriov_vfs: 8, .. })
        ));
        assert!(matches!(
            ns.kind,
            DeviceKind::NvmeNamespace(NvmeNamespaceConfig { vf: Some(3), .. })
        ));
        assert!(err("nvme,sriov-vfs=0").contains("1-255"));
        assert!(err("nvme,sriov-vfs=x").contains("1-255"));
        assert!(err("nvme-ns,bus=n0,vf=-1,path=/d").contains("from 0"));
        assert!(err("virtio-blk,path=/d,sriov-vfs=2").contains("not a virtio-blk option"));
    }

    #[test]
    fn test_intel_iommu_twice_is_refused() {
        let cli = Cli::try_parse_from([
            "iovm",
            "run",
            "--kernel",
            "k",
            "--device",
            "intel-iommu",
            "--device",
            "nvme",
            "--device",
            "intel-iommu,aw-bits=39",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.vm_config().unwrap_err().contains("given twice"));
    }
}
