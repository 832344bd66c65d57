//! The PCI Express Capability, version 2 (PCIe 6.0 §7.5.3), for an
//! endpoint, a Root Complex integrated endpoint or a root port.
//!
//! ```text
//!  +0x00 ID 0x10 | next | PCIe Capabilities   RO  v2, port type, slot
//!  +0x04 Device Capabilities                  RO  MPS 128/256, ext tags, RBER
//!  +0x08 Device Control  RW (MPS ≤ supported, MRRS ≤ 4096 else discarded)
//!  +0x0A Device Status   error bits RW1C
//!  +0x0C Link Capabilities                    RO  max speed/width (not RCiEP)
//!  +0x10 Link Control    RW subset            +0x12 Link Status  RO (+RW1C BW bits, ports)
//!  +0x14 Slot Capabilities (root port slot)   +0x18 Slot Control +0x1A Slot Status
//!  +0x1C Root Control (ports)                 +0x1E Root Capabilities
//!  +0x20 Root Status: PME requester RO, PME Status RW1C, PME Pending RO
//!  +0x24 Device Capabilities 2                +0x28 Device Control 2
//!  +0x2C Link Capabilities 2: speed vector    +0x30 Link Control 2: target speed
//!  +0x32 Link Status 2, +0x34..0x3B Slot 2 registers: 0
//! ```
//!
//! Version 2 implements every register; those that do not apply to the port
//! type read 0 (§7.5.3). A root port's slot, with or without a hot-plug
//! controller, is [`super::slot`]'s.
//! The link is not trained: Link Status reports the configured negotiated
//! speed and width, and Retrain Link completes at once (reads 0).

use super::pcie_regs::*;
use super::slot::{Slot, SlotConfig};
use super::{get, put, refuse_field, CapError};
use crate::regs::RegisterMask;

/// Bytes the capability occupies.
pub const SIZE: usize = 0x3c;

/// A link speed (encoded as its bit index in the Supported Link Speeds Vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkSpeed {
    /// 2.5 GT/s (Gen1).
    Gen1 = 1,
    /// 5.0 GT/s (Gen2).
    Gen2 = 2,
    /// 8.0 GT/s (Gen3).
    Gen3 = 3,
    /// 16.0 GT/s (Gen4).
    Gen4 = 4,
    /// 32.0 GT/s (Gen5).
    Gen5 = 5,
}

/// A link width in lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkWidth {
    /// One lane.
    X1 = 1,
    /// Two lanes.
    X2 = 2,
    /// Four lanes.
    X4 = 4,
    /// Eight lanes.
    X8 = 8,
    /// Sixteen lanes.
    X16 = 16,
}

/// A link's capability and its negotiated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Fastest speed supported.
    pub max_speed: LinkSpeed,
    /// Widest width supported.
    pub max_width: LinkWidth,
    /// Negotiated speed (reported in Link Status).
    pub speed: LinkSpeed,
    /// Negotiated width.
    pub width: LinkWidth,
}

/// What the function is (Device/Port Type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcieDevice {
    /// An endpoint below a root port.
    Endpoint {
        /// Its upstream link.
        link: LinkConfig,
    },
    /// An endpoint integrated in the root complex (on the root bus): no link.
    IntegratedEndpoint,
    /// A root port.
    RootPort {
        /// Port Number in Link Capabilities.
        port_number: u8,
        /// Its downstream link.
        link: LinkConfig,
        /// Its slot, if it has one.
        slot: Option<SlotConfig>,
        /// A device is connected (Presence Detect State, link active).
        present: bool,
    },
}

/// Largest TLP payload the function supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxPayload {
    /// 128 bytes.
    B128 = 0,
    /// 256 bytes.
    B256 = 1,
}

/// How the capability is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieConfig {
    /// Device/port type and its link.
    pub device: PcieDevice,
    /// Max_Payload_Size Supported.
    pub max_payload: MaxPayload,
}

/// Register values before a guest write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieSnapshot {
    devctl: u16,
    lnkctl2: u16,
}

/// A placed PCI Express capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciExpress {
    offset: usize,
    config: PcieConfig,
    flr: bool,
    slot: Option<Slot>,
}

fn link_of(device: &PcieDevice) -> Option<LinkConfig> {
    match *device {
        PcieDevice::Endpoint { link } | PcieDevice::RootPort { link, .. } => Some(link),
        PcieDevice::IntegratedEndpoint => None,
    }
}

fn link_status(link: &LinkConfig) -> u16 {
    link.speed as u16 | ((link.width as u16) << lnksta::WIDTH_SHIFT) | lnksta::SLOT_CLOCK
}

impl PciExpress {
    pub(super) fn install(
        config: PcieConfig,
        regs: &mut RegisterMask,
        offset: usize,
    ) -> Result<Self, CapError> {
        let link = link_of(&config.device);
        if link.is_some_and(|l| l.speed > l.max_speed || l.width > l.max_width) {
            return Err(CapError::LinkAboveMax);
        }
        let root = matches!(config.device, PcieDevice::RootPort { .. });
        let r = |reg: usize| offset + reg;

        let (port_type, slot) = match config.device {
            PcieDevice::Endpoint { .. } => (caps::TYPE_ENDPOINT, None),
            PcieDevice::IntegratedEndpoint => (caps::TYPE_RC_INTEGRATED, None),
            PcieDevice::RootPort { slot, .. } => (caps::TYPE_ROOT_PORT, slot),
        };
        let mut pcie_caps = caps::VERSION_2 | (port_type << caps::TYPE_SHIFT);
        if slot.is_some() {
            pcie_caps |= caps::SLOT_IMPLEMENTED;
        }
        regs.set_value(r(CAPS), 2, pcie_caps.into())?;

        let mut devcap = config.max_payload as u32 | devcap::EXT_TAG | devcap::RBER;
        if !root {
            devcap |= devcap::EP_LATENCY_NO_LIMIT;
        }
        regs.set_value(r(DEVCAP), 4, devcap.into())?;
        let devctl =
            devctl::RELAXED_ORDERING | devctl::EXT_TAG | devctl::NO_SNOOP | devctl::MRRS_512;
        regs.set_value(r(DEVCTL), 2, devctl.into())?;
        let devctl_rw = devctl::ERROR_REPORTING
            | devctl::RELAXED_ORDERING
            | devctl::MPS
            | devctl::EXT_TAG
            | devctl::NO_SNOOP
            | devctl::MRRS;
        regs.set_masks(r(DEVCTL), 2, devctl_rw.into(), 0)?;
        regs.set_masks(r(DEVSTA), 2, 0, devsta::W1C.into())?;

        let mut devcap2 = devcap2::CT_DISABLE;
        let mut devctl2_rw = devctl2::CT_DISABLE;
        if root {
            devcap2 |= devcap2::ARI_FORWARDING;
            devctl2_rw |= devctl2::ARI_FORWARDING;
        }
        regs.set_value(r(DEVCAP2), 4, devcap2.into())?;
        regs.set_masks(r(DEVCTL2), 2, devctl2_rw.into(), 0)?;

        if let Some(link) = link {
            let mut lnkcap = link.max_speed as u32
                | ((link.max_width as u32) << lnkcap::WIDTH_SHIFT)
                | lnkcap::ASPM_OPTIONALITY;
            let mut lnkctl_rw = lnkctl::ASPM | lnkctl::COMMON_CLOCK | lnkctl::EXTENDED_SYNCH;
            let mut lnksta = link_status(&link);
            if let PcieDevice::RootPort {
                port_number,
                present,
                ..
            } = config.device
            {
                lnkcap |= lnkcap::DLLLA_REPORTING
                    | lnkcap::BW_NOTIFICATION
                    | (u32::from(port_number) << lnkcap::PORT_SHIFT);
                lnkctl_rw |= lnkctl::LINK_DISABLE | lnkctl::BW_INTERRUPTS;
                if present {
                    lnksta |= lnksta::DLLLA;
                }
                regs.set_masks(r(LNKSTA), 2, 0, (lnksta::LBMS | lnksta::LABS).into())?;
            } else {
                lnkctl_rw |= lnkctl::RCB;
            }
            regs.set_value(r(LNKCAP), 4, lnkcap.into())?;
            regs.set_masks(r(LNKCTL), 2, lnkctl_rw.into(), 0)?;
            regs.set_value(r(LNKSTA), 2, lnksta.into())?;
            let speeds = (1u32 << (link.max_speed as u32 + 1)) - 2;
            regs.set_value(r(LNKCAP2), 4, speeds.into())?;
            regs.set_value(r(LNKCTL2), 2, (link.max_speed as u16).into())?;
            let lnkctl2_rw = lnkctl2::TARGET_SPEED | lnkctl2::HW_AUTONOMOUS_SPEED_DISABLE;
            regs.set_masks(r(LNKCTL2), 2, lnkctl2_rw.into(), 0)?;
        }

        let mut placed_slot = None;
        if let PcieDevice::RootPort { slot, present, .. } = config.device {
            if let Some(slot) = slot {
                placed_slot = Some(Slot::install(slot, regs, offset, present)?);
            }
            regs.set_masks(r(RTCTL), 2, rtctl::WRITABLE.into(), 0)?;
            regs.set_masks(r(RTSTA), 4, 0, rtsta::PME_STATUS.into())?;
        }
        Ok(Self {
            offset,
            config,
            flr: false,
            slot: placed_slot,
        })
    }

    /// Offers Function Level Reset (§6.6.2): Device Capabilities reports
    /// it and Initiate Function Level Reset becomes writable (it reads 0).
    pub(super) fn enable_flr(&mut self, regs: &mut RegisterMask) -> Result<(), CapError> {
        let devcap = get(regs, self.offset + DEVCAP, 4) | u64::from(devcap::FLR);
        regs.set_value(self.offset + DEVCAP, 4, devcap)?;
        let devctl = self.offset + DEVCTL;
        let writable = u64::from(self.devctl_writable() | devctl::INITIATE_FLR);
        regs.set_masks(devctl, 2, writable, 0)?;
        self.flr = true;
        Ok(())
    }

    fn devctl_writable(&self) -> u16 {
        devctl::ERROR_REPORTING
            | devctl::RELAXED_ORDERING
            | devctl::MPS
            | devctl::EXT_TAG
            | devctl::NO_SNOOP
            | devctl::MRRS
    }

    /// Whether the function offers Function Level Reset.
    pub fn flr_capable(&self) -> bool {
        self.flr
    }

    /// Offset of the capability header.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Reads a register of the capability (`reg` from [`super::pcie_regs`]).
    pub fn read(&self, regs: &RegisterMask, reg: usize, len: usize) -> u64 {
        get(regs, self.offset + reg, len)
    }

    /// Max_Payload_Size the guest programmed, in bytes.
    pub fn max_payload_size(&self, regs: &RegisterMask) -> u32 {
        let mps = (self.read(regs, DEVCTL, 2) as u16 & devctl::MPS) >> 5;
        128 << mps
    }

    /// Max_Read_Request_Size the guest programmed, in bytes.
    pub fn max_read_request_size(&self, regs: &RegisterMask) -> u32 {
        let mrrs = (self.read(regs, DEVCTL, 2) as u16 & devctl::MRRS) >> 12;
        128 << mrrs
    }

    /// The device records errors in Device Status ([`devsta`] bits).
    pub fn raise_device_status(&self, regs: &mut RegisterMask, bits: u16) {
        regs.device_set(self.offset + DEVSTA, 2, (bits & devsta::W1C).into());
    }

    /// A root port's downstream device arrives or leaves: updates Presence
    /// Detect State and Data Link Layer Link Active (which on a hot-plug
    /// slot also needs the slot powered), and sets the matching changed
    /// bits on a change ([`Slot::set_presence`]). Ignored for other types.
    pub fn set_presence(&self, regs: &mut RegisterMask, present: bool) {
        if !matches!(self.config.device, PcieDevice::RootPort { .. }) {
            return;
        }
        if let Some(slot) = &self.slot {
            slot.set_presence(regs, present);
            return;
        }
        let sta = self.read(regs, LNKSTA, 2) as u16;
        if (sta & lnksta::DLLLA != 0) != present {
            put(regs, self.offset + LNKSTA, 2, (sta ^ lnksta::DLLLA).into());
        }
    }

    /// A root port's slot, if it has one.
    pub fn slot(&self) -> Option<&Slot> {
        self.slot.as_ref()
    }

    /// Whether ARI Forwarding is enabled (Device Control 2 bit 5, PCIe 4.0
    /// §7.5.3.16): the port then forwards configuration requests for every
    /// device number of its secondary bus, so a device there can have
    /// functions 0–255 (ARI, §6.13).
    pub fn ari_forwarding(&self, regs: &RegisterMask) -> bool {
        self.read(regs, DEVCTL2, 2) as u16 & devctl2::ARI_FORWARDING != 0
    }

    /// A root port receives a PME message from `requester` (Root Status,
    /// §7.5.3.14): the first sets PME Status and the requester ID, one
    /// arriving while PME Status is set sets PME Pending. Ignored for other
    /// types.
    pub fn report_pme(&self, regs: &mut RegisterMask, requester: u16) {
        if !matches!(self.config.device, PcieDevice::RootPort { .. }) {
            return;
        }
        let sta = self.read(regs, RTSTA, 4) as u32;
        let new = if sta & rtsta::PME_STATUS != 0 {
            sta | rtsta::PME_PENDING
        } else {
            rtsta::PME_STATUS | u32::from(requester)
        };
        put(regs, self.offset + RTSTA, 4, new.into());
    }

    pub(super) fn snapshot(&self, regs: &RegisterMask) -> PcieSnapshot {
        PcieSnapshot {
            devctl: self.read(regs, DEVCTL, 2) as u16,
            lnkctl2: self.read(regs, LNKCTL2, 2) as u16,
        }
    }

    /// Discards a Max_Payload_Size above the supported one, a reserved
    /// Max_Read_Request_Size and an unsupported Target Link Speed; returns
    /// whether the write initiated a Function Level Reset (the bit then
    /// reads 0 again, §7.5.3.4).
    pub(super) fn after_write(&self, old: PcieSnapshot, regs: &mut RegisterMask) -> bool {
        let devctl_now = self.read(regs, DEVCTL, 2) as u16;
        let flr = devctl_now & devctl::INITIATE_FLR != 0;
        if flr {
            put(
                regs,
                self.offset + DEVCTL,
                2,
                (devctl_now & !devctl::INITIATE_FLR).into(),
            );
        }
        let max_mps = self.config.max_payload as u64;
        let devctl = self.offset + DEVCTL;
        refuse_field(
            regs,
            devctl,
            2,
            devctl::MPS.into(),
            old.devctl.into(),
            |v| v <= max_mps,
        );
        refuse_field(
            regs,
            devctl,
            2,
            devctl::MRRS.into(),
            old.devctl.into(),
            |v| v <= 5,
        );
        if let Some(link) = link_of(&self.config.device) {
            let max = link.max_speed as u64;
            let field = lnkctl2::TARGET_SPEED.into();
            refuse_field(
                regs,
                self.offset + LNKCTL2,
                2,
                field,
                old.lnkctl2.into(),
                |v| (1..=max).contains(&v),
            );
        }
        flr
    }
}
