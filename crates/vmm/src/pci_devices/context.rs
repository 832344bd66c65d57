//! What a builder builds with.
//!
//! [`BuildContext`] is the machine: its wiring, root complex, vCPU count,
//! INTx wires and how many devices of each kind it has had. It lives
//! across builds, so a device added while the machine runs is built the
//! same way as one at boot.
//!
//! [`DeviceContext`] is one device's view of it. Every wire a device gets
//! (INTx, MSI vectors, DMA, guest memory) is handed out there: the one
//! place to change when they come to depend on the function (its
//! requester ID).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dma::{Dma, FunctionContext, FunctionDma, RequesterId};
use irq::msi::MsiVectors;
use irq::IrqLine;
use pci::bridge::RootPort;
use pci::root::SharedFunction;

use super::builders::{self, Built};
use super::intx::IntxWires;
use super::{DmaRoute, PciBuildError, Wiring};
use crate::config::{DeviceConfig, DeviceKind, PciSlot};
use crate::console::ConsoleInput;
use crate::pci_host::{BarEventFd, BarEvents, PciRoot};
use crate::topology::Placement;

/// The machine devices are built into.
pub(crate) struct BuildContext<'a> {
    pci: &'a PciRoot,
    wiring: &'a mut dyn Wiring,
    cpus: u32,
    state: BuildState,
}

/// What the builds so far leave to the next ones, kept while the machine
/// runs so that a device added then is built as one at boot: the INTx
/// wires, the counts default names come from, the hot-plug ports built.
#[derive(Default)]
pub(crate) struct BuildState {
    intx: IntxWires,
    /// Devices built so far, by kind name.
    per_kind: BTreeMap<&'static str, u32>,
    /// Devices built so far.
    built: usize,
    /// Hot-plug root ports built and not yet taken
    /// ([`BuildState::take_ports`]).
    ports: Vec<NewPort>,
    /// Every function attached, in build order (dead ones once detached).
    listed: Vec<Listed>,
}

/// A function attached, for the machine's device list.
pub(crate) struct Listed {
    /// Its id, if it has one.
    pub(crate) id: Option<String>,
    /// Its kind's command-line name.
    pub(crate) kind: &'static str,
    /// The function; it does not keep it alive.
    pub(crate) function: std::sync::Weak<Mutex<dyn pci::function::PciFunction>>,
}

/// A hot-plug root port a builder made.
pub(crate) struct NewPort {
    /// Its index in the device list.
    pub(crate) index: usize,
    /// Its device number on the root bus (its slot's INTx routing).
    pub(crate) device: u8,
    /// The port, shared with the root complex.
    pub(crate) port: Arc<Mutex<RootPort>>,
    /// Its requester ID, for its MSI.
    pub(crate) ctx: Arc<FunctionContext>,
    /// Whether a device was placed behind it at boot.
    pub(crate) occupied: bool,
}

impl BuildState {
    /// Lists `function`, attached as `device` says.
    pub(crate) fn list(&mut self, device: &DeviceConfig, function: &SharedFunction) {
        self.listed.retain(|l| l.function.strong_count() > 0);
        self.listed.push(Listed {
            id: device.id.clone(),
            kind: device.kind.name(),
            function: Arc::downgrade(function),
        });
    }

    /// Every function attached and not detached since, in build order.
    pub(crate) fn listed(&self) -> impl Iterator<Item = &Listed> {
        self.listed.iter().filter(|l| l.function.strong_count() > 0)
    }

    /// The hot-plug ports built since the last call.
    pub(crate) fn take_ports(&mut self) -> Vec<NewPort> {
        std::mem::take(&mut self.ports)
    }
}

impl<'a> BuildContext<'a> {
    /// A machine of `cpus` vCPUs whose devices go on `pci`, wired by
    /// `wiring`, with no device yet.
    pub(crate) fn new(pci: &'a PciRoot, wiring: &'a mut dyn Wiring, cpus: u32) -> Self {
        Self::resume(pci, wiring, cpus, BuildState::default())
    }

    /// The machine as `state` left it, to build more devices into.
    pub(crate) fn resume(
        pci: &'a PciRoot,
        wiring: &'a mut dyn Wiring,
        cpus: u32,
        state: BuildState,
    ) -> Self {
        Self {
            pci,
            wiring,
            cpus,
            state,
        }
    }

    /// What the builds leave to later ones.
    pub(crate) fn into_state(self) -> BuildState {
        self.state
    }

    /// Builds `device`, which goes at `place`, with the builder of its
    /// kind; `devices` is the config it came with (which holds its parts,
    /// such as an NVMe controller's namespaces). `None` for a kind that is
    /// no PCI function of its own. With the function comes its DMA and
    /// interrupt context, for the root complex to keep current once the
    /// function is attached.
    pub(crate) fn build(
        &mut self,
        device: &DeviceConfig,
        place: &Placement,
        devices: &[DeviceConfig],
    ) -> Result<Option<(Built, Arc<FunctionContext>)>, PciBuildError> {
        let mut dev = self.device(device, place, devices);
        let built = builders::build(&device.kind, &mut dev)?;
        let ctx = dev.function.clone();
        // The name `vm.info` gives it: its id, or its kind and its index in
        // the machine's device list (Cloud Hypervisor's `_disk0` style).
        let name = device
            .id
            .clone()
            .unwrap_or_else(|| format!("_{}{}", dev.name(), place.index));
        if built.as_ref().is_some_and(|b| b.endpoint().is_some()) {
            self.pci.counters().register(name, ctx.counters().clone());
        }
        Ok(built.map(|b| (b, ctx)))
    }

    /// Counts `device` in and gives its context.
    fn device<'c>(
        &'c mut self,
        device: &'c DeviceConfig,
        place: &'c Placement,
        devices: &'c [DeviceConfig],
    ) -> DeviceContext<'c, 'a> {
        let count = self.state.per_kind.entry(device.kind.name()).or_insert(0);
        *count += 1;
        let number = *count;
        let ordinal = self.state.built;
        self.state.built += 1;
        DeviceContext {
            machine: self,
            device,
            place,
            devices,
            number,
            ordinal,
            function: FunctionContext::new(RequesterId::default()),
        }
    }
}

/// One device being built: its config, its place, and the machine.
pub(crate) struct DeviceContext<'c, 'a> {
    machine: &'c mut BuildContext<'a>,
    device: &'c DeviceConfig,
    place: &'c Placement,
    devices: &'c [DeviceConfig],
    number: u32,
    ordinal: usize,
    /// Its requester ID and Bus Master Enable, set by the root complex
    /// once it is attached.
    function: Arc<FunctionContext>,
}

impl DeviceContext<'_, '_> {
    /// Its kind's command-line name, which its error messages start with.
    pub(crate) fn name(&self) -> &'static str {
        self.device.kind.name()
    }

    /// Which device of its kind it is, from 1: what default names (NVMe
    /// serials, MAC addresses) are made of.
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// How many devices the machine had built before it, of any kind (a
    /// root port's Port Number).
    pub(crate) fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Its device and function number on its bus.
    pub(crate) fn slot(&self) -> PciSlot {
        self.place.slot
    }

    /// The machine's vCPUs (default queue counts follow them).
    pub(crate) fn cpus(&self) -> u32 {
        self.machine.cpus
    }

    /// The devices whose `bus=` names it, in command-line order (an NVMe
    /// controller's namespaces).
    pub(crate) fn children(&self) -> impl Iterator<Item = &DeviceKind> + '_ {
        self.devices
            .iter()
            .filter(|d| d.bus.is_some() && d.bus == self.device.id)
            .map(|d| &d.kind)
    }

    /// Its INTA wire, into the IOAPIC pin its slot routes to, counting
    /// its assertions in the function's counters.
    pub(crate) fn intx(&mut self) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        let gsi = self.place.gsi(1);
        let machine = &mut *self.machine;
        let wire = machine.state.intx.line(&mut *machine.wiring, gsi)?;
        Ok(Arc::new(irq::counted::CountedLine::new(
            wire,
            self.function.counters().clone(),
        )))
    }

    /// Its I/O counters (which its DMA and interrupts count themselves
    /// in; the device counts its requests and doorbells).
    pub(crate) fn counters(&self) -> Arc<counters::FunctionCounters> {
        self.function.counters().clone()
    }

    /// Its MSI/MSI-X vectors.
    pub(crate) fn msi_vectors(&mut self) -> Arc<dyn MsiVectors> {
        self.machine.wiring.msi_vectors(&self.function)
    }

    /// Its DMA: refused while its Bus Master Enable is off, through the
    /// machine's memory (or IOMMU, as `route` says) for its requester ID
    /// otherwise. Every access the device makes goes through it, virtio
    /// rings included.
    pub(crate) fn dma(&mut self, route: DmaRoute) -> Arc<dyn Dma> {
        let target = self.machine.wiring.dma(&self.function, route);
        Arc::new(FunctionDma::new(self.function.clone(), target))
    }

    /// The host function at `sysfs`, opened for assignment.
    pub(crate) fn host_device(
        &mut self,
        sysfs: &std::path::Path,
    ) -> Result<Arc<dyn vfio::HostDevice>, PciBuildError> {
        self.machine.wiring.host_device(sysfs, &self.function)
    }

    /// A relay of a host function's INTx onto its INTA wire, if the
    /// machine has one.
    pub(crate) fn intx_relay(&mut self) -> Result<Option<Arc<dyn vfio::IntxRelay>>, PciBuildError> {
        let line = self.intx()?;
        let gsi = self.place.gsi(1);
        self.machine.wiring.intx_relay(line, gsi)
    }

    /// Its MSI/MSI-X vectors, each with an eventfd that delivers it.
    pub(crate) fn triggered_vectors(
        &mut self,
    ) -> (Arc<dyn MsiVectors>, Arc<dyn vfio::VectorTriggers>) {
        self.machine.wiring.triggered_vectors(&self.function)
    }

    /// Its DMA through the machine's IOMMU, if the machine has one (for
    /// a virtio device, whose driver may or may not accept
    /// VIRTIO_F_ACCESS_PLATFORM): [`DeviceContext::dma`] with
    /// [`DmaRoute::Iommu`].
    pub(crate) fn platform_dma(&mut self) -> Option<Arc<dyn Dma>> {
        if self.machine.wiring.has_iommu() {
            Some(self.dma(DmaRoute::Iommu))
        } else {
            None
        }
    }

    /// Where a console device's output goes (iovm's console).
    pub(crate) fn console_output(&mut self) -> Box<dyn std::io::Write + Send> {
        self.machine.wiring.console_output()
    }

    /// Sends the console's input to `input` instead of COM1.
    pub(crate) fn console_input(&mut self, input: Arc<dyn ConsoleInput>) {
        self.machine.wiring.console_input(input);
    }

    /// Hands `function`'s BAR memory to the root complex (see
    /// [`PciRoot::add_bar_memory`]).
    pub(crate) fn bar_memory(
        &self,
        function: &SharedFunction,
        ranges: Vec<crate::pci_host::BarMemory>,
    ) {
        self.machine.pci.add_bar_memory(function, ranges);
    }

    /// The wiring a function built later, while the machine runs, needs
    /// (an SR-IOV PF's VFs).
    pub(crate) fn function_wiring(&mut self) -> Arc<dyn super::FunctionWiring> {
        self.machine.wiring.function_wiring()
    }

    /// Hands the SR-IOV effects of writes to `function` (a PF) to
    /// `handler` (see [`PciRoot::add_sriov_handler`]).
    pub(crate) fn sriov_handler(
        &self,
        function: &SharedFunction,
        handler: Arc<dyn crate::pci_host::SriovHandler>,
    ) {
        self.machine.pci.add_sriov_handler(function, handler);
    }

    /// Hands a hot-plug root port to the machine, which adds devices to it
    /// and removes them while it runs; `occupied`: a device sits behind it
    /// from boot.
    pub(crate) fn hotplug_port(&mut self, port: Arc<Mutex<RootPort>>, occupied: bool) {
        let new = NewPort {
            index: self.place.index,
            device: self.place.slot.device,
            port,
            ctx: self.function.clone(),
            occupied,
        };
        self.machine.state.ports.push(new);
    }

    /// Hands `function`'s BAR eventfds `fds` to the root complex (see
    /// [`PciRoot::add_bar_eventfds`]); the result switches them.
    pub(crate) fn bar_eventfds(
        &self,
        function: &SharedFunction,
        fds: Vec<BarEventFd>,
        active: bool,
    ) -> BarEvents {
        self.machine.pci.add_bar_eventfds(function, fds, active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        NvmeConfig, NvmeNamespaceConfig, VirtioBlkConfig, VirtioConfig, VirtioKind,
    };
    use crate::pci_devices::test_wiring::{self, TestWiring};
    use crate::topology;

    fn blk() -> DeviceKind {
        DeviceKind::Virtio(VirtioConfig {
            device: VirtioKind::Blk(VirtioBlkConfig::default()),
            no_msix: false,
        })
    }

    fn namespace(bus: &str) -> DeviceConfig {
        DeviceConfig {
            bus: Some(bus.into()),
            ..DeviceConfig::new(DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
                path: "/disk".into(),
                readonly: false,
                block_size: 512,
                vf: None,
            }))
        }
    }

    fn nvme(id: &str) -> DeviceConfig {
        DeviceConfig {
            id: Some(id.into()),
            ..DeviceConfig::new(DeviceKind::Nvme(NvmeConfig::default()))
        }
    }

    #[test]
    fn test_devices_are_numbered_per_kind_and_in_order_overall() {
        let devices = [
            DeviceConfig::new(DeviceKind::RootPort(Default::default())),
            nvme("n0"),
            DeviceConfig::new(blk()),
            nvme("n1"),
            DeviceConfig::new(blk()),
            DeviceConfig::new(DeviceKind::RootPort(Default::default())),
        ];
        let plan = topology::plan(&devices).unwrap();
        let pci = test_wiring::root();
        let mut wiring = TestWiring::new();
        let mut machine = BuildContext::new(&pci, &mut wiring, 1);
        let seen: Vec<(u32, usize)> = plan
            .iter()
            .map(|place| {
                let dev = machine.device(&devices[place.index], place, &devices);
                (dev.number(), dev.ordinal())
            })
            .collect();
        assert_eq!(seen, [(1, 0), (1, 1), (1, 2), (2, 3), (2, 4), (2, 5)]);
    }

    #[test]
    fn test_children_are_the_devices_naming_it_as_bus() {
        let devices = [
            nvme("n0"),
            nvme("n1"),
            namespace("n1"),
            namespace("n0"),
            namespace("n1"),
            DeviceConfig::new(blk()),
        ];
        let plan = topology::plan(&devices).unwrap();
        let pci = test_wiring::root();
        let mut wiring = TestWiring::new();
        let mut machine = BuildContext::new(&pci, &mut wiring, 1);
        let children: Vec<usize> = plan
            .iter()
            .map(|place| {
                machine
                    .device(&devices[place.index], place, &devices)
                    .children()
                    .count()
            })
            .collect();
        assert_eq!(children, [1, 2, 0]);
    }
}
