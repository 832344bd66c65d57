//! The machine's hot-plug root ports and what sits behind them, while the
//! machine runs: a device added is built by its kind's boot-time builder
//! (with the machine's [`BuildState`], so its INTx wire and default names
//! are as at boot), attached at 00.0 behind a free port, and announced by
//! the port's Presence Detect and, in a slot that is off, its attention
//! button (what the guest powers the slot on for); a device removed is detached once
//! the guest powers its slot off after the attention button.
//!
//! It knows no KVM and no threads: the run loop ([`crate::control`]) calls
//! it with the machine's [`Wiring`] and keeps the callers' answers; tests
//! call it with a recording wiring.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pci::address::Bdf;
use pci::bridge::{PciBridgeFunction, RootPort};
use pci::caps::slot::SlotWriteEffects;
use pci::root::{BridgeId, SharedFunction, Slot};

use super::context::{BuildContext, BuildState};
use super::{PciBuildError, Wiring};
use crate::config::{DeviceConfig, DeviceKind, PciSlot, VirtioKind};
use crate::control::{AddRequest, Added, ControlError, DeviceInfo};
use crate::pci_host::{PciRoot, SlotHandler};
use crate::topology::{self, Parent, Placement};

/// Functions a device behind a port may have at device 0.
const FUNCTIONS: u8 = 8;

/// Where a port's Slot Control commands go: `(port index, effects)`.
pub(crate) type SlotSink = Arc<dyn Fn(usize, SlotWriteEffects) + Send + Sync>;

/// A hot-plug root port and its occupant.
struct Port {
    /// Its own id, if it has one.
    id: Option<String>,
    /// How error messages name it.
    label: String,
    bridge: BridgeId,
    port: Arc<Mutex<RootPort>>,
    /// Its device number on the root bus.
    device: u8,
    occupant: Option<Occupant>,
}

/// The device behind a port.
struct Occupant {
    /// Its id (`None`: a boot-time device without one, which cannot be
    /// named for removal).
    id: Option<String>,
    /// The ids of its parts (namespaces), freed with it.
    parts: Vec<String>,
    /// Its removal, once asked for.
    removal: Option<Asked>,
}

/// A removal asked for: it stays asked for after its time ran out, so the
/// guest's power off still detaches the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    /// The guest has until then.
    Until(Instant),
    /// The time ran out (and was reported).
    Expired,
}

/// How a removal started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The slot was off: the device is gone already.
    Done,
    /// The attention button is pressed; the guest has until then.
    Waiting(Instant),
}

/// The hot-plug ports of a machine and the devices behind them.
pub(crate) struct Hotplug {
    state: BuildState,
    cpus: u32,
    ports: Vec<Port>,
    /// Every id in the machine.
    ids: BTreeSet<String>,
}

/// Sends a port's Slot Control effects to the run loop.
struct PortSlot {
    index: usize,
    sink: SlotSink,
}

impl SlotHandler for PortSlot {
    fn apply(&self, effects: SlotWriteEffects) {
        (self.sink)(self.index, effects);
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a kind can be added while the machine runs.
fn hotpluggable(kind: &DeviceKind) -> bool {
    match kind {
        DeviceKind::Virtio(v) => matches!(
            v.device,
            VirtioKind::Blk(_) | VirtioKind::Net(_) | VirtioKind::Rng
        ),
        DeviceKind::Nvme(_) => true,
        _ => false,
    }
}

impl Hotplug {
    /// The hot-plug ports `state` built into `pci` (their bridges found in
    /// `bridge`), the boot devices `devices`, each port's Slot Control
    /// commands sent to `sink`.
    pub(crate) fn new(
        mut state: BuildState,
        pci: &PciRoot,
        devices: &[DeviceConfig],
        bridge: impl Fn(usize) -> Option<BridgeId>,
        cpus: u32,
        sink: SlotSink,
    ) -> Self {
        let mut ports = Vec::new();
        for new in state.take_ports() {
            let Some(id) = bridge(new.index) else {
                continue;
            };
            let own = devices[new.index].id.clone();
            let label = own
                .clone()
                .map(|id| format!("root port '{id}'"))
                .unwrap_or_else(|| format!("root port 00:{:02x}.0", new.device));
            let occupant = new.occupied.then(|| Occupant {
                id: devices
                    .iter()
                    .find(|d| d.kind.is_pci() && d.bus.is_some() && d.bus == own)
                    .and_then(|d| d.id.clone()),
                parts: Vec::new(),
                removal: None,
            });
            let function: SharedFunction = new.port.clone();
            pci.add_context(&function, new.ctx);
            let index = ports.len();
            pci.add_slot_handler(
                &function,
                Arc::new(PortSlot {
                    index,
                    sink: sink.clone(),
                }),
            );
            ports.push(Port {
                id: own,
                label,
                bridge: id,
                port: new.port,
                device: new.device,
                occupant,
            });
        }
        let ids = devices.iter().filter_map(|d| d.id.clone()).collect();
        Self {
            state,
            cpus,
            ports,
            ids,
        }
    }

    /// How many hot-plug ports the machine has, and how many are free.
    #[cfg(test)]
    pub(crate) fn ports(&self) -> (usize, usize) {
        let free = self.ports.iter().filter(|p| p.occupant.is_none()).count();
        (self.ports.len(), free)
    }

    /// Builds `request`'s device with `wiring`, attaches it behind the
    /// first free port, and tells the guest (Presence Detect, and the link
    /// if the slot is powered).
    pub(crate) fn add(
        &mut self,
        pci: &PciRoot,
        wiring: &mut dyn Wiring,
        request: &AddRequest,
    ) -> Result<Added, ControlError> {
        let device = &request.device;
        if !hotpluggable(&device.kind) {
            return Err(ControlError::NotHotpluggable(device.kind.name()));
        }
        if matches!(&device.kind, DeviceKind::Nvme(n) if n.sriov_vfs > 0) {
            return Err(ControlError::BadConfig(
                "nvme: an SR-IOV controller (sriov-vfs=) cannot be hot-added".into(),
            ));
        }
        if device.bus.is_some() || device.addr.is_some() {
            return Err(ControlError::BadConfig(format!(
                "{}: a hot-added device takes no bus= or addr=: it goes behind a free hot-plug root port",
                device.kind.name()
            )));
        }
        let id = match &device.id {
            Some(id) if self.ids.contains(id) => return Err(ControlError::DuplicateId(id.clone())),
            Some(id) => id.clone(),
            None => self.new_id(device.kind.name()),
        };
        let devices = self.request_devices(request, &id)?;
        topology::plan(&devices).map_err(|e| ControlError::BadConfig(e.to_string()))?;
        crate::vm::check_disks(&devices).map_err(|e| ControlError::BadConfig(chain(&e)))?;
        let Some(index) = self.ports.iter().position(|p| p.occupant.is_none()) else {
            return Err(ControlError::NoFreePort);
        };
        let port = &self.ports[index];
        let place = Placement {
            index: 0,
            parent: Parent::Bridge(0),
            slot: PciSlot {
                device: 0,
                function: 0,
            },
            root_slot: port.device,
            swizzle_path: vec![0],
        };
        let state = std::mem::take(&mut self.state);
        let mut machine = BuildContext::resume(pci, wiring, self.cpus, state);
        let built = machine.build(&devices[0], &place, &devices);
        self.state = machine.into_state();
        let bad = |e: PciBuildError| ControlError::BadConfig(e.to_string());
        let Some((built, ctx)) = built.map_err(bad)? else {
            return Err(ControlError::NotHotpluggable(device.kind.name()));
        };
        let Some(function) = built.endpoint() else {
            return Err(ControlError::NotHotpluggable(device.kind.name()));
        };
        pci.attach_behind(port.bridge, 0, 0, function.clone())
            .map_err(|e| bad(e.into()))?;
        pci.add_context(&function, ctx);
        self.state.list(&devices[0], &function);
        {
            let mut port = lock(&port.port);
            port.set_presence(true);
            // Linux's pciehp enables no Presence Detect Changed interrupt
            // on a slot with an attention button: it waits for the button
            // (a user pressing it after inserting a card, PCIe 6.0
            // §6.7.1.5), then powers the slot on after its 5 s.
            let powered = port.slot().is_some_and(|s| s.powered(port.config().regs()));
            if !powered {
                port.press_attention_button();
            }
        }
        let bdf = self.bdf(index);
        let parts: Vec<String> = devices[1..].iter().filter_map(|d| d.id.clone()).collect();
        self.ids.extend(parts.iter().cloned());
        self.ids.insert(id.clone());
        self.ports[index].occupant = Some(Occupant {
            id: Some(id.clone()),
            parts,
            removal: None,
        });
        tracing::info!("{} added behind {} at {bdf}", id, self.ports[index].label);
        Ok(Added { id, bdf })
    }

    /// The device list the request's builder sees: its function with the
    /// id `id`, then its parts naming it as their bus.
    fn request_devices(
        &self,
        request: &AddRequest,
        id: &str,
    ) -> Result<Vec<DeviceConfig>, ControlError> {
        let mut devices = vec![DeviceConfig {
            id: Some(id.to_string()),
            ..request.device.clone()
        }];
        for part in &request.parts {
            if part.kind.is_pci() {
                return Err(ControlError::BadConfig(format!(
                    "{} is a PCI function of its own, not a part of the {} (add it by itself)",
                    part.kind.name(),
                    request.device.kind.name()
                )));
            }
            if let Some(pid) = part
                .id
                .as_ref()
                .filter(|p| self.ids.contains(*p) || *p == id)
            {
                return Err(ControlError::DuplicateId(pid.clone()));
            }
            let bus = part.bus.clone().unwrap_or_else(|| id.to_string());
            devices.push(DeviceConfig {
                bus: Some(bus),
                ..part.clone()
            });
        }
        Ok(devices)
    }

    /// `kind` and the lowest number no id has.
    fn new_id(&self, kind: &str) -> String {
        (0..)
            .map(|n| format!("{kind}{n}"))
            .find(|id| !self.ids.contains(id))
            .unwrap_or_default()
    }

    /// Where device 0 behind port `index` is now.
    fn bdf(&self, index: usize) -> Bdf {
        let bus = lock(&self.ports[index].port).bus_numbers().secondary;
        Bdf {
            bus,
            device: 0,
            function: 0,
        }
    }

    /// Every PCI function built for the machine's devices and not detached
    /// (root ports and bridges too), in build order, with its address as
    /// the guest has numbered the buses.
    pub(crate) fn devices(&self, pci: &PciRoot) -> Vec<DeviceInfo> {
        self.state
            .listed()
            .filter_map(|l| {
                let function = l.function.upgrade()?;
                Some(DeviceInfo {
                    id: l.id.clone(),
                    kind: l.kind,
                    bdf: pci.address_of(&function)?,
                })
            })
            .collect()
    }

    /// The id of the hot-plug port the device `id` sits behind, if the
    /// port has one.
    pub(crate) fn port_id_of(&self, id: &str) -> Option<String> {
        self.ports[self.port_of(id)?].id.clone()
    }

    fn port_of(&self, id: &str) -> Option<usize> {
        self.ports.iter().position(|p| {
            p.occupant
                .as_ref()
                .is_some_and(|o| o.id.as_deref() == Some(id))
        })
    }

    /// Starts removing the device `id`: presses its port's attention
    /// button, unless the slot is off already (the guest never powered it
    /// on, or let it go before), in which case it is detached at once.
    pub(crate) fn remove(
        &mut self,
        pci: &PciRoot,
        id: &str,
        now: Instant,
        timeout: Duration,
    ) -> Result<Removal, ControlError> {
        let Some(index) = self.port_of(id) else {
            return Err(if self.ids.contains(id) {
                ControlError::NotRemovable(id.to_string())
            } else {
                ControlError::UnknownId(id.to_string())
            });
        };
        let powered = {
            let port = lock(&self.ports[index].port);
            port.slot().is_some_and(|s| s.powered(port.config().regs()))
        };
        if !powered {
            self.detach(pci, index);
            return Ok(Removal::Done);
        }
        let occupant = self.ports[index].occupant.as_mut();
        if let Some(Asked::Until(deadline)) = occupant.as_ref().and_then(|o| o.removal) {
            // A second press would cancel the first (pciehp's 5 s window).
            return Ok(Removal::Waiting(deadline));
        }
        let deadline = now + timeout;
        if let Some(o) = occupant {
            o.removal = Some(Asked::Until(deadline));
        }
        lock(&self.ports[index].port).press_attention_button();
        tracing::info!(
            "{id}: attention button of {} pressed",
            self.ports[index].label
        );
        Ok(Removal::Waiting(deadline))
    }

    /// The guest wrote port `index`'s Slot Control: a device whose removal
    /// was asked for goes when its slot is powered off. Returns its id.
    pub(crate) fn slot_changed(
        &mut self,
        pci: &PciRoot,
        index: usize,
        effects: SlotWriteEffects,
    ) -> Option<String> {
        let port = self.ports.get(index)?;
        tracing::debug!("{}: slot control {effects:?}", port.label);
        if effects.power != Some(false) {
            return None;
        }
        let asked = port.occupant.as_ref().is_some_and(|o| o.removal.is_some());
        if !asked {
            return None;
        }
        self.detach(pci, index)
    }

    /// The removals whose time ran out by `now` (each reported once; they
    /// stay asked for).
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for o in self.ports.iter_mut().filter_map(|p| p.occupant.as_mut()) {
            if matches!(o.removal, Some(Asked::Until(d)) if d <= now) {
                o.removal = Some(Asked::Expired);
                out.extend(o.id.clone());
            }
        }
        out
    }

    /// When the next removal times out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.ports
            .iter()
            .filter_map(|p| match p.occupant.as_ref()?.removal {
                Some(Asked::Until(d)) => Some(d),
                _ => None,
            })
            .min()
    }

    /// Takes every function behind port `index` off the machine (BARs
    /// unmapped, eventfds unregistered, context forgotten; the last
    /// reference drops, so the device's workers are joined and its backend
    /// closed), then the adapter leaves the slot. Returns its id.
    fn detach(&mut self, pci: &PciRoot, index: usize) -> Option<String> {
        let port = &mut self.ports[index];
        for function in 0..FUNCTIONS {
            let slot = Slot::Behind {
                bridge: port.bridge,
                device: 0,
                function,
            };
            if pci.detach(slot).is_ok() {
                tracing::debug!("{}: function {function} detached", port.label);
            }
        }
        lock(&port.port).set_presence(false);
        let occupant = port.occupant.take()?;
        for part in &occupant.parts {
            self.ids.remove(part);
        }
        if let Some(id) = &occupant.id {
            self.ids.remove(id);
            tracing::info!("{id} removed from {}", port.label);
        }
        occupant.id
    }
}

/// An error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
