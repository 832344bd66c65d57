//! The device bodies of Cloud Hypervisor's API, read into iovm's device
//! configurations: `DiskConfig` (a virtio-blk disk), `NetConfig` (a
//! virtio-net card on a TAP), `DeviceConfig` (a host function through
//! VFIO), `RngConfig` and `VmRemoveDevice`. Shapes and defaults are those
//! of Cloud Hypervisor's OpenAPI document; what iovm supports of them is in
//! `docs/api/openapi.yaml`.

use std::path::PathBuf;

use serde_json::{json, Value};
use vmm::config::{
    DeviceConfig, DeviceKind, PciSlot, VfioPciConfig, VirtioBlkConfig, VirtioConfig, VirtioKind,
    VirtioNetConfig,
};

use super::fields::{BodyError, Fields};

/// Cloud Hypervisor's defaults for what every PCI device body carries.
fn pci_common(f: &mut Fields) -> Result<(Option<String>, Option<PciSlot>), BodyError> {
    let id = f.string("id")?;
    if let Some(id) = &id {
        let ok = !id.is_empty()
            && !id.starts_with('_')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(BodyError::new(
                f.path("id"),
                "an id is letters, digits, '-' and '_', and does not start with '_' \
                 (iovm names devices without an id _KIND…)",
            ));
        }
    }
    f.unsupported("iommu", json!(false))?;
    f.unsupported("pci_segment", json!(0))?;
    let addr = match f.uint("pci_device_id")? {
        None => None,
        Some(n @ 1..=31) => Some(PciSlot {
            device: n as u8,
            function: 0,
        }),
        Some(_) => {
            return Err(BodyError::new(
                f.path("pci_device_id"),
                "a slot on the root bus is 1-31 (0 is the host bridge)",
            ))
        }
    };
    Ok((id, addr))
}

fn required_path(f: &mut Fields, name: &'static str) -> Result<PathBuf, BodyError> {
    match f.string(name)? {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(BodyError::new(f.path(name), "is required")),
    }
}

fn queues(
    f: &mut Fields,
    name: &'static str,
    max: u64,
    per: u64,
) -> Result<Option<u16>, BodyError> {
    match f.uint(name)? {
        None => Ok(None),
        Some(n) if n >= per && n % per == 0 && n / per <= max => Ok(Some((n / per) as u16)),
        Some(_) => Err(BodyError::new(
            f.path(name),
            if per == 1 {
                format!("is 1-{max}")
            } else {
                format!("is an even number, 2-{}", max * per)
            },
        )),
    }
}

/// A `DiskConfig`: a virtio-blk disk.
pub fn disk(value: &Value, at: &str) -> Result<DeviceConfig, BodyError> {
    let mut f = Fields::new(value, at)?;
    let (id, addr) = pci_common(&mut f)?;
    let path = required_path(&mut f, "path")?;
    let readonly = f.bool("readonly")?.unwrap_or(false);
    let queues = queues(&mut f, "num_queues", 64, 1)?;
    let serial = f.string("serial")?;
    if serial.as_ref().is_some_and(|s| s.len() > 20) {
        return Err(BodyError::new(f.path("serial"), "is at most 20 bytes"));
    }
    f.unsupported("direct", json!(false))?;
    f.unsupported("queue_size", json!(128))?;
    f.unsupported("vhost_user", json!(false))?;
    f.unsupported("vhost_socket", Value::Null)?;
    f.unsupported("rate_limit_group", Value::Null)?;
    f.unsupported("rate_limiter_config", Value::Null)?;
    f.unsupported("disable_io_uring", json!(false))?;
    f.unsupported("disable_aio", json!(false))?;
    f.unsupported("queue_affinity", Value::Null)?;
    f.unsupported("backing_files", json!(false))?;
    f.unsupported("sparse", json!(true))?;
    match f.string("image_type")?.as_deref() {
        None | Some("Raw") | Some("Unknown") => {}
        Some(_) => {
            return Err(BodyError::new(
                f.path("image_type"),
                "iovm reads raw images only (Raw)",
            ))
        }
    }
    f.unsupported("lock_granularity", json!("ByteRange"))?;
    f.finish()?;
    Ok(DeviceConfig {
        kind: DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Blk(VirtioBlkConfig {
                path,
                readonly,
                queues,
                serial,
            }),
            no_msix: false,
        }),
        id,
        bus: None,
        addr,
    })
}

/// Parses `52:54:00:12:34:56`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Writes a MAC address as [`parse_mac`] reads it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A `NetConfig`: a virtio-net card on a TAP, and how many TAP file
/// descriptors its `fds` field announces (they come with the request,
/// SCM_RIGHTS).
pub fn net(value: &Value, at: &str) -> Result<(DeviceConfig, usize), BodyError> {
    let mut f = Fields::new(value, at)?;
    let (id, addr) = pci_common(&mut f)?;
    let tap = f.string("tap")?.filter(|t| !t.is_empty());
    if tap.as_ref().is_some_and(|t| t.len() > 15) {
        return Err(BodyError::new(
            f.path("tap"),
            "an interface name is at most 15 bytes",
        ));
    }
    let mac = match f.string("mac")? {
        None => None,
        Some(m) => Some(parse_mac(&m).ok_or_else(|| {
            BodyError::new(f.path("mac"), "is six hex bytes, e.g. 52:54:00:12:34:56")
        })?),
    };
    let queues = queues(&mut f, "num_queues", 16, 2)?;
    let fds = f.array("fds")?;
    if fds.iter().any(|v| !v.is_i64()) {
        return Err(BodyError::new(f.path("fds"), "is an array of integers"));
    }
    let fd_count = fds.len();
    if fd_count > 0 && tap.is_some() {
        return Err(BodyError::new(
            f.path("fds"),
            "give a TAP by name (tap) or by file descriptors (fds), not both",
        ));
    }
    f.unsupported("ip", json!("192.168.249.1"))?;
    f.unsupported("mask", json!("255.255.255.0"))?;
    f.unsupported("host_mac", Value::Null)?;
    f.unsupported("mtu", Value::Null)?;
    f.unsupported("queue_size", json!(256))?;
    f.unsupported("vhost_user", json!(false))?;
    f.unsupported("vhost_socket", Value::Null)?;
    f.unsupported("vhost_mode", json!("Client"))?;
    f.unsupported("rate_limiter_config", Value::Null)?;
    f.unsupported("offload_tso", json!(true))?;
    f.unsupported("offload_ufo", json!(true))?;
    f.unsupported("offload_csum", json!(true))?;
    f.finish()?;
    let device = DeviceConfig {
        kind: DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Net(VirtioNetConfig {
                tap,
                mac,
                queues,
                tap_fds: Vec::new(),
            }),
            no_msix: false,
        }),
        id,
        bus: None,
        addr,
    };
    Ok((device, fd_count))
}

/// A `DeviceConfig`: a host PCI function assigned through VFIO, by its
/// sysfs path.
pub fn vfio(value: &Value, at: &str) -> Result<DeviceConfig, BodyError> {
    let mut f = Fields::new(value, at)?;
    let (id, addr) = pci_common(&mut f)?;
    let sysfs = required_path(&mut f, "path")?;
    f.unsupported("fd", Value::Null)?;
    f.unsupported("x_nv_gpudirect_clique", Value::Null)?;
    f.unsupported("x_exclude_mmap_bars", Value::Null)?;
    f.finish()?;
    Ok(DeviceConfig {
        kind: DeviceKind::VfioPci(VfioPciConfig {
            sysfs,
            ..Default::default()
        }),
        id,
        bus: None,
        addr,
    })
}

/// An `RngConfig`: a virtio-rng device fed by the host's `getrandom`,
/// which is what `/dev/urandom` (Cloud Hypervisor's default) reads.
pub fn rng(value: &Value, at: &str) -> Result<DeviceConfig, BodyError> {
    let mut f = Fields::new(value, at)?;
    let (id, addr) = pci_common(&mut f)?;
    match f.string("src")?.as_deref() {
        None | Some("/dev/urandom") | Some("/dev/random") => {}
        Some(_) => {
            return Err(BodyError::new(
                f.path("src"),
                "iovm's virtio-rng reads the host's getrandom: /dev/urandom",
            ))
        }
    }
    f.finish()?;
    Ok(DeviceConfig {
        kind: DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Rng,
            no_msix: false,
        }),
        id,
        bus: None,
        addr,
    })
}

/// A `VmRemoveDevice`: the id of the device to remove.
pub fn remove(value: &Value) -> Result<String, BodyError> {
    let mut f = Fields::new(value, "")?;
    let id = f
        .string("id")?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| BodyError::new("id", "is required"))?;
    f.finish()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Cloud Hypervisor's client sends for `ch-remote add-disk
    /// path=/img`: every field of its struct, at its default.
    fn ch_remote_disk() -> Value {
        json!({
            "path": "/img", "readonly": false, "direct": false, "num_queues": 1,
            "queue_size": 128, "vhost_user": false, "vhost_socket": null,
            "rate_limit_group": null, "rate_limiter_config": null, "id": null,
            "disable_io_uring": false, "disable_aio": false, "pci_segment": 0,
            "serial": null, "queue_affinity": null, "backing_files": false,
            "sparse": true, "image_type": "Unknown", "lock_granularity": "ByteRange"
        })
    }

    #[test]
    fn test_disk_as_ch_remote_sends_it_is_a_virtio_blk() {
        let d = disk(&ch_remote_disk(), "").unwrap();
        assert_eq!(d.kind.disk(), Some((std::path::Path::new("/img"), false)));
        assert_eq!(d.id, None);
    }

    #[test]
    fn test_disk_with_direct_io_is_refused_by_name() {
        let mut body = ch_remote_disk();
        body["direct"] = json!(true);
        assert_eq!(disk(&body, "").unwrap_err().field, "direct");
    }

    #[test]
    fn test_disk_without_path_is_refused() {
        assert_eq!(
            disk(&json!({"readonly": true}), "disks[2]")
                .unwrap_err()
                .field,
            "disks[2].path"
        );
    }

    #[test]
    fn test_net_reads_tap_mac_and_queue_pairs() {
        let body = json!({"tap": "tap7", "mac": "52:54:00:aa:bb:cc", "num_queues": 4,
                          "ip": "192.168.249.1", "mask": "255.255.255.0", "offload_tso": true});
        let (d, fds) = net(&body, "").unwrap();
        let DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Net(n),
            ..
        }) = d.kind
        else {
            panic!("not a virtio-net: {d:?}");
        };
        assert_eq!(n.tap.as_deref(), Some("tap7"));
        assert_eq!(n.mac, Some([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]));
        assert_eq!(n.queues, Some(2));
        assert_eq!(fds, 0);
    }

    #[test]
    fn test_net_counts_the_fds_it_announces() {
        let (_, fds) = net(&json!({"fds": [-1, -1], "num_queues": 4}), "").unwrap();
        assert_eq!(fds, 2);
    }

    #[test]
    fn test_net_odd_queue_count_and_bad_mac_are_refused() {
        assert_eq!(
            net(&json!({"num_queues": 3}), "").unwrap_err().field,
            "num_queues"
        );
        assert_eq!(net(&json!({"mac": "52:54"}), "").unwrap_err().field, "mac");
        assert_eq!(net(&json!({"mtu": 9000}), "").unwrap_err().field, "mtu");
    }

    #[test]
    fn test_vfio_reads_its_sysfs_path_and_slot() {
        let d = vfio(
            &json!({"path": "/sys/bus/pci/devices/0000:01:00.0", "pci_device_id": 5}),
            "",
        )
        .unwrap();
        assert!(matches!(d.kind, DeviceKind::VfioPci(_)));
        assert_eq!(
            d.addr,
            Some(PciSlot {
                device: 5,
                function: 0
            })
        );
        assert!(vfio(&json!({"path": "/x", "pci_device_id": 0}), "").is_err());
    }

    #[test]
    fn test_remove_needs_an_id() {
        assert_eq!(remove(&json!({"id": "_disk0"})).unwrap(), "_disk0");
        assert!(remove(&json!({})).is_err());
        assert!(remove(&json!({"id": 3})).is_err());
    }

    #[test]
    fn test_ids_starting_with_underscore_are_iovms() {
        assert_eq!(
            disk(&json!({"path": "/x", "id": "_disk0"}), "")
                .unwrap_err()
                .field,
            "id"
        );
    }

    #[test]
    fn test_mac_round_trips() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
    }
}
