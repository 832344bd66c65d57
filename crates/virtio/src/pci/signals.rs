//! The state the vCPU side and the device's workers share: configuration
//! space with its MSI-X capability, the message routes, the ISR status,
//! the vectors the driver chose, the device status and the configuration
//! generation; and [`DeviceSignals`], the [`Signals`] a device gets on
//! activation (virtio 1.2 §4.1.4.5, §4.1.5.3–4).
//!
//! ```text
//!   used(q)         MSI-X enabled ─▶ vector of q ─▶ MsiRouting::signal
//!                   (NO_VECTOR: nothing; masked: pending until unmasked)
//!                   otherwise ─────▶ ISR |= QUEUE ─▶ INTx level
//!   config_changed  generation += 1, ISR |= CONFIG, then the config
//!                   vector or INTx
//!   needs_reset     status |= DEVICE_NEEDS_RESET, then config_changed
//!   ISR read        returns ISR, clears it, INTx follows (deasserts)
//! ```
//!
//! INTx is asserted while MSI-X is disabled and ISR is non-zero, unless
//! the command register's INTx Disable is set; the status register's
//! Interrupt bit mirrors the pending state (PCI 3.0 §6.2.2–3).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use irq::IrqLine;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::routing::{MsiRouting, Signal};
use pci::config::command;

use super::status::DEVICE_NEEDS_RESET;
use crate::device::Signals;

/// "No MSI-X vector" in `config_msix_vector` / `queue_msix_vector` (§4.1.5.1.2).
pub const NO_VECTOR: u16 = 0xffff;
/// ISR bit: a queue has used buffers.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration changed.
pub const ISR_CONFIG: u8 = 2;

/// Guest-caused warnings logged at warn level per minute; the rest at
/// debug level.
const WARN_BUDGET: u32 = 16;

/// The shared state proper (behind [`Shared::state`]).
#[derive(Debug)]
pub struct SharedState {
    /// Configuration space and capabilities.
    pub pci: EndpointConfig,
    /// MSI-X routes.
    pub routing: MsiRouting,
    /// ISR status.
    pub isr: u8,
    /// `device_status`, driver bits and `DEVICE_NEEDS_RESET`.
    pub status: u8,
    /// `config_generation`.
    pub config_generation: u8,
    /// `config_msix_vector`.
    pub config_vector: u16,
    /// Every queue's `queue_msix_vector`.
    pub queue_vectors: Vec<u16>,
    /// Incremented on every reset; [`DeviceSignals`] of an older epoch are
    /// inert.
    pub epoch: u64,
    intx_level: bool,
}

/// The shared state and the INTx line, one per transport.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<SharedState>,
    intx: Arc<dyn IrqLine>,
    warnings: ratelimit::LogLimit,
}

impl SharedState {
    fn msix_enabled(&self) -> bool {
        self.pci
            .caps()
            .msix_table()
            .is_some_and(|t| t.control().enabled)
    }

    fn msix_vectors(&self) -> u16 {
        self.pci.caps().msix_table().map_or(0, |t| t.vectors())
    }

    /// `vector` if the table has it, else [`NO_VECTOR`] (§4.1.5.1.2: the
    /// device reports a vector it cannot use as NO_VECTOR).
    pub fn valid_vector(&self, vector: u16) -> u16 {
        if vector < self.msix_vectors() {
            vector
        } else {
            NO_VECTOR
        }
    }

    /// Back to the reset state of the virtio registers (the PCI
    /// configuration space and MSI-X table are not virtio's to reset).
    pub fn reset_virtio(&mut self) {
        self.isr = 0;
        self.status = 0;
        self.config_vector = NO_VECTOR;
        self.queue_vectors.fill(NO_VECTOR);
    }

    fn send(&mut self, vector: u16, shared: &Shared) {
        if vector == NO_VECTOR {
            return;
        }
        match self.routing.signal(&mut self.pci, vector) {
            Signal::Sent | Signal::Pending => {}
            Signal::UseIntx => shared.warn(format_args!("vector {vector}: MSI-X is off")),
            Signal::NoBusMaster => {
                tracing::debug!("virtio-pci: vector {vector} lost: bus mastering is off");
            }
            Signal::NoSuchVector => {
                shared.warn(format_args!("vector {vector} is not in the table"))
            }
        }
    }
}

impl Shared {
    /// Shared state for a function with `queues` queues.
    pub fn new(
        pci: EndpointConfig,
        routing: MsiRouting,
        intx: Arc<dyn IrqLine>,
        queues: usize,
    ) -> Self {
        Self {
            state: Mutex::new(SharedState {
                pci,
                routing,
                isr: 0,
                status: 0,
                config_generation: 0,
                config_vector: NO_VECTOR,
                queue_vectors: vec![NO_VECTOR; queues],
                epoch: 0,
                intx_level: false,
            }),
            intx,
            warnings: ratelimit::LogLimit::new(WARN_BUDGET, ratelimit::WINDOW),
        }
    }

    /// Takes the lock. Never call into the device while holding it.
    pub fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs something the guest did wrong: at warn level for the first
    /// few a minute, then at debug level so a hostile guest cannot flood
    /// the log.
    pub fn warn(&self, msg: std::fmt::Arguments<'_>) {
        ratelimit::warn_with!(self.warnings, "virtio-pci: {msg}");
    }

    /// Brings the INTx line and the status register's Interrupt bit in
    /// line with ISR, MSI-X Enable and INTx Disable.
    pub fn update_intx(&self, st: &mut SharedState) {
        let pending = st.isr != 0 && !st.msix_enabled();
        st.pci.config_mut().set_interrupt_status(pending);
        let level = pending && st.pci.config().command() & command::INTX_DISABLE == 0;
        if level != st.intx_level {
            st.intx_level = level;
            if let Err(e) = self.intx.set_level(level) {
                tracing::warn!("virtio-pci: INTx not delivered: {e}");
            }
        }
    }

    /// A driver read of the ISR status: returns it and clears it.
    pub fn read_isr(&self) -> u8 {
        let mut st = self.lock();
        let isr = std::mem::take(&mut st.isr);
        self.update_intx(&mut st);
        isr
    }

    /// Queue `queue` has used buffers.
    fn used(&self, st: &mut SharedState, queue: u16) {
        let Some(&vector) = st.queue_vectors.get(usize::from(queue)) else {
            self.warn(format_args!(
                "device signalled queue {queue}, which does not exist"
            ));
            return;
        };
        if st.msix_enabled() {
            st.send(vector, self);
        } else {
            st.isr |= ISR_QUEUE;
            self.update_intx(st);
        }
    }

    /// The configuration changed.
    fn config_changed(&self, st: &mut SharedState) {
        st.config_generation = st.config_generation.wrapping_add(1);
        st.isr |= ISR_CONFIG;
        if st.msix_enabled() {
            let vector = st.config_vector;
            st.send(vector, self);
        } else {
            self.update_intx(st);
        }
    }

    /// Sets `DEVICE_NEEDS_RESET` and signals a configuration change.
    pub fn needs_reset(&self, st: &mut SharedState) {
        st.status |= DEVICE_NEEDS_RESET;
        self.config_changed(st);
    }
}

/// The [`Signals`] one activation of the device holds. Once the transport
/// resets, it is inert: a worker that outlives its activation cannot
/// interrupt the next driver.
#[derive(Debug)]
pub struct DeviceSignals {
    shared: Arc<Shared>,
    epoch: u64,
}

impl DeviceSignals {
    /// Signals for the activation of `epoch`.
    pub fn new(shared: Arc<Shared>, epoch: u64) -> Self {
        Self { shared, epoch }
    }

    fn with_current(&self, f: impl FnOnce(&Shared, &mut SharedState)) {
        let mut st = self.shared.lock();
        if st.epoch == self.epoch {
            f(&self.shared, &mut st);
        } else {
            tracing::debug!("virtio-pci: signal from a reset activation dropped");
        }
    }
}

impl Signals for DeviceSignals {
    fn used(&self, queue: u16) {
        self.with_current(|sh, st| sh.used(st, queue));
    }

    fn config_changed(&self) {
        self.with_current(|sh, st| sh.config_changed(st));
    }

    fn needs_reset(&self) {
        self.with_current(|sh, st| sh.needs_reset(st));
    }
}
