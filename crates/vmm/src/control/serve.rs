//! The run loop's side of [`crate::control`]: requests are served at once
//! (a device is built and attached, or an attention button pressed), and
//! the answers to removals wait here, not in the loop, until the guest
//! powers the slot off or their time runs out.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use pci::caps::slot::SlotWriteEffects;

use super::{ControlError, ControlRequest};
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
    /// removal's time.
    pub(crate) fn request(
        &mut self,
        request: ControlRequest,
        pci: &PciRoot,
        wiring: &mut dyn Wiring,
        now: Instant,
    ) {
        match request {
            ControlRequest::Add(add, reply) => {
                let _ = reply.send(self.hotplug.add(pci, wiring, &add));
            }
            ControlRequest::Devices(reply) => {
                let _ = reply.send(self.hotplug.devices(pci));
            }
            ControlRequest::Remove(id, timeout, reply) => {
                match self.hotplug.remove(pci, &id, now, timeout) {
                    Ok(Removal::Done) => {
                        let _ = reply.send(Ok(()));
                    }
                    Ok(Removal::Waiting(_)) => {
                        self.waiters.entry(id).or_default().push((reply, timeout));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    /// Acts on a Slot Control write: a removal completes when the guest
    /// powers the slot off.
    pub(crate) fn slot(&mut self, event: SlotEvent, pci: &PciRoot) {
        if let Some(id) = self.hotplug.slot_changed(pci, event.port, event.effects) {
            for (reply, _) in self.waiters.remove(&id).unwrap_or_default() {
                let _ = reply.send(Ok(()));
            }
        }
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
        self.controls
            .request(request, &self.pci, &mut wiring, Instant::now());
    }
}
