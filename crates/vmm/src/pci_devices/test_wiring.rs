//! A [`Wiring`] for unit tests: IOAPIC pins and MSI vectors that record,
//! DMA onto 1 MiB of guest RAM (through a VT-d unit if the test gives
//! one), console output dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dma::{Dma, FunctionContext, GuestDma};
use irq::msi::MsiVectors;
use irq::recording::{RecordingLine, RecordingVectors};
use irq::IrqLine;
use vfio::{HostDevice, VectorTriggers};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{DmaRoute, FunctionWiring, PciBuildError, Wiring};
use crate::bus::Bus;
use crate::console::ConsoleInput;
use crate::pci_host::PciRoot;
use crate::vtd::Vtd;

/// Records what the devices were wired to.
pub(crate) struct TestWiring {
    /// Every IOAPIC pin handed out, by GSI.
    pub(crate) pins: BTreeMap<u32, Arc<RecordingLine>>,
    /// How many times each pin was asked for.
    pub(crate) pin_requests: BTreeMap<u32, u32>,
    /// How many devices took the console's input.
    pub(crate) console_inputs: usize,
    /// The VT-d unit [`DmaRoute::Iommu`] functions go through, if any.
    pub(crate) iommu: Option<Arc<Vtd>>,
    /// Host functions `vfio-pci` devices get, by sysfs path.
    pub(crate) hosts: BTreeMap<PathBuf, Arc<dyn HostDevice>>,
    /// The vectors each assigned function got, in build order.
    pub(crate) assigned_vectors: Vec<Arc<RecordingTriggers>>,
    /// The run-time wirings handed out (SR-IOV PFs keep one each).
    pub(crate) function_wirings: Vec<Arc<TestFunctionWiring>>,
    /// The MSI/MSI-X vectors of every function built, in build order.
    pub(crate) vectors: Vec<Arc<RecordingVectors>>,
    memory: Arc<GuestMemoryMmap>,
}

/// Recording vectors whose triggers are plain eventfds.
#[derive(Debug, Default)]
pub(crate) struct RecordingTriggers {
    /// The routes.
    pub(crate) vectors: RecordingVectors,
}

impl VectorTriggers for RecordingTriggers {
    fn trigger(&self, _vector: u16) -> std::io::Result<vmm_sys_util::eventfd::EventFd> {
        vmm_sys_util::eventfd::EventFd::new(0)
    }

    fn set_masked(&self, _vector: u16, _masked: bool) -> std::io::Result<()> {
        Ok(())
    }

    fn pending(&self, _vector: u16) -> bool {
        false
    }
}

impl MsiVectors for RecordingTriggers {
    fn update(&self, changes: &[irq::msi::RouteChange]) {
        self.vectors.update(changes);
    }

    fn send(&self, vector: u16, message: irq::msi::MsiMessage) {
        self.vectors.send(vector, message);
    }
}

impl TestWiring {
    /// Guest RAM, untranslated.
    pub(crate) fn memory(&self) -> &Arc<GuestMemoryMmap> {
        &self.memory
    }

    /// Nothing wired yet.
    pub(crate) fn new() -> Self {
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)])
            .expect("1 MiB of test memory");
        Self {
            pins: BTreeMap::new(),
            pin_requests: BTreeMap::new(),
            console_inputs: 0,
            iommu: None,
            hosts: BTreeMap::new(),
            assigned_vectors: Vec::new(),
            function_wirings: Vec::new(),
            vectors: Vec::new(),
            memory: Arc::new(memory),
        }
    }
}

/// The [`FunctionWiring`] of a [`TestWiring`]: recording vectors (each
/// function's kept, in build order), DMA onto the same test memory.
#[derive(Debug)]
pub(crate) struct TestFunctionWiring {
    /// The vectors of every function built through it, in build order.
    pub(crate) vectors: std::sync::Mutex<Vec<Arc<RecordingVectors>>>,
    memory: Arc<GuestMemoryMmap>,
    iommu: Option<Arc<Vtd>>,
}

impl FunctionWiring for TestFunctionWiring {
    fn msi_vectors(&self, _ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors> {
        let v = Arc::new(RecordingVectors::new());
        self.vectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(v.clone());
        v
    }

    fn dma(&self, ctx: &Arc<FunctionContext>, route: DmaRoute) -> Arc<dyn Dma> {
        match (&self.iommu, route) {
            (Some(unit), DmaRoute::Iommu) => unit.dma(ctx),
            _ => Arc::new(GuestDma::new(self.memory.clone())),
        }
    }
}

impl Wiring for TestWiring {
    fn function_wiring(&mut self) -> Arc<dyn FunctionWiring> {
        let w = Arc::new(TestFunctionWiring {
            vectors: Default::default(),
            memory: self.memory.clone(),
            iommu: self.iommu.clone(),
        });
        self.function_wirings.push(w.clone());
        w
    }

    fn intx_pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        *self.pin_requests.entry(gsi).or_insert(0) += 1;
        Ok(self.pins.entry(gsi).or_default().clone())
    }

    fn msi_vectors(&mut self, _ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors> {
        let v = Arc::new(RecordingVectors::new());
        self.vectors.push(v.clone());
        v
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
        Box::new(std::io::sink())
    }

    fn console_input(&mut self, _input: Arc<dyn ConsoleInput>) {
        self.console_inputs += 1;
    }

    fn host_device(
        &mut self,
        sysfs: &Path,
        _ctx: &Arc<FunctionContext>,
    ) -> Result<Arc<dyn HostDevice>, PciBuildError> {
        self.hosts.get(sysfs).cloned().ok_or_else(|| {
            PciBuildError::Device(format!("vfio-pci: no test host at {}", sysfs.display()))
        })
    }

    fn intx_relay(
        &mut self,
        _line: Arc<dyn IrqLine>,
        _gsi: u32,
    ) -> Result<Option<Arc<dyn vfio::IntxRelay>>, PciBuildError> {
        Ok(None)
    }

    fn triggered_vectors(
        &mut self,
        _ctx: &Arc<FunctionContext>,
    ) -> (Arc<dyn MsiVectors>, Arc<dyn VectorTriggers>) {
        let v = Arc::new(RecordingTriggers::default());
        self.assigned_vectors.push(v.clone());
        (v.clone(), v)
    }
}

/// A root complex on buses of its own.
pub(crate) fn root() -> PciRoot {
    PciRoot::new(Arc::new(Bus::new()), Arc::new(Bus::new())).expect("a root complex")
}
