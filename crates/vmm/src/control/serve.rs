//! The run loop's side of [`crate::control`]: requests are served at once
//! (a device is built and attached, or an attention button pressed), and
//! the answers to removals wait here, not in the loop, until the guest
//! powers the slot off or their time runs out.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use pci::caps::slot::SlotWriteEffects;

use super::{AddRequest, Added, ControlError, ControlRequest};
use crate::config::{DeviceConfig, DeviceKind, VirtioKind};
use crate::console::Console;
use crate::pci_devices::{Hotplug, Removal, Wiring};
use crate::pci_host::PciRoot;
use crate::wiring::KvmWiring;

/// The guest wrote a hot-plug root port's Slot Control (an event from the
/// vCPU that wrote it to the run loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotEvent {
    /// Which hot-plug port, in build order.
    pub(crate) port: usize,
    /// What the write commanded.
    pub(crate) effects: SlotWriteEffects,
}

impl SlotEvent {
    /// Port `port`'s Slot Control commanded `effects`.
    pub(crate) fn new(port: usize, effects: SlotWriteEffects) -> Self {
        Self { port, effects }
    }
}

/// What a request or a Slot Control write changed in the machine's device
/// list (what `vm.info` shows).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// These devices came: the function (with its id, and its port's id as
    /// its bus when the port has one), then its parts.
    Added(Vec<DeviceConfig>),
    /// The device with this id went, with its parts.
    Removed(String),
}

/// Who waits for a removal, and how long they gave it.
type Waiter = (Sender<Result<(), ControlError>>, Duration);

/// The machine's hot-plug state and the removals being waited for.
pub(crate) struct Controls {
    hotplug: Hotplug,
    waiters: BTreeMap<String, Vec<Waiter>>,
}

impl Controls {
    /// Serves requests on `hotplug`'s ports.
    pub(crate) fn new(hotplug: Hotplug) -> Self {
        Self {
            hotplug,
            waiters: BTreeMap::new(),
        }
    }

    /// The hot-plug ports and devices.
    #[cfg(test)]
    pub(crate) fn hotplug(&self) -> &Hotplug {
        &self.hotplug
    }

    /// Serves `request` on `pci`, building with `wiring`; `now` starts a
    /// removal's time. Returns what changed in the machine's devices.
    pub(crate) fn request(
        &mut self,
        request: ControlRequest,
        pci: &PciRoot,
        wiring: &mut dyn Wiring,
        now: Instant,
    ) -> Option<Change> {
        match request {
            ControlRequest::Add(add, reply) => {
                let result = self.hotplug.add(pci, wiring, &add);
                let change = result
                    .as_ref()
                    .ok()
                    .map(|added| Change::Added(self.added_configs(&add, added)));
                let _ = reply.send(result);
                change
            }
            ControlRequest::Devices(reply) => {
                let _ = reply.send(self.hotplug.devices(pci));
                None
            }
            ControlRequest::Remove(id, timeout, reply) => {
                match self.hotplug.remove(pci, &id, now, timeout) {
                    Ok(Removal::Done) => {
                        let _ = reply.send(Ok(()));
                        return Some(Change::Removed(id));
                    }
                    Ok(Removal::Waiting(_)) => {
                        self.waiters.entry(id).or_default().push((reply, timeout));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
                None
            }
        }
    }

    /// The configs of a device just added, as the machine's device list
    /// keeps them: its function named `added.id` behind its port, then its
    /// parts. TAP descriptors are left out: the card holds its own copies,
    /// and the request's close when it is dropped.
    fn added_configs(&self, add: &AddRequest, added: &Added) -> Vec<DeviceConfig> {
        let mut function = DeviceConfig {
            id: Some(added.id.clone()),
            bus: self.hotplug.port_id_of(&added.id),
            ..add.device.clone()
        };
        if let DeviceKind::Virtio(v) = &mut function.kind {
            if let VirtioKind::Net(n) = &mut v.device {
                n.tap_fds.clear();
            }
        }
        let parts = add.parts.iter().map(|p| DeviceConfig {
            bus: Some(p.bus.clone().unwrap_or_else(|| added.id.clone())),
            ..p.clone()
        });
        std::iter::once(function).chain(parts).collect()
    }

    /// The machine's PCI functions now, with their addresses.
    pub(crate) fn devices(&self, pci: &PciRoot) -> Vec<super::DeviceInfo> {
        self.hotplug.devices(pci)
    }

    /// Acts on a Slot Control write: a removal completes when the guest
    /// powers the slot off. Returns the device that went.
    pub(crate) fn slot(&mut self, event: SlotEvent, pci: &PciRoot) -> Option<Change> {
        let id = self.hotplug.slot_changed(pci, event.port, event.effects)?;
        for (reply, _) in self.waiters.remove(&id).unwrap_or_default() {
            let _ = reply.send(Ok(()));
        }
        Some(Change::Removed(id))
    }

    /// When the next removal times out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.hotplug.next_deadline()
    }

    /// Answers the removals whose time ran out by `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        for id in self.hotplug.expired(now) {
            for (reply, after) in self.waiters.remove(&id).unwrap_or_default() {
                let _ = reply.send(Err(ControlError::RemoveTimeout {
                    id: id.clone(),
                    after,
                }));
            }
        }
    }
}

impl crate::vm::Vm {
    /// Serves a control request with the machine's own wiring (KVM routes
    /// and irqfds, guest RAM or the VT-d unit).
    pub(crate) fn serve_control(&mut self, request: ControlRequest, console: &Console) {
        let mut wiring = KvmWiring {
            irqchip: self.irqchip.clone(),
            memory: self.memory.clone(),
            console,
            iommu: self.iommu.clone(),
            vm: self.vm.clone(),
            vfio: None,
        };
        let change = self
            .controls
            .request(request, &self.pci, &mut wiring, Instant::now());
        self.note(change);
    }

    /// Acts on a hot-plug port's Slot Control write.
    pub(crate) fn serve_slot(&mut self, event: SlotEvent) {
        let change = self.controls.slot(event, &self.pci);
        self.note(change);
    }

    /// Keeps the machine's device list (`vm.info`) in step with `change`.
    fn note(&self, change: Option<Change>) {
        let mut list = self.device_list();
        match change {
            Some(Change::Added(configs)) => list.extend(configs),
            Some(Change::Removed(id)) => list.retain(|d| {
                d.id.as_deref() != Some(id.as_str()) && d.bus.as_deref() != Some(id.as_str())
            }),
            None => {}
        }
    }
}
