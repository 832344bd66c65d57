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
//! Filling the seam:
//! - `add_device(new, reply)`: `new.device` is a virtio-blk disk
//!   (`vm.add-disk`), a virtio-net card (`vm.add-net`; a TAP by name, or
//!   the open TAP queues in `new.fds`, one per queue pair) or a VFIO
//!   function (`vm.add-device`); its `id` is the client's, or `None` (name
//!   it, e.g. `_disk<N>`, unique among `Vm::device_list()`); `bus` and
//!   `addr` are `None` (the slot is a free hotplug root port's). Build it,
//!   attach it, push it onto `Vm::devices` (so `vm.info` shows it, with the
//!   address the guest enumerates) and answer
//!   `Ok(Answer::Added(AddedDevice { id, bdf }))`; no free hotplug port is
//!   `Err(ManageError::Invalid(..))` (400) or a new variant.
//! - `remove_device(id, reply)`: `id` is known (checked here). Ask the
//!   guest to let go (attention button), keep `reply`, and answer
//!   `Ok(Answer::Done)` from whichever thread sees the slot powered off and
//!   the function detached, after removing it from `Vm::devices`; a guest
//!   that does not let go in time is an error answer, not a hang.
//! - `counters(reply)`: answer `Ok(Answer::Counters(map))`, device id →
//!   counter name → value.
//!
//! The run loop must not wait inside these: it also serves the guest's
//! power-off and SIGTERM.

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
