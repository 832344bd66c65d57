//! The KVM side of iovm: the only crate that talks to `/dev/kvm`.
//!
//! It builds a machine from a [`config::VmConfig`]: guest RAM
//! ([`layout`]), vCPUs with coherent CPUID ([`cpuid`]), the kernel and its
//! boot data ([`boot`]), ACPI tables ([`acpi`]), the port-I/O bus with the
//! platform devices ([`bus`]) and the interrupt wiring ([`interrupts`]), then
//! runs it until the guest powers off, resets or crashes, then takes it down
//! in order ([`lifecycle`]).

#![deny(missing_docs)]

pub mod acpi;
pub mod boot;
pub mod bus;
pub mod config;
pub mod console;
pub mod control;
pub mod cpuid;
pub mod host;
pub mod interrupts;
pub mod io_counters;
pub mod ioevents;
pub mod irqchip;
pub mod layout;
pub mod lifecycle;
pub mod manage;
pub mod memory_slots;
pub mod pci_devices;
pub mod pci_host;
pub(crate) mod reopen;
pub mod signals;
pub mod testing;
pub mod topology;
pub mod vcpu;
pub mod vfio;
pub mod vfio_intx;
pub mod vfio_mirror;
pub mod vm;
pub mod vtd;
pub mod wiring;
