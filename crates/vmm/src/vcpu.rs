//! One vCPU thread: enter the guest, handle the exit, repeat.
//!
//! Port I/O exits go to the port bus, MMIO exits to the MMIO bus, and the
//! EOI of a level-triggered vector to the user-space IOAPIC. Accesses no
//! device claims read as all-ones and drop writes, as on a PC's ISA/PCI bus.
//! Shutdown (triple fault) and KVM's system events become lifecycle events;
//! an entry failure or internal error ends the machine as crashed.

use counters::{ExitCounters, ExitReason};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use devices::GuestRequest;
use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::bus::Bus;
use crate::irqchip::Irqchip;
use crate::vm::VmEvent;

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process, so the signal
/// interrupts `KVM_RUN` with `EINTR` instead of killing the process.
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
                .map_err(|e| e.errno())
        })
        .map_err(vmm_sys_util::errno::Error::new)
}

/// What a vCPU thread needs.
pub struct VcpuRunner {
    /// Index (and APIC ID).
    pub index: u32,
    /// The KVM vCPU.
    pub fd: VcpuFd,
    /// Port I/O space.
    pub pio: Arc<Bus>,
    /// MMIO space.
    pub mmio: Arc<Bus>,
    /// The user-space IOAPIC, told of level-triggered EOIs.
    pub irqchip: Irqchip,
    /// Where to report lifecycle events.
    pub events: Sender<VmEvent>,
    /// Set when the machine is going away.
    pub stop: Arc<AtomicBool>,
    /// Reports the moment vCPU 0 first enters the guest.
    pub first_entry: Option<Sender<Instant>>,
    /// The machine's exit counters.
    pub exits: Arc<ExitCounters>,
}

impl std::fmt::Debug for VcpuRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuRunner")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl VcpuRunner {
    fn report(&self, event: VmEvent) {
        let _ = self.events.send(event);
    }

    /// Runs until the machine stops or the guest ends it.
    pub fn run(mut self) {
        if let Some(tx) = self.first_entry.take() {
            let _ = tx.send(Instant::now());
        }
        while !self.stop.load(Ordering::Acquire) {
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.exits.count(ExitReason::IoIn);
                    if !self.pio.read(u64::from(port), data) {
                        data.fill(0xff);
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.exits.count(ExitReason::IoOut);
                    if !self.pio.write(u64::from(port), data) {
                        tracing::trace!("unclaimed port write {port:#x} {data:x?}");
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    self.exits.count(ExitReason::MmioRead);
                    if !self.mmio.read(addr, data) {
                        data.fill(0xff);
                    }
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    self.exits.count(ExitReason::MmioWrite);
                    self.mmio.write(addr, data);
                }
                Ok(VcpuExit::IoapicEoi(vector)) => {
                    self.exits.count(ExitReason::IoapicEoi);
                    self.irqchip.end_of_interrupt(vector);
                }
                Ok(VcpuExit::Hlt) => self.exits.count(ExitReason::Hlt),
                Ok(VcpuExit::Shutdown) => {
                    tracing::info!(
                        "vCPU {} triple-faulted: treating it as a platform reset",
                        self.index
                    );
                    self.report(VmEvent::Guest(GuestRequest::Reset));
                    return;
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    let request = match kind {
                        KVM_SYSTEM_EVENT_SHUTDOWN => GuestRequest::PowerOff,
                        KVM_SYSTEM_EVENT_RESET => GuestRequest::Reset,
                        KVM_SYSTEM_EVENT_CRASH => GuestRequest::Panic,
                        _ => continue,
                    };
                    self.report(VmEvent::Guest(request));
                    return;
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    self.report(VmEvent::VcpuFailed {
                        index: self.index,
                        reason: format!("KVM could not enter the guest (hardware reason {reason:#x}, host CPU {cpu})"),
                    });
                    return;
                }
                Ok(VcpuExit::InternalError) => {
                    self.report(VmEvent::VcpuFailed {
                        index: self.index,
                        reason: "KVM internal error (an instruction KVM could not emulate)".into(),
                    });
                    return;
                }
                Ok(other) => {
                    self.exits.count(ExitReason::Other);
                    tracing::debug!("vCPU {}: unhandled exit {other:?}", self.index);
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.exits.count(ExitReason::Interrupted);
                }
                Err(e) => {
                    self.report(VmEvent::VcpuFailed {
                        index: self.index,
                        reason: format!("KVM_RUN failed: {e}"),
                    });
                    return;
                }
            }
        }
    }
}
