//! Capability tests, by subject; `driver` drives a function as a guest
//! driver would, `hostile` sweeps random writes.

mod driver;
mod hostile;
mod list;
mod msi;
mod msix;
mod pcie;
mod routing;
mod util;
