//! Interrupt wiring into KVM's in-kernel interrupt controllers.
//!
//! For now iovm uses KVM's in-kernel IOAPIC and PICs; devices see only the
//! [`irq::IrqLine`] trait, implemented here by an irqfd (edge: the eventfd
//! write makes KVM raise and lower the GSI) or `KVM_IRQ_LINE` (level).
//!
//! GSI routing follows the PC: GSI 0–15 reach both PICs, GSI 0–23 the IOAPIC
//! pins of the same number, except that ISA IRQ 0 (the PIT) arrives on IOAPIC
//! pin 2, as the MADT's interrupt source override tells the guest.

use std::sync::Arc;

use irq::{IrqError, IrqLine};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQ_ROUTING_IRQCHIP,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use crate::acpi::IOAPIC_PINS;

fn irqchip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip: chip, pin },
        },
        ..Default::default()
    }
}

/// The routing table for the legacy PC interrupt layout.
pub fn legacy_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::new();
    for gsi in 0..16 {
        let (chip, pin) = if gsi < 8 {
            (KVM_IRQCHIP_PIC_MASTER, gsi)
        } else {
            (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
        };
        routes.push(irqchip_route(gsi, chip, pin));
    }
    for gsi in 0..IOAPIC_PINS {
        match gsi {
            0 => routes.push(irqchip_route(0, KVM_IRQCHIP_IOAPIC, 2)),
            2 => {}
            _ => routes.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi)),
        }
    }
    routes
}

/// Installs [`legacy_routes`].
pub fn install_legacy_routes(vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
    let routes = legacy_routes();
    let table =
        KvmIrqRouting::from_entries(&routes).map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))?;
    vm.set_gsi_routing(&table)
}

/// An interrupt line into a KVM GSI.
#[derive(Debug)]
pub struct KvmIrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
    irqfd: EventFd,
}

impl KvmIrqLine {
    /// Connects an irqfd to `gsi`.
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Result<Self, kvm_ioctls::Error> {
        let irqfd = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)))?;
        vm.register_irqfd(&irqfd, gsi)?;
        Ok(Self { vm, gsi, irqfd })
    }
}

impl IrqLine for KvmIrqLine {
    fn pulse(&self) -> Result<(), IrqError> {
        self.irqfd.write(1).map_err(IrqError::Host)
    }

    fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
        self.vm
            .set_irq_line(self.gsi, asserted)
            .map_err(|e| IrqError::Host(std::io::Error::from_raw_os_error(e.errno())))
    }
}

/// A level-triggered interrupt line into a KVM GSI (`KVM_IRQ_LINE`), for PCI INTx.
#[derive(Debug)]
pub struct KvmLevelLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl KvmLevelLine {
    /// The line into `gsi`.
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Self {
        Self { vm, gsi }
    }
}

impl IrqLine for KvmLevelLine {
    fn pulse(&self) -> Result<(), IrqError> {
        self.set_level(true)?;
        self.set_level(false)
    }

    fn set_level(&self, asserted: bool) -> Result<(), IrqError> {
        self.vm
            .set_irq_line(self.gsi, asserted)
            .map_err(|e| IrqError::Host(std::io::Error::from_raw_os_error(e.errno())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ioapic_pin_of(routes: &[kvm_irq_routing_entry], gsi: u32) -> Vec<u32> {
        routes
            .iter()
            .filter(|r| r.gsi == gsi)
            // SAFETY: every entry built by `legacy_routes` is of irqchip type.
            .map(|r| unsafe { r.u.irqchip })
            .filter(|c| c.irqchip == KVM_IRQCHIP_IOAPIC)
            .map(|c| c.pin)
            .collect()
    }

    #[test]
    fn test_legacy_routes_send_pit_to_pin2_and_com1_to_pin4() {
        let routes = legacy_routes();
        assert_eq!(ioapic_pin_of(&routes, 0), vec![2]);
        assert_eq!(ioapic_pin_of(&routes, 2), Vec::<u32>::new());
        assert_eq!(ioapic_pin_of(&routes, 4), vec![4]);
        assert_eq!(ioapic_pin_of(&routes, 23), vec![23]);
    }

    #[test]
    fn test_legacy_routes_cover_both_pics() {
        let routes = legacy_routes();
        let pic = routes.iter().filter(|r| r.gsi < 16).count();
        assert_eq!(pic, 16 + 15);
    }
}
