//! Laying out and walking capability lists.
//!
//! Conventional capabilities (PCI Local Bus 3.0 §6.7) are DWORD aligned
//! between 0x40 and 0xFF; each starts with its ID byte and a next-pointer
//! byte (0: end), the Capabilities Pointer at 0x34 names the first, and
//! Status bit 4 says the list exists. Extended capabilities (PCIe 6.0
//! §7.6.3) start at 0x100 with a 32-bit header: ID in bits 15:0, version in
//! 19:16, next offset in 31:20 (0: end).

use super::{
    id, msi, msix, msix_table, pcie, pm, sriov, sriov_regs, CapError, Capabilities, Capability,
    ExtendedCapability, CAPABILITIES_POINTER, CONVENTIONAL_END, FIRST_CAPABILITY, FIRST_EXTENDED,
};
use crate::config::{status, STATUS};
use crate::regs::RegisterMask;

/// Lays capabilities out in a function's register block, in the order added.
///
/// ```
/// # use pci::{caps::{CapabilityList, msi::MsiConfig, pm::PmConfig}, regs::RegisterMask};
/// let mut regs = RegisterMask::new(4096);
/// let mut list = CapabilityList::new(&mut regs);
/// list.power_management(PmConfig::default())?;
/// list.msi(MsiConfig { vectors: 4, address64: true, per_vector_mask: true })?;
/// let caps = list.finish();
/// assert_eq!(caps.msi().unwrap().offset(), 0x48);
/// # Ok::<(), pci::caps::CapError>(())
/// ```
#[derive(Debug)]
pub struct CapabilityList<'a> {
    regs: &'a mut RegisterMask,
    next: usize,
    last: Option<usize>,
    next_ext: usize,
    last_ext: Option<usize>,
    caps: Capabilities,
}

const fn align4(x: usize) -> usize {
    (x + 3) & !3
}

impl<'a> CapabilityList<'a> {
    /// An empty list over `regs` (a type 0 or type 1 configuration space).
    pub fn new(regs: &'a mut RegisterMask) -> Self {
        Self {
            regs,
            next: FIRST_CAPABILITY,
            last: None,
            next_ext: FIRST_EXTENDED,
            last_ext: None,
            caps: Capabilities::default(),
        }
    }

    fn reserve(&self, id: u16, size: usize, extended: bool) -> Result<usize, CapError> {
        let (offset, end) = if extended {
            (self.next_ext, self.regs.len())
        } else {
            (self.next, CONVENTIONAL_END.min(self.regs.len()))
        };
        match offset.checked_add(size) {
            Some(e) if e <= end => Ok(offset),
            _ => Err(CapError::NoRoom { id, size, offset }),
        }
    }

    fn link(&mut self, id: u8, offset: usize, size: usize) -> Result<(), CapError> {
        self.regs.set_value(offset, 2, id.into())?;
        self.regs.set_masks(offset, 2, 0, 0)?;
        match self.last {
            Some(prev) => self.regs.set_value(prev + 1, 1, offset as u64)?,
            None => {
                self.regs
                    .set_value(CAPABILITIES_POINTER, 1, offset as u64)?;
                self.regs.device_set(STATUS, 2, status::CAPABILITIES.into());
            }
        }
        self.last = Some(offset);
        self.next = align4(offset + size);
        Ok(())
    }

    /// Reserves room, installs the body, then links the header, so a
    /// refused capability leaves the list as it was.
    fn place<H>(
        &mut self,
        id: u8,
        size: usize,
        install: impl FnOnce(&mut RegisterMask, usize) -> Result<H, CapError>,
    ) -> Result<H, CapError> {
        let offset = self.reserve(id.into(), size, false)?;
        let handle = install(self.regs, offset)?;
        self.link(id, offset, size)?;
        Ok(handle)
    }

    /// Adds a capability that has no behaviour beyond its masks; returns its offset.
    pub fn add(&mut self, cap: &dyn Capability) -> Result<usize, CapError> {
        let size = cap.size().max(2);
        self.place(cap.id(), size, |regs, offset| {
            cap.install(regs, offset).map(|()| offset)
        })
    }

    /// Adds a PCIe extended capability; returns its offset.
    pub fn add_extended(&mut self, cap: &dyn ExtendedCapability) -> Result<usize, CapError> {
        let size = cap.size().max(4);
        let offset = self.reserve(cap.id(), size, true)?;
        cap.install(self.regs, offset)?;
        self.link_extended(cap.id(), cap.version(), offset, size)?;
        Ok(offset)
    }

    /// Writes an extended capability's header and links it after the last.
    fn link_extended(
        &mut self,
        id: u16,
        version: u8,
        offset: usize,
        size: usize,
    ) -> Result<(), CapError> {
        let header = u64::from(id) | (u64::from(version & 0xf) << 16);
        self.regs.set_value(offset, 4, header)?;
        self.regs.set_masks(offset, 4, 0, 0)?;
        if let Some(prev) = self.last_ext {
            let h = self.regs.read_le(prev, 4) & 0x000f_ffff;
            self.regs.set_value(prev, 4, h | ((offset as u64) << 20))?;
        }
        self.last_ext = Some(offset);
        self.next_ext = align4(offset + size);
        Ok(())
    }

    /// Adds the Power Management capability.
    pub fn power_management(&mut self, config: pm::PmConfig) -> Result<(), CapError> {
        if self.caps.pm.is_some() {
            return Err(CapError::Duplicate { id: id::PM });
        }
        let placed = self.place(id::PM, pm::SIZE, |regs, offset| {
            pm::PowerManagement::install(config, regs, offset)
        })?;
        self.caps.pm = Some(placed);
        Ok(())
    }

    /// Adds the MSI capability.
    pub fn msi(&mut self, config: msi::MsiConfig) -> Result<(), CapError> {
        if self.caps.msi.is_some() {
            return Err(CapError::Duplicate { id: id::MSI });
        }
        let placed = self.place(id::MSI, config.size(), |regs, offset| {
            msi::Msi::install(config, regs, offset)
        })?;
        self.caps.msi = Some(placed);
        Ok(())
    }

    /// Adds the MSI-X capability; its table and PBA are then served by
    /// [`Capabilities::msix_table_mut`].
    pub fn msix(&mut self, config: msix::MsixConfig) -> Result<(), CapError> {
        if self.caps.msix.is_some() {
            return Err(CapError::Duplicate { id: id::MSIX });
        }
        let cap = self.place(id::MSIX, msix::SIZE, |regs, offset| {
            msix::MsixCapability::install(config, regs, offset)
        })?;
        self.caps.msix = Some((cap, msix_table::MsixTable::new(config)));
        Ok(())
    }

    /// Adds the PCI Express capability.
    pub fn pci_express(&mut self, config: pcie::PcieConfig) -> Result<(), CapError> {
        if self.caps.pcie.is_some() {
            return Err(CapError::Duplicate { id: id::PCIE });
        }
        let placed = self.place(id::PCIE, pcie::SIZE, |regs, offset| {
            pcie::PciExpress::install(config, regs, offset)
        })?;
        self.caps.pcie = Some(placed);
        Ok(())
    }

    /// Offers Function Level Reset in the PCI Express capability (added
    /// before): a guest write of Initiate Function Level Reset then comes
    /// back as [`super::CapWriteEffects::flr`].
    pub fn function_level_reset(&mut self) -> Result<(), CapError> {
        let regs = &mut *self.regs;
        match self.caps.pcie.as_mut() {
            Some(p) => p.enable_flr(regs),
            None => Err(CapError::FlrWithoutPcie),
        }
    }

    /// Adds the SR-IOV extended capability of a physical function; its
    /// guest writes come back as [`super::CapWriteEffects::sriov`].
    pub fn sriov(&mut self, config: sriov::SriovConfig) -> Result<usize, CapError> {
        if self.caps.sriov.is_some() {
            return Err(CapError::Duplicate { id: 0x10 });
        }
        let size = sriov_regs::SIZE;
        let offset = self.reserve(sriov_regs::SRIOV_ID, size, true)?;
        let placed = sriov::Sriov::install(config, self.regs, offset)?;
        self.link_extended(sriov_regs::SRIOV_ID, sriov_regs::VERSION, offset, size)?;
        self.caps.sriov = Some(placed);
        Ok(offset)
    }

    /// The placed capabilities, to drive them from now on.
    pub fn finish(self) -> Capabilities {
        self.caps
    }
}

/// A capability whose body is fixed read-only bytes (e.g. vendor-specific).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOnlyCapability {
    /// Capability ID.
    pub id: u8,
    /// Bytes after the ID and next pointer.
    pub body: Vec<u8>,
}

impl Capability for ReadOnlyCapability {
    fn id(&self) -> u8 {
        self.id
    }

    fn size(&self) -> usize {
        2 + self.body.len()
    }

    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError> {
        read_only_bytes(regs, offset + 2, &self.body)
    }
}

/// A capability whose body has per-byte writable masks, for registers a
/// driver programs and the device reads back (e.g. virtio's PCI
/// configuration access capability, whose BAR, offset, length and data
/// fields the driver writes).
///
/// Byte `i` of the body resets to `body[i]` and takes the guest's bits
/// `writable[i]`; a `writable` shorter than `body` leaves the remaining
/// bytes read-only, and masks past the end of `body` are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedCapability {
    /// Capability ID.
    pub id: u8,
    /// Reset values of the bytes after the ID and next pointer.
    pub body: Vec<u8>,
    /// Writable bits of each body byte.
    pub writable: Vec<u8>,
}

impl Capability for MaskedCapability {
    fn id(&self) -> u8 {
        self.id
    }

    fn size(&self) -> usize {
        2 + self.body.len()
    }

    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError> {
        read_only_bytes(regs, offset + 2, &self.body)?;
        for (i, &w) in self.writable.iter().take(self.body.len()).enumerate() {
            regs.set_masks(offset + 2 + i, 1, w.into(), 0)?;
        }
        Ok(())
    }
}

/// An extended capability whose body is fixed read-only bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOnlyExtended {
    /// Extended capability ID.
    pub id: u16,
    /// Capability version.
    pub version: u8,
    /// Bytes after the 4-byte header.
    pub body: Vec<u8>,
}

impl ExtendedCapability for ReadOnlyExtended {
    fn id(&self) -> u16 {
        self.id
    }

    fn version(&self) -> u8 {
        self.version
    }

    fn size(&self) -> usize {
        4 + self.body.len()
    }

    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError> {
        read_only_bytes(regs, offset + 4, &self.body)
    }
}

fn read_only_bytes(regs: &mut RegisterMask, offset: usize, bytes: &[u8]) -> Result<(), CapError> {
    for (i, &b) in bytes.iter().enumerate() {
        regs.set_value(offset + i, 1, b.into())?;
        regs.set_masks(offset + i, 1, 0, 0)?;
    }
    Ok(())
}

/// A capability found by walking a list as a guest driver does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Capability ID (8 bits for conventional capabilities).
    pub id: u16,
    /// Version (extended capabilities; 0 for conventional ones).
    pub version: u8,
    /// Offset of its header.
    pub offset: usize,
}

/// Walks the conventional list through `read32` (an aligned DWORD read of
/// configuration space), bounded like Linux's walk so a looping list ends.
pub fn walk(read32: impl Fn(usize) -> u32) -> Vec<Found> {
    let mut found = Vec::new();
    if (read32(STATUS & !3) >> 16) as u16 & status::CAPABILITIES == 0 {
        return found;
    }
    let mut ptr = (read32(CAPABILITIES_POINTER) & 0xfc) as usize;
    for _ in 0..48 {
        if ptr < FIRST_CAPABILITY {
            break;
        }
        let header = read32(ptr);
        found.push(Found {
            id: (header & 0xff) as u16,
            version: 0,
            offset: ptr,
        });
        ptr = ((header >> 8) & 0xfc) as usize;
    }
    found
}

/// Walks the extended list from 0x100 through `read32`, bounded.
pub fn walk_extended(read32: impl Fn(usize) -> u32) -> Vec<Found> {
    let mut found = Vec::new();
    let mut ptr = FIRST_EXTENDED;
    for _ in 0..(4096 - FIRST_EXTENDED) / 8 {
        let header = read32(ptr);
        if header == 0 || header == u32::MAX {
            break;
        }
        found.push(Found {
            id: (header & 0xffff) as u16,
            version: ((header >> 16) & 0xf) as u8,
            offset: ptr,
        });
        ptr = ((header >> 20) & 0xffc) as usize;
        if ptr < FIRST_EXTENDED {
            break;
        }
    }
    found
}
