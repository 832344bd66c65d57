//! What a management client (the API server, `crates/api`) may ask of the
//! VMM, and how the answer comes back.
//!
//! ```text
//!  API thread ── Request{command, reply} ──▶ ManagePort ──▶ the channel of
//!  whoever owns the machine now:
//!     no machine running: the VMM's idle loop (create, boot, delete, info)
//!     a machine running:  its run loop (VmEvent::Manage; info, pause, ...)
//!  ◀── Responder::answer(Result<Answer, ManageError>) ── (any thread, once)
//! ```
//!
//! Everything here is plain data: the API server turns HTTP into a
//! [`Command`] and an [`Answer`] or [`ManageError`] back into HTTP, and
//! nothing here knows HTTP. The run loop's side is in `running.rs`; what it
//! calls for run-time device changes and counters is in [`seam`].

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use pci::address::Bdf;

use crate::config::{DeviceConfig, VmConfig};
use crate::vm::{Outcome, VmEvent};

mod info;
pub mod pause;
pub(crate) mod running;
pub mod seam;

pub use info::{device_nodes, DeviceNode};

/// One thing a client asks.
#[derive(Debug)]
pub enum Command {
    /// Keep this configuration as the machine to boot (`vm.create`).
    Create(Box<VmConfig>),
    /// Build and start the created machine (`vm.boot`).
    Boot,
    /// Describe the machine (`vm.info`).
    Info,
    /// Forget the created machine, ending it first if it runs (`vm.delete`).
    Delete,
    /// End the VMM process (`vmm.shutdown`).
    VmmShutdown,
    /// Park every vCPU (`vm.pause`).
    Pause,
    /// Let parked vCPUs run (`vm.resume`).
    Resume,
    /// Press the ACPI power button (`vm.power-button`).
    PowerButton,
    /// End the running machine at once, as pulling its plug (`vm.shutdown`).
    Shutdown,
    /// End the running machine and boot it again (`vm.reboot`).
    Reboot,
    /// Add a device while the machine runs (`vm.add-disk`, `vm.add-net`,
    /// `vm.add-device`).
    AddDevice(NewDevice),
    /// Remove a device while the machine runs (`vm.remove-device`).
    RemoveDevice(String),
    /// Read every device's I/O counters (`vm.counters`).
    Counters,
}

impl Command {
    /// The API's name for it, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "vm.create",
            Self::Boot => "vm.boot",
            Self::Info => "vm.info",
            Self::Delete => "vm.delete",
            Self::VmmShutdown => "vmm.shutdown",
            Self::Pause => "vm.pause",
            Self::Resume => "vm.resume",
            Self::PowerButton => "vm.power-button",
            Self::Shutdown => "vm.shutdown",
            Self::Reboot => "vm.reboot",
            Self::AddDevice(_) => "vm.add-device",
            Self::RemoveDevice(_) => "vm.remove-device",
            Self::Counters => "vm.counters",
        }
    }
}

/// A device to add at run time.
#[derive(Debug)]
pub struct NewDevice {
    /// What it is; its `id` is set (the API names devices it adds).
    pub device: DeviceConfig,
    /// File descriptors the client passed with the request (SCM_RIGHTS):
    /// for `vm.add-net`, open TAP queues, one per queue pair.
    pub fds: Vec<OwnedFd>,
}

/// A device added at run time, as the client learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedDevice {
    /// Its id, for `vm.remove-device`.
    pub id: String,
    /// Its PCI address as the guest sees it.
    pub bdf: Bdf,
}

/// Per device (by id), named counters.
pub type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// A successful answer.
#[derive(Debug)]
pub enum Answer {
    /// Done; nothing to report.
    Done,
    /// What `vm.info` reports.
    Info(Box<MachineInfo>),
    /// The device that was added.
    Added(AddedDevice),
    /// The counters.
    Counters(Counters),
}

/// Where the machine is in its life (`vm.info` `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineState {
    /// Configured, not booted (or ended and ready to boot again).
    Created,
    /// vCPUs running.
    Running,
    /// vCPUs parked by `vm.pause`.
    Paused,
    /// The guest's machine ended (see [`MachineInfo::outcome`]).
    Shutdown,
}

impl MachineState {
    /// The name the API uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Paused => "Paused",
            Self::Shutdown => "Shutdown",
        }
    }
}

impl std::fmt::Display for MachineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `vm.info` reports.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// The configuration the machine was built from.
    pub config: VmConfig,
    /// Its state now.
    pub state: MachineState,
    /// How its last run ended, once one has.
    pub outcome: Option<Outcome>,
    /// How many times it has booted in this VMM (a guest reboot with
    /// `--on-reboot restart` and `vm.reboot` count).
    pub boots: u32,
    /// Its devices, with their PCI addresses as the guest sees them now.
    pub devices: Vec<DeviceNode>,
}

/// Why a request was not done.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No machine is created.
    #[error("no VM is created: PUT /api/v1/vm.create first")]
    NotCreated,
    /// `vm.create` when one exists.
    #[error("a VM is already created: PUT /api/v1/vm.delete first")]
    AlreadyCreated,
    /// The request does not fit the machine's state.
    #[error("{action} needs the VM {needs}, and it is {state}")]
    WrongState {
        /// What was asked.
        action: &'static str,
        /// The state needed.
        needs: &'static str,
        /// The state it is in.
        state: MachineState,
    },
    /// No such device.
    #[error("no device with id '{0}' in this VM")]
    NoSuchDevice(String),
    /// The request names something the machine cannot take.
    #[error("{0}")]
    Invalid(String),
    /// The request clashes with what the machine has (an id in use, no
    /// free hot-plug port, a device that cannot be removed where it is).
    #[error("{0}")]
    Conflict(String),
    /// The machine tried and could not (the guest did not let a device
    /// go in time).
    #[error("{0}")]
    Failed(String),
    /// The machine could not be built or started.
    #[error("cannot boot the VM: {0}")]
    Boot(String),
    /// The vCPUs did not park in time.
    #[error("the vCPUs did not pause within {0} ms")]
    PauseTimeout(u128),
    /// The machine was being built or taken down when the request came.
    #[error("the VM was starting or ending when the request arrived; ask again")]
    Ending,
}

/// The way back to the client: answered once, from any thread.
#[derive(Debug)]
pub struct Responder(Sender<Result<Answer, ManageError>>);

impl Responder {
    /// A responder and the receiver its answer arrives on.
    pub fn pair() -> (Self, Receiver<Result<Answer, ManageError>>) {
        let (tx, rx) = mpsc::channel();
        (Self(tx), rx)
    }

    /// Sends the answer (a client that gave up is not an error).
    pub fn answer(self, result: Result<Answer, ManageError>) {
        let _ = self.0.send(result);
    }
}

/// One request and the way back.
#[derive(Debug)]
pub struct Request {
    /// What is asked.
    pub command: Command,
    /// Where the answer goes.
    pub reply: Responder,
}

/// Where requests go: the running machine's event channel while one runs,
/// the VMM's idle channel otherwise. Cloned into the API server.
#[derive(Clone, Debug)]
pub struct ManagePort {
    inner: Arc<Mutex<PortTargets>>,
}

#[derive(Debug)]
struct PortTargets {
    idle: Sender<VmEvent>,
    machine: Option<Sender<VmEvent>>,
    /// A machine is being built or taken down: the idle loop cannot answer
    /// now, and what it would answer later would be stale.
    busy: bool,
}

impl ManagePort {
    /// A port whose requests go to `idle` while no machine runs.
    pub fn new(idle: Sender<VmEvent>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(PortTargets {
                idle,
                machine: None,
                busy: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PortTargets> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends requests to a running machine's run loop from now on.
    pub fn attach(&self, machine: Sender<VmEvent>) {
        self.lock().machine = Some(machine);
    }

    /// Stops sending requests to the machine (it is ending).
    pub fn detach(&self) {
        self.lock().machine = None;
    }

    /// While `busy` (the idle loop is building, running or taking down a
    /// machine), requests no machine takes are answered at once with
    /// [`ManageError::Ending`] instead of waiting in the idle loop's queue.
    pub fn set_busy(&self, busy: bool) {
        self.lock().busy = busy;
    }

    /// Delivers `request`; answers it with [`ManageError::Ending`] when
    /// nobody can take it now.
    pub fn send(&self, request: Request) {
        let targets = self.lock();
        let to = match (&targets.machine, targets.busy) {
            (Some(machine), _) => machine,
            (None, false) => &targets.idle,
            (None, true) => {
                request.reply.answer(Err(ManageError::Ending));
                return;
            }
        };
        if let Err(mpsc::SendError(VmEvent::Manage(r))) = to.send(VmEvent::Manage(request)) {
            r.reply.answer(Err(ManageError::Ending));
        }
    }

    /// Sends `command` and waits for the answer, at most `timeout`.
    pub fn call(
        &self,
        command: Command,
        timeout: std::time::Duration,
    ) -> Result<Answer, ManageError> {
        let (reply, rx) = Responder::pair();
        self.send(Request { command, reply });
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err(ManageError::Ending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_port_sends_to_the_machine_while_attached_then_to_idle() {
        let (idle_tx, idle_rx) = mpsc::channel();
        let (vm_tx, vm_rx) = mpsc::channel();
        let port = ManagePort::new(idle_tx);
        port.attach(vm_tx);
        port.send(Request {
            command: Command::Pause,
            reply: Responder::pair().0,
        });
        port.detach();
        port.send(Request {
            command: Command::Info,
            reply: Responder::pair().0,
        });
        assert!(matches!(
            vm_rx.try_recv(),
            Ok(VmEvent::Manage(Request {
                command: Command::Pause,
                ..
            }))
        ));
        assert!(matches!(
            idle_rx.try_recv(),
            Ok(VmEvent::Manage(Request {
                command: Command::Info,
                ..
            }))
        ));
    }

    #[test]
    fn test_busy_port_answers_at_once_unless_a_machine_is_attached() {
        let (idle_tx, idle_rx) = mpsc::channel();
        let port = ManagePort::new(idle_tx);
        port.set_busy(true);
        let result = port.call(Command::Info, std::time::Duration::from_secs(5));
        assert!(matches!(result, Err(ManageError::Ending)));
        assert!(idle_rx.try_recv().is_err(), "a stale request was queued");
        let (vm_tx, vm_rx) = mpsc::channel();
        port.attach(vm_tx);
        port.send(Request {
            command: Command::Info,
            reply: Responder::pair().0,
        });
        assert!(vm_rx.try_recv().is_ok());
    }

    #[test]
    fn test_port_answers_ending_when_nobody_listens() {
        let (idle_tx, idle_rx) = mpsc::channel();
        drop(idle_rx);
        let port = ManagePort::new(idle_tx);
        let result = port.call(Command::Info, std::time::Duration::from_secs(1));
        assert!(matches!(result, Err(ManageError::Ending)));
    }
}
