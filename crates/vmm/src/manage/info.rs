//! The device tree `vm.info` reports: each device of the machine's
//! configuration with the PCI address the guest sees it at now.
//!
//! A device on the root bus is at bus 0, where the command line or the
//! topology plan put it. A device behind a root port or bridge is on that
//! bridge's secondary bus, whose number the guest's enumeration wrote into
//! the bridge (PCI-to-PCI Bridge Architecture 1.2 §3.2.5.4); until the
//! guest has numbered it, the address is unknown. A namespace or SATA disk
//! is no PCI function: it lives inside its controller.

use pci::address::Bdf;

use crate::config::DeviceConfig;
use crate::topology::{self, Parent};

/// One device of the machine, as `vm.info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceNode {
    /// Its id: the one it was given, or `_KIND` and its place in the list.
    pub id: String,
    /// Its kind, as `--device` names it.
    pub kind: &'static str,
    /// The id of the bridge, root port or controller it sits behind.
    pub parent: Option<String>,
    /// Its PCI address now; `None` inside a controller, or behind a bridge
    /// the guest has not numbered yet.
    pub bdf: Option<Bdf>,
}

/// The id `vm.info` and `vm.remove-device` use for device `index`.
pub fn device_id(device: &DeviceConfig, index: usize) -> String {
    device
        .id
        .clone()
        .unwrap_or_else(|| format!("_{}{index}", device.kind.name()))
}

/// The devices of `devices` with their addresses, where `secondary_bus`
/// reads the secondary bus number of the bridge at a BDF (0 or `None`:
/// not numbered yet).
pub fn device_nodes(
    devices: &[DeviceConfig],
    mut secondary_bus: impl FnMut(Bdf) -> Option<u8>,
) -> Vec<DeviceNode> {
    let plan = topology::plan(devices).unwrap_or_default();
    let mut bdfs: Vec<Option<Bdf>> = vec![None; devices.len()];
    for place in &plan {
        let bus = match place.parent {
            Parent::Root => Some(0),
            Parent::Bridge(p) => bdfs[p].and_then(&mut secondary_bus).filter(|&b| b != 0),
        };
        bdfs[place.index] = bus.map(|bus| Bdf {
            bus,
            device: place.slot.device,
            function: place.slot.function,
        });
    }
    let ids: Vec<String> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| device_id(d, i))
        .collect();
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| DeviceNode {
            id: ids[i].clone(),
            kind: d.kind.name(),
            parent: d.bus.clone().filter(|b| b != topology::ROOT_BUS),
            bdf: bdfs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn dev(kind: DeviceKind, id: Option<&str>, bus: Option<&str>) -> DeviceConfig {
        DeviceConfig {
            kind,
            id: id.map(String::from),
            bus: bus.map(String::from),
            addr: None,
        }
    }

    #[test]
    fn test_device_behind_a_numbered_root_port_is_on_its_secondary_bus() {
        let devices = vec![
            dev(DeviceKind::RootPort(Default::default()), Some("rp0"), None),
            dev(
                DeviceKind::Nvme(NvmeConfig::default()),
                Some("nvme0"),
                Some("rp0"),
            ),
            dev(
                DeviceKind::Virtio(VirtioConfig {
                    device: VirtioKind::Rng,
                    no_msix: false,
                }),
                None,
                None,
            ),
        ];
        let nodes = device_nodes(&devices, |bdf| (bdf.device == 1).then_some(3));
        assert_eq!(
            nodes[0].bdf.map(|b| b.to_string()).as_deref(),
            Some("00:01.0")
        );
        assert_eq!(
            nodes[1].bdf.map(|b| b.to_string()).as_deref(),
            Some("03:00.0")
        );
        assert_eq!(nodes[1].parent.as_deref(), Some("rp0"));
        assert_eq!(nodes[2].id, "_virtio-rng2");
        assert_eq!(
            nodes[2].bdf.map(|b| b.to_string()).as_deref(),
            Some("00:02.0")
        );
    }

    #[test]
    fn test_device_behind_an_unnumbered_bridge_has_no_address_yet() {
        let devices = vec![
            dev(DeviceKind::RootPort(Default::default()), Some("rp0"), None),
            dev(
                DeviceKind::Nvme(NvmeConfig::default()),
                Some("n"),
                Some("rp0"),
            ),
        ];
        let nodes = device_nodes(&devices, |_| Some(0));
        assert_eq!(nodes[1].bdf, None);
    }
}
