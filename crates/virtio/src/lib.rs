//! Paravirtual devices (virtio 1.2, modern interface only).
//!
//! ```text
//!  guest driver ──▶ transport (pci/): common, notify, ISR, device-config and
//!                   PCI-config-access capabilities, status state machine,
//!                   feature negotiation, MSI-X / INTx
//!                     │ DRIVER_OK: activate(Activation)    ▲ Signals
//!                     ▼                                    │
//!                   device (blk/, net/, console/, rng/): its queues, its
//!                   configuration space, a worker thread woken by the
//!                   queues' notification eventfds
//! ```
//!
//! A device never sees the transport: it implements [`VirtioDevice`] and
//! signals the driver through [`Signals`]. The transport never parses a
//! queue: it only configures [`virtio_queue::Queue`]s and hands them over.
//! Neither knows about KVM; the VMM registers the notification eventfds as
//! ioeventfds and backs the interrupt vectors with irqfds.

#![deny(missing_docs)]

pub mod blk;
pub mod console;
pub mod device;
pub mod features;
pub mod net;
pub mod pci;
pub mod rng;
mod runtime;
#[cfg(test)]
mod testutil;

pub use device::{ActivateError, Activation, Memory, QueueSetup, Signals, VirtioDevice};
pub use runtime::{collect_chain, inject_worker_panic, ChainError, Segment};
