//! Always-on I/O counters: what each PCI function did on its I/O path and
//! how the VMM spent its exits, cheap enough never to be turned off.
//!
//! A counter is one relaxed atomic add on the path it counts and no lock:
//! the figures are statistics, read while the machine runs, so a reader may
//! see one counter a few events ahead of another, never a torn value.
//! Each group reports itself as named figures ([`Figures`]); the names are
//! the API's (`vm.counters`), and where Cloud Hypervisor reports the same
//! thing the name is the same (`read_bytes`, `rx_frames`, ...).
//!
//! ```text
//!  FunctionCounters (one per PCI function, in its DMA context)
//!   ├─ dma         bytes read and written by DMA, DMA faults
//!   ├─ interrupts  MSI-X, MSI and INTx interrupts raised
//!   ├─ doorbells   notifications through ioeventfd vs trapped writes
//!   └─ block | net what the device did: requests, bytes, errors by kind
//!  ExitCounters (the VMM's): vCPU exits by reason
//! ```

mod exits;
mod figures;
mod groups;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub use exits::{ExitCounters, ExitReason};
pub use figures::Figures;
pub use groups::{
    BlockCounters, BlockOp, DmaCounters, DoorbellCounters, InterruptCounters, NetCounters,
};

/// One monotonic count, added to with a relaxed atomic.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Counts one event.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Counts `n` events (bytes, packets).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a function's device-specific I/O counters are: which of its
/// groups [`FunctionCounters::figures`] reports besides the common ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IoClass {
    /// No device-specific group (a serial card, an assigned host device).
    None = 0,
    /// A block device: [`BlockCounters`].
    Block = 1,
    /// A network device: [`NetCounters`].
    Net = 2,
}

/// Every counter of one PCI function.
///
/// Shared (in an `Arc`) between the function's DMA context, its interrupt
/// routing, its device model and workers, and the VMM that reports it.
#[derive(Debug, Default)]
pub struct FunctionCounters {
    /// DMA the function made through its DMA context.
    pub dma: DmaCounters,
    /// Interrupts it raised.
    pub interrupts: InterruptCounters,
    /// Notifications (doorbells, queue notifies) the guest gave it.
    pub doorbells: DoorbellCounters,
    /// A block device's requests.
    pub block: BlockCounters,
    /// A network device's frames.
    pub net: NetCounters,
    class: AtomicU8,
}

impl FunctionCounters {
    /// Says which device-specific group the function reports (set once,
    /// when its device is built).
    pub fn set_class(&self, class: IoClass) {
        self.class.store(class as u8, Ordering::Relaxed);
    }

    /// Which device-specific group the function reports.
    pub fn class(&self) -> IoClass {
        match self.class.load(Ordering::Relaxed) {
            1 => IoClass::Block,
            2 => IoClass::Net,
            _ => IoClass::None,
        }
    }

    /// The figures of the common groups and of the function's class.
    pub fn figures(&self) -> Figures {
        let mut out = Figures::default();
        match self.class() {
            IoClass::Block => self.block.report(&mut out),
            IoClass::Net => self.net.report(&mut out),
            IoClass::None => {}
        }
        self.doorbells.report(&mut out);
        self.interrupts.report(&mut out);
        self.dma.report(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
