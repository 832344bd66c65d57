//! Capability tests, by subject; `driver` drives the endpoint with the
//! shared fake guest driver ([`crate::testing`]), `hostile` sweeps random
//! writes.

mod driver;
mod hostile;
mod list;
mod msi;
mod msix;
mod pcie;
mod routing;
mod sriov;
mod util;
