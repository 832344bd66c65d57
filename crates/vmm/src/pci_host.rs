//! The PCI root complex on the machine's buses: the configuration ports
//! 0xCF8–0xCFF on the port bus and the ECAM window on the MMIO bus, both
//! forwarding to one [`pci::root::RootComplex`].
//!
//! Configuration writes return their effects; this is where the VMM applies
//! them. A BAR that starts decoding gets a range on the port or MMIO bus, one
//! that moves is relocated in one step (no access ever reaches a stale
//! mapping), one that stops decoding loses its range. A BAR the guest places
//! over another device's range stays unmapped (with a log line) and the other
//! device keeps its mapping.
//!
//! Functions may also hand over eventfds for addresses inside their BARs
//! (a virtio queue's notify address, an NVMe doorbell): while the BAR is
//! mapped, each is registered through [`IoEvents`] (KVM: an ioeventfd), so a
//! guest write there wakes the device's worker without a vCPU exit to user
//! space. They follow the BAR: unregistered before it moves or stops
//! decoding, registered again at the new place. Host memory inside a BAR
//! (an assigned device's registers) follows it the same way as memory
//! slots ([`BarMemory`], `bar_memory.rs`).

use crate::io_counters::Counters;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use devices::BusDevice;
use dma::{FunctionContext, RequesterId};
use pci::address::Bdf;
use pci::bridge::PciBridgeFunction;
use pci::caps::slot::SlotWriteEffects;
use pci::caps::sriov::{SriovEffect, VfChange};
use pci::config::ConfigWriteEffects;
use pci::host_bridge::HostBridge;
use pci::root::{
    AttachError, BridgeId, DecodedBar, RootComplex, RoutedEffects, SharedFunction, Slot,
};

use vmm_sys_util::eventfd::EventFd;

use crate::bus::Bus;

mod bar_memory;

use bar_memory::BarMemoryTable;
pub use bar_memory::{BarMemory, MemorySlots};

/// Where the VMM installs eventfds that guest writes signal directly (KVM:
/// `KVM_IOEVENTFD`, any access width, no data match).
pub trait IoEvents: Send + Sync {
    /// Guest writes to `addr` (port I/O if `io`) signal `fd`.
    fn register(&self, io: bool, addr: u64, fd: &EventFd) -> std::io::Result<()>;

    /// Undoes [`IoEvents::register`].
    fn unregister(&self, io: bool, addr: u64, fd: &EventFd) -> std::io::Result<()>;
}

/// An eventfd for one address inside a function's BAR.
#[derive(Debug)]
pub struct BarEventFd {
    /// The BAR index.
    pub bar: usize,
    /// The offset inside the BAR.
    pub offset: u64,
    /// What a guest write there signals.
    pub fd: EventFd,
}

/// What creates and removes an SR-IOV physical function's virtual
/// functions while the machine runs: the guest's writes to the PF's SR-IOV
/// capability come back as an [`SriovEffect`] (PCIe 6.0 §9.3.3.3), which
/// [`PciRoot`] hands to the handler registered for that PF once no lock of
/// the tree is held.
pub trait SriovHandler: Send + Sync {
    /// Applies `effect` of a write to the PF: VFs enabled (build and attach
    /// them) or disabled (detach them), VF memory decoding switched or VF
    /// BARs moved (give the VFs their new windows and resync the buses).
    fn apply(&self, root: &PciRoot, effect: SriovEffect);
}

/// What acts on the commands a guest writes to a hot-plug root port's Slot
/// Control (PCIe 6.0 §7.5.3.10): the slot's power switched on or off, its
/// indicators. [`PciRoot`] hands each [`SlotWriteEffects`] of a write to
/// that port to the handler registered for it, once no lock of the tree is
/// held; the handler must not block (it runs on the writing vCPU).
pub trait SlotHandler: Send + Sync {
    /// Acts on `effects` of a write to the port's Slot Control.
    fn apply(&self, effects: SlotWriteEffects);
}

/// Ports of the legacy configuration mechanism (CONFIG_ADDRESS and CONFIG_DATA).
pub const CONFIG_PORTS_SIZE: u64 = 8;

/// Where a BAR is mapped now: which bus, at which base, how large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    io: bool,
    base: u64,
    size: u64,
}

/// A BAR of a function: the function's identity and the BAR index.
type MappingKey = (usize, usize);

struct Inner {
    root: Mutex<RootComplex>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    mapped: Mutex<BTreeMap<MappingKey, Mapping>>,
    io_events: Mutex<IoEventTable>,
    memory: Mutex<BarMemoryTable>,
    contexts: Mutex<BTreeMap<usize, Arc<FunctionContext>>>,
    sriov: Mutex<BTreeMap<usize, Arc<dyn SriovHandler>>>,
    slots: Mutex<BTreeMap<usize, Arc<dyn SlotHandler>>>,
    counters: Counters,
}

/// The eventfds functions handed over, by function key.
#[derive(Default)]
struct IoEventTable {
    port: Option<Arc<dyn IoEvents>>,
    sets: BTreeMap<usize, EventFdSet>,
}

/// One function's eventfds, and whether they are to be registered.
struct EventFdSet {
    fds: Vec<BarEventFd>,
    active: bool,
}

impl IoEventTable {
    /// Registers or unregisters the eventfds of BAR `key` mapped at `m`
    /// (only those of an active set).
    fn apply(&self, key: MappingKey, m: Mapping, register: bool) {
        let Some(port) = &self.port else {
            return;
        };
        let Some(set) = self.sets.get(&key.0).filter(|s| s.active) else {
            return;
        };
        for e in set
            .fds
            .iter()
            .filter(|e| e.bar == key.1 && e.offset < m.size)
        {
            let addr = m.base + e.offset;
            let result = if register {
                port.register(m.io, addr, &e.fd)
            } else {
                port.unregister(m.io, addr, &e.fd)
            };
            if let Err(err) = result {
                let what = if register { "register" } else { "unregister" };
                ratelimit::warn!("cannot {what} the eventfd at {addr:#x}: {err}");
            }
        }
    }
}

/// Switches one function's eventfds on and off (see
/// [`PciRoot::add_bar_eventfds`]). It does not keep the machine alive.
#[derive(Debug, Clone)]
pub struct BarEvents {
    root: Weak<Inner>,
    key: usize,
}

impl BarEvents {
    /// Registers the eventfds (`true`) at their BARs' current places, or
    /// unregisters them; from now on they follow their BARs only if active.
    pub fn set_active(&self, active: bool) {
        let Some(inner) = self.root.upgrade() else {
            return;
        };
        let mapped = inner.mapped.lock().unwrap_or_else(|p| p.into_inner());
        let mut events = inner.io_events.lock().unwrap_or_else(|p| p.into_inner());
        let Some(set) = events.sets.get(&self.key) else {
            return;
        };
        if set.active == active {
            return;
        }
        let mine: Vec<_> = mapped
            .iter()
            .filter(|(k, _)| k.0 == self.key)
            .map(|(k, m)| (*k, *m))
            .collect();
        if !active {
            for (k, m) in &mine {
                events.apply(*k, *m, false);
            }
        }
        if let Some(set) = events.sets.get_mut(&self.key) {
            set.active = active;
        }
        if active {
            for (k, m) in &mine {
                events.apply(*k, *m, true);
            }
        }
    }
}

/// The root complex shared by its two access paths.
#[derive(Clone)]
pub struct PciRoot(Arc<Inner>);

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciRoot").finish_non_exhaustive()
    }
}

/// One BAR of one function, as a device on a bus.
struct BarRegion {
    function: SharedFunction,
    bar: usize,
}

impl BusDevice for BarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bar_read(self.bar, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bar_write(self.bar, offset, data);
    }
}

impl PciRoot {
    /// A root complex with the host bridge at 00:00.0, mapping BARs on `pio` and `mmio`.
    pub fn new(pio: Arc<Bus>, mmio: Arc<Bus>) -> Result<Self, AttachError> {
        let mut root = RootComplex::new();
        root.attach(
            Bdf {
                bus: 0,
                device: 0,
                function: 0,
            },
            Arc::new(Mutex::new(HostBridge::new())),
        )?;
        Ok(Self(Arc::new(Inner {
            root: Mutex::new(root),
            pio,
            mmio,
            mapped: Mutex::new(BTreeMap::new()),
            io_events: Mutex::new(IoEventTable::default()),
            memory: Mutex::new(BarMemoryTable::default()),
            contexts: Mutex::new(BTreeMap::new()),
            sriov: Mutex::new(BTreeMap::new()),
            slots: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
        })))
    }

    /// Installs eventfds through `port` from now on.
    pub fn set_io_events(&self, port: Arc<dyn IoEvents>) {
        self.0
            .io_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .port = Some(port);
    }

    /// Installs BAR memory through `port` from now on.
    pub fn set_memory_slots(&self, port: Arc<dyn MemorySlots>) {
        self.memory().port = Some(port);
    }

    /// Hands over `function`'s BAR memory (once per function, at build
    /// time, before the guest can enable decoding): each range is mapped
    /// into the guest wherever its BAR is mapped.
    pub fn add_bar_memory(&self, function: &SharedFunction, ranges: Vec<BarMemory>) {
        self.memory().sets.insert(function_key(function), ranges);
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, BarMemoryTable> {
        self.0.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over `function`'s eventfds (once per function, at build time,
    /// before the guest can enable decoding). While `active`, each is
    /// registered whenever its BAR is mapped; the returned handle switches
    /// them (an NVMe controller's doorbells only once the guest has set up
    /// shadow doorbells).
    pub fn add_bar_eventfds(
        &self,
        function: &SharedFunction,
        fds: Vec<BarEventFd>,
        active: bool,
    ) -> BarEvents {
        let key = function_key(function);
        self.0
            .io_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sets
            .insert(key, EventFdSet { fds, active });
        BarEvents {
            root: Arc::downgrade(&self.0),
            key,
        }
    }

    /// Keeps `ctx` true to `function` from now on (call it once the
    /// function is attached): its requester ID follows the guest's bus
    /// numbering, its Bus Master Enable the function's Command register.
    pub fn add_context(&self, function: &SharedFunction, ctx: Arc<FunctionContext>) {
        self.0
            .contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(function_key(function), ctx);
        self.refresh_requester_ids();
    }

    /// The I/O counters of the functions on it, and of the machine's
    /// vCPUs.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// Hands the SR-IOV effects of writes to `function` (a PF) to
    /// `handler` from now on.
    pub fn add_sriov_handler(&self, function: &SharedFunction, handler: Arc<dyn SriovHandler>) {
        self.sriov_handlers()
            .insert(function_key(function), handler);
    }

    /// Hands the Slot Control effects of writes to `port` (a hot-plug root
    /// port, as attached) to `handler` from now on.
    pub fn add_slot_handler(&self, port: &SharedFunction, handler: Arc<dyn SlotHandler>) {
        self.slot_handlers().insert(function_key(port), handler);
    }

    fn slot_handlers(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<dyn SlotHandler>>> {
        self.0.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sriov_handlers(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<dyn SriovHandler>>> {
        self.0.sriov.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The function (or bridge) the guest reaches at `bdf` now, if any.
    pub fn function(&self, bdf: Bdf) -> Option<SharedFunction> {
        self.lock().function(bdf)
    }

    /// The address at which the guest reaches `function` now
    /// ([`RootComplex::address_of`]).
    pub fn address_of(&self, function: &SharedFunction) -> Option<Bdf> {
        self.lock().address_of(function)
    }

    /// Where `function` is attached now, if it is.
    pub fn slot_of(&self, function: &SharedFunction) -> Option<Slot> {
        self.lock().slot_of(function)
    }

    /// Gives every function's context the requester ID it has now.
    fn refresh_requester_ids(&self) {
        let ids = self.lock().requester_ids();
        let contexts = self.0.contexts.lock().unwrap_or_else(|p| p.into_inner());
        for (function, bdf) in ids {
            if let Some(ctx) = contexts.get(&function_key(&function)) {
                ctx.set_requester(RequesterId::new(bdf.bus, bdf.device, bdf.function));
            }
        }
    }

    /// Places another function on the root complex.
    pub fn attach(&self, bdf: Bdf, function: SharedFunction) -> Result<(), AttachError> {
        self.lock().attach(bdf, function)
    }

    /// Places a bridge (a root port or PCI-to-PCI bridge) on the root bus.
    pub fn attach_bridge<B: PciBridgeFunction + 'static>(
        &self,
        bdf: Bdf,
        bridge: Arc<Mutex<B>>,
    ) -> Result<BridgeId, AttachError> {
        self.lock().attach_bridge(bdf, bridge)
    }

    /// Places a function behind `parent`.
    pub fn attach_behind(
        &self,
        parent: BridgeId,
        device: u8,
        function_number: u8,
        function: SharedFunction,
    ) -> Result<(), AttachError> {
        self.lock()
            .attach_behind(parent, device, function_number, function)
    }

    /// Places a bridge behind `parent`.
    pub fn attach_bridge_behind<B: PciBridgeFunction + 'static>(
        &self,
        parent: BridgeId,
        device: u8,
        function_number: u8,
        bridge: Arc<Mutex<B>>,
    ) -> Result<BridgeId, AttachError> {
        self.lock()
            .attach_bridge_behind(parent, device, function_number, bridge)
    }

    /// The device for the port bus at 0xCF8. It holds the root complex
    /// weakly: the buses it sits on belong to the root complex.
    pub fn config_ports(&self) -> ConfigPorts {
        ConfigPorts(Arc::downgrade(&self.0))
    }

    /// The device for the MMIO bus at the ECAM base (held weakly, as
    /// [`PciRoot::config_ports`]).
    pub fn ecam(&self) -> Ecam {
        Ecam(Arc::downgrade(&self.0))
    }

    /// Takes the function at `slot` off the running machine (hot removal):
    /// its BARs leave the buses and their eventfds are unregistered, its
    /// context and its counters are forgotten, and it is dropped unless the caller holds it
    /// too (the last reference: its workers are joined and its backend
    /// drained, its MSI routes released). Configuration cycles for its
    /// address find nothing from now on.
    pub fn detach(&self, slot: Slot) -> Result<(), AttachError> {
        let function = self.lock().detach(slot)?;
        let key = function_key(&function);
        {
            let mut mapped = self.0.mapped.lock().unwrap_or_else(|p| p.into_inner());
            let mut events = self.0.io_events.lock().unwrap_or_else(|p| p.into_inner());
            let mine: Vec<_> = mapped
                .iter()
                .filter(|(k, _)| k.0 == key)
                .map(|(k, m)| (*k, *m))
                .collect();
            let mut memory = self.memory();
            for (k, m) in mine {
                events.apply(k, m, false);
                memory.apply(k, m, false);
                self.bus(m.io).remove(m.base);
                mapped.remove(&k);
            }
            events.sets.remove(&key);
            memory.remove(key);
        }
        let ctx = self
            .0
            .contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if let Some(ctx) = ctx {
            self.0.counters.unregister(ctx.counters());
        }
        let handler = self.sriov_handlers().remove(&key);
        if let Some(h) = handler {
            // A PF leaving takes its VFs with it.
            h.apply(
                self,
                SriovEffect {
                    vfs: Some(VfChange::Disabled),
                    ..Default::default()
                },
            );
        }
        drop(function);
        Ok(())
    }

    /// Takes the whole tree down, in the order nothing can reach a device
    /// that is going away: every BAR leaves its bus and its eventfds are
    /// unregistered, then every function is dropped (the last reference:
    /// a device's drop stops and joins its workers, and its backend drains
    /// the I/O in flight). Configuration cycles find an empty tree from
    /// now on. Returns how many functions were still shared elsewhere
    /// (each a leak of the old machine).
    pub fn shutdown(&self) -> usize {
        {
            let mut mapped = self.0.mapped.lock().unwrap_or_else(|p| p.into_inner());
            let mut events = self.0.io_events.lock().unwrap_or_else(|p| p.into_inner());
            let mut memory = self.memory();
            for (key, m) in std::mem::take(&mut *mapped) {
                events.apply(key, m, false);
                memory.apply(key, m, false);
                self.bus(m.io).remove(m.base);
            }
            events.sets.clear();
            events.port = None;
            memory.clear();
        }
        self.0
            .contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let handlers = std::mem::take(&mut *self.sriov_handlers());
        drop(handlers);
        let slots = std::mem::take(&mut *self.slot_handlers());
        drop(slots);
        let old = std::mem::replace(&mut *self.lock(), RootComplex::new());
        let functions = old.into_functions();
        let shared = functions
            .iter()
            .filter(|f| Arc::strong_count(f) > 1)
            .count();
        drop(functions);
        shared
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RootComplex> {
        self.0.root.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies what a configuration write changed. Runs with no lock of a
    /// bus held; only writes that changed something (a BAR, decoding, a
    /// bridge's windows or bus numbers) cost a resync.
    fn apply(&self, routed: RoutedEffects) {
        let Some(bdf) = routed.bdf else {
            return;
        };
        if routed.effects == ConfigWriteEffects::default() {
            return;
        }
        if let Some(on) = routed.effects.bus_master {
            let function = self.lock().function(bdf);
            let contexts = self.0.contexts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(ctx) = function.and_then(|f| contexts.get(&function_key(&f)).cloned()) {
                ctx.set_bus_master(on);
            }
        }
        if routed.effects.bridge.bus_numbers.is_some() {
            self.refresh_requester_ids();
        }
        self.resync();
        if let Some(effects) = routed.effects.slot {
            let function = self.lock().function(bdf);
            let handler =
                function.and_then(|f| self.slot_handlers().get(&function_key(&f)).cloned());
            match handler {
                Some(h) => h.apply(effects),
                None => tracing::debug!("slot effect at {bdf} with no handler: {effects:?}"),
            }
        }
        if let Some(effect) = routed.effects.sriov {
            let function = self.lock().function(bdf);
            let handler =
                function.and_then(|f| self.sriov_handlers().get(&function_key(&f)).cloned());
            match handler {
                Some(h) => h.apply(self, effect),
                None => tracing::debug!("SR-IOV effect at {bdf} with no handler: {effect:?}"),
            }
        }
    }

    /// Brings the bus mappings in line with what decodes now
    /// ([`RootComplex::decoded_bars`]): mappings that stopped answering go
    /// first, then moved ones are relocated (each in one step), then new
    /// ones are inserted. A BAR placed over another range stays unmapped
    /// with a log line; the other range keeps its device.
    pub fn resync(&self) {
        let decoded = self.lock().decoded_bars();
        let mut wanted: BTreeMap<MappingKey, (Mapping, DecodedBar)> = BTreeMap::new();
        for d in decoded {
            let key = (function_key(&d.function), d.bar.index);
            let m = Mapping {
                io: d.bar.is_io(),
                base: d.window.addr,
                size: d.window.size,
            };
            wanted.insert(key, (m, d));
        }
        let mut mapped = self.0.mapped.lock().unwrap_or_else(|p| p.into_inner());
        let events = self.0.io_events.lock().unwrap_or_else(|p| p.into_inner());
        let mut memory = self.memory();
        let stale: Vec<_> = mapped
            .iter()
            .filter(|(k, m)| {
                wanted
                    .get(k)
                    .is_none_or(|(w, _)| w.io != m.io || w.size != m.size)
            })
            .map(|(k, m)| (*k, *m))
            .collect();
        for (key, m) in stale {
            events.apply(key, m, false);
            memory.apply(key, m, false);
            self.bus(m.io).remove(m.base);
            mapped.remove(&key);
        }
        for (key, (want, decoded)) in &wanted {
            let bus = self.bus(want.io);
            let result = match mapped.get(key) {
                Some(m) if m.base == want.base => continue,
                Some(m) => {
                    events.apply(*key, *m, false);
                    memory.apply(*key, *m, false);
                    bus.relocate(m.base, want.base)
                }
                None => {
                    let region = BarRegion {
                        function: decoded.function.clone(),
                        bar: decoded.bar.index,
                    };
                    bus.insert(want.base, want.size, 0, Arc::new(Mutex::new(region)))
                }
            };
            match result {
                Ok(()) => {
                    mapped.insert(*key, *want);
                    events.apply(*key, *want, true);
                    memory.apply(*key, *want, true);
                }
                Err(e) => {
                    if let Some(m) = mapped.remove(key) {
                        bus.remove(m.base);
                    }
                    ratelimit::warn!("PCI BAR {} at {:#x}: not mapped: {e}", key.1, want.base);
                }
            }
        }
    }

    fn bus(&self, io: bool) -> &Bus {
        if io {
            &self.0.pio
        } else {
            &self.0.mmio
        }
    }
}

/// Identifies a function across bus renumbering: the address of its object.
fn function_key(f: &SharedFunction) -> usize {
    Arc::as_ptr(f) as *const () as usize
}

/// The root complex behind a weak reference, if the machine still has it.
fn upgrade(root: &Weak<Inner>) -> Option<PciRoot> {
    root.upgrade().map(PciRoot)
}

/// 0xCF8–0xCFF. Once the root complex is gone it reads all-ones.
#[derive(Debug)]
pub struct ConfigPorts(Weak<Inner>);

impl BusDevice for ConfigPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match upgrade(&self.0) {
            Some(root) => root.lock().legacy_read(offset, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(root) = upgrade(&self.0) {
            let routed = root.lock().legacy_write(offset, data);
            root.apply(routed);
        }
    }
}

/// The ECAM window. Once the root complex is gone it reads all-ones.
#[derive(Debug)]
pub struct Ecam(Weak<Inner>);

impl BusDevice for Ecam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match upgrade(&self.0) {
            Some(root) => root.lock().ecam_read(offset, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(root) = upgrade(&self.0) {
            let routed = root.lock().ecam_write(offset, data);
            root.apply(routed);
        }
    }
}

#[cfg(test)]
mod tests {
    use pci::bar::{BarKind, BarSpec};
    use pci::config::{command, ConfigWriteEffects, Identity, Type0Config, COMMAND};
    use pci::function::PciFunction;

    use super::*;

    /// A function with a 4 KiB memory BAR 0 and a 16-port I/O BAR 1 whose
    /// contents read back as the offset.
    struct Fake {
        config: Type0Config,
        writes: Vec<(usize, u64)>,
    }

    impl PciFunction for Fake {
        fn config_read(&self, offset: usize, data: &mut [u8]) {
            self.config.read(offset, data);
        }
        fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
            self.config.write(offset, data)
        }
        fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn bar_write(&mut self, bar: usize, offset: u64, _data: &[u8]) {
            self.writes.push((bar, offset));
        }
        fn bar_windows(&self) -> Vec<(BarSpec, Option<pci::config::BarWindow>)> {
            self.config.bar_windows()
        }
    }

    fn setup() -> (PciRoot, Arc<Bus>, Arc<Bus>, Arc<Mutex<Fake>>, Ecam) {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let root = PciRoot::new(pio.clone(), mmio.clone()).unwrap();
        let bars = [
            BarSpec {
                index: 0,
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
                size: 0x1000,
            },
            BarSpec {
                index: 1,
                kind: BarKind::Io,
                size: 0x10,
            },
        ];
        let id = Identity {
            vendor: 0x1234,
            device: 0x5678,
            class: 0xff0000,
            revision: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        };
        let fake = Arc::new(Mutex::new(Fake {
            config: Type0Config::new(id, &bars, 1).unwrap(),
            writes: vec![],
        }));
        root.attach(
            Bdf {
                bus: 0,
                device: 3,
                function: 0,
            },
            fake.clone(),
        )
        .unwrap();
        let ecam = root.ecam();
        (root, pio, mmio, fake, ecam)
    }

    /// ECAM offset of 00:03.0's register `reg`.
    fn at(reg: usize) -> u64 {
        (3 << 15) | reg as u64
    }

    #[test]
    fn test_ports_and_ecam_reach_the_same_host_bridge() {
        let (root, ..) = setup();
        let mut ports = root.config_ports();
        let mut ecam = root.ecam();
        ports.write(0, &(1u32 << 31).to_le_bytes());
        let mut via_ports = [0u8; 4];
        ports.read(4, &mut via_ports);
        let mut via_ecam = [0u8; 4];
        ecam.read(0, &mut via_ecam);
        assert_eq!(via_ports, via_ecam);
        assert_eq!(u32::from_le_bytes(via_ecam), 0x0008_1b36);
    }

    #[test]
    fn test_bar_programmed_and_enabled_is_mapped_then_moved_then_unmapped() {
        let (_root, pio, mmio, fake, mut ecam) = setup();
        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(at(0x14), &0xc100u32.to_le_bytes());
        let mut d = [0u8; 1];
        assert!(!mmio.read(0xc000_0010, &mut d), "decoding is off");
        ecam.write(at(COMMAND), &(command::MEMORY | command::IO).to_le_bytes());
        assert!(mmio.read(0xc000_0010, &mut d));
        assert_eq!(d, [0x10]);
        assert!(pio.write(0xc105, &[1]));
        ecam.write(at(0x10), &0xc000_2000u32.to_le_bytes());
        assert!(
            !mmio.read(0xc000_0010, &mut d),
            "no stale mapping after a move"
        );
        assert!(mmio.read(0xc000_2020, &mut d));
        assert_eq!(d, [0x20]);
        ecam.write(at(COMMAND), &0u16.to_le_bytes());
        assert!(!mmio.read(0xc000_2020, &mut d));
        assert!(!pio.write(0xc105, &[1]));
        assert_eq!(fake.lock().unwrap().writes, vec![(1, 5)]);
    }

    #[test]
    fn test_bar_over_another_device_stays_unmapped_and_other_keeps_range() {
        let (_root, _pio, mmio, _fake, mut ecam) = setup();
        #[derive(Default)]
        struct Other(u32);
        impl BusDevice for Other {
            fn read(&mut self, _: u64, data: &mut [u8]) {
                data.fill(0xab);
            }
            fn write(&mut self, _: u64, _: &[u8]) {
                self.0 += 1;
            }
        }
        let other = Arc::new(Mutex::new(Other::default()));
        mmio.insert(0xd000_0000, 0x1000, 0, other.clone()).unwrap();
        ecam.write(at(0x10), &0xd000_0000u32.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        let mut d = [0u8; 1];
        assert!(mmio.read(0xd000_0004, &mut d));
        assert_eq!(d, [0xab], "the other device still answers");
        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(at(COMMAND), &0u16.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        assert!(mmio.read(0xc000_0004, &mut d));
        assert_eq!(d, [0x04], "mapped once moved to a free range");
        assert!(mmio.read(0xd000_0004, &mut d));
        assert_eq!(d, [0xab]);
    }

    #[test]
    fn test_context_follows_bus_master_enable_and_the_functions_address() {
        let (root, _pio, _mmio, fake, mut ecam) = setup();
        let ctx = FunctionContext::new(RequesterId::default());
        let function: SharedFunction = fake;
        root.add_context(&function, ctx.clone());
        assert_eq!(ctx.requester(), RequesterId::new(0, 3, 0));
        assert!(!ctx.bus_master());
        ecam.write(at(COMMAND), &command::BUS_MASTER.to_le_bytes());
        assert!(ctx.bus_master());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        assert!(!ctx.bus_master());
    }

    #[test]
    fn test_context_requester_id_follows_a_root_ports_bus_renumbering() {
        use pci::bridge::{RootPort, RootPortConfig};
        let root = PciRoot::new(Arc::new(Bus::new()), Arc::new(Bus::new())).unwrap();
        let port = root
            .attach_bridge(
                Bdf {
                    bus: 0,
                    device: 1,
                    function: 0,
                },
                Arc::new(Mutex::new(
                    RootPort::new(RootPortConfig::default()).unwrap(),
                )),
            )
            .unwrap();
        let (_r, _p, _m, fake, _e) = setup();
        let function: SharedFunction = fake;
        root.attach_behind(port, 0, 0, function.clone()).unwrap();
        let ctx = FunctionContext::new(RequesterId::default());
        root.add_context(&function, ctx.clone());
        let mut ecam = root.ecam();
        let port_reg = |reg: u64| (1 << 15) | reg;
        ecam.write(port_reg(0x18), &0x0005_0500u32.to_le_bytes());
        assert_eq!(ctx.requester(), RequesterId::new(5, 0, 0));
        ecam.write(port_reg(0x18), &0x0009_0900u32.to_le_bytes());
        assert_eq!(ctx.requester(), RequesterId::new(9, 0, 0), "renumbered");
    }

    #[test]
    fn test_shutdown_drops_every_function_and_unmaps_its_bars() {
        let (root, _pio, mmio, fake, mut ecam) = setup();
        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        let mut d = [0u8; 1];
        assert!(mmio.read(0xc000_0010, &mut d));
        let weak = Arc::downgrade(&fake);
        assert_eq!(root.shutdown(), 1, "the test still holds the function");
        drop(fake);
        assert!(weak.upgrade().is_none(), "nothing else held it");
        assert!(!mmio.read(0xc000_0010, &mut d), "BAR unmapped");
        let mut id = [0u8; 4];
        ecam.read(at(0), &mut id);
        assert_eq!(id, [0xff; 4], "no function answers");
        drop(root);
        ecam.read(0, &mut id);
        assert_eq!(
            id, [0xff; 4],
            "the ECAM window outlives the root complex harmlessly"
        );
    }

    #[test]
    fn test_detached_function_answers_nothing_and_a_new_one_in_its_place_works() {
        let (root, _pio, mmio, fake, mut ecam) = setup();
        let events = Arc::new(RecordingEvents::default());
        root.set_io_events(events.clone());
        let function: SharedFunction = fake.clone();
        let fd = BarEventFd {
            bar: 0,
            offset: 0x100,
            fd: EventFd::new(0).unwrap(),
        };
        root.add_bar_eventfds(&function, vec![fd], true);
        let ctx = FunctionContext::new(RequesterId::default());
        root.add_context(&function, ctx.clone());
        drop(function);
        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(
            at(COMMAND),
            &(command::MEMORY | command::BUS_MASTER).to_le_bytes(),
        );
        assert!(ctx.bus_master());
        let weak = Arc::downgrade(&fake);
        drop(fake);

        let slot = Slot::Root(Bdf {
            bus: 0,
            device: 3,
            function: 0,
        });
        root.detach(slot).unwrap();
        assert!(
            weak.upgrade().is_none(),
            "dropped: its workers and vectors with it"
        );
        let mut d = [0u8; 4];
        assert!(!mmio.read(0xc000_0010, &mut d[..1]), "BAR gone");
        ecam.read(at(0), &mut d);
        assert_eq!(d, [0xff; 4], "config gone");
        assert_eq!(
            events.0.lock().unwrap().last(),
            Some(&(false, false, 0xc000_0100)),
            "doorbell eventfd unregistered"
        );
        ecam.write(at(COMMAND), &0u16.to_le_bytes());
        assert!(ctx.bus_master(), "the old context no longer follows writes");
        assert_eq!(root.detach(slot), Err(AttachError::NothingAt(slot)));

        let (_r, _p, _m, other, _e) = setup();
        root.attach(
            Bdf {
                bus: 0,
                device: 3,
                function: 0,
            },
            other.clone(),
        )
        .unwrap();
        ecam.read(at(0), &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x5678_1234, "the new one answers");
        ecam.write(at(0x10), &0xc000_4000u32.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        assert!(mmio.read(0xc000_4010, &mut d[..1]));
        assert_eq!(d[0], 0x10, "its BAR maps and answers");
    }

    /// Records (register?, io, address) calls.
    #[derive(Default)]
    struct RecordingEvents(Mutex<Vec<(bool, bool, u64)>>);

    impl IoEvents for RecordingEvents {
        fn register(&self, io: bool, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
            self.0.lock().unwrap().push((true, io, addr));
            Ok(())
        }
        fn unregister(&self, io: bool, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
            self.0.lock().unwrap().push((false, io, addr));
            Ok(())
        }
    }

    #[test]
    fn test_bar_eventfd_follows_its_bar_when_mapped_moved_and_disabled() {
        let (root, _pio, _mmio, fake, mut ecam) = setup();
        let events = Arc::new(RecordingEvents::default());
        root.set_io_events(events.clone());
        let function: SharedFunction = fake;
        let fds = vec![
            BarEventFd {
                bar: 0,
                offset: 0x100,
                fd: EventFd::new(0).unwrap(),
            },
            BarEventFd {
                bar: 1,
                offset: 0x4,
                fd: EventFd::new(0).unwrap(),
            },
        ];
        root.add_bar_eventfds(&function, fds, true);

        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(at(0x14), &0xc100u32.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        ecam.write(at(0x10), &0xc000_2000u32.to_le_bytes());
        ecam.write(at(COMMAND), &(command::MEMORY | command::IO).to_le_bytes());
        ecam.write(at(COMMAND), &0u16.to_le_bytes());

        assert_eq!(
            *events.0.lock().unwrap(),
            vec![
                (true, false, 0xc000_0100),
                (false, false, 0xc000_0100),
                (true, false, 0xc000_2100),
                (true, true, 0xc104),
                (false, false, 0xc000_2100),
                (false, true, 0xc104),
            ]
        );
    }

    /// Records (map?, gpa, len, host address) calls; slots count up.
    #[derive(Default)]
    struct RecordingSlots(Mutex<Vec<(bool, u64, u64, u64)>>);

    impl MemorySlots for RecordingSlots {
        fn map(&self, gpa: u64, len: u64, host_addr: u64) -> std::io::Result<u32> {
            let mut calls = self.0.lock().unwrap();
            calls.push((true, gpa, len, host_addr));
            Ok(calls.len() as u32)
        }
        fn unmap(&self, slot: u32) {
            let mut calls = self.0.lock().unwrap();
            let (_, gpa, len, host) = calls[slot as usize - 1];
            calls.push((false, gpa, len, host));
        }
    }

    #[test]
    fn test_bar_memory_follows_its_bar_and_leaves_before_the_function() {
        let (root, _pio, _mmio, fake, mut ecam) = setup();
        let slots = Arc::new(RecordingSlots::default());
        root.set_memory_slots(slots.clone());
        let function: SharedFunction = fake.clone();
        let page = BarMemory {
            bar: 0,
            offset: 0,
            len: 0x1000,
            host_addr: 0x7f00_0000_0000,
        };
        let beyond = BarMemory {
            offset: 0x1000,
            ..page
        };
        root.add_bar_memory(&function, vec![page, beyond]);
        drop(function);
        drop(fake);

        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        ecam.write(at(0x10), &0xc000_2000u32.to_le_bytes());
        ecam.write(at(COMMAND), &0u16.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        let before_detach = slots.0.lock().unwrap().len();
        root.detach(Slot::Root(Bdf {
            bus: 0,
            device: 3,
            function: 0,
        }))
        .unwrap();

        let host = 0x7f00_0000_0000;
        assert_eq!(
            *slots.0.lock().unwrap(),
            vec![
                (true, 0xc000_0000, 0x1000, host),
                (false, 0xc000_0000, 0x1000, host),
                (true, 0xc000_2000, 0x1000, host),
                (false, 0xc000_2000, 0x1000, host),
                (true, 0xc000_2000, 0x1000, host),
                (false, 0xc000_2000, 0x1000, host),
            ],
            "the range past the 4 KiB BAR is never mapped"
        );
        assert_eq!(before_detach, 5, "detach removed the last slot");
    }

    #[test]
    fn test_inactive_bar_eventfds_register_only_when_switched_on() {
        let (root, _pio, _mmio, fake, mut ecam) = setup();
        let events = Arc::new(RecordingEvents::default());
        root.set_io_events(events.clone());
        let function: SharedFunction = fake;
        let fd = BarEventFd {
            bar: 0,
            offset: 0x8,
            fd: EventFd::new(0).unwrap(),
        };
        let handle = root.add_bar_eventfds(&function, vec![fd], false);
        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());
        ecam.write(at(COMMAND), &command::MEMORY.to_le_bytes());
        let before = events.0.lock().unwrap().clone();

        handle.set_active(true);
        handle.set_active(true);
        ecam.write(at(0x10), &0xc000_4000u32.to_le_bytes());
        handle.set_active(false);
        ecam.write(at(0x10), &0xc000_0000u32.to_le_bytes());

        assert_eq!(before, vec![], "nothing while inactive");
        assert_eq!(
            *events.0.lock().unwrap(),
            vec![
                (true, false, 0xc000_0008),
                (false, false, 0xc000_0008),
                (true, false, 0xc000_4008),
                (false, false, 0xc000_4008),
            ]
        );
    }
}
