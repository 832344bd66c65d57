//! The machine's I/O counters, as `vm.counters` reports them: one set per
//! PCI function, by device name, and the VMM's own (vCPU exits by reason).
//!
//! Functions register here as they are built (at boot or while the
//! machine runs) and leave when they are removed. A [`Counters`] handle is
//! cheap to clone and reads without the run loop: the figures are relaxed
//! atomics the devices add to on their own threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use counters::{ExitCounters, Figures, FunctionCounters};

/// The figures of the VMM's own counters in a [`Report`].
pub const VMM: &str = "vmm";

/// One registered function.
#[derive(Debug)]
struct Entry {
    name: String,
    counters: Arc<FunctionCounters>,
}

#[derive(Debug, Default)]
struct Inner {
    functions: Mutex<Vec<Entry>>,
    exits: Arc<ExitCounters>,
}

/// The machine's counters: a shared handle.
#[derive(Clone, Debug, Default)]
pub struct Counters(Arc<Inner>);

/// Every counter's figure at one moment: by device name, and the VMM's
/// under [`VMM`].
pub type Report = BTreeMap<String, Figures>;

impl Counters {
    /// Registers the counters of a function named `name` (its `id=`, or
    /// its kind and number). A second function of the same name (the
    /// functions of one device) adds to the same figures.
    pub fn register(&self, name: String, counters: Arc<FunctionCounters>) {
        self.lock().push(Entry { name, counters });
    }

    /// Forgets the function whose counters are `counters` (it was
    /// removed).
    pub fn unregister(&self, counters: &Arc<FunctionCounters>) {
        self.lock().retain(|e| !Arc::ptr_eq(&e.counters, counters));
    }

    /// The vCPU exit counters, which every vCPU thread adds to.
    pub fn exits(&self) -> Arc<ExitCounters> {
        self.0.exits.clone()
    }

    /// Every figure now.
    pub fn report(&self) -> Report {
        let mut out = Report::new();
        for e in self.lock().iter() {
            out.entry(e.name.clone())
                .or_default()
                .merge(&e.counters.figures());
        }
        out.insert(VMM.to_string(), self.0.exits.figures());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.0
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use counters::{ExitReason, IoClass};

    use super::*;

    #[test]
    fn test_report_names_each_device_and_the_vmm_and_forgets_removed_ones() {
        let c = Counters::default();
        let disk = Arc::new(FunctionCounters::default());
        disk.set_class(IoClass::Block);
        disk.block.read_ops.add(3);
        let nic = Arc::new(FunctionCounters::default());
        nic.set_class(IoClass::Net);
        nic.net.tx_frames.add(2);
        c.register("disk0".into(), disk.clone());
        c.register("net0".into(), nic.clone());
        c.exits().count(ExitReason::MmioWrite);

        let r = c.report();
        assert_eq!(r["disk0"].get("read_ops"), Some(3));
        assert_eq!(r["net0"].get("tx_frames"), Some(2));
        assert_eq!(r[VMM].get("exits_mmio_write"), Some(1));

        c.unregister(&disk);
        let r = c.report();
        assert!(!r.contains_key("disk0"));
        assert!(r.contains_key("net0"));
    }

    #[test]
    fn test_functions_of_one_name_add_up() {
        let c = Counters::default();
        for n in [1, 2] {
            let f = Arc::new(FunctionCounters::default());
            f.dma.dma_read_bytes.add(n);
            c.register("nvme0".into(), f);
        }
        assert_eq!(c.report()["nvme0"].get("dma_read_bytes"), Some(3));
    }
}
