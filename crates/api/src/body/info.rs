//! `vm.info`'s and the other answers' bodies, in Cloud Hypervisor's shapes
//! (`VmInfo`, `PciDeviceInfo`, `VmCounters`) with iovm's additions.

use serde_json::{json, Map, Value};
use vmm::manage::{AddedDevice, DeviceNode, MachineInfo};
use vmm::vm::{ApiStop, Outcome};

use super::vm_config::vm_config_json;

/// A PCI address as Cloud Hypervisor writes it: segment, bus, device,
/// function (`0000:00:03.0`).
pub fn bdf_text(bdf: pci::address::Bdf) -> String {
    format!("0000:{bdf}")
}

fn outcome_json(o: &Outcome) -> Value {
    let reason = match o {
        Outcome::PowerOff => "PowerOff",
        Outcome::Reboot => "Reboot",
        Outcome::Panic => "Panic",
        Outcome::Crash(_) => "Crash",
        Outcome::UserQuit => "UserQuit",
        Outcome::ForcedOff(_) => "ForcedOff",
        Outcome::Stopped(ApiStop::Shutdown) => "ApiShutdown",
        Outcome::Stopped(ApiStop::Reboot) => "ApiReboot",
        Outcome::Stopped(ApiStop::Delete) => "ApiDelete",
        Outcome::Stopped(ApiStop::VmmShutdown) => "ApiVmmShutdown",
    };
    let detail = match o {
        Outcome::Crash(why) | Outcome::ForcedOff(why) => Some(why.clone()),
        _ => None,
    };
    json!({"reason": reason, "exit_code": o.exit_code(), "detail": detail})
}

fn device_tree(nodes: &[DeviceNode]) -> Value {
    let mut tree = Map::new();
    for n in nodes {
        let children: Vec<&str> = nodes
            .iter()
            .filter(|c| c.parent.as_deref() == Some(n.id.as_str()))
            .map(|c| c.id.as_str())
            .collect();
        tree.insert(
            n.id.clone(),
            json!({
                "id": n.id,
                "resources": [],
                "children": children,
                "pci_bdf": n.bdf.map(bdf_text),
                "kind": n.kind,
                "parent": n.parent,
            }),
        );
    }
    Value::Object(tree)
}

/// `VmInfo`: config, state, memory size and the device tree, with iovm's
/// `boots` and `outcome`.
pub fn info_json(info: &MachineInfo) -> Value {
    json!({
        "config": vm_config_json(&info.config),
        "state": info.state.name(),
        "memory_actual_size": info.config.memory.size,
        "device_tree": device_tree(&info.devices),
        "boots": info.boots,
        "outcome": info.outcome.as_ref().map(outcome_json),
    })
}

/// `PciDeviceInfo`.
pub fn added_json(added: &AddedDevice) -> Value {
    json!({"id": added.id, "bdf": bdf_text(added.bdf)})
}
