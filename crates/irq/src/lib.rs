//! Interrupt model: the narrow traits through which a device raises an interrupt.
//!
//! A device model never knows how its interrupt reaches the guest. It holds an
//! [`IrqLine`] (a legacy ISA/INTx pin) and asserts or pulses it; the VMM decides
//! whether that becomes an irqfd into KVM's in-kernel IOAPIC, a write into a
//! user-space IOAPIC model, or a recording in a unit test.
//!
//! Legacy ISA devices (the 16550 UART) signal edge-triggered interrupts
//! (ISA IRQs are active-high, edge-triggered; ACPI 6.5 §5.2.12.5 describes the
//! overrides that map them to IOAPIC pins). PCI INTx pins are level-triggered
//! (PCI Local Bus 3.0 §2.2.6) and use [`IrqLine::set_level`].
//!
//! Message-signalled interrupts (PCI MSI/MSI-X, and the IOAPIC's own output)
//! leave a model through an [`msi::MsiSink`]. The [`ioapic`] module models the
//! IOAPIC the guest programs itself, for KVM's split irqchip.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod counted;
pub mod ioapic;
pub mod msi;
pub mod recording;
pub mod wired_or;

use std::fmt::Debug;

/// Why an interrupt could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum IrqError {
    /// The host side of the interrupt (an eventfd or an ioctl) failed.
    #[error("interrupt delivery failed on the host")]
    Host(#[source] std::io::Error),
    /// The line is wired to an IOAPIC pin that does not exist.
    #[error("interrupt line is wired to a missing IOAPIC pin")]
    Ioapic(#[source] ioapic::IoapicError),
}

/// One interrupt pin of a device, as the device sees it.
pub trait IrqLine: Send + Sync + Debug {
    /// Raises an edge: the line goes high and low again (ISA edge semantics).
    fn pulse(&self) -> Result<(), IrqError>;

    /// Drives a level-triggered line high (`true`) or low (`false`).
    fn set_level(&self, asserted: bool) -> Result<(), IrqError>;
}
