//! The VMM's own counters: why vCPUs left the guest.

use crate::{Counter, Figures};

/// Why a vCPU left `KVM_RUN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// A port read.
    IoIn,
    /// A port write.
    IoOut,
    /// A trapped MMIO read.
    MmioRead,
    /// A trapped MMIO write.
    MmioWrite,
    /// An EOI of a level-triggered vector the split IOAPIC must see.
    IoapicEoi,
    /// HLT (only without an in-kernel local APIC).
    Hlt,
    /// A signal interrupted `KVM_RUN` (`EINTR`): a stop, pause, or kick.
    Interrupted,
    /// Anything else (shutdown, system event, errors).
    Other,
}

/// vCPU exits by reason, summed over all vCPUs.
#[derive(Debug, Default)]
pub struct ExitCounters {
    io_in: Counter,
    io_out: Counter,
    mmio_read: Counter,
    mmio_write: Counter,
    ioapic_eoi: Counter,
    hlt: Counter,
    interrupted: Counter,
    other: Counter,
}

impl ExitCounters {
    /// Counts one exit for `reason`.
    #[inline]
    pub fn count(&self, reason: ExitReason) {
        let c = match reason {
            ExitReason::IoIn => &self.io_in,
            ExitReason::IoOut => &self.io_out,
            ExitReason::MmioRead => &self.mmio_read,
            ExitReason::MmioWrite => &self.mmio_write,
            ExitReason::IoapicEoi => &self.ioapic_eoi,
            ExitReason::Hlt => &self.hlt,
            ExitReason::Interrupted => &self.interrupted,
            ExitReason::Other => &self.other,
        };
        c.inc();
    }

    /// The figures, one per reason (`exits_io_in`, ...) and their sum.
    pub fn figures(&self) -> Figures {
        let mut out = Figures::default();
        let all = [
            ("exits_io_in", &self.io_in),
            ("exits_io_out", &self.io_out),
            ("exits_mmio_read", &self.mmio_read),
            ("exits_mmio_write", &self.mmio_write),
            ("exits_ioapic_eoi", &self.ioapic_eoi),
            ("exits_hlt", &self.hlt),
            ("exits_interrupted", &self.interrupted),
            ("exits_other", &self.other),
        ];
        let mut total = 0;
        for (name, c) in all {
            let v = c.get();
            total += v;
            out.put(name, v);
        }
        out.put("exits", total);
        out
    }
}
