//! The Power Management capability (PCI Bus Power Management Interface 1.2
//! §3.2; PCIe 6.0 §7.5.2).
//!
//! ```text
//!  +0  ID 0x01 | next
//!  +2  PMC        RO   version 3 (PM 1.2), no D1/D2, PME support as configured
//!  +4  PMCSR      PowerState RW (D0, D3hot), No_Soft_Reset RO 1,
//!                 PME_En RW if any PME support, PME_Status RW1C
//!  +6  PMCSR_BSE  RO 0,  +7 Data RO 0
//! ```
//!
//! PowerState moves between D0 and D3hot only; a write of D1 or D2 "completes
//! normally on the bus, the data is discarded and no state change occurs"
//! (PM 1.2 §3.2.4). With No_Soft_Reset set, D3hot → D0 keeps the function's
//! configuration (PCIe 6.0 §7.5.2.2), so the VMM need not reset the device.

use super::{get, put, refuse_field, CapError};
use crate::regs::RegisterMask;

/// Bytes the capability occupies.
pub const SIZE: usize = 8;
/// Offset of the Power Management Capabilities register.
pub const PMC: usize = 2;
/// Offset of the Power Management Control/Status register.
pub const PMCSR: usize = 4;

/// PMC bits (PM 1.2 §3.2.3).
pub mod pmc {
    /// Version field value for PM 1.2.
    pub const VERSION_1_2: u16 = 0b011;
    /// D1 supported.
    pub const D1: u16 = 1 << 9;
    /// D2 supported.
    pub const D2: u16 = 1 << 10;
    /// Shift of the PME_Support field (bits 15:11).
    pub const PME_SHIFT: u32 = 11;
}

/// PMCSR bits (PM 1.2 §3.2.4).
pub mod pmcsr {
    /// PowerState field.
    pub const POWER_STATE: u16 = 0b11;
    /// D3hot → D0 does not reset the function.
    pub const NO_SOFT_RESET: u16 = 1 << 3;
    /// PME generation enabled.
    pub const PME_EN: u16 = 1 << 8;
    /// A PME event occurred (write 1 to clear).
    pub const PME_STATUS: u16 = 1 << 15;
}

/// The states in PME_Support (PMC bits 15:11, shifted down).
pub mod pme {
    /// PME can be signalled from D0.
    pub const D0: u8 = 1 << 0;
    /// PME can be signalled from D3hot.
    pub const D3HOT: u8 = 1 << 3;
    /// PME can be signalled from D3cold (needs auxiliary power).
    pub const D3COLD: u8 = 1 << 4;
}

/// A function power state that this model supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Fully on.
    D0,
    /// Off except for configuration space.
    D3Hot,
}

/// How the capability is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmConfig {
    /// States from which PME can be signalled ([`pme`] bits; D1/D2 are
    /// ignored since they are not supported). 0: no PME.
    pub pme_support: u8,
}

/// A placed Power Management capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerManagement {
    offset: usize,
}

impl PowerManagement {
    pub(super) fn install(
        config: PmConfig,
        regs: &mut RegisterMask,
        offset: usize,
    ) -> Result<Self, CapError> {
        let pme_support = config.pme_support & (pme::D0 | pme::D3HOT | pme::D3COLD);
        let pmc = pmc::VERSION_1_2 | (u16::from(pme_support) << pmc::PME_SHIFT);
        regs.set_value(offset + PMC, 2, pmc.into())?;
        regs.set_masks(offset + PMC, 2, 0, 0)?;
        regs.set_value(offset + PMCSR, 4, pmcsr::NO_SOFT_RESET.into())?;
        let pme_en = if pme_support != 0 { pmcsr::PME_EN } else { 0 };
        let writable = pmcsr::POWER_STATE | pme_en;
        regs.set_masks(offset + PMCSR, 4, writable.into(), pmcsr::PME_STATUS.into())?;
        Ok(Self { offset })
    }

    /// Offset of the capability header.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The current power state.
    pub fn power_state(&self, regs: &RegisterMask) -> PowerState {
        if get(regs, self.offset + PMCSR, 2) as u16 & pmcsr::POWER_STATE == 0 {
            PowerState::D0
        } else {
            PowerState::D3Hot
        }
    }

    /// The device records a PME event (sets PME_Status); returns whether the
    /// guest enabled PME, i.e. whether the VMM should signal it.
    pub fn raise_pme(&self, regs: &mut RegisterMask) -> bool {
        regs.device_set(self.offset + PMCSR, 2, pmcsr::PME_STATUS.into());
        get(regs, self.offset + PMCSR, 2) as u16 & pmcsr::PME_EN != 0
    }

    pub(super) fn snapshot(&self, regs: &RegisterMask) -> u16 {
        get(regs, self.offset + PMCSR, 2) as u16
    }

    /// Discards a write of D1/D2 and reports a state change.
    pub(super) fn after_write(&self, old: u16, regs: &mut RegisterMask) -> Option<PowerState> {
        let field = pmcsr::POWER_STATE.into();
        refuse_field(regs, self.offset + PMCSR, 2, field, old.into(), |s| {
            s == 0 || s == 3
        });
        let new = get(regs, self.offset + PMCSR, 2) as u16;
        ((old ^ new) & pmcsr::POWER_STATE != 0).then(|| self.power_state(regs))
    }

    /// Puts the function back in D0 (e.g. on a VMM-initiated reset).
    pub fn reset(&self, regs: &mut RegisterMask) {
        let v = get(regs, self.offset + PMCSR, 2) & !u64::from(pmcsr::POWER_STATE);
        put(regs, self.offset + PMCSR, 2, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::CapabilityList;

    fn placed(config: PmConfig) -> (RegisterMask, PowerManagement) {
        let mut regs = RegisterMask::new(256);
        let mut list = CapabilityList::new(&mut regs);
        list.power_management(config).unwrap();
        let pm = *list.finish().pm().unwrap();
        (regs, pm)
    }

    fn write_pmcsr(regs: &mut RegisterMask, pm: &PowerManagement, v: u16) -> Option<PowerState> {
        let before = pm.snapshot(regs);
        regs.write(pm.offset() + PMCSR, &v.to_le_bytes());
        pm.after_write(before, regs)
    }

    #[test]
    fn test_pmc_reset_value_is_version_3_without_d1_d2() {
        let (regs, pm) = placed(PmConfig::default());

        let pmc = regs.read_le(pm.offset() + PMC, 2) as u16;

        assert_eq!(pmc, pmc::VERSION_1_2);
        assert_eq!(pmc & (pmc::D1 | pmc::D2), 0);
    }

    #[test]
    fn test_pmc_write_is_ignored() {
        let (mut regs, pm) = placed(PmConfig::default());

        regs.write(pm.offset() + PMC, &[0xff, 0xff]);

        assert_eq!(regs.read_le(pm.offset() + PMC, 2), 3);
    }

    #[test]
    fn test_pmcsr_reset_has_no_soft_reset_and_d0() {
        let (regs, pm) = placed(PmConfig::default());

        let pmcsr = regs.read_le(pm.offset() + PMCSR, 2) as u16;

        assert_eq!(pmcsr, pmcsr::NO_SOFT_RESET);
        assert_eq!(pm.power_state(&regs), PowerState::D0);
    }

    #[test]
    fn test_power_state_d3hot_write_changes_state_and_reports_it() {
        let (mut regs, pm) = placed(PmConfig::default());

        let effect = write_pmcsr(&mut regs, &pm, 3);

        assert_eq!(effect, Some(PowerState::D3Hot));
        assert_eq!(pm.power_state(&regs), PowerState::D3Hot);
    }

    #[test]
    fn test_power_state_d1_write_is_discarded() {
        let (mut regs, pm) = placed(PmConfig::default());
        write_pmcsr(&mut regs, &pm, 3);

        let effect = write_pmcsr(&mut regs, &pm, 1);

        assert_eq!(effect, None);
        assert_eq!(regs.read_le(pm.offset() + PMCSR, 2) & 3, 3);
    }

    #[test]
    fn test_pme_status_is_write_one_to_clear() {
        let (mut regs, pm) = placed(PmConfig {
            pme_support: pme::D3HOT,
        });
        let enabled = pm.raise_pme(&mut regs);
        write_pmcsr(&mut regs, &pm, 0);
        let kept = regs.read_le(pm.offset() + PMCSR, 2) as u16;

        write_pmcsr(&mut regs, &pm, pmcsr::PME_STATUS);

        assert!(!enabled, "PME_En is clear at reset");
        assert_ne!(kept & pmcsr::PME_STATUS, 0, "writing 0 keeps it");
        assert_eq!(
            regs.read_le(pm.offset() + PMCSR, 2) as u16 & pmcsr::PME_STATUS,
            0
        );
    }

    #[test]
    fn test_pme_en_is_read_only_without_pme_support() {
        let (mut regs, pm) = placed(PmConfig::default());

        write_pmcsr(&mut regs, &pm, pmcsr::PME_EN);

        assert_eq!(
            regs.read_le(pm.offset() + PMCSR, 2) as u16 & pmcsr::PME_EN,
            0
        );
    }

    #[test]
    fn test_pme_en_is_writable_with_pme_support() {
        let (mut regs, pm) = placed(PmConfig {
            pme_support: pme::D0 | pme::D3HOT,
        });
        write_pmcsr(&mut regs, &pm, pmcsr::PME_EN);

        let signal = pm.raise_pme(&mut regs);

        assert!(signal);
        assert_eq!(
            regs.read_le(pm.offset() + PMC, 2) as u16 >> pmc::PME_SHIFT,
            0b01001
        );
    }
}
