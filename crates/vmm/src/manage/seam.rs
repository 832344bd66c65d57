//! The seam between the management API and the parts that change a
//! running machine's devices (PCIe native hotplug) and count their I/O
//! (per-device counters).
//!
//! The run loop calls exactly these three methods, on its own thread, with
//! the machine and a [`Responder`]; each answers once, now or later from
//! any thread (a removal answers only when the guest has let the device
//! go). Counters are wired (the machine's registry, `crate::io_counters`).
//! This build has no hotplug: adding and removing answer
//! [`ManageError::NotAvailable`], after the checks that need no hotplug
//! (a device that is not there is `NoSuchDevice`, an id in use `Conflict`).
//!
//! Filling the seam with `vmm::control` (branch `hotplug`), whose run
//! loop serves `VmEvent::Control(ControlRequest)` and answers on a channel:
//! - `add_device(new, reply)`: `new.device` is a virtio-blk disk
//!   (`vm.add-disk`), a virtio-net card (`vm.add-net`; a TAP by name, or
//!   the open TAP queues in `new.fds`, one per queue pair: put them in
//!   `VirtioNetConfig::tap_fds`) or a VFIO function (`vm.add-device`); its
//!   `id` is the client's or `None`; `bus` and `addr` are `None`. Send
//!   `VmEvent::Control(ControlRequest::Add(AddRequest::new(device), tx))`
//!   into `self.event_sink` and, on a thread of its own, wait on the
//!   receiver and answer `reply`: `Ok(Added { id, bdf })` as
//!   `Answer::Added(AddedDevice { id, bdf })`; `NoFreePort`, `DuplicateId`
//!   as `ManageError::Conflict` (409); `NotHotpluggable`, `BadConfig` as
//!   `Invalid` (400); `NotRunning` (or a dropped sender) as `Ending` (503).
//! - `remove_device(id, reply)`: the same with
//!   `ControlRequest::Remove(id, DEFAULT_REMOVE_TIMEOUT, tx)`: `Ok(())` as
//!   `Answer::Done`; `UnknownId` as `NoSuchDevice` (404); `NotRemovable`
//!   as `Conflict` (409); `RemoveTimeout` as `Failed` (500).
//! - `vm.info` must list hot-added devices: push an added device onto
//!   `Vm::devices` when its `Added` comes back and drop it when its removal
//!   does (or build `info`'s device list from `ControlRequest::Devices`,
//!   whose addresses already follow the guest's numbering); the checks
//!   here of ids in use and unknown ids read `Vm::devices`.
//! - `report_counters(reply)` is done: a hot-added function registers its
//!   counters with the machine's registry under its id, as built ones do,
//!   and unregisters them when it goes.
//!
//! The run loop must not wait inside these: it also serves the guest's
//! power-off and SIGTERM.

use super::{Answer, Counters, ManageError, NewDevice, Responder};
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
            reply.answer(Err(ManageError::Conflict(format!(
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

    /// `vm.counters`: every device's I/O counters and the VMM's own, by
    /// device name (the id `vm.info` shows), read from the machine's
    /// registry ([`crate::io_counters`]) now.
    pub(crate) fn report_counters(&self, reply: Responder) {
        let report: Counters = self
            .counters()
            .report()
            .into_iter()
            .map(|(name, figures)| {
                let figures = figures
                    .into_map()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                (name, figures)
            })
            .collect();
        reply.answer(Ok(Answer::Counters(report)));
    }
}
