//! The PCI part of a fake guest driver, for unit tests and benches that
//! play the guest against a [`PciFunction`](crate::function::PciFunction)
//! without a VM (cargo feature `test-driver`).
//!
//! The driver is a set of extension traits implemented for every
//! `PciFunction`, each doing one part of what Linux's PCI core does to a
//! function before and while its driver runs:
//!
//! - [`ConfigDriver`]: sized configuration reads and writes, the command
//!   register, and the capability lists (conventional and extended);
//! - [`BarDriver`]: BAR sizing and placement, and BAR reads and writes;
//! - [`MsiDriver`]: MSI programming;
//! - [`MsixDriver`]: MSI-X table entries, masks, enable bits and the PBA.
//!
//! Everything is found the way a driver finds it, by reading configuration
//! space (capability walk, BAR probe, MSI-X Table and PBA registers), so the
//! driver also checks what the function advertises. Device-specific steps
//! (NVMe's admin queue, virtio's feature negotiation) belong to the device
//! crates' tests, built on these.
//!
//! A test imports the traits it uses (`use pci::testing::{BarDriver,
//! ConfigDriver};`) and calls them on the function: `nvme.size_bar(0)`,
//! `nvme.set_command(command::MEMORY | command::BUS_MASTER)`.

mod bars;
mod config;
#[cfg(test)]
pub(crate) mod function;
mod msi;
mod msix;
#[cfg(test)]
mod tests;

pub use bars::BarDriver;
pub use config::ConfigDriver;
pub use msi::{MsiDriver, MsiLayout};
pub use msix::{MsixDriver, MsixLayout};
