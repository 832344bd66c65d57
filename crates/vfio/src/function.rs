//! A host PCI function as the guest sees it (issue 19): the identity, BARs
//! and interrupt capabilities of the host function in a configuration
//! space iovm emulates, so that no guest write to the header or a
//! capability reaches the device except the command register's decode and
//! bus-master bits. BAR accesses go to the device, except the MSI-X table
//! and PBA, which iovm emulates: VFIO programs the device's own table from
//! the eventfds it is given (`VFIO_DEVICE_SET_IRQS`), one per vector, each
//! the vector's KVM irqfd, so an interrupt reaches the guest without
//! passing through iovm.
//!
//! ```text
//!  guest config write ─▶ EndpointConfig (shadow) ─▶ MSI/MSI-X routes (MsiVectors)
//!                          │ command: MEM/IO/BME/INTx-disable ─▶ device config
//!                          └ MSI-X or MSI enabled ─▶ set_irqs(irqfds of the vectors)
//!  guest BAR access ─▶ MSI-X table/PBA? emulated : device region (VFIO)
//!  device interrupt ─▶ eventfd = irqfd ─▶ KVM GSI route ─▶ guest
//! ```
//!
//! What the guest does not see of the host function: its other
//! capabilities and every extended capability (so no ARI, SR-IOV or
//! Resizable BAR reaches the guest; it gets iovm's own power management
//! and PCI Express capabilities) and its expansion ROM. Its INTx pin is
//! shown as INTA when the VMM relays it ([`IntxRelay`]); VFIO takes one
//! interrupt kind at a time, so INTx is handed over only while neither
//! MSI-X nor MSI is enabled and the guest has not disabled INTx.
//! A masked vector (an MSI-X entry's Mask bit, the Function Mask, MSI's
//! per-vector Mask bits) is held by its [`VectorTriggers`]: the device's
//! signal waits in the eventfd, shows as the vector's pending bit (in the
//! PBA, or MSI's Pending Bits), and is delivered when the guest unmasks it.

use std::sync::Arc;

use irq::msi::MsiVectors;
use pci::bar::BarSpec;
use pci::caps::endpoint::EndpointConfig;
use pci::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use pci::caps::pm::PmConfig;
use pci::caps::routing::MsiRouting;
use pci::caps::CapError;
use pci::config::{command, BarWindow, ConfigError, ConfigWriteEffects, Type0Config};
use pci::function::PciFunction;

use crate::host::{HostDevice, IntxRelay, IrqKind, VectorTriggers, CONFIG_REGION};
use crate::scan::{scan, HostConfig, ScanError};

/// The command register bits that reach the device: its decoders, its
/// bus mastering and its INTx disable.
const FORWARDED_COMMAND: u16 =
    command::IO | command::MEMORY | command::BUS_MASTER | command::INTX_DISABLE;
/// Offset of the command register.
const COMMAND: usize = 0x04;

/// Page size of BAR mappings: the MSI-X table and PBA are trapped at
/// this granularity.
pub const PAGE: u64 = 0x1000;

/// Part of a BAR the guest may reach directly (the VMM maps the device's
/// region there: KVM, a memory slot), so its accesses never exit: every
/// page of a mappable memory BAR except those holding the MSI-X table or
/// PBA, which iovm emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectRange {
    /// The BAR index.
    pub bar: usize,
    /// Page-aligned offset in the BAR.
    pub offset: u64,
    /// Bytes, whole pages.
    pub len: u64,
}

/// Which of the device's interrupts the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupts {
    /// MSI-X, if the device has it.
    pub msix: bool,
    /// MSI, if the device has it.
    pub msi: bool,
    /// INTx (as INTA), if the device has a pin and the VMM relays it.
    pub intx: bool,
}

impl Default for Interrupts {
    fn default() -> Self {
        Self {
            msix: true,
            msi: true,
            intx: true,
        }
    }
}

/// Why a host function cannot be assigned.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The guest would see no way to interrupt.
    #[error("the function has no MSI-X, MSI or INTx left for the guest")]
    NoInterrupts,
    /// Its configuration space is not one iovm can present.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The emulated header could not be built.
    #[error("building its configuration header: {0}")]
    Header(#[from] ConfigError),
    /// The emulated capabilities could not be built.
    #[error("building its capabilities: {0}")]
    Caps(#[from] CapError),
}

/// One assigned host function.
#[derive(Debug)]
pub struct AssignedFunction {
    host: Arc<dyn HostDevice>,
    host_config: HostConfig,
    ep: EndpointConfig,
    routing: MsiRouting,
    triggers: Arc<dyn VectorTriggers>,
    intx: Option<Arc<dyn IntxRelay>>,
    /// What VFIO signals now: the kind and how many vectors.
    signalling: Option<(IrqKind, u16)>,
    /// Which vectors are masked now, by vector.
    masked: Vec<bool>,
}

impl AssignedFunction {
    /// The host function `host`, reset and with its decoders and bus
    /// mastering off, presented with routes through `vectors` and device
    /// interrupts on `triggers`' eventfds.
    pub fn new(
        host: Arc<dyn HostDevice>,
        vectors: Arc<dyn MsiVectors>,
        triggers: Arc<dyn VectorTriggers>,
    ) -> Result<Self, AssignError> {
        Self::with_interrupts(host, vectors, triggers, None, Interrupts::default())
    }

    /// [`AssignedFunction::new`] with INTx relayed by `intx`, showing the
    /// guest only the interrupts `shown` keeps (a test switch: MSI-X hidden
    /// leaves MSI; both hidden leave INTx).
    pub fn with_interrupts(
        host: Arc<dyn HostDevice>,
        vectors: Arc<dyn MsiVectors>,
        triggers: Arc<dyn VectorTriggers>,
        intx: Option<Arc<dyn IntxRelay>>,
        shown: Interrupts,
    ) -> Result<Self, AssignError> {
        host.reset();
        let mut raw = [0u8; 256];
        host.read(CONFIG_REGION, 0, &mut raw);
        let mut host_config = scan(&raw, |i| host.region(i as u32).map_or(0, |r| r.size))?;
        if !shown.msix {
            host_config.msix = None;
        }
        if !shown.msi {
            host_config.msi = None;
        }
        let intx = intx.filter(|_| shown.intx && host_config.pin != 0);
        if host_config.msix.is_none() && host_config.msi.is_none() && intx.is_none() {
            return Err(AssignError::NoInterrupts);
        }
        let pin = if intx.is_some() { 1 } else { 0 };
        let header = Type0Config::new(host_config.identity, &host_config.bars, pin)?;
        let (msi, msix) = (host_config.msi, host_config.msix);
        let ep = EndpointConfig::new(header, |list| {
            list.power_management(PmConfig::default())?;
            if let Some(m) = msi {
                list.msi(m)?;
            }
            if let Some(m) = msix {
                list.msix(m)?;
            }
            list.pci_express(PcieConfig {
                device: PcieDevice::Endpoint {
                    link: LinkConfig {
                        max_speed: LinkSpeed::Gen3,
                        max_width: LinkWidth::X4,
                        speed: LinkSpeed::Gen3,
                        width: LinkWidth::X4,
                    },
                },
                max_payload: MaxPayload::B256,
            })
        })?;
        let f = Self {
            host,
            host_config,
            ep,
            routing: MsiRouting::new(vectors),
            triggers,
            intx,
            signalling: None,
            masked: Vec::new(),
        };
        f.forward_command();
        Ok(f)
    }

    /// What was read from the host function.
    pub fn host_config(&self) -> &HostConfig {
        &self.host_config
    }

    /// The parts of its BARs the guest may reach directly: mappable memory
    /// BARs of whole pages, minus the pages of the MSI-X table and PBA.
    pub fn direct_ranges(&self) -> Vec<DirectRange> {
        let trapped: Vec<(usize, u64, u64)> = self
            .host_config
            .msix
            .iter()
            .flat_map(|m| {
                [
                    (m.table.bar, u64::from(m.table.offset), m.table_size()),
                    (m.pba.bar, u64::from(m.pba.offset), m.pba_size()),
                ]
            })
            .map(|(bar, off, len)| {
                let first = off / PAGE * PAGE;
                let end = (off + len).div_ceil(PAGE) * PAGE;
                (bar, first, end)
            })
            .collect();
        let mut out = Vec::new();
        for b in &self.host_config.bars {
            let mappable = self.host.region(b.index as u32).is_some_and(|r| r.mmap);
            if b.is_io() || !mappable || b.size < PAGE {
                continue;
            }
            let mut start = 0;
            let mut holes: Vec<(u64, u64)> = trapped
                .iter()
                .filter(|t| t.0 == b.index)
                .map(|t| (t.1, t.2.min(b.size)))
                .collect();
            holes.sort_unstable();
            for (first, end) in holes.into_iter().chain([(b.size, b.size)]) {
                if first > start {
                    out.push(DirectRange {
                        bar: b.index,
                        offset: start,
                        len: first - start,
                    });
                }
                start = start.max(end);
            }
        }
        out
    }

    /// Copies the forwarded command bits of the emulated header to the
    /// device, keeping its other bits.
    fn forward_command(&self) {
        let mut raw = [0u8; 2];
        self.host.read(CONFIG_REGION, COMMAND as u64, &mut raw);
        let device = u16::from_le_bytes(raw);
        let wanted =
            (device & !FORWARDED_COMMAND) | (self.ep.config().command() & FORWARDED_COMMAND);
        if wanted != device {
            self.host
                .write(CONFIG_REGION, COMMAND as u64, &wanted.to_le_bytes());
        }
    }

    /// What the guest's programming asks VFIO to signal.
    fn wanted_irqs(&self) -> Option<(IrqKind, u16)> {
        let caps = self.ep.caps();
        if let Some(t) = caps.msix_table().filter(|t| t.control().enabled) {
            return Some((IrqKind::Msix, t.vectors()));
        }
        let msi = caps
            .msi()
            .map(|m| m.state(self.ep.config().regs()))
            .filter(|s| s.enabled)
            .map(|s| (IrqKind::Msi, u16::from(s.vectors)));
        let intx_on = self.ep.config().command() & command::INTX_DISABLE == 0;
        msi.or_else(|| (self.intx.is_some() && intx_on).then_some((IrqKind::Intx, 1)))
    }

    /// The eventfds VFIO is given for `count` vectors of `kind`.
    fn eventfds(
        &self,
        kind: IrqKind,
        count: u16,
    ) -> std::io::Result<Vec<vmm_sys_util::eventfd::EventFd>> {
        match (kind, &self.intx) {
            (IrqKind::Intx, Some(relay)) => Ok(relay.eventfds()?.into()),
            (IrqKind::Intx, None) => Err(std::io::Error::other("no INTx relay")),
            _ => (0..count).map(|v| self.triggers.trigger(v)).collect(),
        }
    }

    /// Which vectors of the kind the guest enabled it masks (none when
    /// neither MSI-X nor MSI is on).
    fn wanted_masks(&self) -> Vec<bool> {
        let caps = self.ep.caps();
        match self.wanted_irqs() {
            Some((IrqKind::Msix, n)) => match caps.msix_table() {
                Some(t) => {
                    let all = t.control().function_masked;
                    (0..n)
                        .map(|v| all || t.entry(v).is_none_or(|e| e.masked))
                        .collect()
                }
                None => Vec::new(),
            },
            Some((IrqKind::Msi, n)) => match caps.msi() {
                Some(m) => {
                    let mask = m.state(self.ep.config().regs()).mask;
                    (0..n).map(|v| mask & (1 << v) != 0).collect()
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Holds or resumes the vectors whose mask the guest changed. Runs
    /// before VFIO is given the eventfds, so a vector the guest enables
    /// masked never delivers.
    fn sync_masks(&mut self) {
        let wanted = self.wanted_masks();
        let len = wanted.len().max(self.masked.len());
        for v in 0..len {
            let want = wanted.get(v).copied().unwrap_or(false);
            if self.masked.get(v).copied().unwrap_or(false) != want {
                if let Err(e) = self.triggers.set_masked(v as u16, want) {
                    tracing::warn!("assigned device: vector {v}: cannot change its mask: {e}");
                }
            }
        }
        self.masked = wanted;
    }

    /// The pending bits of vectors `first..first + 8 * data.len()`, byte by
    /// byte, ORed into `data`.
    fn or_pending(&self, first: usize, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            for bit in 0..8 {
                let v = first + i * 8 + bit;
                if self.masked.get(v).copied().unwrap_or(false) && self.triggers.pending(v as u16) {
                    *byte |= 1 << bit;
                }
            }
        }
    }

    /// Brings VFIO's interrupt eventfds in line with the guest's MSI-X or
    /// MSI enable.
    fn sync_irqs(&mut self) {
        let wanted = self.wanted_irqs();
        if wanted == self.signalling {
            return;
        }
        if let Some((kind, _)) = self.signalling.take() {
            if let Err(e) = self.host.set_irqs(kind, &[]) {
                tracing::warn!("assigned device: cannot disable {kind:?}: {e}");
            }
        }
        let Some((kind, count)) = wanted else {
            return;
        };
        let fds = self.eventfds(kind, count);
        let result = fds.and_then(|fds| self.host.set_irqs(kind, &fds.iter().collect::<Vec<_>>()));
        match result {
            Ok(()) => self.signalling = Some((kind, count)),
            Err(e) => {
                tracing::warn!("assigned device: cannot enable {count} {kind:?} vectors: {e}")
            }
        }
    }

    /// Stops the device's interrupts and DMA (teardown).
    pub fn quiesce(&mut self) {
        if let Some((kind, _)) = self.signalling.take() {
            let _ = self.host.set_irqs(kind, &[]);
        }
        let mut raw = [0u8; 2];
        self.host.read(CONFIG_REGION, COMMAND as u64, &mut raw);
        let off = u16::from_le_bytes(raw) & !FORWARDED_COMMAND;
        self.host
            .write(CONFIG_REGION, COMMAND as u64, &off.to_le_bytes());
        self.host.reset();
    }
}

impl PciFunction for AssignedFunction {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.ep.read(offset, data);
        let msi = self.ep.caps().msi().filter(|_| {
            self.host_config.msi.is_some_and(|m| m.per_vector_mask)
                && self.signalling.is_some_and(|(k, _)| k == IrqKind::Msi)
        });
        if let Some(m) = msi {
            let pending = m.mask_offset() + 4;
            overlap_or(offset, data, pending, 4, |first, out| {
                self.or_pending(first * 8, out)
            });
        }
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) -> ConfigWriteEffects {
        let effects = self.ep.write(offset, data);
        self.routing.after_config_write(&self.ep, &effects);
        let end = offset.saturating_add(data.len());
        if offset < COMMAND + 2 && end > COMMAND {
            self.forward_command();
        }
        self.sync_masks();
        self.sync_irqs();
        effects.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if !self.ep.bar_read(bar, offset, data) {
            self.host.read(bar as u32, offset, data);
            return;
        }
        let pba = self.host_config.msix.filter(|m| m.pba.bar == bar);
        if let Some(m) = pba {
            let start = u64::from(m.pba.offset);
            if let Some(rel) = offset.checked_sub(start) {
                if rel < m.pba_size() {
                    self.or_pending(rel as usize * 8, data);
                }
            }
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match self.ep.bar_write(bar, offset, data) {
            Some(effects) => {
                self.routing.after_table_write(&self.ep, &effects);
                self.sync_masks();
            }
            None if self
                .ep
                .caps()
                .msix_table()
                .is_some_and(|t| t.contains(bar, offset)) => {}
            None => self.host.write(bar as u32, offset, data),
        }
    }

    fn bar_windows(&self) -> Vec<(BarSpec, Option<BarWindow>)> {
        self.ep.config().bar_windows()
    }
}

impl Drop for AssignedFunction {
    fn drop(&mut self) {
        self.quiesce();
    }
}

/// Calls `f` with the part of `data` (read at `offset`) that overlaps the
/// register of `len` bytes at `reg`, and the byte index in the register
/// where that part starts.
fn overlap_or(
    offset: usize,
    data: &mut [u8],
    reg: usize,
    len: usize,
    f: impl FnOnce(usize, &mut [u8]),
) {
    let start = offset.max(reg);
    let end = offset.saturating_add(data.len()).min(reg + len);
    if start < end {
        f(start - reg, &mut data[start - offset..end - offset]);
    }
}

#[cfg(test)]
mod tests;
