//! The slot of a PCIe root port, and its hot-plug controller: Slot
//! Capabilities, Slot Control and Slot Status (PCIe 6.0 §7.5.3.9–§7.5.3.11)
//! with Link Status' Data Link Layer Link Active, in the port's PCI Express
//! capability, and the rules of native PCIe hot-plug (§6.7).
//!
//! A slot without hot-plug reports presence and link state only. A
//! hot-plug slot offers what Linux's `pciehp` drives: an attention button,
//! a power controller, attention and power indicators, presence detect,
//! command completion, Data Link Layer State Changed events, no MRL sensor,
//! no electromechanical interlock, no surprise removal.
//!
//! ```text
//!  Slot Control   bit  0 ABPE  1 PFDE(RO 0)  2 MRLSCE(RO 0)  3 PDCE  4 CCIE
//!                      5 HPIE  7:6 AIC  9:8 PIC  10 PCC (1 = off)  12 DLLSCE
//!  Slot Status    bit  0 ABP  1 PFD  2 MRLSC  3 PDC  4 CC  8 DLLSC   (RW1C)
//!                      6 PDS (RO)
//!
//!  adapter:  absent ──(VMM adds)──▶ present ──(guest: PCC=0)──▶ powered, link up
//!            ▲                                                     │
//!            └──(VMM removes)── present, link down ◀─(guest: PCC=1)┘
//!  link up = present and powered; each change sets PDC or DLLSC
//! ```
//!
//! Every write of Slot Control is a command: it completes at once and sets
//! Command Completed. A reserved indicator value (00b) is discarded. The
//! hot-plug interrupt is pending while Hot-Plug Interrupt Enable is set and
//! an event bit is set together with its enable bit (§6.7.3.4); how it is
//! signalled (an MSI edge, an INTx level) is the port's business
//! ([`crate::bridge::RootPort`]).
//!
//! | Hostile guest write                 | What happens                               |
//! |-------------------------------------|--------------------------------------------|
//! | Slot Capabilities, PDS, link status | read-only: ignored                         |
//! | PFDE, MRLSCE, EIC (nothing behind)  | read-only zero                             |
//! | indicator value 00b (reserved)      | discarded, the old value stays             |
//! | power off with a device bound       | the link goes down; the VMM detaches it    |
//! | any status event bit                | writing 1 clears it, 0 leaves it           |

use super::pcie_regs::*;
use super::{get, put, refuse_field, CapError};
use crate::regs::RegisterMask;

/// How a root port's slot is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotConfig {
    /// Physical Slot Number (13 bits).
    pub number: u16,
    /// A hot-plug controller: attention button, power controller,
    /// indicators, command completion.
    pub hotplug: bool,
}

/// An indicator's state as Slot Control sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indicator {
    /// Lit.
    On,
    /// Blinking.
    Blink,
    /// Dark.
    Off,
}

impl Indicator {
    fn from_bits(bits: u16) -> Option<Self> {
        match bits & 0b11 {
            sltctl::INDICATOR_ON => Some(Self::On),
            sltctl::INDICATOR_BLINK => Some(Self::Blink),
            sltctl::INDICATOR_OFF => Some(Self::Off),
            _ => None,
        }
    }
}

/// What a guest write to Slot Control commanded, for the VMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotWriteEffects {
    /// Slot power switched on (`true`) or off, if it changed.
    pub power: Option<bool>,
    /// The Attention Indicator, if it changed.
    pub attention_indicator: Option<Indicator>,
    /// The Power Indicator, if it changed.
    pub power_indicator: Option<Indicator>,
}

impl SlotWriteEffects {
    /// Whether the write commanded no change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Slot Control before a guest write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSnapshot {
    sltctl: u16,
}

/// A placed slot: where its PCI Express capability is, and whether it has
/// a hot-plug controller. Its state is in the function's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    offset: usize,
    hotplug: bool,
}

/// The event bits and the Slot Control bit that enables each.
const EVENT_ENABLES: [(u16, u16); 6] = [
    (sltsta::ABP, sltctl::ABP_ENABLE),
    (sltsta::PFD, sltctl::PFD_ENABLE),
    (sltsta::MRLSC, sltctl::MRLSC_ENABLE),
    (sltsta::PDC, sltctl::PDC_ENABLE),
    (sltsta::CC, sltctl::CC_ENABLE),
    (sltsta::DLLSC, sltctl::DLLSC_ENABLE),
];

impl Slot {
    /// Lays out the slot registers of the capability at `offset`, with an
    /// adapter in it if `present` (powered, its link up).
    pub(super) fn install(
        config: SlotConfig,
        regs: &mut RegisterMask,
        offset: usize,
        present: bool,
    ) -> Result<Self, CapError> {
        let r = |reg: usize| offset + reg;
        let number = u32::from(config.number & 0x1fff) << sltcap::SLOT_SHIFT;
        let presence = if present { sltsta::PRESENCE } else { 0 };
        if config.hotplug {
            let sltcap = sltcap::ATTENTION_BUTTON
                | sltcap::POWER_CONTROLLER
                | sltcap::ATTENTION_INDICATOR
                | sltcap::POWER_INDICATOR
                | sltcap::HOT_PLUG_CAPABLE
                | number;
            regs.set_value(r(SLTCAP), 4, sltcap.into())?;
            let (power, power_indicator) = if present {
                (0, sltctl::INDICATOR_ON)
            } else {
                (sltctl::POWER_OFF, sltctl::INDICATOR_OFF)
            };
            let sltctl = (sltctl::INDICATOR_OFF << sltctl::ATTENTION_INDICATOR_SHIFT)
                | (power_indicator << sltctl::POWER_INDICATOR_SHIFT)
                | power;
            regs.set_value(r(SLTCTL), 2, sltctl.into())?;
            let writable = sltctl::ABP_ENABLE
                | sltctl::PDC_ENABLE
                | sltctl::CC_ENABLE
                | sltctl::HP_INTERRUPT_ENABLE
                | sltctl::ATTENTION_INDICATOR
                | sltctl::POWER_INDICATOR
                | sltctl::POWER_OFF
                | sltctl::DLLSC_ENABLE;
            regs.set_masks(r(SLTCTL), 2, writable.into(), 0)?;
            regs.set_value(r(SLTSTA), 2, presence.into())?;
            regs.set_masks(r(SLTSTA), 2, 0, sltsta::EVENTS.into())?;
        } else {
            let sltcap = sltcap::NO_COMMAND_COMPLETED | number;
            regs.set_value(r(SLTCAP), 4, sltcap.into())?;
            let writable = sltctl::PDC_ENABLE | sltctl::DLLSC_ENABLE;
            regs.set_masks(r(SLTCTL), 2, writable.into(), 0)?;
            regs.set_value(r(SLTSTA), 2, presence.into())?;
            regs.set_masks(r(SLTSTA), 2, 0, (sltsta::PDC | sltsta::DLLSC).into())?;
        }
        Ok(Self {
            offset,
            hotplug: config.hotplug,
        })
    }

    /// Whether the slot has a hot-plug controller.
    pub fn hotplug(&self) -> bool {
        self.hotplug
    }

    fn read(&self, regs: &RegisterMask, reg: usize) -> u16 {
        get(regs, self.offset + reg, 2) as u16
    }

    fn put(&self, regs: &mut RegisterMask, reg: usize, value: u16) {
        put(regs, self.offset + reg, 2, value.into());
    }

    /// Presence Detect State: an adapter is in the slot.
    pub fn present(&self, regs: &RegisterMask) -> bool {
        self.read(regs, SLTSTA) & sltsta::PRESENCE != 0
    }

    /// Whether the slot is powered: always without a power controller,
    /// else while Power Controller Control reads 0 (power on).
    pub fn powered(&self, regs: &RegisterMask) -> bool {
        !self.hotplug || self.read(regs, SLTCTL) & sltctl::POWER_OFF == 0
    }

    /// Data Link Layer Link Active.
    pub fn link_active(&self, regs: &RegisterMask) -> bool {
        self.read(regs, LNKSTA) & lnksta::DLLLA != 0
    }

    /// The Attention and Power Indicators (`None`: reserved value; never
    /// stored, so only before the guest wrote one).
    pub fn indicators(&self, regs: &RegisterMask) -> (Option<Indicator>, Option<Indicator>) {
        let ctl = self.read(regs, SLTCTL);
        (
            Indicator::from_bits(ctl >> sltctl::ATTENTION_INDICATOR_SHIFT),
            Indicator::from_bits(ctl >> sltctl::POWER_INDICATOR_SHIFT),
        )
    }

    /// An adapter arrives in the slot or leaves it: Presence Detect State
    /// follows and, on a change, Presence Detect Changed is set; the link
    /// follows too ([`Slot::present`] and [`Slot::powered`]).
    pub fn set_presence(&self, regs: &mut RegisterMask, present: bool) {
        let sta = self.read(regs, SLTSTA);
        if (sta & sltsta::PRESENCE != 0) != present {
            self.put(regs, SLTSTA, (sta ^ sltsta::PRESENCE) | sltsta::PDC);
        }
        self.update_link(regs);
    }

    /// The attention button is pressed: Attention Button Pressed is set.
    /// Returns false, changing nothing, on a slot without one.
    pub fn press_attention_button(&self, regs: &mut RegisterMask) -> bool {
        if !self.hotplug {
            return false;
        }
        regs.device_set(self.offset + SLTSTA, 2, sltsta::ABP.into());
        true
    }

    /// The link is up while an adapter is present and powered; a change
    /// sets Data Link Layer State Changed.
    fn update_link(&self, regs: &mut RegisterMask) {
        let active = self.present(regs) && self.powered(regs);
        let lnk = self.read(regs, LNKSTA);
        if (lnk & lnksta::DLLLA != 0) == active {
            return;
        }
        self.put(regs, LNKSTA, lnk ^ lnksta::DLLLA);
        regs.device_set(self.offset + SLTSTA, 2, sltsta::DLLSC.into());
    }

    /// Slot Control before a guest write, for [`Slot::after_write`].
    pub fn snapshot(&self, regs: &RegisterMask) -> SlotSnapshot {
        SlotSnapshot {
            sltctl: self.read(regs, SLTCTL),
        }
    }

    /// Finishes a guest write already applied to `regs`; `control_written`
    /// says whether it covered a byte of Slot Control, which makes it a
    /// command. Discards reserved indicator values, completes the command
    /// (Command Completed), moves the link with the slot's power, and says
    /// what the command changed.
    pub fn after_write(
        &self,
        old: SlotSnapshot,
        control_written: bool,
        regs: &mut RegisterMask,
    ) -> SlotWriteEffects {
        if !self.hotplug || !control_written {
            return SlotWriteEffects::default();
        }
        let at = self.offset + SLTCTL;
        for field in [sltctl::ATTENTION_INDICATOR, sltctl::POWER_INDICATOR] {
            refuse_field(regs, at, 2, field.into(), old.sltctl.into(), |v| v != 0);
        }
        regs.device_set(self.offset + SLTSTA, 2, sltsta::CC.into());
        let new = self.read(regs, SLTCTL);
        let changed = |field: u16| (old.sltctl ^ new) & field != 0;
        let power = changed(sltctl::POWER_OFF).then_some(new & sltctl::POWER_OFF == 0);
        if power.is_some() {
            self.update_link(regs);
        }
        let indicator = |field: u16, shift: u32| {
            changed(field)
                .then(|| Indicator::from_bits(new >> shift))
                .flatten()
        };
        SlotWriteEffects {
            power,
            attention_indicator: indicator(
                sltctl::ATTENTION_INDICATOR,
                sltctl::ATTENTION_INDICATOR_SHIFT,
            ),
            power_indicator: indicator(sltctl::POWER_INDICATOR, sltctl::POWER_INDICATOR_SHIFT),
        }
    }

    /// Whether the hot-plug interrupt is pending (§6.7.3.4): Hot-Plug
    /// Interrupt Enable is set and so are an event bit and its enable bit.
    /// Always false on a slot without hot-plug.
    pub fn interrupt_pending(&self, regs: &RegisterMask) -> bool {
        if !self.hotplug {
            return false;
        }
        let ctl = self.read(regs, SLTCTL);
        let sta = self.read(regs, SLTSTA);
        ctl & sltctl::HP_INTERRUPT_ENABLE != 0
            && EVENT_ENABLES
                .iter()
                .any(|&(event, enable)| sta & event != 0 && ctl & enable != 0)
    }

    /// Whether a write of `len` bytes at `offset` of the function's
    /// configuration space covers a byte of Slot Control.
    pub fn covers_control(&self, offset: usize, len: usize) -> bool {
        let start = self.offset + SLTCTL;
        offset < start + 2 && offset.saturating_add(len) > start
    }
}
