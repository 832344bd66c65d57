//! The run loop's side of management requests: what a running machine
//! does with each [`Command`].
//!
//! Requests that end the machine (`vm.shutdown`, `vm.reboot`,
//! `vm.delete`, `vmm.shutdown`) are answered only after the machine is
//! taken down, so a client that asks next finds it gone.

use std::thread::JoinHandle;
use std::time::Duration;

use devices::legacy::GedEvent;
use vmm_sys_util::signal::Killable;

use super::{Answer, Command, MachineInfo, MachineState, ManageError, Request, Responder};
use crate::vcpu;
use crate::vm::{ApiStop, Outcome, Vm};

/// How long `vm.pause` waits for every vCPU to leave the guest.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the run loop does after a request.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Go on serving.
    Continue,
    /// End the machine with this outcome; answer `reply` once it is down.
    End(Outcome, Responder),
}

impl Vm {
    /// Serves one management request.
    pub(crate) fn manage(&self, request: Request, threads: &[JoinHandle<()>]) -> Flow {
        let Request { command, reply } = request;
        let paused = self.pause.is_paused();
        let state = if paused {
            MachineState::Paused
        } else {
            MachineState::Running
        };
        let result = match command {
            Command::Info => Ok(Answer::Info(Box::new(self.info(state)))),
            Command::Create(_) => Err(ManageError::AlreadyCreated),
            Command::Boot => Err(ManageError::WrongState {
                action: "vm.boot",
                needs: "Created or Shutdown",
                state,
            }),
            Command::Pause if paused => Err(ManageError::WrongState {
                action: "vm.pause",
                needs: "Running",
                state,
            }),
            Command::Pause => self.pause_vcpus(threads).map(|()| Answer::Done),
            Command::Resume if !paused => Err(ManageError::WrongState {
                action: "vm.resume",
                needs: "Paused",
                state,
            }),
            Command::Resume => {
                self.pause.resume();
                Ok(Answer::Done)
            }
            Command::PowerButton if paused => Err(ManageError::WrongState {
                action: "vm.power-button",
                needs: "Running",
                state,
            }),
            Command::PowerButton => {
                tracing::info!("API: pressing the guest's power button");
                self.power_button
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .raise(GedEvent::PowerButton);
                Ok(Answer::Done)
            }
            Command::Shutdown => return Flow::End(Outcome::Stopped(ApiStop::Shutdown), reply),
            Command::Reboot => return Flow::End(Outcome::Stopped(ApiStop::Reboot), reply),
            Command::Delete => return Flow::End(Outcome::Stopped(ApiStop::Delete), reply),
            Command::VmmShutdown => {
                return Flow::End(Outcome::Stopped(ApiStop::VmmShutdown), reply)
            }
            Command::AddDevice(new) => {
                self.add_device(new, reply);
                return Flow::Continue;
            }
            Command::RemoveDevice(id) => {
                self.remove_device(&id, reply);
                return Flow::Continue;
            }
            Command::Counters => {
                self.report_counters(reply);
                return Flow::Continue;
            }
        };
        reply.answer(result);
        Flow::Continue
    }

    fn info(&self, state: MachineState) -> MachineInfo {
        let mut config = self.config.clone();
        config.devices = self.device_list().clone();
        let mut ecam = self.pci.ecam();
        let mut devices = super::device_nodes(&config.devices, |bdf| {
            let offset = (u64::from(bdf.bus) << 20)
                | (u64::from(bdf.device) << 15)
                | (u64::from(bdf.function) << 12)
                | pci::type1::reg::SECONDARY_BUS as u64;
            let mut byte = [0u8; 1];
            devices::BusDevice::read(&mut ecam, offset, &mut byte);
            Some(byte[0])
        });
        // A device hot-added behind a root port without an id has no
        // `bus=` in its config: its address is where the port put it.
        let live = self.controls.devices(&self.pci);
        for node in devices.iter_mut().filter(|n| n.parent.is_none()) {
            let found = live
                .iter()
                .find(|l| l.id.as_deref() == Some(node.id.as_str()));
            if let Some(l) = found.filter(|l| l.bdf.bus != 0) {
                node.bdf = Some(l.bdf);
            }
        }
        MachineInfo {
            config,
            state,
            outcome: None,
            boots: self.boots,
            devices,
        }
    }

    /// Parks every vCPU still running; on a timeout lets them go again.
    fn pause_vcpus(&self, threads: &[JoinHandle<()>]) -> Result<(), ManageError> {
        let live: Vec<&JoinHandle<()>> = threads.iter().filter(|t| !t.is_finished()).collect();
        self.pause.pause();
        let parked = self
            .pause
            .wait_parked(live.len() as u32, PAUSE_TIMEOUT, || {
                for t in &live {
                    let _ = t.kill(vcpu::kick_signal());
                }
            });
        if parked {
            tracing::info!("API: {} vCPUs paused", live.len());
            Ok(())
        } else {
            self.pause.resume();
            Err(ManageError::PauseTimeout(PAUSE_TIMEOUT.as_millis()))
        }
    }
}
