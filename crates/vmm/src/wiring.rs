//! How a machine's devices reach KVM: INTx into the user-space IOAPIC, MSI
//! vectors as GSI routes with irqfds, DMA straight onto guest RAM or, with
//! `--device intel-iommu`, through the VT-d unit (NVMe always; virtio
//! when its driver accepts VIRTIO_F_ACCESS_PLATFORM).

use std::path::Path;
use std::sync::Arc;

use dma::{Dma, FunctionContext, GuestDma};
use irq::ioapic::WirePolarity;
use irq::msi::MsiVectors;
use irq::IrqLine;
use kvm_ioctls::VmFd;
use vfio::{HostDevice, VectorTriggers};
use vm_memory::GuestMemoryMmap;

use crate::console::{Console, ConsoleInput};
use crate::interrupts::KvmMsiVectors;
use crate::irqchip::Irqchip;
use crate::pci_devices::{DmaRoute, FunctionWiring, PciBuildError, Wiring};
use crate::vfio::VfioMachine;
use crate::vtd::Vtd;

/// The KVM machine's [`Wiring`].
#[derive(Debug)]
pub struct KvmWiring<'a> {
    /// The IOAPIC and the GSI router.
    pub irqchip: Irqchip,
    /// Guest RAM.
    pub memory: Arc<GuestMemoryMmap>,
    /// iovm's console (what `--serial` names).
    pub console: &'a Console,
    /// The VT-d unit, with `--device intel-iommu`.
    pub iommu: Option<Arc<Vtd>>,
    /// The VM (for its VFIO device).
    pub vm: Arc<VmFd>,
    /// The VFIO container, once a host function is assigned.
    pub vfio: Option<Arc<VfioMachine>>,
}

/// The KVM machine's [`FunctionWiring`]: GSI routes with irqfds, guest
/// RAM or the VT-d unit.
#[derive(Debug)]
pub struct KvmFunctionWiring {
    router: Arc<crate::interrupts::GsiRouter>,
    memory: Arc<GuestMemoryMmap>,
    iommu: Option<Arc<Vtd>>,
}

impl FunctionWiring for KvmFunctionWiring {
    fn msi_vectors(&self, ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors> {
        Arc::new(KvmMsiVectors::new(self.router.clone(), ctx.clone()))
    }

    fn dma(&self, ctx: &Arc<FunctionContext>, route: DmaRoute) -> Arc<dyn Dma> {
        match (&self.iommu, route) {
            (Some(unit), DmaRoute::Iommu) => unit.dma(ctx),
            _ => Arc::new(GuestDma::new(self.memory.clone())),
        }
    }
}

impl Wiring for KvmWiring<'_> {
    fn function_wiring(&mut self) -> Arc<dyn FunctionWiring> {
        Arc::new(KvmFunctionWiring {
            router: self.irqchip.router().clone(),
            memory: self.memory.clone(),
            iommu: self.iommu.clone(),
        })
    }

    fn intx_pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        let pin = self
            .irqchip
            .line(gsi, WirePolarity::ActiveLow)
            .map_err(|e| PciBuildError::Device(format!("INTx into GSI {gsi}: {e}")))?;
        Ok(Arc::new(pin))
    }

    fn msi_vectors(&mut self, ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors> {
        Arc::new(KvmMsiVectors::new(
            self.irqchip.router().clone(),
            ctx.clone(),
        ))
    }

    fn dma(&mut self, ctx: &Arc<FunctionContext>, route: DmaRoute) -> Arc<dyn Dma> {
        match (&self.iommu, route) {
            (Some(unit), DmaRoute::Iommu) => unit.dma(ctx),
            _ => Arc::new(GuestDma::new(self.memory.clone())),
        }
    }

    fn has_iommu(&self) -> bool {
        self.iommu.is_some()
    }

    fn console_output(&mut self) -> Box<dyn std::io::Write + Send> {
        self.console.writer()
    }

    fn console_input(&mut self, input: Arc<dyn ConsoleInput>) {
        self.console.redirect_input(input);
    }

    fn host_device(
        &mut self,
        sysfs: &Path,
        ctx: &Arc<FunctionContext>,
    ) -> Result<Arc<dyn HostDevice>, PciBuildError> {
        let fail = |e: crate::vfio::VfioError| PciBuildError::Device(format!("vfio-pci: {e}"));
        crate::vfio::check_host_function(sysfs).map_err(fail)?;
        let machine = match &self.vfio {
            Some(m) => m.clone(),
            None => {
                let m = Arc::new(VfioMachine::new(&self.vm, self.memory.clone()).map_err(fail)?);
                self.vfio = Some(m.clone());
                m
            }
        };
        match &self.iommu {
            Some(unit) => {
                let (host, container) = machine.open_mirrored(sysfs).map_err(fail)?;
                unit.mirror(ctx.clone(), container);
                Ok(Arc::new(host))
            }
            None => Ok(Arc::new(machine.open(sysfs).map_err(fail)?)),
        }
    }

    fn intx_relay(
        &mut self,
        line: Arc<dyn IrqLine>,
        gsi: u32,
    ) -> Result<Option<Arc<dyn vfio::IntxRelay>>, PciBuildError> {
        let relay = crate::vfio_intx::KvmIntxRelay::new(line, gsi, &self.irqchip)
            .map_err(|e| PciBuildError::Device(format!("vfio-pci INTx relay: {e}")))?;
        Ok(Some(relay))
    }

    fn triggered_vectors(
        &mut self,
        ctx: &Arc<FunctionContext>,
    ) -> (Arc<dyn MsiVectors>, Arc<dyn VectorTriggers>) {
        let v = Arc::new(KvmMsiVectors::new(
            self.irqchip.router().clone(),
            ctx.clone(),
        ));
        (v.clone(), v)
    }
}
