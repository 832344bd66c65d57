//! Message-signalled interrupts as data: the memory write a function sends
//! (PCI Local Bus 3.0 §6.8: an MSI or MSI-X interrupt is a DWORD write of
//! `data` to `address`), and what happened when a device asked for one.
//!
//! [`MsiMessage`] is the interrupt crate's (`irq::msi`), so a [`Delivery`]
//! goes straight to an `irq::msi::MsiSink`.

pub use irq::msi::MsiMessage;

/// A message to send now, for one vector of the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Vector number within the function (MSI: 0–31; MSI-X: table index).
    pub vector: u16,
    /// The message for that vector.
    pub message: MsiMessage,
}

/// What became of a device's request to signal a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Send this message now.
    Deliver(MsiMessage),
    /// The vector is masked: its pending bit is set, and the message is
    /// delivered when the guest unmasks it.
    Pending,
    /// Neither MSI nor MSI-X is enabled; the device may use INTx instead.
    Disabled,
    /// The vector is beyond those the guest enabled (a device-model bug);
    /// nothing is recorded.
    NoSuchVector,
}
