//! PCI-to-PCI bridges as functions: a conventional bridge ([`PciBridge`],
//! `1b36:0001` "QEMU PCI-PCI bridge") and a PCIe root port ([`RootPort`],
//! `1b36:000c` "QEMU PCIe Root port"), each a type 1 header
//! ([`crate::type1`]) with a secondary bus behind it.
//!
//! What lies on the secondary bus is the root complex's business
//! ([`crate::root::RootComplex::attach_behind`]); a bridge only tells it,
//! live, which bus numbers the guest gave it and how many devices its
//! secondary bus can hold (a PCIe link is point to point: device 0 only).
//!
//! A root port carries the PCI Express capability (Root Port, slot
//! implemented, with or without a hot-plug controller: [`crate::caps::slot`]),
//! Power Management and a 1-vector MSI, as Linux's `pcieport` and `pciehp`
//! drivers expect. Its capabilities' own write effects (MSI programming,
//! power state) stay in its registers. Once given its interrupt wires
//! ([`RootPort::connect_interrupts`]) a hot-plug port signals its hot-plug
//! interrupt itself (PCIe 6.0 §6.7.3.4): an MSI message each time the
//! interrupt becomes pending while MSI is enabled (and bus mastering on),
//! else INTA held asserted while it is pending (unless INTx is disabled).
//! What a Slot Control write commanded (slot power) comes back to the VMM
//! in [`ConfigWriteEffects::slot`].

use std::sync::Arc;

use irq::msi::{MsiMessage, MsiVectors};
use irq::IrqLine;

use crate::bar::BarSpec;
use crate::caps::msi::MsiConfig;
use crate::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use crate::caps::pm::{self, PmConfig};
use crate::caps::slot::{Slot, SlotConfig};
use crate::caps::{CapError, CapWriteEffects, Capabilities, CapabilityList};
use crate::config::{command, BarWindow, ConfigError, ConfigWriteEffects, Identity};
use crate::function::PciFunction;
use crate::host_bridge::VENDOR_REDHAT;
use crate::type1::{BusNumbers, Type1Config, Type1Spec, CLASS_PCI_BRIDGE};

/// Device ID of the generic PCI-PCI bridge.
pub const DEVICE_PCI_BRIDGE: u16 = 0x0001;
/// Device ID of the generic PCIe root port.
pub const DEVICE_ROOT_PORT: u16 = 0x000c;
/// Devices a conventional PCI bus holds.
pub const BUS_DEVICES: u8 = 32;

/// What the root complex needs of a bridge beyond [`PciFunction`]: where
/// configuration cycles go.
pub trait PciBridgeFunction: PciFunction {
    /// Primary, secondary and subordinate bus numbers as the guest set them.
    fn bus_numbers(&self) -> BusNumbers;

    /// How many device numbers its secondary bus has now: 32, or 1 behind
    /// a PCIe downstream port (PCIe 6.0 §7.3.1: device numbers above 0 are
    /// not forwarded on a point-to-point link) unless the guest enabled ARI
    /// Forwarding, which makes device and function number one 8-bit
    /// function number (§6.13).
    fn secondary_devices(&self) -> u8;

    /// Whether it can forward ARI functions (functions 8–255 of the device
    /// behind it, seen as device numbers above 0), so that the VMM may
    /// place them before the guest enables it.
    fn may_forward_ari(&self) -> bool {
        false
    }

    /// Whether a BAR decoding `window` (I/O ports when `io`) on the
    /// secondary side is reachable from the primary side: the bridge
    /// forwards the whole range ([`Type1Config::forwards_range`]).
    fn forwards(&self, io: bool, window: BarWindow) -> bool;

    /// What requester ID the transactions of the functions behind it carry
    /// once they have crossed it.
    fn requester_alias(&self) -> RequesterAlias;
}

/// How a bridge treats the requester ID of the DMA it forwards upstream:
/// what an IOMMU sees of the functions behind it (Linux's
/// `pci_for_each_dma_alias` walks the same rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequesterAlias {
    /// A PCIe port: requests keep their own ID (PCIe 4.0 §2.2.6.2).
    Keep,
    /// A conventional PCI-to-PCI bridge: it masters the forwarded
    /// transaction itself, which carries the bridge's own ID (conventional
    /// PCI has no requester IDs in its transactions).
    Bridge,
    /// A PCIe-to-PCI bridge: the ID is its secondary bus with device and
    /// function 0 (PCIe-to-PCI/PCI-X Bridge 1.0 §2.3).
    SecondaryBus,
}

/// Why a bridge could not be built (a bug in the VMM's configuration).
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The header is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A capability is invalid.
    #[error(transparent)]
    Cap(#[from] CapError),
}

fn identity(device: u16) -> Identity {
    Identity {
        vendor: VENDOR_REDHAT,
        device,
        class: CLASS_PCI_BRIDGE,
        revision: 0,
        subsystem_vendor: 0,
        subsystem: 0,
    }
}

/// A conventional PCI-to-PCI bridge with no BARs, no capabilities and no
/// interrupt, 32 devices behind it.
#[derive(Clone, Debug)]
pub struct PciBridge {
    config: Type1Config,
}

impl PciBridge {
    /// A bridge with 16-bit I/O decode (as QEMU's).
    pub fn new() -> Result<Self, BridgeError> {
        let spec = Type1Spec {
            identity: identity(DEVICE_PCI_BRIDGE),
            pcie: false,
            io32: false,
            multi_function: false,
            bars: Vec::new(),
            rom_size: None,
            pin: 0,
        };
        Ok(Self {
            config: Type1Config::new(&spec)?,
        })
    }

    /// The header.
    pub fn config(&self) -> &Type1Config {
        &self.config
    }
}

impl PciFunction for PciBridge {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        self.config.write(offset, data)
    }

    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.config.bar_windows()
    }
}

impl PciBridgeFunction for PciBridge {
    fn bus_numbers(&self) -> BusNumbers {
        self.config.bus_numbers()
    }

    fn secondary_devices(&self) -> u8 {
        BUS_DEVICES
    }

    fn forwards(&self, io: bool, window: BarWindow) -> bool {
        self.config.forwards_range(io, window)
    }

    fn requester_alias(&self) -> RequesterAlias {
        RequesterAlias::Bridge
    }
}

/// How a root port is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootPortConfig {
    /// Port Number (Link Capabilities).
    pub port_number: u8,
    /// Physical Slot Number.
    pub slot: u16,
    /// The downstream link.
    pub link: LinkConfig,
    /// A device is connected (Presence Detect, Data Link Layer Link Active).
    pub present: bool,
    /// Set the multi-function bit (ports packed as functions of one device).
    pub multi_function: bool,
    /// The slot has a hot-plug controller (attention button, power
    /// controller, indicators, command completion).
    pub hotplug: bool,
}

impl Default for RootPortConfig {
    fn default() -> Self {
        Self {
            port_number: 0,
            slot: 0,
            link: LinkConfig {
                max_speed: LinkSpeed::Gen4,
                max_width: LinkWidth::X1,
                speed: LinkSpeed::Gen4,
                width: LinkWidth::X1,
            },
            present: true,
            multi_function: false,
            hotplug: false,
        }
    }
}

/// What a guest configuration write to a root port changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootPortWriteEffects {
    /// Header: forwarding windows, bus numbers, bus master, INTx.
    pub config: ConfigWriteEffects,
    /// Capabilities: power state, MSI programming.
    pub caps: CapWriteEffects,
}

/// A PCIe root port: type 1 header (32-bit I/O), PCI Express, PM and MSI
/// capabilities, Access Control Services (so an IOMMU driver may isolate
/// what lies behind it: [`crate::caps::acs`]), INTA for the legacy
/// fallback, device 0 only behind it (functions 0-255 with ARI).
#[derive(Clone, Debug)]
pub struct RootPort {
    config: Type1Config,
    caps: Capabilities,
    irq: Option<PortIrq>,
}

/// Where a root port's own interrupts go: its MSI vector 0 and its INTA
/// wire.
#[derive(Clone, Debug)]
pub struct PortInterrupts {
    /// Its MSI vector (one).
    pub msi: Arc<dyn MsiVectors>,
    /// Its INTA wire.
    pub intx: Arc<dyn IrqLine>,
}

/// A port's interrupt wires and what it last told them.
#[derive(Clone, Debug)]
struct PortIrq {
    wires: PortInterrupts,
    /// The MSI route installed for vector 0.
    route: Option<MsiMessage>,
    /// Whether the hot-plug interrupt was pending.
    pending: bool,
    /// Whether INTA is asserted.
    intx: bool,
}

impl RootPort {
    /// A root port as `port` says.
    pub fn new(port: RootPortConfig) -> Result<Self, BridgeError> {
        let spec = Type1Spec {
            identity: identity(DEVICE_ROOT_PORT),
            pcie: true,
            io32: true,
            multi_function: port.multi_function,
            bars: Vec::new(),
            rom_size: None,
            pin: 1,
        };
        let mut config = Type1Config::new(&spec)?;
        let mut list = CapabilityList::new(config.regs_mut());
        list.pci_express(PcieConfig {
            device: PcieDevice::RootPort {
                port_number: port.port_number,
                link: port.link,
                slot: Some(SlotConfig {
                    number: port.slot,
                    hotplug: port.hotplug,
                }),
                present: port.present,
            },
            max_payload: MaxPayload::B256,
        })?;
        list.power_management(PmConfig {
            pme_support: pm::pme::D0 | pm::pme::D3HOT,
        })?;
        list.msi(MsiConfig {
            vectors: 1,
            address64: true,
            per_vector_mask: false,
        })?;
        list.add_extended(&crate::caps::acs::Acs)?;
        let caps = list.finish();
        Ok(Self {
            config,
            caps,
            irq: None,
        })
    }

    /// The header.
    pub fn config(&self) -> &Type1Config {
        &self.config
    }

    /// The capabilities; their state is in [`Type1Config::regs`].
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    /// A guest configuration write, with the capabilities' effects too;
    /// then the hot-plug interrupt is signalled as the registers now say.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> RootPortWriteEffects {
        let before = self.caps.snapshot(self.config.regs());
        let slot = self.slot();
        let slot_before = slot.map(|s| s.snapshot(self.config.regs()));
        let mut config = self.config.write(offset, data);
        let caps = self.caps.after_write(before, self.config.regs_mut());
        if let (Some(s), Some(old)) = (slot, slot_before) {
            let written = s.covers_control(offset, data.len());
            let effects = s.after_write(old, written, self.config.regs_mut());
            config.slot = (!effects.is_empty()).then_some(effects);
        }
        self.signal();
        RootPortWriteEffects { config, caps }
    }

    /// The port's slot.
    pub fn slot(&self) -> Option<Slot> {
        self.caps.pcie().and_then(|p| p.slot()).copied()
    }

    /// Whether the slot has a hot-plug controller.
    pub fn hotplug(&self) -> bool {
        self.slot().is_some_and(|s| s.hotplug())
    }

    /// The downstream device arrives or leaves (Presence Detect State,
    /// Link Active and their changed bits), and the hot-plug interrupt is
    /// signalled if that made it pending.
    pub fn set_presence(&mut self, present: bool) {
        if let Some(p) = self.caps.pcie() {
            p.set_presence(self.config.regs_mut(), present);
        }
        self.signal();
    }

    /// Presses the slot's attention button (Attention Button Pressed), and
    /// signals the hot-plug interrupt if that made it pending. Returns
    /// false, changing nothing, when the slot has no hot-plug controller.
    pub fn press_attention_button(&mut self) -> bool {
        let Some(slot) = self.slot() else {
            return false;
        };
        let pressed = slot.press_attention_button(self.config.regs_mut());
        self.signal();
        pressed
    }

    /// Gives the port its interrupt wires: from now on it signals its
    /// hot-plug interrupt through them.
    pub fn connect_interrupts(&mut self, wires: PortInterrupts) {
        self.irq = Some(PortIrq {
            wires,
            route: None,
            pending: false,
            intx: false,
        });
        self.signal();
    }

    /// Brings the interrupt wires in line with the registers: the MSI route
    /// follows the MSI capability; a hot-plug interrupt that became pending
    /// sends the MSI message (MSI enabled and Bus Master Enable set: PCIe
    /// 6.0 §6.7.3.4, edge on each FALSE→TRUE transition), otherwise INTA
    /// follows it as a level (unless Interrupt Disable is set), and
    /// Status' Interrupt Status shows it.
    fn signal(&mut self) {
        let Some(irq) = &mut self.irq else {
            return;
        };
        let regs = self.config.regs();
        let pending = self
            .caps
            .pcie()
            .and_then(|p| p.slot())
            .is_some_and(|s| s.interrupt_pending(regs));
        let route = self
            .caps
            .msi()
            .map(|m| m.state(regs))
            .filter(|s| s.enabled)
            .map(|s| s.message(0));
        if route != irq.route {
            irq.route = route;
            irq.wires.msi.update(&[(0, route)]);
        }
        let cmd = self.config.command();
        let intx = route.is_none() && pending && cmd & command::INTX_DISABLE == 0;
        if intx != irq.intx {
            irq.intx = intx;
            if let Err(e) = irq.wires.intx.set_level(intx) {
                ratelimit::warn!("root port INTA: {e}");
            }
        }
        match route {
            Some(message) if pending && !irq.pending => {
                if cmd & command::BUS_MASTER != 0 {
                    irq.wires.msi.send(0, message);
                } else {
                    tracing::debug!("root port hot-plug MSI lost: bus mastering is off");
                }
            }
            _ => {}
        }
        irq.pending = pending;
        self.config.set_interrupt_status(route.is_none() && pending);
    }
}

impl PciFunction for RootPort {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        self.write(offset, data).config
    }

    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.config.bar_windows()
    }
}

impl PciBridgeFunction for RootPort {
    fn bus_numbers(&self) -> BusNumbers {
        self.config.bus_numbers()
    }

    fn secondary_devices(&self) -> u8 {
        match self.caps.pcie() {
            Some(p) if p.ari_forwarding(self.config.regs()) => BUS_DEVICES,
            _ => 1,
        }
    }

    fn may_forward_ari(&self) -> bool {
        true
    }

    fn forwards(&self, io: bool, window: BarWindow) -> bool {
        self.config.forwards_range(io, window)
    }

    fn requester_alias(&self) -> RequesterAlias {
        RequesterAlias::Keep
    }
}

#[cfg(test)]
mod hotplug_tests;
