//! The seam between the management API and the parts that change a
//! running machine's devices (PCIe native hotplug) and count their I/O
//! (per-device counters).
//!
//! The run loop calls exactly these three methods, on its own thread, with
//! the machine and a [`Responder`]; each answers once, now or later from
//! any thread (a removal answers only when the guest has let the device
//! go). This build has neither hotplug nor counters: they answer
//! [`ManageError::NotAvailable`], after the checks that need neither (a
//! device that is not there is `NoSuchDevice`).
//!
//! Filling the seam: `add_device` places `new.device` on a free hotplug
//! root port, records it in `Vm::devices` (so `vm.info` shows it) and
//! answers `Answer::Added`; `remove_device` detaches it, removes it from
//! `Vm::devices` and answers `Answer::Done`; `counters` answers
//! [`Answer::Counters`].

use super::{ManageError, NewDevice, Responder};
use crate::manage::info::device_id;
use crate::vm::Vm;

impl Vm {
    /// `vm.add-disk`, `vm.add-net`, `vm.add-device`: adds `new` to the
    /// running machine.
    pub(crate) fn add_device(&self, new: NewDevice, reply: Responder) {
        let taken = self
            .device_list()
            .iter()
            .enumerate()
            .any(|(i, d)| Some(device_id(d, i)) == new.device.id);
        if taken {
            reply.answer(Err(ManageError::Invalid(format!(
                "a device with id '{}' is already in this VM",
                new.device.id.unwrap_or_default()
            ))));
            return;
        }
        reply.answer(Err(ManageError::NotAvailable(
            "adding devices to a running VM (PCIe hotplug)",
        )));
    }

    /// `vm.remove-device`: removes the device `id` from the running machine.
    pub(crate) fn remove_device(&self, id: &str, reply: Responder) {
        let known = self
            .device_list()
            .iter()
            .enumerate()
            .any(|(i, d)| device_id(d, i) == id);
        if !known {
            reply.answer(Err(ManageError::NoSuchDevice(id.to_string())));
            return;
        }
        reply.answer(Err(ManageError::NotAvailable(
            "removing devices from a running VM (PCIe hotplug)",
        )));
    }

    /// `vm.counters`: every device's I/O counters.
    pub(crate) fn counters(&self, reply: Responder) {
        reply.answer(Err(ManageError::NotAvailable("per-device I/O counters")));
    }
}
