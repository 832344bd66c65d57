//! `vm.create`'s body, Cloud Hypervisor's `VmConfig`, read into iovm's
//! [`VmConfig`]; and the other way, for `vm.info`.
//!
//! iovm's own devices (NVMe, AHCI, root ports, bridges, the VT-d unit
//! with its options) come in the iovm addition `iovm_devices`: one object
//! per device, `kind` and the options `--device` takes, e.g.
//! `{"kind": "nvme-ns", "bus": "nvme0", "path": "/img", "readonly": true}`.

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use vmm::config::{
    BootConfig, CpusConfig, DeviceConfig, DeviceKind, HostConfig, IommuConfig, LifecycleConfig,
    MemoryConfig, SerialConfig, VirtioConfig, VirtioKind, VmConfig,
};

use super::devices;
use super::fields::{BodyError, Fields};

/// A `--device` value read by the command line's own parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedDevice {
    /// A PCI device, namespace or disk.
    Pci(DeviceConfig),
    /// The VT-d unit.
    Iommu(IommuConfig),
}

/// What `vm.create` takes from the VMM's command line rather than the body.
#[derive(Clone, Debug)]
pub struct CreateDefaults {
    /// `--on-reboot`, `--shutdown-timeout`.
    pub lifecycle: LifecycleConfig,
    /// `--kvm-device`.
    pub host: HostConfig,
    /// The parser of `--device` values, for `iovm_devices`.
    pub parse_device: fn(&str) -> Result<ParsedDevice, String>,
}

fn serial_mode(f: &mut Fields, what: &str) -> Result<Option<SerialConfig>, BodyError> {
    let path = |f: &mut Fields, name: &'static str| -> Result<PathBuf, BodyError> {
        f.string(name)?
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| BodyError::new(f.path(name), "is required for this mode"))
    };
    let mode = f.string("mode")?;
    let cfg = match mode.as_deref() {
        None | Some("Off") | Some("Null") => None,
        Some("Tty") => Some(SerialConfig::Stdio),
        Some("File") => Some(SerialConfig::File(path(f, "file")?)),
        Some("Socket") => Some(SerialConfig::Socket(path(f, "socket")?)),
        Some(other) => {
            return Err(BodyError::new(
                f.path("mode"),
                format!("{what} mode {other} is not iovm's: Off, Null, Tty, File or Socket"),
            ))
        }
    };
    f.unsupported("file", Value::Null)?;
    f.unsupported("socket", Value::Null)?;
    Ok(cfg)
}

fn payload(v: &Value) -> Result<BootConfig, BodyError> {
    let mut f = Fields::new(v, "payload")?;
    let kernel = f
        .string("kernel")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            BodyError::new("payload.kernel", "is required: iovm boots a Linux kernel")
        })?;
    let boot = BootConfig {
        kernel: PathBuf::from(kernel),
        initramfs: f.string("initramfs")?.map(PathBuf::from),
        cmdline: f.string("cmdline")?.unwrap_or_default(),
    };
    f.unsupported("firmware", Value::Null)?;
    f.unsupported("igvm", Value::Null)?;
    f.unsupported("host_data", Value::Null)?;
    f.finish()?;
    Ok(boot)
}

fn cpus(v: Option<&Value>) -> Result<CpusConfig, BodyError> {
    let Some(v) = v else {
        return Ok(CpusConfig { count: 1 });
    };
    let mut f = Fields::new(v, "cpus")?;
    let boot = f
        .uint("boot_vcpus")?
        .ok_or_else(|| BodyError::new("cpus.boot_vcpus", "is required"))?;
    let count = u32::try_from(boot)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| BodyError::new("cpus.boot_vcpus", "is 1 or more"))?;
    if f.uint("max_vcpus")?.is_some_and(|m| m != boot) {
        return Err(BodyError::new(
            "cpus.max_vcpus",
            "iovm has no vCPU hotplug: give max_vcpus equal to boot_vcpus",
        ));
    }
    f.unsupported("topology", Value::Null)?;
    f.unsupported("kvm_hyperv", json!(false))?;
    f.unsupported("max_phys_bits", json!(46))?;
    f.unsupported("affinity", Value::Null)?;
    f.unsupported("features", json!({"amx": false}))?;
    f.unsupported("nested", json!(true))?;
    f.unsupported("core_scheduling", json!("Vm"))?;
    f.unsupported("profile", json!("Host"))?;
    f.finish()?;
    Ok(CpusConfig { count })
}

fn memory(v: Option<&Value>) -> Result<MemoryConfig, BodyError> {
    let Some(v) = v else {
        return Ok(MemoryConfig { size: 512 << 20 });
    };
    let mut f = Fields::new(v, "memory")?;
    let size = f
        .uint("size")?
        .ok_or_else(|| BodyError::new("memory.size", "is required (bytes)"))?;
    f.unsupported("mergeable", json!(false))?;
    f.unsupported("hotplug_method", json!("Acpi"))?;
    f.unsupported("hotplug_size", Value::Null)?;
    f.unsupported("hotplugged_size", Value::Null)?;
    f.unsupported("shared", json!(false))?;
    f.unsupported("hugepages", json!(false))?;
    f.unsupported("hugepage_size", Value::Null)?;
    f.unsupported("prefault", json!(false))?;
    f.unsupported("reserve", json!(false))?;
    f.unsupported("zones", Value::Null)?;
    f.unsupported("thp", json!(true))?;
    f.finish()?;
    Ok(MemoryConfig { size })
}

fn console_device(
    v: Option<&Value>,
) -> Result<(Option<SerialConfig>, Option<DeviceConfig>), BodyError> {
    let Some(v) = v else {
        return Ok((None, None));
    };
    let mut f = Fields::new(v, "console")?;
    let mode = serial_mode(&mut f, "console")?;
    f.unsupported("iommu", json!(false))?;
    f.unsupported("pci_segment", json!(0))?;
    f.unsupported("pci_device_id", Value::Null)?;
    let id = f.string("id")?;
    f.finish()?;
    let device = mode.as_ref().map(|_| DeviceConfig {
        kind: DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Console,
            no_msix: false,
        }),
        id,
        bus: None,
        addr: None,
    });
    Ok((mode, device))
}

/// The `--device` text an `iovm_devices` entry stands for.
fn device_spec(v: &Value, at: &str) -> Result<String, BodyError> {
    let Value::Object(map) = v else {
        return Err(BodyError::new(at, "must be an object with a kind"));
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(BodyError::new(
                format!("{at}.kind"),
                "is required (a --device kind)",
            ))
        }
    };
    let mut spec = kind;
    for (key, value) in map.iter().filter(|(k, _)| *k != "kind") {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => (if *b { "on" } else { "off" }).to_string(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(BodyError::new(
                    format!("{at}.{key}"),
                    "must be a string, number or boolean",
                ))
            }
        };
        if text.contains(',') || text.contains('=') || key.contains(',') || key.contains('=') {
            return Err(BodyError::new(
                format!("{at}.{key}"),
                "may not contain ',' or '='",
            ));
        }
        spec.push_str(&format!(",{key}={text}"));
    }
    Ok(spec)
}

/// Reads a `vm.create` body.
pub fn vm_config(body: &Value, defaults: &CreateDefaults) -> Result<VmConfig, BodyError> {
    let mut f = Fields::new(body, "")?;
    let boot = match f.object("payload")? {
        Some(p) => payload(p)?,
        None => {
            return Err(BodyError::new(
                "payload",
                "is required (kernel, cmdline, initramfs)",
            ))
        }
    };
    let cpus = cpus(f.object("cpus")?)?;
    let memory = memory(f.object("memory")?)?;
    let mut device_list = Vec::new();
    for (i, d) in f.array("disks")?.iter().enumerate() {
        let mut d = devices::disk(d, &format!("disks[{i}]"))?;
        d.id.get_or_insert_with(|| format!("_disk{i}"));
        device_list.push(d);
    }
    for (i, n) in f.array("net")?.iter().enumerate() {
        let at = format!("net[{i}]");
        let (mut d, fds) = devices::net(n, &at)?;
        if fds > 0 {
            return Err(BodyError::new(
                format!("{at}.fds"),
                "iovm takes TAP file descriptors with vm.add-net; give vm.create a tap name",
            ));
        }
        d.id.get_or_insert_with(|| format!("_net{i}"));
        device_list.push(d);
    }
    for (i, v) in f.array("devices")?.iter().enumerate() {
        let mut d = devices::vfio(v, &format!("devices[{i}]"))?;
        d.id.get_or_insert_with(|| format!("_vfio{i}"));
        device_list.push(d);
    }
    if let Some(r) = f.object("rng")? {
        device_list.push(devices::rng(r, "rng")?);
    }
    let serial = match f.object("serial")? {
        Some(v) => {
            let mut s = Fields::new(v, "serial")?;
            let mode = serial_mode(&mut s, "serial")?;
            s.finish()?;
            mode
        }
        None => None,
    };
    let (console_mode, console) = console_device(f.object("console")?)?;
    device_list.extend(console);
    let mut iommu = f.bool("iommu")?.unwrap_or(false).then(IommuConfig::default);
    for (i, v) in f.array("iovm_devices")?.iter().enumerate() {
        let at = format!("iovm_devices[{i}]");
        match (defaults.parse_device)(&device_spec(v, &at)?) {
            Ok(ParsedDevice::Pci(d)) => device_list.push(d),
            Ok(ParsedDevice::Iommu(_)) if iommu.is_some() => {
                return Err(BodyError::new(
                    at,
                    "the VM has one intel-iommu (iommu: true gives it too)",
                ))
            }
            Ok(ParsedDevice::Iommu(c)) => iommu = Some(c),
            Err(e) => return Err(BodyError::new(at, e)),
        }
    }
    if let Some(v) = f.object("debug_console")? {
        let mut d = Fields::new(v, "debug_console")?;
        if serial_mode(&mut d, "debug_console")?.is_some() {
            return Err(BodyError::new(
                "debug_console.mode",
                "iovm has no debug port: Off",
            ));
        }
        // Cloud Hypervisor's default debug port, 0xe9.
        d.unsupported("iobase", json!(233))?;
        d.finish()?;
    }
    f.bool("pvpanic")?;
    for name in [
        "rate_limit_groups",
        "balloon",
        "fs",
        "pmem",
        "generic_vhost_user",
        "user_devices",
        "vdpa",
        "vsock",
        "numa",
        "rtc",
        "pci_segments",
        "platform",
        "tpm",
        "landlock_rules",
        "sgx_epc",
        "pvmemcontrol",
        "ivshmem",
    ] {
        f.unsupported(name, Value::Null)?;
    }
    for name in ["watchdog", "gdb", "landlock_enable"] {
        f.unsupported(name, json!(false))?;
    }
    f.finish()?;
    Ok(VmConfig {
        boot,
        memory,
        cpus,
        serial: serial.or(console_mode).unwrap_or(SerialConfig::Off),
        lifecycle: defaults.lifecycle,
        host: defaults.host.clone(),
        devices: device_list,
        iommu,
    })
}

fn serial_json(s: &SerialConfig) -> Value {
    match s {
        SerialConfig::Stdio => json!({"mode": "Tty"}),
        SerialConfig::File(p) => json!({"mode": "File", "file": p}),
        SerialConfig::Socket(p) => json!({"mode": "Socket", "socket": p}),
        SerialConfig::Off => json!({"mode": "Off"}),
    }
}

/// `cfg` in Cloud Hypervisor's `VmConfig` shape, for `vm.info`: virtio
/// disks, cards, the rng and console, and VFIO functions on the root bus
/// in its fields; every other device in `iovm_devices` (its kind, place,
/// and disk; other options are not repeated).
pub fn vm_config_json(cfg: &VmConfig) -> Value {
    let (mut disks, mut net, mut vfio, mut rest) = (vec![], vec![], vec![], vec![]);
    let (mut rng, mut console) = (Value::Null, json!({"mode": "Off"}));
    for d in &cfg.devices {
        let mut common = Map::new();
        // Ids iovm made up (`_disk0`) are made up again the same way.
        if let Some(id) = d.id.as_ref().filter(|id| !id.starts_with('_')) {
            common.insert("id".into(), json!(id));
        }
        let with = |mut extra: Value| {
            if let Value::Object(m) = &mut extra {
                m.extend(common.clone());
            }
            extra
        };
        // What Cloud Hypervisor's fields cannot say (a place behind a
        // bridge) goes with iovm's own devices.
        let behind_a_bridge = d.bus.is_some();
        match &d.kind {
            DeviceKind::Virtio(v) if !behind_a_bridge => match &v.device {
                VirtioKind::Blk(b) => disks.push(with(json!({
                    "path": b.path, "readonly": b.readonly,
                    "num_queues": b.queues, "serial": b.serial
                }))),
                VirtioKind::Net(n) => net.push(with(json!({
                    "tap": n.tap, "mac": n.mac.as_ref().map(devices::format_mac),
                    "num_queues": n.queues.map(|q| q * 2)
                }))),
                VirtioKind::Rng => rng = with(json!({"src": "/dev/urandom"})),
                VirtioKind::Console => console = with(serial_json(&cfg.serial)),
            },
            DeviceKind::VfioPci(p) if !behind_a_bridge => vfio.push(with(json!({"path": p.sysfs}))),
            other => {
                let mut entry = json!({"kind": other.name()});
                if let Some(bus) = &d.bus {
                    entry["bus"] = json!(bus);
                }
                if let Some((path, readonly)) = other.disk() {
                    entry["path"] = json!(path);
                    entry["readonly"] = json!(readonly);
                }
                if let Some(a) = d.addr {
                    entry["addr"] = json!(format!("{:x}.{:x}", a.device, a.function));
                }
                rest.push(with(entry));
            }
        }
    }
    if let Some(i) = &cfg.iommu {
        rest.push(json!({
            "kind": "intel-iommu", "aw-bits": i.address_width.bits(),
            "intremap": i.interrupt_remapping
        }));
    }
    json!({
        "payload": {
            "kernel": cfg.boot.kernel, "initramfs": cfg.boot.initramfs,
            "cmdline": cfg.boot.cmdline
        },
        "cpus": {"boot_vcpus": cfg.cpus.count, "max_vcpus": cfg.cpus.count},
        "memory": {"size": cfg.memory.size},
        "serial": serial_json(&cfg.serial),
        "console": console,
        "disks": disks, "net": net, "devices": vfio, "rng": rng,
        "iommu": false,
        "iovm_devices": rest,
    })
}
