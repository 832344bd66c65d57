//! Tests of the transport, by subject; `driver` is the fake guest driver.

mod caps;
mod driver;
mod features;
mod hostile;
mod interrupts;
mod pci_cfg;
mod platform;
mod queues;
mod reset;
