//! Interrupt wiring into KVM's split irqchip: the local APICs in the kernel,
//! the IOAPIC in user space ([`crate::irqchip`]), and every interrupt reaching
//! a local APIC as a message.
//!
//! KVM's GSI routing table is one list that `KVM_SET_GSI_ROUTING` replaces as
//! a whole, so one [`GsiRouter`] owns it:
//!
//! ```text
//!  GSI 0..24   IOAPIC pin n's message (KVM scans these routes for
//!              level-triggered vectors to report their EOI to us)
//!  GSI 24..    MSI/MSI-X vectors of PCI functions, each with an irqfd
//! ```
//!
//! A device's vectors are a [`KvmMsiVectors`]: the first time a vector gets
//! a message it is given a GSI and an irqfd; a send is then one eventfd
//! write, which KVM turns into the message without a trip through any lock
//! of ours.
//!
//! With interrupt remapping (the emulated VT-d, [`InterruptRemap`]) every
//! route keeps the message its source programmed and who sent it (a PCI
//! function's requester ID, or the IOAPIC's source ID); KVM is given the
//! translated message. Translated routes are the remapping cache: the
//! unit calls [`GsiRouter::refresh`] when the guest invalidates its
//! interrupt entry cache or turns remapping on or off. A blocked message
//! has no KVM route; sending it records the unit's fault instead.
//!
//! Rebuilding KVM's table costs the host (the kernel copies it and waits
//! for a grace period), and a guest can ask for it in a loop by rewriting
//! an MSI-X entry, toggling MSI Enable or reprogramming the IOAPIC. So the
//! table is installed only when what KVM delivers changed, once for all the
//! vectors one guest write changed ([`MsiVectors::update`] carries them
//! together), and at most [`PUSH_BURST`] times at once and [`PUSH_RATE`]
//! times a second after that: past the budget, the thread that changed a
//! route (the guest's vCPU) waits for it. A route is always in KVM before
//! the change returns, so a vector unmasked after it is delivered through
//! the route the guest programmed.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use dma::{FunctionContext, RequesterId};
use irq::msi::{MsiMessage, MsiSink, MsiVectors, RouteChange};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_msi, kvm_msi,
    KvmIrqRouting, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use ratelimit::TokenBucket;
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// Most routes KVM accepts (`KVM_MAX_IRQ_ROUTES`).
pub const MAX_ROUTES: u32 = 4096;
/// Routing tables installed at once before the rate applies (a guest's
/// drivers setting up every vector at boot stay below it).
pub const PUSH_BURST: u32 = 256;
/// Routing tables installed per second past [`PUSH_BURST`].
pub const PUSH_RATE: u32 = 200;

/// What the router needs of KVM: its GSI routing table, irqfds, and
/// messages sent once. `VmFd` in the VMM; a fake in tests.
pub trait KvmInterrupts: Send + Sync + std::fmt::Debug {
    /// Replaces the whole routing table (`KVM_SET_GSI_ROUTING`).
    fn set_routes(&self, entries: &[kvm_irq_routing_entry]) -> Result<(), kvm_ioctls::Error>;
    /// Signals `gsi` whenever `fd` is written (`KVM_IRQFD`).
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), kvm_ioctls::Error>;
    /// Undoes [`KvmInterrupts::register_irqfd`].
    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), kvm_ioctls::Error>;
    /// Sends one message (`KVM_SIGNAL_MSI`).
    fn signal_msi(&self, msi: kvm_msi) -> Result<(), kvm_ioctls::Error>;
}

impl KvmInterrupts for VmFd {
    fn set_routes(&self, entries: &[kvm_irq_routing_entry]) -> Result<(), kvm_ioctls::Error> {
        let table = KvmIrqRouting::from_entries(entries)
            .map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
        self.set_gsi_routing(&table)
    }

    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), kvm_ioctls::Error> {
        VmFd::register_irqfd(self, fd, gsi)
    }

    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<(), kvm_ioctls::Error> {
        VmFd::unregister_irqfd(self, fd, gsi)
    }

    fn signal_msi(&self, msi: kvm_msi) -> Result<(), kvm_ioctls::Error> {
        VmFd::signal_msi(self, msi).map(|_| ())
    }
}

/// Why a route could not be set.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Every GSI is taken.
    #[error("no free GSI: all {MAX_ROUTES} interrupt routes are in use")]
    Exhausted,
    /// KVM refused the table or an irqfd.
    #[error("KVM refused an interrupt route")]
    Kvm(#[source] kvm_ioctls::Error),
    /// An eventfd could not be made.
    #[error("cannot create an eventfd for an irqfd")]
    EventFd(#[source] std::io::Error),
}

fn msi_route(gsi: u32, msg: MsiMessage) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            msi: kvm_irq_routing_msi {
                address_lo: msg.address as u32,
                address_hi: (msg.address >> 32) as u32,
                data: msg.data,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

/// Who sends a message: interrupt remapping validates and translates by
/// it (VT-d 4.1 §5.1, §9.10 SID).
#[derive(Clone, Debug)]
pub enum Source {
    /// The IOAPIC, with the source ID of its DMAR device scope.
    Ioapic,
    /// A PCI function, by its requester ID as the guest's bus numbers make
    /// it now.
    Function(Arc<FunctionContext>),
}

/// The source ID the IOAPIC's messages carry (the DMAR's IOAPIC scope).
pub const IOAPIC_SOURCE_ID: RequesterId = RequesterId(0xff00);

impl Source {
    /// The requester ID of the source now.
    pub fn requester(&self) -> RequesterId {
        match self {
            Self::Ioapic => IOAPIC_SOURCE_ID,
            Self::Function(ctx) => ctx.requester(),
        }
    }
}

/// Interrupt remapping hardware the router sends messages through.
pub trait InterruptRemap: Send + Sync + std::fmt::Debug {
    /// The message that reaches the local APICs for `msg` from
    /// `requester`, or `None` if it is blocked. With `record`, a blocked
    /// message is an interrupt request that happened, and its fault is
    /// recorded (and signalled); without, it is a route being installed.
    fn remap(&self, msg: MsiMessage, requester: RequesterId, record: bool) -> Option<MsiMessage>;
}

#[derive(Clone, Debug)]
struct Route {
    msg: MsiMessage,
    source: Source,
}

#[derive(Debug, Default)]
struct Table {
    routes: BTreeMap<u32, Route>,
    /// What KVM was given for each route; absent for a blocked one.
    delivered: BTreeMap<u32, MsiMessage>,
    next: u32,
    free: Vec<u32>,
}

/// The VM's GSI routing table.
#[derive(Debug)]
pub struct GsiRouter {
    vm: Arc<dyn KvmInterrupts>,
    table: Mutex<Table>,
    /// Held by whoever installs a table, from the change until KVM has it
    /// (so tables reach KVM in the order they were made), and waited on
    /// past the budget without holding `table`.
    pushes: Mutex<TokenBucket>,
    /// Held weakly: the unit's own events go out through this router.
    remap: OnceLock<std::sync::Weak<dyn InterruptRemap>>,
    /// KVM takes destination bits 31:8 from the upper address
    /// (`KVM_X2APIC_API_USE_32BIT_IDS`) and refuses a route whose upper
    /// address has any of bits 7:0 set.
    x2apic_format: OnceLock<()>,
    /// How many routes are blocked by interrupt remapping.
    blocked_routes: AtomicUsize,
}

impl GsiRouter {
    /// A router whose GSIs below `reserved` are the IOAPIC's pins, which
    /// installs at most [`PUSH_BURST`] tables at once and [`PUSH_RATE`] a
    /// second.
    pub fn new(vm: Arc<dyn KvmInterrupts>, reserved: u32) -> Self {
        Self::with_push_limit(vm, reserved, PUSH_BURST, PUSH_RATE)
    }

    /// A router with its own budget of table installs: `burst` at once,
    /// `per_second` after that.
    pub fn with_push_limit(
        vm: Arc<dyn KvmInterrupts>,
        reserved: u32,
        burst: u32,
        per_second: u32,
    ) -> Self {
        Self {
            vm,
            table: Mutex::new(Table {
                next: reserved,
                ..Default::default()
            }),
            pushes: Mutex::new(TokenBucket::new(burst, per_second, Instant::now())),
            remap: OnceLock::new(),
            x2apic_format: OnceLock::new(),
            blocked_routes: AtomicUsize::new(0),
        }
    }

    /// Sends every later message through `unit` (set once, before the
    /// guest runs). The router holds it weakly (the unit sends its fault
    /// events through the router); once it is gone, remapped messages are
    /// blocked.
    pub fn set_remap(&self, unit: &Arc<dyn InterruptRemap>) {
        let _ = self.remap.set(Arc::downgrade(unit));
    }

    /// KVM has `KVM_X2APIC_API_USE_32BIT_IDS` on (set once, before the
    /// guest runs).
    pub fn set_x2apic_format(&self) {
        let _ = self.x2apic_format.set(());
    }

    /// The message KVM should deliver for `route`, or `None` if it is
    /// blocked or one KVM would refuse.
    fn translate(&self, msg: MsiMessage, source: &Source, record: bool) -> Option<MsiMessage> {
        let out = match self.remap.get() {
            Some(unit) => unit.upgrade()?.remap(msg, source.requester(), record)?,
            None => msg,
        };
        if self.x2apic_format.get().is_some() && (out.address >> 32) & 0xff != 0 {
            tracing::debug!("message {out:x?} has reserved upper address bits; not delivered");
            return None;
        }
        Some(out)
    }

    /// Translates every route again and installs the table (the unit's
    /// interrupt entry cache was invalidated, or remapping turned on or
    /// off).
    pub fn refresh(&self) -> Result<(), RouteError> {
        let mut bucket = self.pushes.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = {
            let mut t = self.lock();
            let entries = self.retranslate(&mut t);
            self.count_blocked(&t);
            entries
        };
        entries.map_or(Ok(()), |e| self.push(&mut bucket, &e))
    }

    /// Whether `gsi`'s route is blocked by interrupt remapping (no
    /// message reaches KVM for it). Lock-free while no route is blocked,
    /// which is the case on every send of a machine without remapping
    /// and of a guest whose remapping table is in order.
    pub fn blocked(&self, gsi: u32) -> bool {
        if self.blocked_routes.load(Ordering::Acquire) == 0 {
            return false;
        }
        let t = self.lock();
        t.routes.contains_key(&gsi) && !t.delivered.contains_key(&gsi)
    }

    /// Records how many routes KVM was not given (every delivered route
    /// has a route, so the difference is the blocked ones).
    fn count_blocked(&self, t: &Table) {
        let blocked = t.routes.len().saturating_sub(t.delivered.len());
        self.blocked_routes.store(blocked, Ordering::Release);
    }

    /// KVM's routing table for `delivered`.
    fn entries(delivered: &BTreeMap<u32, MsiMessage>) -> Vec<kvm_irq_routing_entry> {
        delivered.iter().map(|(g, m)| msi_route(*g, *m)).collect()
    }

    /// Installs `entries` as KVM's routing table once `bucket` has a token
    /// (the caller holds it, so no other table overtakes this one).
    fn push(
        &self,
        bucket: &mut TokenBucket,
        entries: &[kvm_irq_routing_entry],
    ) -> Result<(), RouteError> {
        bucket.take_blocking();
        self.vm.set_routes(entries).map_err(RouteError::Kvm)
    }

    /// The vector KVM delivers for `gsi`, if it has a route.
    pub fn delivered_vector(&self, gsi: u32) -> Option<u8> {
        self.lock().delivered.get(&gsi).map(|m| m.data as u8)
    }

    /// Translates every route again; the table to install if what KVM
    /// delivers changed.
    fn retranslate(&self, t: &mut Table) -> Option<Vec<kvm_irq_routing_entry>> {
        let delivered: BTreeMap<u32, MsiMessage> = t
            .routes
            .iter()
            .filter_map(|(g, r)| Some((*g, self.translate(r.msg, &r.source, false)?)))
            .collect();
        if delivered == t.delivered {
            return None;
        }
        t.delivered = delivered;
        Some(Self::entries(&t.delivered))
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A GSI for a new message route.
    pub fn allocate(&self) -> Result<u32, RouteError> {
        let mut t = self.lock();
        if let Some(gsi) = t.free.pop() {
            return Ok(gsi);
        }
        if t.next >= MAX_ROUTES {
            return Err(RouteError::Exhausted);
        }
        t.next += 1;
        Ok(t.next - 1)
    }

    /// Routes `gsi` to `msg` from `source` (`None`: no route), and
    /// installs the table if what KVM delivers changed.
    pub fn set(
        &self,
        gsi: u32,
        msg: Option<MsiMessage>,
        source: &Source,
    ) -> Result<(), RouteError> {
        self.set_all(&[(gsi, msg)], source)
    }

    /// Routes each `(gsi, msg)` of `routes` from `source`, and installs
    /// the table once if what KVM delivers changed; it is in KVM when this
    /// returns.
    pub fn set_all(
        &self,
        routes: &[(u32, Option<MsiMessage>)],
        source: &Source,
    ) -> Result<(), RouteError> {
        let mut bucket = self.pushes.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = {
            let mut t = self.lock();
            let mut changed = false;
            for &(gsi, msg) in routes {
                changed |= self.set_locked(&mut t, gsi, msg, source);
            }
            self.count_blocked(&t);
            changed.then(|| Self::entries(&t.delivered))
        };
        entries.map_or(Ok(()), |e| self.push(&mut bucket, &e))
    }

    /// Routes `gsi` to `msg` in `t`; whether what KVM delivers changed.
    fn set_locked(
        &self,
        t: &mut Table,
        gsi: u32,
        msg: Option<MsiMessage>,
        source: &Source,
    ) -> bool {
        let old = match msg {
            Some(msg) => t.routes.insert(
                gsi,
                Route {
                    msg,
                    source: source.clone(),
                },
            ),
            None => t.routes.remove(&gsi),
        };
        if old.map(|r| r.msg) == msg {
            return false;
        }
        let before = t.delivered.get(&gsi).copied();
        let now = msg.and_then(|m| self.translate(m, source, false));
        if before == now {
            return false;
        }
        match now {
            Some(m) => t.delivered.insert(gsi, m),
            None => t.delivered.remove(&gsi),
        };
        true
    }

    /// Gives `gsi` back, removing its route.
    pub fn release(&self, gsi: u32) -> Result<(), RouteError> {
        self.set(gsi, None, &Source::Ioapic)?;
        self.lock().free.push(gsi);
        Ok(())
    }

    /// Sends `msg` from `source` once without a route (`KVM_SIGNAL_MSI`),
    /// through interrupt remapping; a blocked message records its fault
    /// and is not sent.
    pub fn send(&self, msg: MsiMessage, source: &Source) -> Result<(), RouteError> {
        match self.translate(msg, source, true) {
            Some(m) => self.signal(m),
            None => Ok(()),
        }
    }

    /// Sends `msg` once as it is, never remapped (`KVM_SIGNAL_MSI`): the
    /// remapping unit's own fault and invalidation events.
    pub fn signal(&self, msg: MsiMessage) -> Result<(), RouteError> {
        let msi = kvm_msi {
            address_lo: msg.address as u32,
            address_hi: (msg.address >> 32) as u32,
            data: msg.data,
            ..Default::default()
        };
        self.vm.signal_msi(msi).map_err(RouteError::Kvm)
    }
}

/// Messages sent straight into KVM (`KVM_SIGNAL_MSI`): the IOAPIC's
/// output (through interrupt remapping), or the remapping unit's own
/// events (never remapped).
#[derive(Debug, Clone)]
pub struct KvmMsiSink {
    router: Arc<GsiRouter>,
    source: Option<Source>,
}

impl KvmMsiSink {
    /// The IOAPIC's messages.
    pub fn ioapic(router: Arc<GsiRouter>) -> Self {
        Self {
            router,
            source: Some(Source::Ioapic),
        }
    }

    /// Messages interrupt remapping never sees (VT-d 4.1 §7.3: the fault
    /// and invalidation events).
    pub fn unremapped(router: Arc<GsiRouter>) -> Self {
        Self {
            router,
            source: None,
        }
    }
}

impl MsiSink for KvmMsiSink {
    fn deliver(&self, msg: MsiMessage) {
        let sent = match &self.source {
            Some(source) => self.router.send(msg, source),
            None => self.router.signal(msg),
        };
        if let Err(e) = sent {
            ratelimit::warn!("interrupt message {msg:x?} not delivered: {e}");
        }
    }
}

#[derive(Debug)]
struct Vector {
    gsi: u32,
    irqfd: EventFd,
    message: Option<MsiMessage>,
    /// Its irqfd is off KVM: signals wait in the eventfd.
    masked: bool,
}

/// One PCI function's MSI/MSI-X vectors, each a GSI route and an irqfd.
/// It knows the function (its context: the requester ID its messages
/// carry), which interrupt remapping will key its translation by.
#[derive(Debug)]
pub struct KvmMsiVectors {
    router: Arc<GsiRouter>,
    source: Source,
    vectors: Mutex<BTreeMap<u16, Vector>>,
}

impl KvmMsiVectors {
    /// The vectors of the function `source` describes, none routed yet.
    pub fn new(router: Arc<GsiRouter>, source: Arc<FunctionContext>) -> Self {
        Self {
            router,
            source: Source::Function(source),
            vectors: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u16, Vector>> {
        self.vectors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_vector(&self) -> Result<Vector, RouteError> {
        let gsi = self.router.allocate()?;
        let irqfd = EventFd::new(libc::EFD_NONBLOCK).map_err(RouteError::EventFd)?;
        self.router
            .vm
            .register_irqfd(&irqfd, gsi)
            .map_err(RouteError::Kvm)?;
        Ok(Vector {
            gsi,
            irqfd,
            message: None,
            masked: false,
        })
    }

    /// Routes every vector of `changes`, installing KVM's table once.
    /// A vector's message is recorded only once its route is in KVM, so a
    /// send after a failure takes the path that corrects the route.
    fn route(&self, changes: &[RouteChange]) -> Result<(), RouteError> {
        let mut vectors = self.lock();
        let mut routes = Vec::with_capacity(changes.len());
        for &(vector, message) in changes {
            let v = match vectors.entry(vector) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(_) if message.is_none() => continue,
                Entry::Vacant(e) => e.insert(self.new_vector()?),
            };
            routes.push((v.gsi, message));
        }
        self.router.set_all(&routes, &self.source)?;
        for &(vector, message) in changes {
            if let Some(v) = vectors.get_mut(&vector) {
                v.message = message;
            }
        }
        Ok(())
    }
}

impl MsiVectors for KvmMsiVectors {
    fn update(&self, changes: &[RouteChange]) {
        if let Err(e) = self.route(changes) {
            ratelimit::warn!(
                "{}: {} vector routes: {e}",
                self.source.requester(),
                changes.len()
            );
        }
    }

    fn send(&self, vector: u16, message: MsiMessage) {
        let routed = self
            .lock()
            .get(&vector)
            .filter(|v| v.message == Some(message))
            .filter(|v| !self.router.blocked(v.gsi))
            .map(|v| v.irqfd.write(1));
        match routed {
            Some(Ok(())) => {}
            Some(Err(e)) => ratelimit::warn!(
                "{}: vector {vector}: irqfd write failed: {e}",
                self.source.requester()
            ),
            None => {
                tracing::debug!("vector {vector} sent before its route was current");
                self.update(&[(vector, Some(message))]);
                if let Err(e) = self.router.send(message, &self.source) {
                    ratelimit::warn!("{}: vector {vector}: {e}", self.source.requester());
                }
            }
        }
    }

    fn counters(&self) -> Option<&counters::InterruptCounters> {
        match &self.source {
            Source::Function(f) => Some(&f.counters().interrupts),
            Source::Ioapic => None,
        }
    }
}

impl vfio::VectorTriggers for KvmMsiVectors {
    fn trigger(&self, vector: u16) -> std::io::Result<EventFd> {
        let mut vectors = self.lock();
        let v = match vectors.entry(vector) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(self.new_vector().map_err(std::io::Error::other)?),
        };
        v.irqfd.try_clone()
    }

    /// Masking takes the vector's irqfd off KVM, so the device's signals
    /// stay in the eventfd; unmasking gives it back, and KVM delivers a
    /// signal that waited (`KVM_IRQFD` injects at once when the eventfd
    /// is already signalled). Taking it off consumes what KVM had not yet
    /// delivered, so the pending bit starts clear.
    fn set_masked(&self, vector: u16, masked: bool) -> std::io::Result<()> {
        let mut vectors = self.lock();
        let v = match vectors.entry(vector) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if !masked => return Ok(()),
            Entry::Vacant(e) => e.insert(self.new_vector().map_err(std::io::Error::other)?),
        };
        if v.masked == masked {
            return Ok(());
        }
        let vm = &self.router.vm;
        if masked {
            vm.unregister_irqfd(&v.irqfd, v.gsi)
        } else {
            vm.register_irqfd(&v.irqfd, v.gsi)
        }
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        v.masked = masked;
        Ok(())
    }

    fn pending(&self, vector: u16) -> bool {
        self.lock()
            .get(&vector)
            .is_some_and(|v| v.masked && signalled(&v.irqfd))
    }
}

/// Whether `fd` holds a signal, without consuming it.
fn signalled(fd: &EventFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call, and a
    // zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLIN != 0
}

impl Drop for KvmMsiVectors {
    fn drop(&mut self) {
        let vectors = std::mem::take(&mut *self.lock());
        for v in vectors.into_values() {
            let _ = self.router.vm.unregister_irqfd(&v.irqfd, v.gsi);
            let _ = self.router.release(v.gsi);
        }
    }
}

#[cfg(test)]
mod tests;
