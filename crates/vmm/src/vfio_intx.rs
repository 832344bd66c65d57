//! An assigned function's INTx on KVM's split irqchip (issue 19): VFIO
//! signals a trigger eventfd when the device raises its line (and masks
//! it at the device); a thread of iovm raises the function's INTA wire
//! into the user-space IOAPIC. KVM's own resample eventfd never fires
//! with the IOAPIC in user space, so the relay listens for the pin's EOI
//! itself (`KVM_EXIT_IOAPIC_EOI` → [`Irqchip`]): it lowers the wire and
//! signals VFIO's unmask eventfd, and VFIO unmasks the device's line (a
//! line still raised fires again).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use irq::IrqLine;
use vfio::IntxRelay;
use vmm_sys_util::eventfd::EventFd;

use crate::irqchip::{EoiListener, Irqchip};

/// The relay of one assigned function's INTx.
#[derive(Debug)]
pub struct KvmIntxRelay {
    trigger: EventFd,
    unmask: EventFd,
    stop: EventFd,
    line: Arc<dyn IrqLine>,
    raised: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Waits until `a` or `b` is readable; `false` if polling failed.
fn wait_either(a: &EventFd, b: &EventFd) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n >= 0 {
            return true;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

impl KvmIntxRelay {
    /// A relay driving `line`, told of the EOIs of pin `gsi` by `irqchip`.
    pub fn new(line: Arc<dyn IrqLine>, gsi: u32, irqchip: &Irqchip) -> std::io::Result<Arc<Self>> {
        let relay = Arc::new(Self {
            trigger: EventFd::new(libc::EFD_NONBLOCK)?,
            unmask: EventFd::new(libc::EFD_NONBLOCK)?,
            stop: EventFd::new(libc::EFD_NONBLOCK)?,
            line,
            raised: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        });
        let (trigger, stop) = (relay.trigger.try_clone()?, relay.stop.try_clone()?);
        let (line, raised) = (relay.line.clone(), relay.raised.clone());
        let thread = std::thread::Builder::new()
            .name("iovm-vfio-intx".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::VfioIntx);
                loop {
                    if !wait_either(&trigger, &stop) || stop.read().is_ok() {
                        return;
                    }
                    if trigger.read().is_ok() {
                        raised.store(true, Ordering::SeqCst);
                        if let Err(e) = line.set_level(true) {
                            tracing::warn!("assigned device INTx not raised: {e}");
                        }
                    }
                }
            })?;
        *relay.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        let listener: Arc<dyn EoiListener> = relay.clone();
        irqchip.add_eoi_listener(gsi, &listener);
        Ok(relay)
    }
}

impl IntxRelay for KvmIntxRelay {
    fn eventfds(&self) -> std::io::Result<[EventFd; 2]> {
        Ok([self.trigger.try_clone()?, self.unmask.try_clone()?])
    }
}

impl EoiListener for KvmIntxRelay {
    fn end_of_interrupt(&self) {
        if !self.raised.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.line.set_level(false) {
            tracing::warn!("assigned device INTx not lowered: {e}");
        }
        if let Err(e) = self.unmask.write(1) {
            tracing::warn!("assigned device INTx not unmasked: {e}");
        }
    }
}

impl Drop for KvmIntxRelay {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}
