//! PCI and PCIe in software, starting with the configuration space.
//!
//! A function's configuration space (PCI Local Bus 3.0 §6, PCIe 6.0 §7) is
//! modelled as data: every byte has a value and each of its bits a
//! semantic (read-only, read-write, write-1-to-clear, write-1-to-set,
//! read-to-clear: [`regs::RegisterMask`]), and one function applies a guest
//! write. Writes that matter to the rest of the machine (a BAR moved,
//! decoding switched) come back as a [`config::ConfigWriteEffects`] value for
//! the VMM to apply, never as side effects inside the device.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod address;
pub mod bar;
pub mod bridge;
pub mod caps;
pub mod config;
pub mod function;
pub mod header;
pub mod host_bridge;
pub mod intx;
pub mod message;
pub mod regs;
pub mod root;
#[cfg(any(test, feature = "test-driver"))]
pub mod testing;
pub mod type1;
pub mod vf;

#[cfg(test)]
mod topology_tests;
