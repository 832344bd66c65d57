//! Where built devices go: the one place that attaches a function or a
//! bridge to the root complex, where [`crate::topology::plan`] put it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pci::address::Bdf;
use pci::bridge::PciBridgeFunction;
use pci::root::{AttachError, BridgeId, SharedFunction};

use super::builders::Built;
use super::PciBuildError;
use crate::pci_host::PciRoot;
use crate::topology::{Parent, Placement};

/// The bridges attached so far, by their index in the device list, for
/// the devices placed behind them.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    bridges: BTreeMap<usize, BridgeId>,
}

impl Tree {
    /// The bridge the device at `index` of the list became, if attached.
    pub(crate) fn bridge(&self, index: usize) -> Option<BridgeId> {
        self.bridges.get(&index).copied()
    }

    /// Attaches `built` on `pci` at `place`.
    pub(crate) fn attach(
        &mut self,
        pci: &PciRoot,
        place: &Placement,
        built: Built,
    ) -> Result<(), PciBuildError> {
        let at = self.position(place);
        match built {
            Built::Function(function) => match at {
                Position::Root(bdf) => pci.attach(bdf, function)?,
                Position::Behind {
                    bridge,
                    device,
                    function: number,
                } => pci.attach_behind(bridge, device, number, function)?,
            },
            Built::Bridge(bridge) => {
                let id = bridge.0.attach(pci, at)?;
                self.bridges.insert(place.index, id);
            }
        }
        Ok(())
    }

    fn position(&self, place: &Placement) -> Position {
        match place.parent {
            Parent::Root => Position::Root(Bdf {
                bus: 0,
                device: place.slot.device,
                function: place.slot.function,
            }),
            Parent::Bridge(p) => Position::Behind {
                bridge: self.bridges[&p],
                device: place.slot.device,
                function: place.slot.function,
            },
        }
    }
}

/// A slot on the root complex.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// On the root bus.
    Root(Bdf),
    /// On the secondary bus of an attached bridge.
    Behind {
        /// The bridge.
        bridge: BridgeId,
        /// Device number on its secondary bus.
        device: u8,
        /// Function number.
        function: u8,
    },
}

/// A root port or bridge a builder made, ready to attach. The root complex
/// takes a bridge by its own type; this keeps that type behind a trait
/// object, so builders of every kind return the same [`Built`].
pub(crate) struct NewBridge(Box<dyn AttachBridge>);

impl NewBridge {
    /// Wraps `bridge`.
    pub(crate) fn new<B: PciBridgeFunction + 'static>(bridge: B) -> Self {
        Self::shared(Arc::new(Mutex::new(bridge)))
    }

    /// Wraps `bridge`, which its builder shares with someone else too.
    pub(crate) fn shared<B: PciBridgeFunction + 'static>(bridge: Arc<Mutex<B>>) -> Self {
        Self(Box::new(bridge))
    }

    /// The bridge as a function.
    pub(crate) fn function(&self) -> SharedFunction {
        self.0.function()
    }
}

/// Attaches a bridge whose type it knows.
trait AttachBridge {
    fn attach(&self, pci: &PciRoot, at: Position) -> Result<BridgeId, AttachError>;

    fn function(&self) -> SharedFunction;
}

impl<B: PciBridgeFunction + 'static> AttachBridge for Arc<Mutex<B>> {
    fn attach(&self, pci: &PciRoot, at: Position) -> Result<BridgeId, AttachError> {
        match at {
            Position::Root(bdf) => pci.attach_bridge(bdf, self.clone()),
            Position::Behind {
                bridge,
                device,
                function,
            } => pci.attach_bridge_behind(bridge, device, function, self.clone()),
        }
    }

    fn function(&self) -> SharedFunction {
        self.clone()
    }
}
