//! The configuration header of an SR-IOV virtual function (PCIe 6.0
//! §9.3.4.1): a type 0 layout in which most of what a function decides
//! for itself is its PF's.
//!
//! | Register          | A VF's                                                      |
//! |-------------------|-------------------------------------------------------------|
//! | Vendor, Device ID | read FFFFh (software takes them from the PF and its SR-IOV capability) |
//! | Command           | Bus Master Enable only; I/O, Memory Space and Interrupt Disable read 0 (the PF's VF MSE gates decoding) |
//! | Status            | Capabilities List; error bits RW1C; no Interrupt Status     |
//! | Class, Revision, Subsystem IDs | as the PF's VFs have them                      |
//! | BAR0–5, Expansion ROM | read-only zero: the PF's VF BARs place them             |
//! | Interrupt Pin     | 0: a VF has no INTx, only MSI/MSI-X                         |
//!
//! Where the VF's BARs decode is set by its owner from the PF's SR-IOV
//! capability ([`crate::caps::sriov::Sriov::vf_bar_windows`]) with
//! [`Type0Config::set_vf_bar_windows`], and read back by
//! [`Type0Config::bar_windows`] like any function's.

use crate::bar::BarSpec;
use crate::config::{command, BarWindow, ConfigError, Identity, Type0Config, COMMAND};
use crate::header;
use crate::regs::RegisterMask;

/// What a VF's Vendor and Device ID read (§9.3.4.1.1–2).
pub const VF_ID: u16 = 0xffff;
const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
const SUBSYSTEM_ID: usize = 0x2e;

impl Type0Config {
    /// The header of a VF whose PF has the VF BARs `bars` (each VF decodes
    /// one window of each) and gives its VFs the class, revision and
    /// subsystem IDs of `id` (`id.vendor` and `id.device` are not used: a
    /// VF's read FFFFh). No BAR decodes until [`Self::set_vf_bar_windows`].
    pub fn virtual_function(id: Identity, bars: &[BarSpec]) -> Result<Self, ConfigError> {
        let mut regs = RegisterMask::new(crate::config::CONFIG_SPACE_SIZE);
        let vf_id = Identity {
            vendor: VF_ID,
            device: VF_ID,
            ..id
        };
        header::install_common(&mut regs, &vf_id, 0, 0)?;
        regs.set_masks(COMMAND, 2, command::BUS_MASTER.into(), 0)?;
        regs.set_value(SUBSYSTEM_VENDOR_ID, 2, id.subsystem_vendor.into())?;
        regs.set_value(SUBSYSTEM_ID, 2, id.subsystem.into())?;
        for bar in bars {
            bar.validate()?;
        }
        Ok(Self {
            regs,
            bars: Vec::new(),
            vf_windows: Some(bars.iter().map(|b| (*b, None)).collect()),
        })
    }

    /// Whether this is a VF's header.
    pub fn is_virtual_function(&self) -> bool {
        self.vf_windows.is_some()
    }

    /// Sets where the VF's BARs decode, as its PF's SR-IOV capability says
    /// now; returns whether anything changed. Ignored for a function that
    /// is no VF.
    pub fn set_vf_bar_windows(&mut self, windows: Vec<(BarSpec, Option<BarWindow>)>) -> bool {
        match &mut self.vf_windows {
            Some(w) if *w != windows => {
                *w = windows;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
