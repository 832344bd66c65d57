//! `vm.create` bodies: what Cloud Hypervisor's clients send, iovm's
//! additions, and what is refused.

use serde_json::{json, Value};
use vmm::config::{
    DeviceConfig, DeviceKind, HostConfig, IommuConfig, LifecycleConfig, OnReboot, SerialConfig,
    VirtioKind, DEFAULT_SHUTDOWN_TIMEOUT,
};

use super::vm_config::{vm_config, vm_config_json, CreateDefaults, ParsedDevice};

fn parse(text: &str) -> Result<ParsedDevice, String> {
    match text.split(',').next() {
        Some("intel-iommu") => Ok(ParsedDevice::Iommu(IommuConfig::default())),
        Some("root-port") => Ok(ParsedDevice::Pci(DeviceConfig {
            id: text
                .split(',')
                .find_map(|o| o.strip_prefix("id="))
                .map(String::from),
            ..DeviceConfig::new(DeviceKind::RootPort(Default::default()))
        })),
        _ => Err(format!("'{text}' is not a device")),
    }
}

fn defaults() -> CreateDefaults {
    CreateDefaults {
        lifecycle: LifecycleConfig {
            on_reboot: OnReboot::Exit,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        },
        host: HostConfig {
            kvm_device: "/dev/kvm".into(),
        },
        parse_device: parse,
    }
}

/// A body as Cloud Hypervisor's own client writes one: its defaults
/// spelled out.
fn ch_body() -> Value {
    json!({
        "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "topology": null, "kvm_hyperv": false,
                 "max_phys_bits": 46, "affinity": null, "features": {"amx": false},
                 "nested": true, "core_scheduling": "Vm"},
        "memory": {"size": 1073741824u64, "mergeable": false, "hotplug_method": "Acpi",
                   "hotplug_size": null, "hotplugged_size": null, "shared": false,
                   "hugepages": false, "hugepage_size": null, "prefault": false,
                   "reserve": false, "zones": null, "thp": true},
        "payload": {"kernel": "/k", "cmdline": "console=ttyS0", "initramfs": "/i",
                    "firmware": null},
        "rate_limit_groups": null,
        "disks": [{"path": "/d.img", "readonly": false, "direct": false, "num_queues": 1,
                   "queue_size": 128, "vhost_user": false, "id": null}],
        "net": [{"tap": "tap0", "ip": "192.168.249.1", "mask": "255.255.255.0",
                 "mac": "52:54:00:00:00:01", "num_queues": 2, "queue_size": 256,
                 "vhost_user": false, "vhost_mode": "Client", "offload_tso": true,
                 "offload_ufo": true, "offload_csum": true}],
        "rng": {"src": "/dev/urandom", "iommu": false},
        "balloon": null, "fs": null, "pmem": null,
        "serial": {"mode": "Tty", "file": null},
        "console": {"mode": "Off", "file": null, "iommu": false},
        "debug_console": {"mode": "Off", "file": null, "iobase": 233},
        "devices": null, "user_devices": null, "vdpa": null, "vsock": null,
        "pvpanic": false, "iommu": false, "numa": null, "watchdog": false,
        "pci_segments": null, "platform": null, "tpm": null, "landlock_enable": false
    })
}

#[test]
fn test_cloud_hypervisor_body_is_accepted_and_mapped() {
    let cfg = vm_config(&ch_body(), &defaults()).unwrap();
    assert_eq!(cfg.cpus.count, 2);
    assert_eq!(cfg.memory.size, 1 << 30);
    assert_eq!(cfg.boot.cmdline, "console=ttyS0");
    assert_eq!(cfg.serial, SerialConfig::Stdio);
    let kinds: Vec<_> = cfg.devices.iter().map(|d| d.kind.name()).collect();
    assert_eq!(kinds, ["virtio-blk", "virtio-net", "virtio-rng"]);
    assert_eq!(cfg.devices[0].id.as_deref(), Some("_disk0"));
    assert_eq!(cfg.devices[1].id.as_deref(), Some("_net0"));
}

#[test]
fn test_unsupported_field_set_is_refused_naming_it() {
    let mut body = ch_body();
    body["memory"]["hugepages"] = json!(true);
    let e = vm_config(&body, &defaults()).unwrap_err();
    assert_eq!(e.field, "memory.hugepages");
    let mut body = ch_body();
    body["vsock"] = json!({"cid": 3, "socket": "/v"});
    assert_eq!(vm_config(&body, &defaults()).unwrap_err().field, "vsock");
    let mut body = ch_body();
    body["cpus"]["max_vcpus"] = json!(4);
    assert_eq!(
        vm_config(&body, &defaults()).unwrap_err().field,
        "cpus.max_vcpus"
    );
}

#[test]
fn test_wrong_types_and_missing_payload_are_refused() {
    let mut body = ch_body();
    body["cpus"]["boot_vcpus"] = json!("two");
    assert_eq!(
        vm_config(&body, &defaults()).unwrap_err().field,
        "cpus.boot_vcpus"
    );
    let e = vm_config(&json!({"cpus": {"boot_vcpus": 1}}), &defaults()).unwrap_err();
    assert_eq!(e.field, "payload");
    assert_eq!(
        vm_config(&json!({"payload": {}}), &defaults())
            .unwrap_err()
            .field,
        "payload.kernel"
    );
    assert_eq!(
        vm_config(&json!("x"), &defaults()).unwrap_err().field,
        "body"
    );
}

#[test]
fn test_iovm_devices_go_through_the_device_parser() {
    let body = json!({
        "payload": {"kernel": "/k"},
        "iovm_devices": [{"kind": "root-port", "id": "rp0"}, {"kind": "intel-iommu"}]
    });
    let cfg = vm_config(&body, &defaults()).unwrap();
    assert_eq!(
        cfg.devices[0].kind,
        DeviceKind::RootPort(Default::default())
    );
    assert_eq!(cfg.devices[0].id.as_deref(), Some("rp0"));
    assert!(cfg.iommu.is_some());
    let bad = json!({"payload": {"kernel": "/k"}, "iovm_devices": [{"kind": "floppy"}]});
    let e = vm_config(&bad, &defaults()).unwrap_err();
    assert_eq!(e.field, "iovm_devices[0]");
    assert!(e.problem.contains("floppy"), "{e}");
    let comma =
        json!({"payload": {"kernel": "/k"}, "iovm_devices": [{"kind": "root-port", "id": "a,b"}]});
    assert!(vm_config(&comma, &defaults()).is_err());
}

#[test]
fn test_console_tty_adds_a_virtio_console_on_iovms_console() {
    let body = json!({"payload": {"kernel": "/k"}, "serial": {"mode": "Null"},
                      "console": {"mode": "Tty"}});
    let cfg = vm_config(&body, &defaults()).unwrap();
    assert_eq!(cfg.serial, SerialConfig::Stdio);
    assert!(
        matches!(&cfg.devices[0].kind, DeviceKind::Virtio(v) if v.device == VirtioKind::Console)
    );
}

#[test]
fn test_info_config_reads_back_as_the_same_config() {
    let cfg = vm_config(&ch_body(), &defaults()).unwrap();
    let again = vm_config(&vm_config_json(&cfg), &defaults()).unwrap();
    assert_eq!(again, cfg);
}
