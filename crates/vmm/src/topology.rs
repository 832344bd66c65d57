//! Where each `--device` goes in the PCI tree, checked before anything is
//! built: a pure function of the config, so every rule has a unit test.
//!
//! ```text
//!  pcie.0 (bus 0, the root bus; slot 00.0 is the host bridge)
//!   ├─ 01.0 root-port id=rp0 ── 00.0 the one device on its link
//!   ├─ 02.0 pci-bridge id=br0 ─┬─ 01.0 …
//!   │                          └─ 02.0 …
//!   └─ 03.0, 03.1 …             a multi-function device
//! ```
//!
//! Rules: ids are unique; `bus=` names a root port or bridge given earlier
//! on the command line; root ports sit on the root bus; a root port's link
//! holds device 0 only (PCIe 6.0 §7.3.1); slots are 0x00-0x1f, functions
//! 0-7; a slot with functions other than 0 has a function 0 (Linux scans
//! function 0 first); the root bus's slot 0 is the host bridge's.
//! A device with no `addr=` takes the lowest free slot, function 0.
//!
//! Each device's INTA reaches an IOAPIC pin as `_PRT` routes the root-bus
//! slot it hangs from, its pin swizzled by every bridge on the way
//! (PCI-to-PCI Bridge 1.2 §9.1).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{DeviceConfig, DeviceKind, PciSlot};

/// The name of the root bus in `bus=`.
pub const ROOT_BUS: &str = "pcie.0";
/// Device numbers on a conventional bus.
const SLOTS: u8 = 32;

/// Why the requested tree cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    /// Two devices share an id.
    #[error("two devices have id '{0}'; ids must be unique")]
    DuplicateId(String),
    /// An id with characters that would make `bus=` ambiguous.
    #[error("id '{0}' is not valid: use letters, digits, '-' and '_'")]
    BadId(String),
    /// `bus=` names nothing defined before.
    #[error("{device}: bus '{bus}' is not the id of a root-port or pci-bridge given before it (or {ROOT_BUS})")]
    UnknownBus {
        /// The device, as the user named it.
        device: String,
        /// The bus asked for.
        bus: String,
    },
    /// `bus=` names a device that is not a bus.
    #[error("{device}: bus '{bus}' is a device of kind {kind}, which has no bus behind it")]
    NotABus {
        /// The device.
        device: String,
        /// The bus asked for.
        bus: String,
        /// What that id is.
        kind: &'static str,
    },
    /// A root port behind a bridge.
    #[error("{device}: a root-port sits on the root bus ({ROOT_BUS}), not behind '{bus}'")]
    RootPortNotOnRootBus {
        /// The device.
        device: String,
        /// The bus asked for.
        bus: String,
    },
    /// The slot or function is already used.
    #[error("{device}: {slot:02x}.{function} on bus '{bus}' is already taken")]
    SlotTaken {
        /// The device.
        device: String,
        /// The bus.
        bus: String,
        /// Device number.
        slot: u8,
        /// Function number.
        function: u8,
    },
    /// The slot does not exist on that bus.
    #[error("{device}: bus '{bus}' has no slot {slot:02x}.{function} ({why})")]
    NoSuchSlot {
        /// The device.
        device: String,
        /// The bus.
        bus: String,
        /// Device number.
        slot: u8,
        /// Function number.
        function: u8,
        /// The bus's rule.
        why: &'static str,
    },
    /// Every slot of the bus is used.
    #[error("{device}: bus '{bus}' has no free slot left")]
    BusFull {
        /// The device.
        device: String,
        /// The bus.
        bus: String,
    },
    /// A namespace or disk whose `bus=` is not a controller of its kind.
    #[error("{device}: bus='{bus}' must be the id of an {controller} controller given before it")]
    NamespaceController {
        /// The namespace or disk.
        device: String,
        /// What `bus=` said (empty: nothing).
        bus: String,
        /// The controller kind it needs (`nvme`, `ahci`).
        controller: &'static str,
    },
    /// A namespace or disk with a PCI address.
    #[error("{device}: it lives in its {controller} controller and takes no addr=")]
    NamespaceAddress {
        /// The namespace or disk.
        device: String,
        /// The controller kind it lives in.
        controller: &'static str,
    },
    /// A namespace's `vf=` names no VF of its controller.
    #[error(
        "{device}: vf={vf} but nvme '{bus}' has {vfs} VFs (sriov-vfs=N; VFs are numbered from 0)"
    )]
    NamespaceVf {
        /// The namespace.
        device: String,
        /// Its controller.
        bus: String,
        /// The VF asked for.
        vf: u16,
        /// How many VFs the controller has.
        vfs: u16,
    },
    /// An SR-IOV controller not at function 0 behind a root port.
    #[error("{device}: an nvme with sriov-vfs= must sit behind a root port (bus=ID of a root-port), at addr=0.0, so its VFs can be functions of its link (ARI)")]
    SriovPlacement {
        /// The controller.
        device: String,
    },
    /// Functions without function 0.
    #[error("bus '{bus}' slot {slot:02x} has function {function} but no function 0, which Linux scans first")]
    NoFunctionZero {
        /// The bus.
        bus: String,
        /// Device number.
        slot: u8,
        /// A function present.
        function: u8,
    },
}

/// The bus a device sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Parent {
    /// The root bus.
    Root,
    /// Behind the bridge or root port that is device number `n` of the list.
    Bridge(usize),
}

/// Where one device goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Index in the device list.
    pub index: usize,
    /// The bus it is on.
    pub parent: Parent,
    /// Device and function number on that bus.
    pub slot: PciSlot,
    /// The root-bus slot its interrupt is routed by (its own, or that of
    /// the topmost bridge above it).
    pub root_slot: u8,
    /// Device numbers from the device up to (not including) the root bus,
    /// for the INTx swizzle: `[own, parent bridge's, …]`.
    pub swizzle_path: Vec<u8>,
}

impl Placement {
    /// The IOAPIC pin (GSI) its interrupt `pin` (1-4: INTA-INTD) reaches.
    pub fn gsi(&self, pin: u8) -> u32 {
        let on_root = pci::intx::pin_on_root_bus(pin, &self.swizzle_path);
        pci::intx::gsi_for(self.root_slot, on_root)
    }
}

fn label(d: &DeviceConfig, index: usize) -> String {
    match &d.id {
        Some(id) => format!("{} '{id}'", d.kind.name()),
        None => format!("{} (device {})", d.kind.name(), index + 1),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id != ROOT_BUS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn register_id<'a>(
    ids: &mut BTreeMap<&'a str, usize>,
    d: &'a DeviceConfig,
    index: usize,
) -> Result<(), TopologyError> {
    if let Some(id) = &d.id {
        if !valid_id(id) {
            return Err(TopologyError::BadId(id.clone()));
        }
        if ids.insert(id, index).is_some() {
            return Err(TopologyError::DuplicateId(id.clone()));
        }
    }
    Ok(())
}

/// A namespace or disk names its controller (of `controller` kind) with
/// `bus=` and has no PCI address.
fn check_namespace(
    devices: &[DeviceConfig],
    ids: &BTreeMap<&str, usize>,
    d: &DeviceConfig,
    me: String,
    controller: &'static str,
) -> Result<(), TopologyError> {
    if d.addr.is_some() {
        return Err(TopologyError::NamespaceAddress {
            device: me,
            controller,
        });
    }
    let found = d.bus.as_deref().and_then(|b| ids.get(b));
    match found {
        Some(&c) if devices[c].kind.name() == controller => {
            let vfs = match &devices[c].kind {
                DeviceKind::Nvme(n) => n.sriov_vfs,
                _ => 0,
            };
            match &d.kind {
                DeviceKind::NvmeNamespace(ns) if ns.vf.is_some_and(|k| k >= vfs) => {
                    Err(TopologyError::NamespaceVf {
                        device: me,
                        bus: d.bus.clone().unwrap_or_default(),
                        vf: ns.vf.unwrap_or_default(),
                        vfs,
                    })
                }
                _ => Ok(()),
            }
        }
        _ => Err(TopologyError::NamespaceController {
            device: me,
            bus: d.bus.clone().unwrap_or_default(),
            controller,
        }),
    }
}

/// Places every device, in command-line order, or says what is wrong.
pub fn plan(devices: &[DeviceConfig]) -> Result<Vec<Placement>, TopologyError> {
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut used: BTreeSet<(Parent, u8, u8)> = BTreeSet::new();
    let mut placed: Vec<Placement> = Vec::new();
    for (index, d) in devices.iter().enumerate() {
        let me = label(d, index);
        if let Some(controller) = d.kind.controller_kind() {
            check_namespace(devices, &ids, d, me, controller)?;
            register_id(&mut ids, d, index)?;
            continue;
        }
        let (parent, bus_name) = match d.bus.as_deref() {
            None | Some(ROOT_BUS) => (Parent::Root, ROOT_BUS.to_string()),
            Some(bus) => {
                let Some(&p) = ids.get(bus) else {
                    return Err(TopologyError::UnknownBus {
                        device: me,
                        bus: bus.into(),
                    });
                };
                if !devices[p].kind.is_bus() {
                    return Err(TopologyError::NotABus {
                        device: me,
                        bus: bus.into(),
                        kind: devices[p].kind.name(),
                    });
                }
                if matches!(d.kind, DeviceKind::RootPort(_)) {
                    return Err(TopologyError::RootPortNotOnRootBus {
                        device: me,
                        bus: bus.into(),
                    });
                }
                (Parent::Bridge(p), bus.to_string())
            }
        };
        let is_link = matches!(parent, Parent::Bridge(p)
            if matches!(devices[p].kind, DeviceKind::RootPort(_)));
        let first = if parent == Parent::Root { 1 } else { 0 };
        let last = if is_link { 0 } else { SLOTS - 1 };
        let slot = match d.addr {
            Some(s) => {
                let why = if s.function > 7 {
                    Some("functions are 0-7")
                } else if s.device > SLOTS - 1 {
                    Some("slots are 00-1f")
                } else if is_link && s.device != 0 {
                    Some("a root port's link holds device 00 only")
                } else if parent == Parent::Root && s.device == 0 {
                    Some("00.0 is the host bridge's")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(TopologyError::NoSuchSlot {
                        device: me,
                        bus: bus_name,
                        slot: s.device,
                        function: s.function,
                        why,
                    });
                }
                s
            }
            None => {
                let free =
                    (first..=last).find(|dev| !(0..8).any(|f| used.contains(&(parent, *dev, f))));
                match free {
                    Some(device) => PciSlot {
                        device,
                        function: 0,
                    },
                    None => {
                        return Err(TopologyError::BusFull {
                            device: me,
                            bus: bus_name,
                        })
                    }
                }
            }
        };
        let sriov = matches!(&d.kind, DeviceKind::Nvme(n) if n.sriov_vfs > 0);
        if sriov && !(is_link && slot.device == 0 && slot.function == 0) {
            return Err(TopologyError::SriovPlacement { device: me });
        }
        if !used.insert((parent, slot.device, slot.function)) {
            return Err(TopologyError::SlotTaken {
                device: me,
                bus: bus_name,
                slot: slot.device,
                function: slot.function,
            });
        }
        let (root_slot, swizzle_path) = match parent {
            Parent::Root => (slot.device, Vec::new()),
            Parent::Bridge(p) => {
                let up = placed
                    .iter()
                    .find(|pl| pl.index == p)
                    .map(|pl| (pl.root_slot, pl.swizzle_path.clone()))
                    .unwrap_or((0, Vec::new()));
                let mut path = vec![slot.device];
                path.extend(up.1);
                (up.0, path)
            }
        };
        register_id(&mut ids, d, index)?;
        placed.push(Placement {
            index,
            parent,
            slot,
            root_slot,
            swizzle_path,
        });
    }
    for (parent, dev, function) in &used {
        if *function != 0 && !used.contains(&(*parent, *dev, 0)) {
            let bus = match parent {
                Parent::Root => ROOT_BUS.to_string(),
                Parent::Bridge(p) => devices[*p].id.clone().unwrap_or_default(),
            };
            return Err(TopologyError::NoFunctionZero {
                bus,
                slot: *dev,
                function: *function,
            });
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        AhciConfig, DeviceKind, NvmeConfig, NvmeNamespaceConfig, PciSerialConfig, SataDiskConfig,
    };

    fn dev(
        kind: DeviceKind,
        id: Option<&str>,
        bus: Option<&str>,
        addr: Option<(u8, u8)>,
    ) -> DeviceConfig {
        DeviceConfig {
            kind,
            id: id.map(String::from),
            bus: bus.map(String::from),
            addr: addr.map(|(device, function)| PciSlot { device, function }),
        }
    }

    fn serial() -> DeviceKind {
        DeviceKind::PciSerial(PciSerialConfig::default())
    }

    fn slots(p: &[Placement]) -> Vec<(Parent, u8, u8)> {
        p.iter()
            .map(|p| (p.parent, p.slot.device, p.slot.function))
            .collect()
    }

    #[test]
    fn test_plan_places_a_tree_with_defaults_and_explicit_addresses() {
        let devices = [
            dev(
                DeviceKind::RootPort(Default::default()),
                Some("rp0"),
                None,
                None,
            ),
            dev(
                DeviceKind::RootPort(Default::default()),
                Some("rp1"),
                None,
                None,
            ),
            dev(DeviceKind::PciBridge, Some("br0"), Some("rp1"), None),
            dev(serial(), None, Some("br0"), Some((3, 0))),
            dev(serial(), None, Some("rp0"), None),
            dev(serial(), None, None, Some((5, 0))),
            dev(serial(), None, None, Some((5, 1))),
            dev(serial(), None, None, None),
        ];

        let plan = plan(&devices).unwrap();

        assert_eq!(
            slots(&plan),
            vec![
                (Parent::Root, 1, 0),
                (Parent::Root, 2, 0),
                (Parent::Bridge(1), 0, 0),
                (Parent::Bridge(2), 3, 0),
                (Parent::Bridge(0), 0, 0),
                (Parent::Root, 5, 0),
                (Parent::Root, 5, 1),
                (Parent::Root, 3, 0),
            ]
        );
    }

    #[test]
    fn test_interrupt_of_a_device_behind_two_bridges_is_swizzled_to_the_root_slot() {
        let devices = [
            dev(
                DeviceKind::RootPort(Default::default()),
                Some("rp"),
                None,
                Some((2, 0)),
            ),
            dev(DeviceKind::PciBridge, Some("br"), Some("rp"), None),
            dev(serial(), None, Some("br"), Some((3, 0))),
        ];

        let plan = plan(&devices).unwrap();
        let card = &plan[2];

        assert_eq!((card.root_slot, card.swizzle_path.clone()), (2, vec![3, 0]));
        // INTA at device 3 becomes INTD behind the bridge, INTD again
        // through the root port's device 0, and root slot 2 sends INTD to
        // GSI 16 + (2 + 3) % 4.
        assert_eq!(card.gsi(1), 17);
        assert_eq!(plan[1].gsi(1), pci::intx::gsi_for(2, 1));
    }

    #[test]
    fn test_plan_errors_name_the_device_and_the_rule() {
        let cases: Vec<(Vec<DeviceConfig>, &str)> = vec![
            (
                vec![dev(serial(), None, Some("nope"), None)],
                "bus 'nope' is not the id of a root-port or pci-bridge",
            ),
            (
                vec![
                    dev(serial(), Some("s"), None, None),
                    dev(serial(), None, Some("s"), None),
                ],
                "of kind pci-serial, which has no bus",
            ),
            (
                vec![
                    dev(
                        DeviceKind::RootPort(Default::default()),
                        Some("rp"),
                        None,
                        None,
                    ),
                    dev(serial(), None, Some("rp"), None),
                    dev(serial(), None, Some("rp"), None),
                ],
                "bus 'rp' has no free slot",
            ),
            (
                vec![
                    dev(
                        DeviceKind::RootPort(Default::default()),
                        Some("rp"),
                        None,
                        None,
                    ),
                    dev(serial(), None, Some("rp"), Some((1, 0))),
                ],
                "a root port's link holds device 00 only",
            ),
            (
                vec![
                    dev(DeviceKind::PciBridge, Some("b"), None, None),
                    dev(
                        DeviceKind::RootPort(Default::default()),
                        None,
                        Some("b"),
                        None,
                    ),
                ],
                "a root-port sits on the root bus",
            ),
            (
                vec![
                    dev(serial(), None, None, Some((4, 0))),
                    dev(serial(), None, None, Some((4, 0))),
                ],
                "04.0 on bus 'pcie.0' is already taken",
            ),
            (vec![dev(serial(), None, None, Some((0, 0)))], "host bridge"),
            (
                vec![dev(serial(), None, None, Some((32, 0)))],
                "slots are 00-1f",
            ),
            (
                vec![dev(serial(), None, None, Some((3, 8)))],
                "functions are 0-7",
            ),
            (
                vec![dev(serial(), None, None, Some((6, 2)))],
                "slot 06 has function 2 but no function 0",
            ),
            (
                vec![
                    dev(serial(), Some("x"), None, None),
                    dev(serial(), Some("x"), None, None),
                ],
                "two devices have id 'x'",
            ),
            (vec![dev(serial(), Some("a,b"), None, None)], "not valid"),
        ];
        for (devices, want) in cases {
            let err = plan(&devices).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }

    fn ns() -> DeviceKind {
        DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
            path: "disk.img".into(),
            readonly: false,
            block_size: 512,
            vf: None,
        })
    }

    #[test]
    fn test_namespaces_take_no_slot_and_need_their_controller() {
        let devices = [
            dev(
                DeviceKind::Nvme(NvmeConfig::default()),
                Some("n0"),
                None,
                None,
            ),
            dev(ns(), None, Some("n0"), None),
            dev(ns(), None, Some("n0"), None),
            dev(serial(), None, None, None),
        ];

        let plan = plan(&devices).unwrap();

        assert_eq!(
            slots(&plan),
            vec![(Parent::Root, 1, 0), (Parent::Root, 2, 0)]
        );
        assert_eq!(plan[1].index, 3);
        let orphan = [dev(ns(), None, None, None)];
        assert!(plan_err(&orphan).contains("must be the id of an nvme controller"));
        let on_bridge = [
            dev(DeviceKind::PciBridge, Some("b"), None, None),
            dev(ns(), None, Some("b"), None),
        ];
        assert!(plan_err(&on_bridge).contains("bus='b' must be the id of an nvme"));
        let with_addr = [
            dev(
                DeviceKind::Nvme(NvmeConfig::default()),
                Some("n0"),
                None,
                None,
            ),
            dev(ns(), None, Some("n0"), Some((1, 0))),
        ];
        assert!(plan_err(&with_addr).contains("takes no addr="));
        let behind_nvme = [
            dev(
                DeviceKind::Nvme(NvmeConfig::default()),
                Some("n0"),
                None,
                None,
            ),
            dev(serial(), None, Some("n0"), None),
        ];
        assert!(plan_err(&behind_nvme).contains("of kind nvme, which has no bus"));
    }

    #[test]
    fn test_sata_disks_take_no_slot_and_need_an_ahci_controller() {
        let disk = || DeviceKind::SataDisk(SataDiskConfig::default());
        let ahci = || DeviceKind::Ahci(AhciConfig::default());
        let devices = [
            dev(ahci(), Some("a0"), None, None),
            dev(disk(), None, Some("a0"), None),
            dev(serial(), None, None, None),
        ];
        assert_eq!(
            slots(&plan(&devices).unwrap()),
            vec![(Parent::Root, 1, 0), (Parent::Root, 2, 0)]
        );
        let on_nvme = [
            dev(
                DeviceKind::Nvme(NvmeConfig::default()),
                Some("n0"),
                None,
                None,
            ),
            dev(disk(), None, Some("n0"), None),
        ];
        assert!(plan_err(&on_nvme).contains("bus='n0' must be the id of an ahci controller"));
        let ns_on_ahci = [
            dev(ahci(), Some("a0"), None, None),
            dev(ns(), None, Some("a0"), None),
        ];
        assert!(plan_err(&ns_on_ahci).contains("must be the id of an nvme controller"));
        let with_addr = [
            dev(ahci(), Some("a0"), None, None),
            dev(disk(), None, Some("a0"), Some((1, 0))),
        ];
        assert!(plan_err(&with_addr).contains("lives in its ahci controller and takes no addr="));
    }

    fn plan_err(d: &[DeviceConfig]) -> String {
        plan(d).unwrap_err().to_string()
    }

    #[test]
    fn test_a_full_root_bus_is_an_error() {
        let devices: Vec<_> = (0..32).map(|_| dev(serial(), None, None, None)).collect();

        let err = plan(&devices).unwrap_err();

        assert!(matches!(err, TopologyError::BusFull { .. }), "{err}");
    }
}
