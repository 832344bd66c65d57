//! Emulated real devices.
//!
//! Every device here is a plain state machine reached through [`BusDevice`]: the
//! bus gives it an offset inside its own register window, never an absolute
//! address, and it answers through the narrow ports it was built with (an
//! [`irq::IrqLine`], a [`LifecycleSink`], an output stream). None of them knows
//! about KVM, so each is unit-tested by driving its registers as a guest would.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod ahci;
pub mod bus;
pub mod e1000e;
pub mod legacy;
pub mod lifecycle;
pub mod nvme;
pub mod pci_serial;

pub use bus::BusDevice;
pub use lifecycle::{GuestRequest, LifecycleSink};
