//! Device assignment through VFIO (project issue 19): a host PCI function
//! handed to the guest, whose own driver then drives the hardware. This
//! crate is the function as the PCI bus sees it ([`AssignedFunction`]):
//! a configuration space iovm emulates from what the host function
//! reports ([`scan`]), BAR accesses forwarded to the device, MSI and MSI-X
//! emulated and signalled by the device through eventfds. The VMM opens
//! the VFIO container, group and device, maps guest RAM for the device's
//! DMA, and implements [`HostDevice`] over the device file; nothing here
//! touches VFIO or KVM, so the tests drive it with a fake device.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod function;
pub mod host;
pub mod scan;
#[cfg(any(test, feature = "fake-host"))]
pub mod testing;

pub use function::{AssignError, AssignedFunction, DirectRange, Interrupts};
pub use host::{HostDevice, IntxRelay, IrqKind, MappedRegion, RegionInfo, VectorTriggers};
pub use scan::{HostConfig, ScanError};
