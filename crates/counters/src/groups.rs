//! The counter groups of a PCI function. Each field's name is the name of
//! its figure.

use crate::{Counter, Figures};

/// Declares a group of counters whose figures are named after its fields.
macro_rules! counter_group {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: Counter,)*
        }

        impl $name {
            /// Puts every counter of the group into `out`.
            pub fn report(&self, out: &mut Figures) {
                $(out.put(stringify!($field), self.$field.get());)*
            }
        }
    };
}

counter_group! {
    /// DMA through the function's DMA context: the bytes of guest memory
    /// its device read and wrote (data buffers, PRP and PRD lists,
    /// descriptors; virtio rings reached through the shared direct view
    /// of guest RAM are not counted), and the accesses refused (Bus Master
    /// Enable off, outside guest memory, an IOMMU fault).
    DmaCounters {
        /// Bytes the device read from guest memory.
        dma_read_bytes,
        /// Bytes the device wrote to guest memory.
        dma_write_bytes,
        /// DMA accesses refused.
        dma_faults,
    }
}

counter_group! {
    /// Interrupts the function raised, by mechanism. A masked MSI-X or MSI
    /// vector counts when its message is sent, on unmask.
    InterruptCounters {
        /// MSI-X messages sent.
        irq_msix,
        /// MSI messages sent.
        irq_msi,
        /// INTx assertions (a level raised, or an edge).
        irq_intx,
    }
}

/// The guest's notifications (NVMe doorbells, virtio queue notifies,
/// AHCI command issues): through an ioeventfd, which costs the guest an
/// exit that KVM completes in the kernel, or trapped, which the VMM
/// handles in user space.
#[derive(Debug, Default)]
pub struct DoorbellCounters {
    /// Notifications read from an ioeventfd only KVM signals (each guest
    /// write adds one).
    pub doorbells_ioeventfd: Counter,
    /// Notifications written to a trapped register.
    pub doorbells_trapped: Counter,
    /// Notifications read from an eventfd that both KVM's ioeventfd and
    /// the trapped path signal (a virtio queue's): the ioeventfd's share
    /// is this less the trapped ones.
    pub doorbells_shared: Counter,
}

impl DoorbellCounters {
    /// Puts `doorbells_ioeventfd` (with the ioeventfd share of the shared
    /// eventfds) and `doorbells_trapped` into `out`.
    pub fn report(&self, out: &mut Figures) {
        let trapped = self.doorbells_trapped.get();
        let shared = self.doorbells_shared.get().saturating_sub(trapped);
        out.put(
            "doorbells_ioeventfd",
            self.doorbells_ioeventfd.get() + shared,
        );
        out.put("doorbells_trapped", trapped);
    }
}

counter_group! {
    /// A block device's requests, counted when they complete.
    BlockCounters {
        /// Reads completed.
        read_ops,
        /// Bytes read.
        read_bytes,
        /// Writes completed.
        write_ops,
        /// Bytes written.
        write_bytes,
        /// Flushes completed.
        flush_ops,
        /// Discards (deallocate, TRIM, write zeroes) completed.
        discard_ops,
        /// Requests that failed on the host (the backend's I/O error).
        errors_io,
        /// Requests refused as invalid (an opcode, field, or LBA range the
        /// device does not accept).
        errors_invalid,
        /// Requests that failed on DMA (a buffer outside guest memory).
        errors_dma,
    }
}

counter_group! {
    /// A network device's frames.
    NetCounters {
        /// Frames delivered to the guest.
        rx_frames,
        /// Bytes delivered to the guest (without the virtio-net header).
        rx_bytes,
        /// Frames the guest sent.
        tx_frames,
        /// Bytes the guest sent.
        tx_bytes,
        /// Frames from the host dropped (no guest buffer, or too large).
        rx_dropped,
        /// Frames from the guest dropped (malformed, or the host refused).
        tx_dropped,
        /// Receive chains returned unused (malformed, or buffers the DMA
        /// could not reach); the frame waits for the next chain.
        rx_refused,
    }
}

/// A block request that completed, as [`BlockCounters::completed`] counts
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOp {
    /// A read of this many bytes.
    Read(u64),
    /// A write of this many bytes.
    Write(u64),
    /// A flush.
    Flush,
    /// A discard, TRIM, deallocation or write of zeroes.
    Discard,
}

impl BlockCounters {
    /// Counts a request that completed successfully.
    pub fn completed(&self, op: BlockOp) {
        match op {
            BlockOp::Read(bytes) => {
                self.read_ops.inc();
                self.read_bytes.add(bytes);
            }
            BlockOp::Write(bytes) => {
                self.write_ops.inc();
                self.write_bytes.add(bytes);
            }
            BlockOp::Flush => self.flush_ops.inc(),
            BlockOp::Discard => self.discard_ops.inc(),
        }
    }
}
