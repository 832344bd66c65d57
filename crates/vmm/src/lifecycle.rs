//! A built machine's life: its vCPUs run, the run loop serves events until
//! one ends the machine, and the machine is taken down in order. A guest
//! reboot with `--on-reboot restart` then builds a fresh machine.
//!
//! ```text
//!  start vCPUs ─▶ serve events ──────────────────────────▶ Outcome
//!                  guest power-off / reset / panic ─ end
//!                  SIGTERM, SIGINT ─ resume if paused, press the power
//!                                    button, arm the timeout
//!                  API request ─ answer (crate::manage); some end it
//!                  second signal, timeout ─ end (forced off)
//!                  control request ─ add a device / press an attention
//!                    button (crate::control), never waiting for the guest
//!                  Slot Control power off ─ detach the device removed
//!                                      │
//!  teardown: vCPUs stopped and joined ─▶ control handle detached (waiting
//!  requests fail) ─▶ console input detached ─▶ every
//!  BAR unmapped, its ioeventfds unregistered ─▶ every PCI function dropped
//!  (workers joined, backend I/O drained, files and TAPs closed) ─▶ platform
//!  buses ─▶ IOAPIC, MSI routes and irqfds ─▶ VM fd ─▶ guest RAM
//! ```
//!
//! The order is the order of dependence: nothing may run guest code or
//! touch a register while devices go; no device may still write guest RAM
//! (an in-flight read completing into it) when RAM is unmapped; and the old
//! machine's backends must be closed before the next machine opens the same
//! files and TAP interfaces.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::legacy::GedEvent;
use devices::GuestRequest;
use vmm_sys_util::signal::Killable;

use crate::config::{OnReboot, VmConfig};
use crate::console::Console;
use crate::control::ControlHandle;
use crate::manage::running::Flow;
use crate::manage::{ManageError, ManagePort, Responder};
use crate::signals::ShutdownSignals;
use crate::vcpu;
use crate::vm::{ApiStop, Outcome, Persistent, Vm, VmError, VmEvent};

/// How long a panicking guest may go on printing after it reported the panic.
const PANIC_GRACE: Duration = Duration::from_millis(300);
/// How long to wait for vCPU threads to leave `KVM_RUN`.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the teardown found still shared: each count is a leak of the old
/// machine (zero when the ownership is right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// vCPU threads that did not stop in time.
    pub vcpu_threads: usize,
    /// PCI functions something else still held.
    pub functions: usize,
    /// Other holders of the KVM VM fd.
    pub vm_fd: usize,
    /// Other holders of guest RAM.
    pub memory: usize,
}

impl Vm {
    /// Runs the machine until something ends it, then takes it down.
    /// `on_start` learns when vCPU 0 first entered the guest; `signals`
    /// deliver SIGTERM and SIGINT while it runs, `manage` the API's
    /// requests, and `control` the requests that add and remove devices.
    pub fn run(
        mut self,
        console: &Console,
        signals: &ShutdownSignals,
        manage: Option<&ManagePort>,
        control: &ControlHandle,
        on_start: impl FnOnce(Instant),
    ) -> Result<Outcome, VmError> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        for runner in std::mem::take(&mut self.vcpus) {
            let name = format!("iovm-vcpu{}", runner.index);
            match std::thread::Builder::new().name(name).spawn(move || {
                sandbox::enter(sandbox::ThreadKind::Vcpu);
                runner.run()
            }) {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    self.teardown(threads, console, signals, control);
                    return Err(VmError::Thread(e));
                }
            }
        }
        signals.attach(self.event_sink.clone());
        if let Some(port) = manage {
            port.attach(self.event_sink.clone());
        }
        if let Ok(t) = self.first_entry.recv_timeout(Duration::from_secs(5)) {
            on_start(t);
        }
        control.attach(self.event_sink.clone());
        let (outcome, pending) = self.serve(&threads, console);
        tracing::info!("machine ends: {outcome:?}");
        if let Some(port) = manage {
            port.detach();
            self.refuse_queued_requests();
        }
        self.pause.resume();
        let left = self.teardown(threads, console, signals, control);
        if left != Leftovers::default() {
            tracing::warn!("the machine was not wholly freed: {left:?}");
        }
        if let Some(reply) = pending {
            reply.answer(Ok(crate::manage::Answer::Done));
        }
        Ok(outcome)
    }

    /// Answers the management requests that reached the machine after it
    /// decided to end: the client asks again, and the VMM answers.
    fn refuse_queued_requests(&self) {
        while let Ok(event) = self.events.try_recv() {
            if let VmEvent::Manage(r) = event {
                r.reply.answer(Err(ManageError::Ending));
            }
        }
    }

    /// Serves events until one ends the machine; a management request that
    /// ended it is answered once the machine is down.
    fn serve(
        &mut self,
        threads: &[JoinHandle<()>],
        console: &Console,
    ) -> (Outcome, Option<Responder>) {
        let mut pending = None;
        let outcome = self.serve_until_end(threads, console, &mut pending);
        (outcome, pending)
    }

    fn serve_until_end(
        &mut self,
        threads: &[JoinHandle<()>],
        console: &Console,
        pending: &mut Option<Responder>,
    ) -> Outcome {
        let mut deadline: Option<Instant> = None;
        loop {
            let wake = [deadline, self.controls.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            let event = match wake {
                None => self.events.recv().ok(),
                Some(d) => {
                    match self
                        .events
                        .recv_timeout(d.saturating_duration_since(Instant::now()))
                    {
                        Ok(e) => Some(e),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            if deadline.is_some_and(|d| d <= Instant::now()) {
                                return Outcome::ForcedOff(format!(
                                    "the guest did not power off within {} of the power button",
                                    describe_duration(self.shutdown_timeout)
                                ));
                            }
                            self.controls.expire(Instant::now());
                            continue;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            let Some(event) = event else {
                return Outcome::Crash("every vCPU stopped without a reason".into());
            };
            match event {
                VmEvent::Guest(GuestRequest::PowerOff) => return Outcome::PowerOff,
                VmEvent::Guest(GuestRequest::Reset) => return Outcome::Reboot,
                VmEvent::Guest(GuestRequest::Panic) => {
                    std::thread::sleep(PANIC_GRACE);
                    return Outcome::Panic;
                }
                VmEvent::UserQuit => return Outcome::UserQuit,
                VmEvent::Manage(request) => match self.manage(request, threads) {
                    Flow::Continue => {}
                    Flow::End(outcome, reply) => {
                        *pending = Some(reply);
                        return outcome;
                    }
                },
                VmEvent::Control(request) => self.serve_control(request, console),
                VmEvent::Slot(event) => self.serve_slot(event),
                VmEvent::VcpuFailed { index, reason } => {
                    return Outcome::Crash(format!("vCPU {index}: {reason}"));
                }
                VmEvent::ShutdownSignal(sig) if deadline.is_some() => {
                    return Outcome::ForcedOff(format!(
                        "signal {sig} arrived while the guest was shutting down"
                    ));
                }
                VmEvent::ShutdownSignal(sig) => {
                    // A paused guest could not answer the button.
                    self.pause.resume();
                    crate::console::report_line(&format!(
                        "\r\niovm: signal {sig}: pressing the guest's power button \
                         (it has {} to power off)",
                        describe_duration(self.shutdown_timeout)
                    ));
                    self.power_button
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .raise(GedEvent::PowerButton);
                    deadline = Some(Instant::now() + self.shutdown_timeout);
                }
            }
        }
    }

    /// Takes the machine down in the order the module documentation gives.
    fn teardown(
        self,
        threads: Vec<JoinHandle<()>>,
        console: &Console,
        signals: &ShutdownSignals,
        control: &ControlHandle,
    ) -> Leftovers {
        signals.detach();
        control.detach();
        let mut left = Leftovers {
            vcpu_threads: stop_vcpus(&self.stop, threads),
            ..Leftovers::default()
        };
        tracing::info!("vCPUs stopped");
        let Vm {
            vcpus,
            events,
            event_sink,
            stop: _,
            pause,
            first_entry,
            power_button,
            shutdown_timeout: _,
            pci,
            controls,
            iommu,
            pio,
            mmio,
            irqchip,
            vm,
            kvm,
            memory,
            config: _,
            devices: _,
            boots: _,
        } = self;
        drop(vcpus);
        console.detach();
        console.flush();
        drop(controls);
        left.functions = pci.shutdown();
        drop(pci);
        tracing::info!("PCI functions stopped");
        drop((pio, mmio, power_button, pause, iommu));
        drop((events, event_sink, first_entry));
        drop(irqchip);
        left.vm_fd = Arc::strong_count(&vm) - 1;
        drop(vm);
        drop(kvm);
        left.memory = Arc::strong_count(&memory) - 1;
        drop(memory);
        left
    }
}

fn describe_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Tells every vCPU to stop and kicks it out of `KVM_RUN` until it does;
/// returns how many did not stop in time.
fn stop_vcpus(stop: &std::sync::atomic::AtomicBool, threads: Vec<JoinHandle<()>>) -> usize {
    stop.store(true, Ordering::Release);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut stuck = 0;
    for handle in threads {
        while !handle.is_finished() && Instant::now() < deadline {
            let _ = handle.kill(vcpu::kick_signal());
            std::thread::sleep(Duration::from_millis(1));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            tracing::warn!("a vCPU thread did not stop in time");
            stuck += 1;
        }
    }
    stuck
}

/// Builds and runs machines from `cfg` until one ends for good: a reboot
/// starts a new machine when `--on-reboot restart` asks for it, after the
/// old one is wholly taken down.
pub fn run(
    cfg: &VmConfig,
    console: &Console,
    signals: &ShutdownSignals,
    on_start: impl FnMut(Instant),
) -> Result<Outcome, VmError> {
    run_managed(cfg, console, signals, None, &ControlHandle::new(), on_start)
}

/// [`run`], with the API's requests delivered to each machine by `manage`
/// (`vm.reboot` also starts the machine again) and `control`'s requests
/// (adding and removing devices) served by whichever machine runs
/// (devices added while a machine runs are not rebuilt after a reboot).
pub fn run_managed(
    cfg: &VmConfig,
    console: &Console,
    signals: &ShutdownSignals,
    manage: Option<&ManagePort>,
    control: &ControlHandle,
    mut on_start: impl FnMut(Instant),
) -> Result<Outcome, VmError> {
    let persistent = Persistent::default();
    let mut boots = 0;
    loop {
        let mut vm = Vm::build(cfg, console, &persistent)?;
        // With --user: everything privileged is open (and kept for later
        // builds, crate::reopen); the guest starts unprivileged.
        sandbox::privileges::drop_now()?;
        boots += 1;
        vm.boots = boots;
        let outcome = vm.run(console, signals, manage, control, &mut on_start)?;
        let restart = match outcome {
            Outcome::Reboot => cfg.lifecycle.on_reboot == OnReboot::Restart,
            Outcome::Stopped(ApiStop::Reboot) => true,
            _ => false,
        };
        if restart {
            tracing::info!("guest rebooted: starting it again");
            continue;
        }
        return Ok(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_durations_read_as_seconds_or_milliseconds() {
        assert_eq!(describe_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(describe_duration(Duration::from_millis(1500)), "1500 ms");
    }
}
