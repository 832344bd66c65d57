//! KVM's split irqchip: local APICs in the kernel, the IOAPIC the guest
//! programs in user space (`irq::ioapic`, an 82093AA), at 0xFEC0_0000.
//!
//! ```text
//!  device ─ IrqLine ─▶ IOAPIC pin ─ redirection entry ─▶ message ─ KVM_SIGNAL_MSI ─▶ LAPIC
//!                          ▲                                                          │
//!                          └───────── KVM_EXIT_IOAPIC_EOI (level-triggered vector) ◀──┘
//! ```
//!
//! KVM reports the EOI of a level-triggered vector only if one of the GSI
//! routes `0..pins` carries it, so every pin's message is kept installed as
//! GSI `pin` ([`crate::interrupts::GsiRouter`]), masked or not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use devices::BusDevice;
use irq::ioapic::{Ioapic, IoapicConfig, IoapicError, IoapicLine, IoapicWriteEffect, WirePolarity};
use kvm_bindings::{
    kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP, KVM_CAP_X2APIC_API,
    KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK, KVM_X2APIC_API_USE_32BIT_IDS,
};
use kvm_ioctls::VmFd;

use crate::interrupts::{GsiRouter, KvmMsiSink, Source};

/// The IOAPIC as the machine holds it.
pub type SharedIoapic = Arc<Mutex<Ioapic<KvmMsiSink>>>;

/// The IOAPIC's register window size on the MMIO bus.
pub const IOAPIC_WINDOW: u64 = 0x1000;

/// Turns on the split irqchip with `pins` GSIs reserved for the IOAPIC.
pub fn enable_split(vm: &VmFd, pins: u32) -> Result<(), kvm_ioctls::Error> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    cap.args[0] = u64::from(pins);
    vm.enable_cap(&cap)
}

/// Turns on KVM's x2APIC API (before any vCPU exists): message
/// destinations take 32 bits, bits 31:8 in the upper address
/// (`USE_32BIT_IDS`), and 0xff is not a broadcast in x2APIC mode. Interrupt
/// remapping with Extended Interrupt Mode needs it, as Linux then uses
/// x2APIC cluster destinations above 0xff from the first CPU.
pub fn enable_x2apic_api(vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_X2APIC_API,
        ..Default::default()
    };
    cap.args[0] = u64::from(KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK);
    vm.enable_cap(&cap)
}

/// Told when the guest ends a level-triggered interrupt on a pin (its
/// EOI), before the IOAPIC looks at the pin again: a relayed line (an
/// assigned device's INTx) is lowered and its source unmasked here.
pub trait EoiListener: Send + Sync + std::fmt::Debug {
    /// The guest ended the interrupt of the pin this listener is on.
    fn end_of_interrupt(&self);
}

type Listeners = Arc<Mutex<BTreeMap<usize, Vec<Weak<dyn EoiListener>>>>>;

/// The user-space interrupt controllers of a machine.
#[derive(Debug, Clone)]
pub struct Irqchip {
    ioapic: SharedIoapic,
    router: Arc<GsiRouter>,
    listeners: Listeners,
}

impl Irqchip {
    /// An IOAPIC at reset with `pins` pins, sending through `router`.
    pub fn new(router: Arc<GsiRouter>, pins: usize) -> Result<Self, IoapicError> {
        let ioapic = Ioapic::new(
            IoapicConfig {
                pins,
                ..Default::default()
            },
            KvmMsiSink::ioapic(router.clone()),
        )?;
        Ok(Self {
            ioapic: Arc::new(Mutex::new(ioapic)),
            router,
            listeners: Listeners::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ioapic<KvmMsiSink>> {
        self.ioapic.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The GSI router the IOAPIC's routes live in (shared with MSI vectors).
    pub fn router(&self) -> &Arc<GsiRouter> {
        &self.router
    }

    /// A device wire into `pin`.
    pub fn line(
        &self,
        pin: u32,
        polarity: WirePolarity,
    ) -> Result<IoapicLine<KvmMsiSink>, IoapicError> {
        IoapicLine::new(self.ioapic.clone(), pin as usize, polarity)
    }

    /// Tells `listener` (held weakly) about every EOI of pin `pin`.
    pub fn add_eoi_listener(&self, pin: u32, listener: &Arc<dyn EoiListener>) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pin as usize)
            .or_default()
            .push(Arc::downgrade(listener));
    }

    /// A vCPU saw the guest's EOI for `vector` (`KVM_EXIT_IOAPIC_EOI`).
    /// The vector is the one the local APIC received: for a pin whose
    /// message interrupt remapping translated, that is its remapping
    /// entry's vector, not the entry's vector field (which then holds a
    /// subhandle), so pins are matched by what KVM delivers for them.
    pub fn end_of_interrupt(&self, vector: u8) {
        let pins = self.lock().pins();
        let delivered: Vec<Option<u8>> = (0..pins)
            .map(|pin| self.router.delivered_vector(pin as u32))
            .collect();
        let matches = |pin: usize, entry: irq::ioapic::RedirectionEntry| {
            delivered
                .get(pin)
                .copied()
                .flatten()
                .unwrap_or(entry.vector())
                == vector
        };
        let ended: Vec<usize> = {
            let ioapic = self.lock();
            (0..pins)
                .filter(|&p| {
                    let e = ioapic.state().redirection[p];
                    e.remote_irr() && matches(p, e)
                })
                .collect()
        };
        let listeners: Vec<Arc<dyn EoiListener>> = {
            let map = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ended
                .iter()
                .filter_map(|p| map.get(p))
                .flatten()
                .filter_map(Weak::upgrade)
                .collect()
        };
        for l in listeners {
            l.end_of_interrupt();
        }
        self.lock().end_of_interrupt_where(matches);
    }

    /// The register window, for the MMIO bus.
    pub fn mmio(&self) -> IoapicMmio {
        IoapicMmio(self.clone())
    }
}

/// The IOAPIC's register window on the MMIO bus.
#[derive(Debug)]
pub struct IoapicMmio(Irqchip);

impl BusDevice for IoapicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0.lock().mmio_read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut ioapic = self.0.lock();
        if let IoapicWriteEffect::RouteChanged { pin, route } = ioapic.mmio_write(offset, data) {
            if let Err(e) = self.0.router.set(pin as u32, route, &Source::Ioapic) {
                ratelimit::warn!("IOAPIC pin {pin}: {e}");
            }
            ioapic.service(pin);
        }
    }
}
