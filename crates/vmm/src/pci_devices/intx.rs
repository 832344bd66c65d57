//! The machine's INTx wires: the functions whose INTA reaches the same
//! IOAPIC pin drive it together, through one wired-OR per pin.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use irq::wired_or::WiredOr;
use irq::IrqLine;

use super::{PciBuildError, Wiring};

/// One wired-OR per IOAPIC pin in use.
#[derive(Default)]
pub(crate) struct IntxWires {
    shared: BTreeMap<u32, Arc<WiredOr>>,
}

impl IntxWires {
    /// A new input into pin `gsi`; the pin is asked of `wiring` the first
    /// time.
    pub(crate) fn line(
        &mut self,
        wiring: &mut dyn Wiring,
        gsi: u32,
    ) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        let shared = match self.shared.entry(gsi) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(WiredOr::new(wiring.intx_pin(gsi)?)),
        };
        Ok(Arc::new(shared.input()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci_devices::test_wiring::TestWiring;

    #[test]
    fn test_wires_into_one_pin_share_it_wired_or() {
        let mut wiring = TestWiring::new();
        let mut wires = IntxWires::default();
        let a = wires.line(&mut wiring, 16).unwrap();
        let b = wires.line(&mut wiring, 16).unwrap();
        let other = wires.line(&mut wiring, 17).unwrap();
        assert_eq!(wiring.pin_requests[&16], 1, "one pin per GSI, asked once");
        assert_eq!(wiring.pin_requests[&17], 1);
        a.set_level(true).unwrap();
        b.set_level(true).unwrap();
        a.set_level(false).unwrap();
        assert!(wiring.pins[&16].level(), "b still holds the pin");
        b.set_level(false).unwrap();
        assert!(!wiring.pins[&16].level());
        other.set_level(true).unwrap();
        assert!(wiring.pins[&17].level() && !wiring.pins[&16].level());
    }
}
