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

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dma::FunctionContext;
use irq::msi::{MsiMessage, MsiSink, MsiVectors};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_msi, kvm_msi,
    KvmIrqRouting, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// Most routes KVM accepts (`KVM_MAX_IRQ_ROUTES`).
pub const MAX_ROUTES: u32 = 4096;

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

#[derive(Debug, Default)]
struct Table {
    routes: BTreeMap<u32, MsiMessage>,
    next: u32,
    free: Vec<u32>,
}

/// The VM's GSI routing table.
#[derive(Debug)]
pub struct GsiRouter {
    vm: Arc<VmFd>,
    table: Mutex<Table>,
}

impl GsiRouter {
    /// A router whose GSIs below `reserved` are the IOAPIC's pins.
    pub fn new(vm: Arc<VmFd>, reserved: u32) -> Self {
        Self {
            vm,
            table: Mutex::new(Table {
                next: reserved,
                ..Default::default()
            }),
        }
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

    /// Routes `gsi` to `msg` (`None`: no route), and installs the table.
    pub fn set(&self, gsi: u32, msg: Option<MsiMessage>) -> Result<(), RouteError> {
        let mut t = self.lock();
        let old = match msg {
            Some(m) => t.routes.insert(gsi, m),
            None => t.routes.remove(&gsi),
        };
        if old == msg {
            return Ok(());
        }
        let entries: Vec<_> = t.routes.iter().map(|(g, m)| msi_route(*g, *m)).collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|_| RouteError::Kvm(kvm_ioctls::Error::new(libc::E2BIG)))?;
        self.vm.set_gsi_routing(&table).map_err(RouteError::Kvm)
    }

    /// Gives `gsi` back, removing its route.
    pub fn release(&self, gsi: u32) -> Result<(), RouteError> {
        self.set(gsi, None)?;
        self.lock().free.push(gsi);
        Ok(())
    }

    /// Sends `msg` once without a route (`KVM_SIGNAL_MSI`).
    pub fn signal(&self, msg: MsiMessage) -> Result<(), RouteError> {
        let msi = kvm_msi {
            address_lo: msg.address as u32,
            address_hi: (msg.address >> 32) as u32,
            data: msg.data,
            ..Default::default()
        };
        self.vm.signal_msi(msi).map(|_| ()).map_err(RouteError::Kvm)
    }
}

/// Messages sent straight into KVM (`KVM_SIGNAL_MSI`): the IOAPIC's output.
#[derive(Debug, Clone)]
pub struct KvmMsiSink(pub Arc<GsiRouter>);

impl MsiSink for KvmMsiSink {
    fn deliver(&self, msg: MsiMessage) {
        if let Err(e) = self.0.signal(msg) {
            tracing::warn!("interrupt message {msg:x?} not delivered: {e}");
        }
    }
}

#[derive(Debug)]
struct Vector {
    gsi: u32,
    irqfd: EventFd,
    message: Option<MsiMessage>,
}

/// One PCI function's MSI/MSI-X vectors, each a GSI route and an irqfd.
/// It knows the function (its context: the requester ID its messages
/// carry), which interrupt remapping will key its translation by.
#[derive(Debug)]
pub struct KvmMsiVectors {
    router: Arc<GsiRouter>,
    source: Arc<FunctionContext>,
    vectors: Mutex<BTreeMap<u16, Vector>>,
}

impl KvmMsiVectors {
    /// The vectors of the function `source` describes, none routed yet.
    pub fn new(router: Arc<GsiRouter>, source: Arc<FunctionContext>) -> Self {
        Self {
            router,
            source,
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
        })
    }

    fn route(&self, vector: u16, message: Option<MsiMessage>) -> Result<(), RouteError> {
        let mut vectors = self.lock();
        let v = match vectors.entry(vector) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if message.is_none() => return Ok(()),
            Entry::Vacant(e) => e.insert(self.new_vector()?),
        };
        self.router.set(v.gsi, message)?;
        v.message = message;
        Ok(())
    }
}

impl MsiVectors for KvmMsiVectors {
    fn update(&self, vector: u16, message: Option<MsiMessage>) {
        if let Err(e) = self.route(vector, message) {
            tracing::warn!("{}: vector {vector}: {e}", self.source.requester());
        }
    }

    fn send(&self, vector: u16, message: MsiMessage) {
        let routed = self
            .lock()
            .get(&vector)
            .filter(|v| v.message == Some(message))
            .map(|v| v.irqfd.write(1));
        match routed {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::warn!(
                "{}: vector {vector}: irqfd write failed: {e}",
                self.source.requester()
            ),
            None => {
                tracing::debug!("vector {vector} sent before its route was current");
                self.update(vector, Some(message));
                if let Err(e) = self.router.signal(message) {
                    tracing::warn!("{}: vector {vector}: {e}", self.source.requester());
                }
            }
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn test_msi_route_splits_the_address() {
        let e = msi_route(
            30,
            MsiMessage {
                address: 0x1_fee0_1000,
                data: 0x4031,
            },
        );
        // SAFETY: `msi_route` builds MSI entries only.
        let msi = unsafe { e.u.msi };
        assert_eq!(
            (e.gsi, e.type_, msi.address_lo, msi.address_hi, msi.data),
            (30, KVM_IRQ_ROUTING_MSI, 0xfee0_1000, 1, 0x4031)
        );
    }
}
