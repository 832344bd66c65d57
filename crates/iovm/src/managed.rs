//! `iovm run --api-socket`: the VMM a management client drives.
//!
//! ```text
//!  start ─▶ API server on the socket ─▶ (--kernel: boot at once)
//!  idle loop: vm.create ─▶ Created ─ vm.boot ─▶ machine runs (requests go
//!  to its run loop) ─▶ ends ─▶ Shutdown (vm.info shows how) ─▶ vm.boot again,
//!  vm.delete, vmm.shutdown (exit 0), SIGTERM with no machine running (exit 0)
//! ```
//!
//! A machine given on the command line (`--kernel`) belongs to the command
//! line: when it ends, iovm ends with its exit status, as without the API.
//! A machine created through the API belongs to the client: iovm outlives
//! it until `vmm.shutdown`, unless SIGTERM or SIGINT ended it (they press
//! the power button): then iovm ends with it, as without the API.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use api::{ApiServer, CreateDefaults, Handler, Limits, ParsedDevice};
use vmm::config::{LifecycleConfig, OnReboot, VmConfig};
use vmm::console::report_line;
use vmm::manage::{
    device_nodes, Answer, Command, MachineInfo, MachineState, ManageError, ManagePort, Request,
    Responder,
};
use vmm::signals::ShutdownSignals;
use vmm::vm::{self, ApiStop, Outcome, VmEvent};

use crate::cli::{parse_device_spec, DeviceSpec, RebootAction, RunArgs};

fn parse_device(text: &str) -> Result<ParsedDevice, String> {
    parse_device_spec(text).map(|d| match d {
        DeviceSpec::Pci(d) => ParsedDevice::Pci(d),
        DeviceSpec::Iommu(i) => ParsedDevice::Iommu(i),
    })
}

/// What the idle loop knows of the machine.
struct Vmm {
    config: Option<VmConfig>,
    state: MachineState,
    outcome: Option<Outcome>,
    boots: u32,
}

impl Vmm {
    fn info(&self) -> Result<Answer, ManageError> {
        let config = self.config.clone().ok_or(ManageError::NotCreated)?;
        let devices = device_nodes(&config.devices, |_| None);
        Ok(Answer::Info(Box::new(MachineInfo {
            config,
            state: self.state,
            outcome: self.outcome.clone(),
            boots: self.boots,
            devices,
        })))
    }

    fn not_running(&self, action: &'static str) -> ManageError {
        match self.config {
            None => ManageError::NotCreated,
            Some(_) => ManageError::WrongState {
                action,
                needs: "Running",
                state: self.state,
            },
        }
    }
}

/// Runs the VMM until it ends; its exit status.
pub fn run(
    args: &RunArgs,
    socket: &std::path::Path,
    start: Instant,
    signals: &ShutdownSignals,
) -> anyhow::Result<i32> {
    let initial = match args.kernel {
        Some(_) => {
            let cfg = args.vm_config().map_err(anyhow::Error::msg)?;
            vm::validate(&cfg, vm::host_memory())?;
            Some(cfg)
        }
        None => None,
    };
    let (idle_tx, idle_rx) = mpsc::channel();
    let port = ManagePort::new(idle_tx.clone());
    let defaults = CreateDefaults {
        lifecycle: LifecycleConfig {
            on_reboot: match args.on_reboot {
                RebootAction::Exit => OnReboot::Exit,
                RebootAction::Restart => OnReboot::Restart,
            },
            shutdown_timeout: args.shutdown_timeout,
        },
        host: vmm::config::HostConfig {
            kvm_device: args.kvm_device.clone(),
        },
        parse_device,
    };
    let server = ApiServer::start(
        socket,
        Handler::new(port.clone(), defaults),
        Limits::default(),
    )?;
    tracing::info!("API on {}", socket.display());
    // Everything from here on may be reached by a guest or a client.
    sandbox::enter(sandbox::ThreadKind::Main);
    let owned_by_command_line = initial.is_some();
    let mut vmm = Vmm {
        config: initial,
        state: MachineState::Created,
        outcome: None,
        boots: 0,
    };
    let status = if owned_by_command_line {
        let outcome = boot(&mut vmm, &port, None, args, start, signals)?;
        outcome.exit_code()
    } else {
        serve_idle(&mut vmm, &port, &idle_tx, &idle_rx, args, start, signals)?
    };
    server.stop(Duration::from_secs(1));
    Ok(status)
}

fn serve_idle(
    vmm: &mut Vmm,
    port: &ManagePort,
    idle_tx: &mpsc::Sender<VmEvent>,
    idle_rx: &mpsc::Receiver<VmEvent>,
    args: &RunArgs,
    start: Instant,
    signals: &ShutdownSignals,
) -> anyhow::Result<i32> {
    loop {
        signals.attach(idle_tx.clone());
        let Ok(event) = idle_rx.recv() else {
            return Ok(vm::EXIT_ERROR);
        };
        let Request { command, reply } = match event {
            VmEvent::Manage(r) => r,
            VmEvent::ShutdownSignal(sig) => {
                tracing::info!("signal {sig} with no VM running: iovm ends");
                return Ok(vm::EXIT_POWEROFF);
            }
            _ => continue,
        };
        let result = match command {
            Command::Create(_) if vmm.config.is_some() => Err(ManageError::AlreadyCreated),
            // A file that is not there is the body's fault, whatever the state.
            Command::AddDevice(new) => match vm::check_device_files(&new.device) {
                Err(why) => Err(ManageError::Invalid(why)),
                Ok(()) => Err(vmm.not_running("vm.add-device")),
            },
            Command::Create(cfg) => match vm::check_create(&cfg) {
                Err(why) => Err(ManageError::Invalid(why)),
                Ok(()) => {
                    vmm.config = Some(*cfg);
                    vmm.state = MachineState::Created;
                    vmm.outcome = None;
                    Ok(Answer::Done)
                }
            },
            Command::Info => vmm.info(),
            Command::Delete if vmm.config.is_none() => Err(ManageError::NotCreated),
            Command::Delete => {
                vmm.config = None;
                vmm.outcome = None;
                Ok(Answer::Done)
            }
            Command::VmmShutdown => {
                reply.answer(Ok(Answer::Done));
                return Ok(vm::EXIT_POWEROFF);
            }
            Command::Boot if vmm.config.is_none() => Err(ManageError::NotCreated),
            Command::Boot => {
                let signalled = signals.arrived();
                let outcome = match boot(vmm, port, Some(reply), args, start, signals) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        // A machine built again after a reboot could not
                        // be: the VMM stays, and vm.info says why.
                        report_line(&format!("\r\niovm: error: {e:#}"));
                        vmm.state = MachineState::Shutdown;
                        vmm.outcome = Some(Outcome::Crash(format!("{e:#}")));
                        continue;
                    }
                };
                if signals.arrived() > signalled {
                    // SIGTERM/SIGINT pressed the power button: the VMM ends
                    // with the machine, as it does without the API.
                    return Ok(outcome.exit_code());
                }
                match outcome {
                    Outcome::Stopped(ApiStop::VmmShutdown) => return Ok(vm::EXIT_POWEROFF),
                    Outcome::Stopped(ApiStop::Delete) => {
                        vmm.config = None;
                        vmm.outcome = None;
                    }
                    _ => {}
                }
                continue;
            }
            other => Err(vmm.not_running(other.name())),
        };
        reply.answer(result);
    }
}

/// Boots the machine in `vmm.config` and runs it to its end (through
/// reboots the configuration asks to survive), answering `reply` once it
/// runs or could not be built.
fn boot(
    vmm: &mut Vmm,
    port: &ManagePort,
    reply: Option<Responder>,
    args: &RunArgs,
    start: Instant,
    signals: &ShutdownSignals,
) -> anyhow::Result<Outcome> {
    let Some(cfg) = vmm.config.clone() else {
        return Err(anyhow::anyhow!("no machine to boot"));
    };
    port.set_busy(true);
    let result = boot_and_run(vmm, &cfg, port, reply, args, start, signals);
    port.set_busy(false);
    result
}

fn boot_and_run(
    vmm: &mut Vmm,
    cfg: &VmConfig,
    port: &ManagePort,
    reply: Option<Responder>,
    args: &RunArgs,
    start: Instant,
    signals: &ShutdownSignals,
) -> anyhow::Result<Outcome> {
    let mut reply = reply;
    let (console, _raw) = match crate::open_console(cfg, args, start) {
        Ok(c) => c,
        Err(e) => {
            match reply.take() {
                Some(r) => r.answer(Err(ManageError::Boot(format!("{e:#}")))),
                None => return Err(e),
            }
            return Ok(vmm.outcome.clone().unwrap_or(Outcome::PowerOff));
        }
    };
    vmm.state = MachineState::Running;
    let timing = args.timing;
    // Devices added and removed through the API reach the running machine
    // as control requests its run loop serves (vmm::manage::seam).
    let control = vmm::control::ControlHandle::new();
    let result = vmm::lifecycle::run_managed(cfg, &console, signals, Some(port), &control, |t| {
        if let Some(r) = reply.take() {
            r.answer(Ok(Answer::Done));
        }
        if timing {
            report_line(&format!(
                "iovm: timing: first guest instruction {:.1} ms after start",
                (t - start).as_secs_f64() * 1e3
            ));
        }
    });
    vmm.boots += 1;
    match result {
        Ok(outcome) => {
            if let Some(r) = reply.take() {
                r.answer(Ok(Answer::Done));
            }
            if let Some(text) = crate::describe(&outcome) {
                report_line(&format!("\r\niovm: {text}"));
            }
            vmm.state = MachineState::Shutdown;
            vmm.outcome = Some(outcome.clone());
            Ok(outcome)
        }
        Err(e) => match reply.take() {
            Some(r) => {
                tracing::warn!("vm.boot failed: {e}");
                r.answer(Err(ManageError::Boot(e.to_string())));
                vmm.state = MachineState::Created;
                Ok(Outcome::Crash(e.to_string()))
            }
            None => Err(e.into()),
        },
    }
}
