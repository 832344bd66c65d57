//! What an assigned function needs of the host device: its regions (the
//! BARs and the configuration space, as VFIO numbers them: `vfio.h`,
//! `VFIO_PCI_*_REGION_INDEX`), its interrupts and its reset. The VMM
//! implements it over a VFIO device file; the tests with a fake device.

use std::fmt::Debug;
use std::io;

use vmm_sys_util::eventfd::EventFd;

/// VFIO's region index of BAR 0 (BARs 0–5 are regions 0–5).
pub const BAR0_REGION: u32 = 0;
/// VFIO's region index of the expansion ROM.
pub const ROM_REGION: u32 = 6;
/// VFIO's region index of the configuration space.
pub const CONFIG_REGION: u32 = 7;

/// One region as VFIO describes it (`VFIO_DEVICE_GET_REGION_INFO`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Bytes; 0 for a region the device does not implement.
    pub size: u64,
    /// The region may be mapped into the process (`VFIO_REGION_INFO_FLAG_MMAP`).
    pub mmap: bool,
}

/// The interrupt kinds VFIO signals through eventfds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// MSI (`VFIO_PCI_MSI_IRQ_INDEX`).
    Msi,
    /// MSI-X (`VFIO_PCI_MSIX_IRQ_INDEX`).
    Msix,
    /// INTx (`VFIO_PCI_INTX_IRQ_INDEX`): `fds` are the trigger and the
    /// unmask (resample) eventfd. VFIO masks the line when it fires; a
    /// write to the unmask eventfd unmasks it.
    Intx,
}

/// Part of a region mapped into iovm's address space (VFIO: an `mmap` of
/// the device file), unmapped when dropped.
pub trait MappedRegion: Send + Sync + Debug {
    /// Where it is mapped.
    fn host_addr(&self) -> u64;
}

/// A host PCI function under VFIO.
pub trait HostDevice: Send + Sync + Debug {
    /// Maps `len` bytes at `offset` of region `index` into iovm, if the
    /// region allows it (`Ok(None)`: it cannot be mapped here).
    fn map(
        &self,
        _index: u32,
        _offset: u64,
        _len: u64,
    ) -> io::Result<Option<Box<dyn MappedRegion>>> {
        Ok(None)
    }

    /// The region `index`, or `None` if there is none.
    fn region(&self, index: u32) -> Option<RegionInfo>;

    /// Reads `data.len()` bytes at `offset` of region `index` (on failure,
    /// all ones, as a PCI read that nobody answers).
    fn read(&self, index: u32, offset: u64, data: &mut [u8]);

    /// Writes `data` at `offset` of region `index` (a failure is logged).
    fn write(&self, index: u32, offset: u64, data: &[u8]);

    /// Signals vector `i` of `kind` on `fds[i]` (`VFIO_DEVICE_SET_IRQS`,
    /// DATA_EVENTFD | ACTION_TRIGGER); VFIO enables the capability on the
    /// device. An empty `fds` disables `kind`.
    fn set_irqs(&self, kind: IrqKind, fds: &[&EventFd]) -> io::Result<()>;

    /// Resets the function (`VFIO_DEVICE_RESET`), if it can be.
    fn reset(&self);
}

/// The VMM side of an assigned function's INTx: VFIO signals `trigger`
/// when the device raises its line (and masks it); the VMM drives the
/// guest's IOAPIC pin, and when the guest ends the interrupt (its EOI) it
/// lowers the pin and signals `unmask`, so VFIO unmasks the device's
/// line and, if it is still raised, signals again.
pub trait IntxRelay: Send + Sync + Debug {
    /// The trigger and the unmask eventfds, to give VFIO.
    fn eventfds(&self) -> io::Result<[EventFd; 2]>;
}

/// The eventfds that deliver a function's message-signalled vectors
/// without a trip through the VMM (KVM: each vector's irqfd on its GSI
/// route), so a host device's interrupt reaches the guest directly.
///
/// A masked vector (PCI 3.0 §6.8.2.9: the MSI-X entry's Mask bit or the
/// Function Mask; §6.8.1.8: MSI's per-vector Mask bits) is not delivered:
/// its eventfd stops delivering and keeps the device's signal, which is
/// the vector's pending bit, until the vector is unmasked and the signal
/// goes out then.
pub trait VectorTriggers: Send + Sync + Debug {
    /// An eventfd whose signal delivers vector `vector`'s current route.
    fn trigger(&self, vector: u16) -> io::Result<EventFd>;

    /// Holds (`masked`) or resumes delivery of `vector`'s signals; a signal
    /// held while masked is delivered when the vector is unmasked.
    fn set_masked(&self, vector: u16, masked: bool) -> io::Result<()>;

    /// Whether `vector` is masked and holds a signal (its pending bit).
    fn pending(&self, vector: u16) -> bool;
}
