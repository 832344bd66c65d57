//! The seam between the management API and the parts that change a
//! running machine's devices (PCIe native hotplug, [`crate::control`]) and
//! count their I/O (per-device counters, [`crate::io_counters`]).
//!
//! The run loop calls these methods on its own thread, with the machine
//! and a [`Responder`]; each answers once, later, from a thread of its own,
//! so the run loop never waits (it also serves the guest's Slot Control
//! writes that a removal waits for, the guest's power-off and SIGTERM):
//!
//! ```text
//!  vm.add-disk / add-net / add-device ─▶ add_device: TAP fds into the
//!     config ─▶ VmEvent::Control(Add) into the machine's own queue
//!     (served next, by this run loop: built, attached behind a free
//!     hot-plug root port, the guest told) ─▶ answer thread: {id, bdf}
//!  vm.remove-device ─▶ remove_device ─▶ VmEvent::Control(Remove) (the
//!     attention button) ─▶ answer thread: waits until the guest powered
//!     the slot off and the device is gone, or the removal timed out
//! ```
//!
//! The run loop keeps the device list `vm.info` shows in step as it serves
//! those requests (`control::serve`); a hot-added function registers its
//! counters under its id when it is built, and they go when it is detached.

use std::sync::mpsc::{self, Receiver};

use super::{AddedDevice, Answer, Counters, ManageError, NewDevice, Responder};
use crate::config::{DeviceKind, TapFd, VirtioKind};
use crate::control::{AddRequest, Added, ControlError, ControlRequest, DEFAULT_REMOVE_TIMEOUT};
use crate::manage::info::device_id;
use crate::vm::{Vm, VmEvent};

impl Vm {
    /// `vm.add-disk`, `vm.add-net`, `vm.add-device`: adds `new` to the
    /// running machine behind a free hot-plug root port.
    pub(crate) fn add_device(&self, new: NewDevice, reply: Responder) {
        let NewDevice { mut device, fds } = new;
        let taken = self
            .device_list()
            .iter()
            .enumerate()
            .any(|(i, d)| Some(device_id(d, i)) == device.id);
        if taken {
            reply.answer(Err(ManageError::Conflict(format!(
                "a device with id '{}' is already in this VM",
                device.id.unwrap_or_default()
            ))));
            return;
        }
        if !fds.is_empty() {
            let net = match &mut device.kind {
                DeviceKind::Virtio(v) => match &mut v.device {
                    VirtioKind::Net(n) => Some(n),
                    _ => None,
                },
                _ => None,
            };
            let Some(net) = net else {
                reply.answer(Err(ManageError::Invalid(format!(
                    "file descriptors came with the request, and a {} takes none",
                    device.kind.name()
                ))));
                return;
            };
            if net.tap.is_some() {
                reply.answer(Err(ManageError::Invalid(
                    "give a TAP by name (tap) or by file descriptors, not both".into(),
                )));
                return;
            }
            net.tap_fds = fds.into_iter().map(TapFd::new).collect();
        }
        let (tx, rx) = mpsc::channel();
        let request = ControlRequest::Add(AddRequest::new(device), tx);
        if self.event_sink.send(VmEvent::Control(request)).is_err() {
            reply.answer(Err(ManageError::Ending));
            return;
        }
        answer_later("add", rx, reply, added_answer);
    }

    /// `vm.remove-device`: removes the device `id` from the running
    /// machine; answers once the guest has let it go, or its time ran out.
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
        let (tx, rx) = mpsc::channel();
        let request = ControlRequest::Remove(id.to_string(), DEFAULT_REMOVE_TIMEOUT, tx);
        if self.event_sink.send(VmEvent::Control(request)).is_err() {
            reply.answer(Err(ManageError::Ending));
            return;
        }
        answer_later("remove", rx, reply, removed_answer);
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

/// Waits on a thread of its own for the run loop's answer on `rx`, and
/// answers `reply` with it as `map` turns it (a dropped sender: the
/// machine ended first).
fn answer_later<T: Send + 'static>(
    what: &str,
    rx: Receiver<Result<T, ControlError>>,
    reply: Responder,
    map: fn(Result<T, ControlError>) -> Result<Answer, ManageError>,
) {
    let (slot_tx, slot_rx) = mpsc::channel::<Responder>();
    let spawned = std::thread::Builder::new()
        .name(format!("iovm-api-{what}"))
        .spawn(move || {
            sandbox::enter(sandbox::ThreadKind::ApiWaiter);
            let result = rx.recv().unwrap_or(Err(ControlError::NotRunning));
            if let Ok(reply) = slot_rx.recv() {
                reply.answer(map(result));
            }
        });
    match spawned {
        Ok(_) => {
            let _ = slot_tx.send(reply);
        }
        Err(e) => {
            tracing::warn!("API: no thread to wait for the {what}: {e}");
            reply.answer(Err(ManageError::Failed(format!(
                "cannot start a thread to wait for the {what}: {e}"
            ))));
        }
    }
}

/// The API's answer to an add.
fn added_answer(result: Result<Added, ControlError>) -> Result<Answer, ManageError> {
    match result {
        Ok(Added { id, bdf }) => Ok(Answer::Added(AddedDevice { id, bdf })),
        Err(e) => Err(manage_error(e)),
    }
}

/// The API's answer to a removal.
fn removed_answer(result: Result<(), ControlError>) -> Result<Answer, ManageError> {
    result.map(|()| Answer::Done).map_err(manage_error)
}

/// A control error as the API reports it.
fn manage_error(e: ControlError) -> ManageError {
    match e {
        ControlError::NotRunning => ManageError::Ending,
        ControlError::UnknownId(id) => ManageError::NoSuchDevice(id),
        ControlError::NoFreePort | ControlError::DuplicateId(_) | ControlError::NotRemovable(_) => {
            ManageError::Conflict(e.to_string())
        }
        ControlError::NotHotpluggable(_) | ControlError::BadConfig(_) => {
            ManageError::Invalid(e.to_string())
        }
        ControlError::RemoveTimeout { .. } => ManageError::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pci::address::Bdf;
    use std::time::Duration;

    #[test]
    fn test_added_device_answers_its_id_and_address() {
        let bdf = Bdf {
            bus: 3,
            device: 0,
            function: 0,
        };
        let answer = added_answer(Ok(Added {
            id: "disk1".into(),
            bdf,
        }));
        assert!(matches!(
            answer,
            Ok(Answer::Added(AddedDevice { ref id, bdf: b })) if id == "disk1" && b == bdf
        ));
    }

    #[test]
    fn test_control_errors_map_to_the_api_statuses() {
        assert!(matches!(
            added_answer(Err(ControlError::NoFreePort)),
            Err(ManageError::Conflict(m)) if m.contains("root-port")
        ));
        assert!(matches!(
            added_answer(Err(ControlError::DuplicateId("a".into()))),
            Err(ManageError::Conflict(_))
        ));
        assert!(matches!(
            added_answer(Err(ControlError::NotHotpluggable("vfio-pci"))),
            Err(ManageError::Invalid(_))
        ));
        assert!(matches!(
            added_answer(Err(ControlError::BadConfig("x".into()))),
            Err(ManageError::Invalid(_))
        ));
        assert!(matches!(
            added_answer(Err(ControlError::NotRunning)),
            Err(ManageError::Ending)
        ));
        assert!(matches!(removed_answer(Ok(())), Ok(Answer::Done)));
        assert!(matches!(
            removed_answer(Err(ControlError::UnknownId("d".into()))),
            Err(ManageError::NoSuchDevice(id)) if id == "d"
        ));
        assert!(matches!(
            removed_answer(Err(ControlError::NotRemovable("d".into()))),
            Err(ManageError::Conflict(_))
        ));
        assert!(matches!(
            removed_answer(Err(ControlError::RemoveTimeout {
                id: "d".into(),
                after: Duration::from_secs(30)
            })),
            Err(ManageError::Failed(m)) if m.contains("pciehp")
        ));
    }

    #[test]
    fn test_answer_comes_from_another_thread_once_the_run_loop_answers() {
        let (tx, rx) = mpsc::channel();
        let (reply, answers) = Responder::pair();
        answer_later("remove", rx, reply, removed_answer);
        assert!(answers.recv_timeout(Duration::from_millis(50)).is_err());
        tx.send(Ok(())).unwrap();
        let answer = answers.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(answer, Ok(Answer::Done)));
    }

    #[test]
    fn test_a_run_loop_that_drops_the_request_answers_ending() {
        let (tx, rx) = mpsc::channel::<Result<(), ControlError>>();
        let (reply, answers) = Responder::pair();
        answer_later("remove", rx, reply, removed_answer);
        drop(tx);
        let answer = answers.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(answer, Err(ManageError::Ending)));
    }
}
