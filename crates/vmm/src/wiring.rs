//! How a machine's devices reach KVM: INTx into the user-space IOAPIC, MSI
//! vectors as GSI routes with irqfds, DMA straight onto guest RAM.

use std::sync::Arc;

use dma::{Dma, FunctionContext, GuestDma};
use irq::ioapic::WirePolarity;
use irq::msi::MsiVectors;
use irq::IrqLine;
use vm_memory::GuestMemoryMmap;

use crate::console::{Console, ConsoleInput};
use crate::interrupts::KvmMsiVectors;
use crate::irqchip::Irqchip;
use crate::pci_devices::{PciBuildError, Wiring};

/// The KVM machine's [`Wiring`].
#[derive(Debug)]
pub struct KvmWiring<'a> {
    /// The IOAPIC and the GSI router.
    pub irqchip: Irqchip,
    /// Guest RAM.
    pub memory: Arc<GuestMemoryMmap>,
    /// iovm's console (what `--serial` names).
    pub console: &'a Console,
}

impl Wiring for KvmWiring<'_> {
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

    fn dma(&mut self, _ctx: &Arc<FunctionContext>) -> Arc<dyn Dma> {
        Arc::new(GuestDma::new(self.memory.clone()))
    }

    fn console_output(&mut self) -> Box<dyn std::io::Write + Send> {
        self.console.writer()
    }

    fn console_input(&mut self, input: Arc<dyn ConsoleInput>) {
        self.console.redirect_input(input);
    }
}
