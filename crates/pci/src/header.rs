//! The part of a configuration header that every header kind shares, and
//! what a guest write to it changes.
//!
//! Type 0 and type 1 headers (and an SR-IOV virtual function's, which is a
//! type 0 layout) have the same registers at the same offsets for their
//! identity, Command, Status, Cache Line Size, Header Type and Interrupt
//! Line/Pin (PCI Local Bus 3.0 §6.1, PCIe Base 4.0 §7.5.1.1), and BARs from
//! 0x10 (six in type 0, PCIe Base 4.0 §7.5.1.2.1; two in type 1, §7.5.1.3).
//! A header kind (within this crate) installs these with `install_common`
//! and `install_bars`, adds its own registers, and computes a write's
//! effects by taking a `CommonState` before and after the write and adding
//! what its own registers changed; [`decoded_bar_windows`] is public for
//! the functions that report their BARs.

use crate::bar::{BarError, BarSpec, BAR0_OFFSET};
use crate::config::{
    command, status, BarChange, BarWindow, ConfigError, ConfigWriteEffects, Identity, COMMAND,
    STATUS,
};
use crate::regs::{MaskError, RegisterMask};

const VENDOR_ID: usize = 0x00;
const DEVICE_ID: usize = 0x02;
const REVISION_ID: usize = 0x08;
const CLASS_CODE: usize = 0x09;
const CACHE_LINE_SIZE: usize = 0x0c;
const HEADER_TYPE: usize = 0x0e;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;

/// Installs the registers common to every header kind (PCIe Base 4.0
/// §7.5.1.1): Vendor, Device, Revision ID and Class Code from `id`
/// (read-only), Header Type `header_type` (read-only), Interrupt Pin `pin`
/// (0: none, 1–4: INTA–INTD; larger values read as 4), the Command bits an
/// endpoint implements as read-write (§7.5.1.1.3), the Status error bits as
/// write-1-to-clear (§7.5.1.1.4), and Cache Line Size and Interrupt Line as
/// read-write. Subsystem IDs are not common (type 1 has a window register at
/// their offset).
pub(crate) fn install_common(
    regs: &mut RegisterMask,
    id: &Identity,
    header_type: u8,
    pin: u8,
) -> Result<(), MaskError> {
    regs.set_value(VENDOR_ID, 2, id.vendor.into())?;
    regs.set_value(DEVICE_ID, 2, id.device.into())?;
    regs.set_value(REVISION_ID, 1, id.revision.into())?;
    regs.set_value(CLASS_CODE, 3, id.class.into())?;
    regs.set_value(HEADER_TYPE, 1, header_type.into())?;
    regs.set_value(INTERRUPT_PIN, 1, pin.min(4).into())?;
    regs.set_masks(COMMAND, 2, command::WRITABLE.into(), 0)?;
    regs.set_masks(STATUS, 2, 0, status::W1C.into())?;
    regs.set_masks(CACHE_LINE_SIZE, 1, 0xff, 0)?;
    regs.set_masks(INTERRUPT_LINE, 1, 0xff, 0)?;
    Ok(())
}

/// Installs `bars` in a header with `slots` BAR registers from 0x10 (PCI
/// Local Bus 3.0 §6.2.5.1): each BAR's read-only type bits and writable
/// address bits. Refuses an invalid BAR, one past the last register and two
/// that claim one register.
pub(crate) fn install_bars(
    regs: &mut RegisterMask,
    bars: &[BarSpec],
    slots: usize,
) -> Result<(), ConfigError> {
    let mut used = vec![false; slots];
    for bar in bars {
        bar.validate()?;
        let end = bar.index + bar.registers();
        let Some(claimed) = used.get_mut(bar.index..end) else {
            return Err(BarError::BadIndex { index: bar.index }.into());
        };
        for slot in claimed {
            if std::mem::replace(slot, true) {
                return Err(BarError::Overlap { index: bar.index }.into());
            }
        }
        let offset = BAR0_OFFSET + 4 * bar.index;
        let len = 4 * bar.registers();
        regs.set_value(offset, len, bar.type_bits().into())?;
        regs.set_masks(offset, len, bar.writable_mask(), 0)?;
    }
    Ok(())
}

/// The Command register of the header `regs` (PCI Local Bus 3.0 §6.2.2).
pub(crate) fn command(regs: &RegisterMask) -> u16 {
    regs.read_le(COMMAND, 2) as u16
}

/// The window each of `bars` decodes in the header `regs` (any header kind:
/// BARs start at 0x10 in all of them): its programmed address while the
/// Command register enables its space (PCI Local Bus 3.0 §6.2.2, §6.2.5.1),
/// `None` otherwise.
pub fn decoded_bar_windows(
    regs: &RegisterMask,
    bars: &[BarSpec],
) -> Vec<(BarSpec, Option<BarWindow>)> {
    let cmd = command(regs);
    bars.iter()
        .map(|bar| {
            let bit = if bar.is_io() {
                command::IO
            } else {
                command::MEMORY
            };
            let raw = regs.read_le(BAR0_OFFSET + 4 * bar.index, 4 * bar.registers());
            let window = (cmd & bit != 0).then(|| BarWindow {
                addr: bar.address(raw),
                size: bar.size,
            });
            (*bar, window)
        })
        .collect()
}

/// Whether `bit` changed from `before` to `after`, and if so its new value.
pub(crate) fn bit_change(before: u16, after: u16, bit: u16) -> Option<bool> {
    ((before ^ after) & bit != 0).then_some(after & bit != 0)
}

/// What of the common header a guest write can change that the VMM acts
/// on: the Command register (decoding, Bus Master Enable, Interrupt Disable;
/// PCI Local Bus 3.0 §6.2.2) and the window every BAR decodes (§6.2.5.1).
/// Taken before and after a write, the two give its effects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommonState {
    command: u16,
    bars: Vec<(BarSpec, Option<BarWindow>)>,
}

impl CommonState {
    /// The state of the header `regs` with `bars`.
    pub(crate) fn of(regs: &RegisterMask, bars: &[BarSpec]) -> Self {
        Self {
            command: command(regs),
            bars: decoded_bar_windows(regs, bars),
        }
    }

    /// What changed from `self` (before a write) to `after`: the BAR
    /// windows that moved, appeared or disappeared, and Bus Master Enable
    /// and Interrupt Disable if they flipped. No bridge effects: a type 1
    /// header adds those.
    pub(crate) fn effects(self, after: &Self) -> ConfigWriteEffects {
        let bars = self
            .bars
            .into_iter()
            .zip(&after.bars)
            .filter(|((_, old), (_, new))| old != new)
            .map(|((spec, old), &(_, new))| BarChange {
                index: spec.index,
                io: spec.is_io(),
                old,
                new,
            })
            .collect();
        ConfigWriteEffects {
            bars,
            bus_master: bit_change(self.command, after.command, command::BUS_MASTER),
            intx_disabled: bit_change(self.command, after.command, command::INTX_DISABLE),
            bridge: Default::default(),
            sriov: None,
            slot: None,
        }
    }
}

#[cfg(test)]
mod tests;
