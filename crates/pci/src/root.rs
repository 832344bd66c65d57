//! The root complex's configuration access paths: the legacy CONFIG_ADDRESS /
//! CONFIG_DATA ports and the ECAM window, both routed to the functions on the
//! buses. An access to a function that does not exist reads all-ones and
//! drops writes, as a master abort does on real hardware (PCI 3.0 §6.1).
//!
//! Behind PCI-to-PCI bridges and root ports the buses form a tree. A
//! configuration cycle for a bus that is not a root bus goes to the bridge
//! whose secondary..=subordinate range holds it, as the guest programmed
//! those registers at the moment of the access (Bridge 1.2 §3.1.2.1): for
//! its secondary bus it becomes a type 0 cycle to the device there, for a
//! bus further down a type 1 cycle passed on to the bridges behind it.
//!
//! ```text
//!  bus 0 (root)  00:00.0 host bridge   00:1c.0 root port [sec 1, sub 2]
//!                                            │
//!  bus 1                               01:00.0 PCI bridge [sec 2, sub 2]
//!                                            │
//!  bus 2                               02:03.0 endpoint
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::address::{decode_cf8, decode_ecam, Bdf, ConfigTarget};
use crate::bar::BarSpec;
use crate::bridge::{PciBridgeFunction, RequesterAlias};
use crate::config::{BarWindow, ConfigWriteEffects, CONFIG_SPACE_SIZE};
use crate::function::PciFunction;

/// A function shared between the root complex and its owner.
pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// A bridge shared between the root complex and its owner.
pub type SharedBridge = Arc<Mutex<dyn PciBridgeFunction>>;

/// Names a bridge attached to the root complex (its bus numbers are the
/// guest's to choose, so they cannot name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BridgeId(usize);

/// What sits in a slot of a bridge's secondary bus.
#[derive(Clone)]
enum Downstream {
    Function(SharedFunction),
    Bridge(BridgeId),
}

/// Where a function was placed: a handle that stays valid whatever bus
/// numbers the guest programs, for detaching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// On the root bus, at this address.
    Root(Bdf),
    /// On the secondary bus of a bridge.
    Behind {
        /// The bridge.
        bridge: BridgeId,
        /// Device number there.
        device: u8,
        /// Function number.
        function: u8,
    },
}

/// A bridge, the same object as a function and as a bridge, and the
/// slots of its secondary bus.
struct BridgeNode {
    function: SharedFunction,
    bridge: SharedBridge,
    downstream: BTreeMap<(u8, u8), Downstream>,
}

/// Adds `function`'s decoding BARs that every bridge of `path` forwards.
fn collect_bars(function: &SharedFunction, path: &[SharedBridge], out: &mut Vec<DecodedBar>) {
    let windows = lock(function).bar_windows();
    for (bar, window) in windows {
        let Some(window) = window.filter(|w| w.size > 0) else {
            continue;
        };
        if path.iter().all(|b| lock(b).forwards(bar.is_io(), window)) {
            out.push(DecodedBar {
                function: function.clone(),
                bar,
                window,
            });
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes the legacy mechanism reaches of each function.
const LEGACY_CONFIG_SIZE: usize = 256;
/// Header Type register offset and its multi-function bit.
const HEADER_TYPE: usize = 0x0e;
const MULTI_FUNCTION: u8 = 0x80;

/// Why a function could not be attached.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    /// The slot is taken.
    #[error("PCI address {0} is already taken")]
    Taken(Bdf),
    /// Device or function number out of range.
    #[error("PCI address {0} is out of range (device 0-31, function 0-7)")]
    OutOfRange(Bdf),
    /// A slot behind a bridge is taken.
    #[error("slot {device:02x}.{function} behind the bridge is already taken")]
    SlotTaken {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// A slot behind a bridge is out of range (device 0 only behind a PCIe port).
    #[error("slot {device:02x}.{function} does not exist behind the bridge")]
    SlotOutOfRange {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// No such bridge.
    #[error("no bridge {0:?}")]
    UnknownBridge(BridgeId),
    /// Nothing to detach there (or a bridge, which cannot be detached).
    #[error("no function to detach at {0:?}")]
    NothingAt(Slot),
}

/// A BAR that decodes now and that every bridge above it forwards: where
/// the VMM maps it.
#[derive(Clone)]
pub struct DecodedBar {
    /// The function owning the BAR.
    pub function: SharedFunction,
    /// The BAR.
    pub bar: BarSpec,
    /// Where it decodes.
    pub window: BarWindow,
}

impl std::fmt::Debug for DecodedBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedBar")
            .field("bar", &self.bar)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// A configuration access result with its effects, for the VMM to apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutedEffects {
    /// The function written, if any.
    pub bdf: Option<Bdf>,
    /// What the write changed.
    pub effects: ConfigWriteEffects,
}

/// Segment 0's functions and the latch of the legacy mechanism.
#[derive(Default)]
pub struct RootComplex {
    functions: BTreeMap<Bdf, SharedFunction>,
    config_address: u32,
    bridges: Vec<BridgeNode>,
    root_bridges: BTreeMap<Bdf, BridgeId>,
}

impl std::fmt::Debug for RootComplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootComplex")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("root_bridges", &self.root_bridges)
            .field("bridges", &self.bridges.len())
            .finish()
    }
}

impl RootComplex {
    /// An empty root complex.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `function` at `bdf`.
    pub fn attach(&mut self, bdf: Bdf, function: SharedFunction) -> Result<(), AttachError> {
        if bdf.device > 31 || bdf.function > 7 {
            return Err(AttachError::OutOfRange(bdf));
        }
        if self.functions.contains_key(&bdf) || self.root_bridges.contains_key(&bdf) {
            return Err(AttachError::Taken(bdf));
        }
        self.functions.insert(bdf, function);
        Ok(())
    }

    /// Places a bridge at `bdf` on a root bus; functions then attach behind
    /// it with [`RootComplex::attach_behind`].
    pub fn attach_bridge<B: PciBridgeFunction + 'static>(
        &mut self,
        bdf: Bdf,
        bridge: Arc<Mutex<B>>,
    ) -> Result<BridgeId, AttachError> {
        if bdf.device > 31 || bdf.function > 7 {
            return Err(AttachError::OutOfRange(bdf));
        }
        if self.functions.contains_key(&bdf) || self.root_bridges.contains_key(&bdf) {
            return Err(AttachError::Taken(bdf));
        }
        let id = self.new_node(bridge);
        self.root_bridges.insert(bdf, id);
        Ok(id)
    }

    /// Places `function` in slot `device`.`function_number` of `parent`'s
    /// secondary bus.
    pub fn attach_behind(
        &mut self,
        parent: BridgeId,
        device: u8,
        function_number: u8,
        function: SharedFunction,
    ) -> Result<(), AttachError> {
        self.check_slot(parent, device, function_number)?;
        self.bridges[parent.0]
            .downstream
            .insert((device, function_number), Downstream::Function(function));
        Ok(())
    }

    /// Takes the function at `slot` off the tree (a hot removal): from now
    /// on nothing reaches it through the root complex. Bridges stay.
    pub fn detach(&mut self, slot: Slot) -> Result<SharedFunction, AttachError> {
        let gone = AttachError::NothingAt(slot);
        match slot {
            Slot::Root(bdf) => self.functions.remove(&bdf).ok_or(gone),
            Slot::Behind {
                bridge,
                device,
                function,
            } => {
                let node = self.bridges.get_mut(bridge.0).ok_or(gone.clone())?;
                if !matches!(
                    node.downstream.get(&(device, function)),
                    Some(Downstream::Function(_))
                ) {
                    return Err(gone);
                }
                match node.downstream.remove(&(device, function)) {
                    Some(Downstream::Function(f)) => Ok(f),
                    _ => Err(gone),
                }
            }
        }
    }

    /// Places a bridge in a slot of `parent`'s secondary bus.
    pub fn attach_bridge_behind<B: PciBridgeFunction + 'static>(
        &mut self,
        parent: BridgeId,
        device: u8,
        function_number: u8,
        bridge: Arc<Mutex<B>>,
    ) -> Result<BridgeId, AttachError> {
        self.check_slot(parent, device, function_number)?;
        let id = self.new_node(bridge);
        self.bridges[parent.0]
            .downstream
            .insert((device, function_number), Downstream::Bridge(id));
        Ok(id)
    }

    /// Every BAR that answers the guest now: decoding in its function, and
    /// forwarded by every bridge between it and the root bus. Computed from
    /// the live registers, so a mapping derived from it cannot go stale.
    pub fn decoded_bars(&self) -> Vec<DecodedBar> {
        let mut out = Vec::new();
        for f in self.functions.values() {
            collect_bars(f, &[], &mut out);
        }
        let mut path = Vec::new();
        for id in self.root_bridges.values() {
            self.collect_bridge(*id, &mut path, &mut out);
        }
        out
    }

    fn collect_bridge(
        &self,
        id: BridgeId,
        path: &mut Vec<SharedBridge>,
        out: &mut Vec<DecodedBar>,
    ) {
        let node = &self.bridges[id.0];
        collect_bars(&node.function, path, out);
        path.push(node.bridge.clone());
        for d in node.downstream.values() {
            match d {
                Downstream::Function(f) => collect_bars(f, path, out),
                Downstream::Bridge(b) => self.collect_bridge(*b, path, out),
            }
        }
        path.pop();
    }

    /// The address at which the guest reaches `function` (a bridge too,
    /// the same object by address) now, under the bus numbers it
    /// programmed: on a root bus its own, behind a bridge that bridge's
    /// secondary bus with its slot. `None` if it is not attached.
    pub fn address_of(&self, function: &SharedFunction) -> Option<Bdf> {
        let same = |f: &SharedFunction| std::ptr::addr_eq(Arc::as_ptr(f), Arc::as_ptr(function));
        if let Some((bdf, _)) = self.functions.iter().find(|(_, f)| same(f)) {
            return Some(*bdf);
        }
        if let Some((bdf, _)) = self
            .root_bridges
            .iter()
            .find(|(_, id)| same(&self.bridges[id.0].function))
        {
            return Some(*bdf);
        }
        self.bridges.iter().find_map(|node| {
            let (&(device, number), _) = node.downstream.iter().find(|(_, d)| match d {
                Downstream::Function(f) => same(f),
                Downstream::Bridge(b) => same(&self.bridges[b.0].function),
            })?;
            Some(Bdf {
                bus: lock(&node.bridge).bus_numbers().secondary,
                device,
                function: number,
            })
        })
    }

    /// Where `function` is attached (the same object, by address), if it
    /// is.
    pub fn slot_of(&self, function: &SharedFunction) -> Option<Slot> {
        let same = |f: &SharedFunction| std::ptr::addr_eq(Arc::as_ptr(f), Arc::as_ptr(function));
        if let Some((bdf, _)) = self.functions.iter().find(|(_, f)| same(f)) {
            return Some(Slot::Root(*bdf));
        }
        self.bridges.iter().enumerate().find_map(|(i, node)| {
            node.downstream
                .iter()
                .find_map(|(&(device, number), d)| match d {
                    Downstream::Function(f) if same(f) => Some(Slot::Behind {
                        bridge: BridgeId(i),
                        device,
                        function: number,
                    }),
                    _ => None,
                })
        })
    }

    /// The bridge `id`, if attached.
    pub fn bridge(&self, id: BridgeId) -> Option<SharedBridge> {
        self.bridges.get(id.0).map(|n| n.bridge.clone())
    }

    fn new_node<B: PciBridgeFunction + 'static>(&mut self, bridge: Arc<Mutex<B>>) -> BridgeId {
        self.bridges.push(BridgeNode {
            function: bridge.clone(),
            bridge,
            downstream: BTreeMap::new(),
        });
        BridgeId(self.bridges.len() - 1)
    }

    fn check_slot(&self, parent: BridgeId, device: u8, function: u8) -> Result<(), AttachError> {
        let node = self
            .bridges
            .get(parent.0)
            .ok_or(AttachError::UnknownBridge(parent))?;
        let devices = {
            let b = lock(&node.bridge);
            if b.may_forward_ari() {
                crate::bridge::BUS_DEVICES
            } else {
                b.secondary_devices()
            }
        };
        if device >= devices || device > 31 || function > 7 {
            return Err(AttachError::SlotOutOfRange { device, function });
        }
        if node.downstream.contains_key(&(device, function)) {
            return Err(AttachError::SlotTaken { device, function });
        }
        Ok(())
    }

    /// Every function (bridges too) with the requester ID its DMA carries
    /// now: its own address under the bus numbers the guest programmed,
    /// unless a bridge above replaces it ([`RequesterAlias`]; the topmost
    /// replacement is what reaches the root complex).
    pub fn requester_ids(&self) -> Vec<(SharedFunction, Bdf)> {
        let mut out: Vec<(SharedFunction, Bdf)> = self
            .functions
            .iter()
            .map(|(b, f)| (f.clone(), *b))
            .collect();
        for (bdf, id) in &self.root_bridges {
            self.bridge_requester_ids(*id, *bdf, None, &mut out);
        }
        out
    }

    /// The IDs of bridge `id` (at `own`, under the alias `above` imposed
    /// by bridges above it) and of everything behind it.
    fn bridge_requester_ids(
        &self,
        id: BridgeId,
        own: Bdf,
        above: Option<Bdf>,
        out: &mut Vec<(SharedFunction, Bdf)>,
    ) {
        let node = &self.bridges[id.0];
        out.push((node.function.clone(), above.unwrap_or(own)));
        let (secondary, alias) = {
            let b = lock(&node.bridge);
            (b.bus_numbers().secondary, b.requester_alias())
        };
        let below = above.or(match alias {
            RequesterAlias::Keep => None,
            RequesterAlias::Bridge => Some(own),
            RequesterAlias::SecondaryBus => Some(Bdf {
                bus: secondary,
                device: 0,
                function: 0,
            }),
        });
        for (&(device, function), entry) in &node.downstream {
            let addr = Bdf {
                bus: secondary,
                device,
                function,
            };
            match entry {
                Downstream::Function(f) => out.push((f.clone(), below.unwrap_or(addr))),
                Downstream::Bridge(child) => self.bridge_requester_ids(*child, addr, below, out),
            }
        }
    }

    /// Takes the tree apart: every function and bridge, each once (a
    /// bridge's two handles become one), so the caller holds the last
    /// references the root complex had.
    pub fn into_functions(self) -> Vec<SharedFunction> {
        let mut out: Vec<SharedFunction> = self.functions.into_values().collect();
        for node in self.bridges {
            out.push(node.function);
            out.extend(node.downstream.into_values().filter_map(|d| match d {
                Downstream::Function(f) => Some(f),
                Downstream::Bridge(_) => None,
            }));
        }
        out
    }

    /// The function (or bridge) that answers configuration cycles for
    /// `bdf` now, following the bus numbers the guest programmed.
    pub fn function(&self, bdf: Bdf) -> Option<SharedFunction> {
        let on_root_bus = bdf.bus == 0
            || self
                .functions
                .keys()
                .chain(self.root_bridges.keys())
                .any(|k| k.bus == bdf.bus);
        if on_root_bus {
            return self.functions.get(&bdf).cloned().or_else(|| {
                self.root_bridges
                    .get(&bdf)
                    .map(|id| self.bridges[id.0].function.clone())
            });
        }
        self.forward(self.root_bridges.values().copied().collect(), bdf)
    }

    /// A type 1 cycle for `bdf` offered to the bridges `candidates` on one
    /// bus: the first whose range holds the bus claims it.
    fn forward(&self, candidates: Vec<BridgeId>, bdf: Bdf) -> Option<SharedFunction> {
        for id in candidates {
            let node = &self.bridges[id.0];
            let (buses, devices) = {
                let b = lock(&node.bridge);
                (b.bus_numbers(), b.secondary_devices())
            };
            if !(buses.secondary..=buses.subordinate).contains(&bdf.bus) {
                continue;
            }
            if bdf.bus == buses.secondary {
                if bdf.device >= devices {
                    return None;
                }
                return node
                    .downstream
                    .get(&(bdf.device, bdf.function))
                    .map(|d| match d {
                        Downstream::Function(f) => f.clone(),
                        Downstream::Bridge(b) => self.bridges[b.0].function.clone(),
                    });
            }
            let below = node
                .downstream
                .values()
                .filter_map(|d| match d {
                    Downstream::Bridge(b) => Some(*b),
                    Downstream::Function(_) => None,
                })
                .collect();
            return self.forward(below, bdf);
        }
        None
    }

    fn config_read(&self, target: ConfigTarget, data: &mut [u8], limit: usize) {
        let in_range = target
            .offset
            .checked_add(data.len())
            .is_some_and(|end| end <= limit);
        match self.function(target.bdf) {
            Some(f) if in_range => lock(&f).config_read(target.offset, data),
            _ => {
                data.fill(0xff);
                return;
            }
        }
        let header_type = HEADER_TYPE.wrapping_sub(target.offset);
        if target.bdf.function == 0
            && header_type < data.len()
            && self.is_multi_function(target.bdf)
        {
            data[header_type] |= MULTI_FUNCTION;
        }
    }

    /// Whether the slot of `bdf` holds functions besides 0: then function
    /// 0's header type says "multi-function" (PCI 3.0 §6.2.1), since that
    /// bit is what makes Linux scan functions 1-7. It is the slot's
    /// property, so the root complex sets it rather than each device.
    fn is_multi_function(&self, bdf: Bdf) -> bool {
        (1..8).any(|function| self.function(Bdf { function, ..bdf }).is_some())
    }

    fn config_write(&self, target: ConfigTarget, data: &[u8], limit: usize) -> RoutedEffects {
        let in_range = target
            .offset
            .checked_add(data.len())
            .is_some_and(|end| end <= limit);
        match self.function(target.bdf) {
            Some(f) if in_range => RoutedEffects {
                bdf: Some(target.bdf),
                effects: lock(&f).config_write(target.offset, data),
            },
            _ => RoutedEffects::default(),
        }
    }

    /// A read in the 8-port window 0xCF8–0xCFF at `port_offset` (0–7).
    pub fn legacy_read(&self, port_offset: u64, data: &mut [u8]) {
        match port_offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.config_address.to_le_bytes()),
            4..=7 => match decode_cf8(self.config_address, (port_offset - 4) as u8) {
                Some(target) => self.config_read(target, data, LEGACY_CONFIG_SIZE),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    /// A write in the window 0xCF8–0xCFF. Only 32-bit writes reach
    /// CONFIG_ADDRESS (byte writes to 0xCF9 are the PC's reset control
    /// register, which is not modelled here).
    pub fn legacy_write(&mut self, port_offset: u64, data: &[u8]) -> RoutedEffects {
        match port_offset {
            0 => {
                if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                    self.config_address = u32::from_le_bytes(bytes);
                }
                RoutedEffects::default()
            }
            4..=7 => match decode_cf8(self.config_address, (port_offset - 4) as u8) {
                Some(target) => self.config_write(target, data, LEGACY_CONFIG_SIZE),
                None => RoutedEffects::default(),
            },
            _ => RoutedEffects::default(),
        }
    }

    /// A read at `offset` in the ECAM window (whose first bus is 0).
    pub fn ecam_read(&self, offset: u64, data: &mut [u8]) {
        match decode_ecam(offset, 0) {
            Some(target) => self.config_read(target, data, CONFIG_SPACE_SIZE),
            None => data.fill(0xff),
        }
    }

    /// A write at `offset` in the ECAM window.
    pub fn ecam_write(&self, offset: u64, data: &[u8]) -> RoutedEffects {
        match decode_ecam(offset, 0) {
            Some(target) => self.config_write(target, data, CONFIG_SPACE_SIZE),
            None => RoutedEffects::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_bridge::HostBridge;

    fn root() -> RootComplex {
        let mut r = RootComplex::new();
        r.attach(
            Bdf {
                bus: 0,
                device: 0,
                function: 0,
            },
            Arc::new(Mutex::new(HostBridge::new())),
        )
        .unwrap();
        r
    }

    fn cf8(bus: u32, dev: u32, func: u32, reg: u32) -> [u8; 4] {
        ((1 << 31) | (bus << 16) | (dev << 11) | (func << 8) | reg).to_le_bytes()
    }

    #[test]
    fn test_legacy_read_of_host_bridge_ids() {
        let mut r = root();
        r.legacy_write(0, &cf8(0, 0, 0, 0));
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
        let mut w = [0u8; 2];
        r.legacy_read(6, &mut w);
        assert_eq!(
            u16::from_le_bytes(w),
            0x0008,
            "byte lane 2 is the device ID"
        );
    }

    #[test]
    fn test_absent_function_reads_all_ones() {
        let mut r = root();
        r.legacy_write(0, &cf8(0, 5, 0, 0));
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
        let mut e = [0u8; 4];
        r.ecam_read((3 << 20) | (1 << 15), &mut e);
        assert_eq!(e, [0xff; 4]);
    }

    #[test]
    fn test_disabled_config_address_reads_all_ones() {
        let mut r = root();
        r.legacy_write(0, &0u32.to_le_bytes());
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn test_config_address_reads_back_and_ignores_narrow_writes() {
        let mut r = root();
        r.legacy_write(0, &cf8(1, 2, 3, 0x40));
        r.legacy_write(1, &[0x06]);
        r.legacy_write(0, &[0x00]);
        let mut d = [0u8; 4];
        r.legacy_read(0, &mut d);
        assert_eq!(d, cf8(1, 2, 3, 0x40));
    }

    #[test]
    fn test_ecam_reaches_extended_space_and_legacy_does_not() {
        let r = root();
        let mut d = [0u8; 4];
        r.ecam_read(0x100, &mut d);
        assert_eq!(d, [0; 4], "no extended capabilities on the host bridge");
        r.ecam_read(0xffe, &mut d);
        assert_eq!(d, [0xff; 4], "crosses the end of the function's space");
    }

    #[test]
    fn test_ecam_write_reports_the_function() {
        let r = root();
        let out = r.ecam_write(0x04, &[0x06, 0x00]);
        assert_eq!(
            out.bdf,
            Some(Bdf {
                bus: 0,
                device: 0,
                function: 0
            })
        );
        assert_eq!(out.effects.bus_master, Some(true));
    }

    #[test]
    fn test_attach_refuses_taken_and_out_of_range() {
        let mut r = root();
        let hb = || -> SharedFunction { Arc::new(Mutex::new(HostBridge::new())) };
        assert_eq!(
            r.attach(
                Bdf {
                    bus: 0,
                    device: 0,
                    function: 0
                },
                hb()
            ),
            Err(AttachError::Taken(Bdf {
                bus: 0,
                device: 0,
                function: 0
            }))
        );
        assert!(matches!(
            r.attach(
                Bdf {
                    bus: 0,
                    device: 32,
                    function: 0
                },
                hb()
            ),
            Err(AttachError::OutOfRange(_))
        ));
    }

    #[test]
    fn test_hostile_config_access_sweep_keeps_host_bridge_identity() {
        let mut r = root();
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = u64::from(x % 8);
            let len = [1usize, 2, 4][(x >> 8) as usize % 3];
            let bytes = x.to_le_bytes();
            r.legacy_write(port, &bytes[..len]);
            r.ecam_write(u64::from(x) & 0x0fff_ffff, &bytes[..len]);
            let mut d = [0u8; 4];
            r.legacy_read(port, &mut d[..len]);
        }
        r.legacy_write(0, &cf8(0, 0, 0, 0));
        let mut d = [0u8; 4];
        r.legacy_read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
    }
}
