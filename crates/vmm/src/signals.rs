//! SIGTERM and SIGINT as requests to shut the guest down cleanly.
//!
//! [`ShutdownSignals::install`] blocks both signals in the calling thread,
//! so every thread started afterwards has them blocked too, and starts one
//! thread that takes them with `sigwait(3)`. Each arrival becomes a
//! [`VmEvent::ShutdownSignal`] in the running machine's event channel (the
//! run loop presses the ACPI power button); one that arrives while no
//! machine runs (between a reboot and the next boot) is kept for the next.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::vm::VmEvent;

/// The signals that ask for a clean shutdown.
const SHUTDOWN_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

#[derive(Debug, Default)]
struct Slot {
    sink: Option<Sender<VmEvent>>,
    pending: Vec<libc::c_int>,
    arrived: usize,
}

/// The receiving end of SIGTERM and SIGINT, shared with the signal thread.
#[derive(Debug, Clone)]
pub struct ShutdownSignals {
    slot: Arc<Mutex<Slot>>,
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in SHUTDOWN_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
    }
    set
}

impl ShutdownSignals {
    /// Blocks SIGTERM and SIGINT in this thread (call it before starting
    /// any other thread, so all of them inherit the mask) and starts the
    /// thread that receives them.
    pub fn install() -> std::io::Result<Self> {
        let set = signal_set();
        // SAFETY: `set` is initialised; the old mask is not wanted.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let signals = Self {
            slot: Arc::new(Mutex::new(Slot::default())),
        };
        let slot = signals.slot.clone();
        std::thread::Builder::new()
            .name("iovm-signals".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::Signals);
                loop {
                    let mut sig: libc::c_int = 0;
                    // SAFETY: `set` and `sig` are valid for the call.
                    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                        continue;
                    }
                    tracing::info!("signal {sig}: asking the guest to shut down");
                    Self::deliver(&slot, sig);
                }
            })?;
        Ok(signals)
    }

    /// A receiver with no signal thread (tests feed it with
    /// [`ShutdownSignals::raise`]).
    pub fn detached() -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot::default())),
        }
    }

    fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(slot: &Mutex<Slot>, sig: libc::c_int) {
        let mut s = Self::lock(slot);
        s.arrived += 1;
        let sent = s
            .sink
            .as_ref()
            .is_some_and(|tx| tx.send(VmEvent::ShutdownSignal(sig)).is_ok());
        if !sent {
            s.pending.push(sig);
        }
    }

    /// Delivers `sig` as if it had arrived.
    pub fn raise(&self, sig: libc::c_int) {
        Self::deliver(&self.slot, sig);
    }

    /// Sends signals to `sink` from now on, first those that came while no
    /// machine listened.
    pub fn attach(&self, sink: Sender<VmEvent>) {
        let mut s = Self::lock(&self.slot);
        for sig in std::mem::take(&mut s.pending) {
            let _ = sink.send(VmEvent::ShutdownSignal(sig));
        }
        s.sink = Some(sink);
    }

    /// How many signals have arrived since [`ShutdownSignals::install`].
    pub fn arrived(&self) -> usize {
        Self::lock(&self.slot).arrived
    }

    /// Stops sending to the machine that is going away.
    pub fn detach(&self) {
        Self::lock(&self.slot).sink = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn test_signal_reaches_the_attached_machine() {
        let signals = ShutdownSignals::detached();
        let (tx, rx) = mpsc::channel();
        signals.attach(tx);
        signals.raise(libc::SIGTERM);
        assert!(matches!(
            rx.try_recv(),
            Ok(VmEvent::ShutdownSignal(libc::SIGTERM))
        ));
    }

    #[test]
    fn test_signal_between_machines_waits_for_the_next() {
        let signals = ShutdownSignals::detached();
        let (tx, rx) = mpsc::channel();
        signals.attach(tx);
        signals.detach();
        signals.raise(libc::SIGINT);
        assert!(rx.try_recv().is_err(), "the old machine gets nothing");
        let (tx2, rx2) = mpsc::channel();
        signals.attach(tx2);
        assert!(matches!(
            rx2.try_recv(),
            Ok(VmEvent::ShutdownSignal(libc::SIGINT))
        ));
    }

    #[test]
    fn test_arrivals_are_counted() {
        let signals = ShutdownSignals::detached();
        signals.raise(libc::SIGTERM);
        signals.raise(libc::SIGINT);
        assert_eq!(signals.arrived(), 2);
    }

    #[test]
    fn test_signal_to_a_machine_that_ended_is_kept() {
        let signals = ShutdownSignals::detached();
        let (tx, rx) = mpsc::channel();
        signals.attach(tx);
        drop(rx);
        signals.raise(libc::SIGTERM);
        let (tx2, rx2) = mpsc::channel();
        signals.attach(tx2);
        assert!(rx2.try_recv().is_ok());
    }
}
