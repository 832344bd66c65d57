//! PCI capabilities as data: the capability lists (PCI Local Bus 3.0 §6.7,
//! PCIe 6.0 §7.6) and the capabilities a virtual function needs — Power
//! Management ([`pm`]), MSI ([`msi`]), MSI-X ([`msix`], [`msix_table`]),
//! PCI Express ([`pcie`], with Function Level Reset), and for SR-IOV
//! physical functions ARI ([`ari`]) and SR-IOV ([`sriov`], [`sriov_regs`]).
//!
//! ```text
//!  0x06 Status.CapabilitiesList = 1
//!  0x34 Capabilities Pointer ─► 0x40 [ID|next] ─► 0x48 [ID|next] ─► … ─► 00
//!
//!  0x100 [ID:16|ver:4|next:12] ─► [ID:16|ver:4|next:12] ─► … ─► 000
//! ```
//!
//! A capability declares the reset value and the writable and
//! write-1-to-clear masks of its registers into the function's
//! [`RegisterMask`], so the ordinary configuration write applies most of its
//! semantics. What masks cannot say (refused field values, a vector that
//! becomes deliverable when unmasked) is done after the write by
//! [`Capabilities::after_write`], which returns its consequences as data.
//!
//! | Hostile guest write                        | What happens                                   |
//! |--------------------------------------------|------------------------------------------------|
//! | IDs, next pointers, PMC, MSI/MSI-X layout  | read-only: ignored                             |
//! | PowerState = D1/D2 (not supported)         | discarded, state unchanged (PM 1.2 §3.2.4)     |
//! | MSI Multiple Message Enable > Capable      | clamped to Capable                             |
//! | MSI address bits 1:0, mask bits ≥ vectors  | read-only zero                                 |
//! | MSI / MSI-X pending bits, PBA              | read-only                                      |
//! | MSI-X access outside table and PBA         | not claimed: `read` → false, `write` → None    |
//! | MSI-X access of odd size or alignment      | bytewise through the masks; past the end: 0    |
//! | PCIe Max_Payload_Size above supported      | discarded (PCIe 6.0 §7.5.3.4)                  |
//! | PCIe reserved MRRS, unsupported link speed | discarded                                      |
//! | any W1C status bit                         | writing 1 clears it, 0 leaves it               |
//! | PCIe Initiate FLR                          | reads 0; reported as `flr` if FLR is offered   |
//! | SR-IOV fields (see [`sriov`])              | NumVFs > TotalVFs enables nothing; locked fields kept |

pub mod acs;
pub mod ari;
pub mod endpoint;
pub mod list;
pub mod ltr;
pub mod msi;
pub mod msix;
pub mod msix_table;
pub mod pcie;
pub mod pcie_regs;
pub mod pm;
pub mod routing;
pub mod slot;
pub mod sriov;
pub mod sriov_regs;

#[cfg(test)]
mod tests;

use crate::message::{Delivery, Trigger};
use crate::regs::{MaskError, RegisterMask};

pub use list::{CapabilityList, MaskedCapability, ReadOnlyCapability, ReadOnlyExtended};

/// Offset of the Capabilities Pointer in type 0 and type 1 headers.
pub const CAPABILITIES_POINTER: usize = 0x34;
/// Where the builder places the first capability (just past the header).
pub const FIRST_CAPABILITY: usize = 0x40;
/// End of the conventional (256-byte) configuration space.
pub const CONVENTIONAL_END: usize = 0x100;
/// Where the PCIe extended capability list starts (PCIe 6.0 §7.6.3).
pub const FIRST_EXTENDED: usize = 0x100;

/// Capability IDs (PCI Code and ID Assignment 1.11 §2).
pub mod id {
    /// PCI Power Management.
    pub const PM: u8 = 0x01;
    /// Message Signalled Interrupts.
    pub const MSI: u8 = 0x05;
    /// Vendor specific (e.g. virtio's structures).
    pub const VENDOR: u8 = 0x09;
    /// PCI Express.
    pub const PCIE: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// Why a capability could not be installed (a bug in a device model).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapError {
    /// Not enough room left in the capability area.
    #[error("capability {id:#x} of {size} bytes does not fit at {offset:#x}")]
    NoRoom {
        /// Capability ID.
        id: u16,
        /// Its size.
        size: usize,
        /// Where it would go.
        offset: usize,
    },
    /// A capability that drives behaviour was added twice.
    #[error("capability {id:#x} is already present")]
    Duplicate {
        /// Capability ID.
        id: u8,
    },
    /// MSI supports 1, 2, 4, 8, 16 or 32 vectors.
    #[error("MSI cannot have {vectors} vectors")]
    MsiVectors {
        /// The count given.
        vectors: u8,
    },
    /// MSI-X supports 1 to 2048 vectors.
    #[error("MSI-X cannot have {vectors} vectors")]
    MsixVectors {
        /// The count given.
        vectors: u16,
    },
    /// An MSI-X structure's BAR index is above 5 or its offset not QWORD aligned.
    #[error("MSI-X structure at BAR {bar} offset {offset:#x} is not addressable")]
    MsixLocation {
        /// BAR index.
        bar: usize,
        /// Offset in the BAR.
        offset: u32,
    },
    /// The MSI-X table and PBA overlap.
    #[error("MSI-X table and PBA overlap")]
    MsixOverlap,
    /// A negotiated link speed or width exceeds what the link is capable of.
    #[error("negotiated link exceeds the link's capabilities")]
    LinkAboveMax,
    /// Function Level Reset asked of a function without the PCI Express
    /// capability, where it is advertised.
    #[error("Function Level Reset needs the PCI Express capability, added before")]
    FlrWithoutPcie,
    /// An SR-IOV capability description is invalid (TotalVFs, page
    /// sizes, VF BARs).
    #[error("invalid SR-IOV capability: {0}")]
    Sriov(&'static str),
    /// A register mask is invalid.
    #[error(transparent)]
    Mask(#[from] MaskError),
}

/// A conventional capability with no behaviour beyond its register masks,
/// for [`CapabilityList::add`] (e.g. a vendor-specific capability).
pub trait Capability {
    /// Capability ID.
    fn id(&self) -> u8;
    /// Bytes it occupies including the 2-byte header; laid out DWORD-aligned.
    fn size(&self) -> usize;
    /// Writes reset values and masks of the bytes after the header at `offset`.
    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError>;
}

/// A PCIe extended capability with no behaviour beyond its register masks,
/// for [`CapabilityList::add_extended`].
pub trait ExtendedCapability {
    /// Extended capability ID (16 bits).
    fn id(&self) -> u16;
    /// Capability version (4 bits).
    fn version(&self) -> u8;
    /// Bytes it occupies including the 4-byte header; laid out DWORD-aligned.
    fn size(&self) -> usize;
    /// Writes reset values and masks of the bytes after the header at `offset`.
    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError>;
}

/// What a guest configuration write changed in the capabilities, for the
/// VMM to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapWriteEffects {
    /// The new power state, if it changed.
    pub power_state: Option<pm::PowerState>,
    /// MSI enabled, disabled or reprogrammed (update the GSI route).
    pub msi: Option<msi::MsiChange>,
    /// The new MSI-X Enable / Function Mask, if either changed.
    pub msix: Option<msix::MsixControl>,
    /// Pending vectors that the write made deliverable: send them now.
    pub deliver: Vec<Delivery>,
    /// The guest initiated a Function Level Reset (PCIe capability, Device
    /// Control bit 15): the device resets the function now (PCIe 6.0
    /// §6.6.2).
    pub flr: bool,
    /// What changed in the SR-IOV capability of a PF.
    pub sriov: Option<sriov::SriovEffect>,
}

/// The behaviour-bearing capabilities of one function, as placed by a
/// [`CapabilityList`]. Their state lives in the function's [`RegisterMask`]
/// (and the MSI-X table here); every method takes that register block.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    pm: Option<pm::PowerManagement>,
    msi: Option<msi::Msi>,
    msix: Option<(msix::MsixCapability, msix_table::MsixTable)>,
    pcie: Option<pcie::PciExpress>,
    sriov: Option<sriov::Sriov>,
}

/// Register values before a guest write, for [`Capabilities::after_write`].
#[derive(Clone, Debug)]
pub struct CapSnapshot {
    pm: Option<u16>,
    msi: Option<msi::MsiState>,
    pcie: Option<pcie::PcieSnapshot>,
    sriov: Option<sriov::SriovState>,
}

impl Capabilities {
    /// The Power Management capability, if present.
    pub fn pm(&self) -> Option<&pm::PowerManagement> {
        self.pm.as_ref()
    }

    /// The MSI capability, if present.
    pub fn msi(&self) -> Option<&msi::Msi> {
        self.msi.as_ref()
    }

    /// The MSI-X capability, if present.
    pub fn msix(&self) -> Option<&msix::MsixCapability> {
        self.msix.as_ref().map(|(cap, _)| cap)
    }

    /// The MSI-X table and PBA, if MSI-X is present.
    pub fn msix_table(&self) -> Option<&msix_table::MsixTable> {
        self.msix.as_ref().map(|(_, table)| table)
    }

    /// The MSI-X table and PBA, for BAR accesses (see [`msix_table::MsixTable::write`]).
    pub fn msix_table_mut(&mut self) -> Option<&mut msix_table::MsixTable> {
        self.msix.as_mut().map(|(_, table)| table)
    }

    /// The PCI Express capability, if present.
    pub fn pcie(&self) -> Option<&pcie::PciExpress> {
        self.pcie.as_ref()
    }

    /// The SR-IOV capability of a physical function, if present.
    pub fn sriov(&self) -> Option<&sriov::Sriov> {
        self.sriov.as_ref()
    }

    /// The SR-IOV capability, for a reset of the PF ([`sriov::Sriov::reset`]).
    pub fn sriov_mut(&mut self) -> Option<&mut sriov::Sriov> {
        self.sriov.as_mut()
    }

    /// Takes the values [`Capabilities::after_write`] compares against; call
    /// it just before applying a guest write to `regs`.
    pub fn snapshot(&self, regs: &RegisterMask) -> CapSnapshot {
        CapSnapshot {
            pm: self.pm.as_ref().map(|p| p.snapshot(regs)),
            msi: self.msi.as_ref().map(|m| m.state(regs)),
            pcie: self.pcie.as_ref().map(|p| p.snapshot(regs)),
            sriov: self.sriov.as_ref().map(|s| s.state(regs)),
        }
    }

    /// Finishes a guest write already applied to `regs`: refuses values the
    /// masks let through but the spec forbids, and reports what changed.
    pub fn after_write(&mut self, before: CapSnapshot, regs: &mut RegisterMask) -> CapWriteEffects {
        let mut effects = CapWriteEffects::default();
        if let (Some(p), Some(old)) = (&self.pm, before.pm) {
            effects.power_state = p.after_write(old, regs);
        }
        if let (Some(m), Some(old)) = (&self.msi, before.msi) {
            let (change, deliver) = m.after_write(old, regs);
            effects.msi = change;
            effects.deliver.extend(deliver);
        }
        if let Some((cap, table)) = &mut self.msix {
            let control = cap.control(regs);
            if control != table.control() {
                effects.msix = Some(control);
                effects.deliver.extend(table.set_control(control));
            }
        }
        if let (Some(p), Some(old)) = (&self.pcie, before.pcie) {
            effects.flr = p.after_write(old, regs);
        }
        if let (Some(s), Some(old)) = (&mut self.sriov, before.sriov) {
            effects.sriov = s.after_write(old, regs);
        }
        effects
    }

    /// The device signals `vector`: through MSI-X when it is enabled, else
    /// through MSI. Bus Master Enable and the power state (no messages
    /// outside D0) are the caller's to check.
    pub fn trigger(&mut self, regs: &mut RegisterMask, vector: u16) -> Trigger {
        if let Some((_, table)) = &mut self.msix {
            if table.control().enabled {
                return table.trigger(vector);
            }
        }
        match &self.msi {
            Some(m) => m.trigger(regs, vector),
            None => Trigger::Disabled,
        }
    }
}

/// Reads a little-endian register of `len` bytes.
fn get(regs: &RegisterMask, offset: usize, len: usize) -> u64 {
    regs.read_le(offset, len)
}

/// Sets a register from the device side, ignoring masks. Handles are only
/// used on the block they were installed in, where the range exists.
fn put(regs: &mut RegisterMask, offset: usize, len: usize, value: u64) {
    regs.set_value(offset, len, value).ok();
}

/// Puts back the old value of the bits `field` of a register when the new
/// value of that field is refused by `valid` (which sees the field shifted
/// down): "the write completes, the data is discarded".
fn refuse_field(
    regs: &mut RegisterMask,
    offset: usize,
    len: usize,
    field: u64,
    old: u64,
    valid: impl Fn(u64) -> bool,
) {
    let new = get(regs, offset, len);
    let shift = field.trailing_zeros();
    if !valid((new & field) >> shift) {
        put(regs, offset, len, (new & !field) | (old & field));
    }
}
