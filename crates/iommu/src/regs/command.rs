//! Global Command (VT-d 4.1 §11.4.4) and Global Status (§11.4.5): a GCMD
//! write carries the wanted state of the level commands (TE, QIE, IRE,
//! CFI) and the one-shot commands (SRTP, SIRTP); GSTS reflects each before
//! the write returns. Commands ECAP does not support are ignored, as are
//! SFL, EAFL and WBF (no advanced fault log, CAP.RWBF = 0).

use super::capability::ecap;
use super::layout::{gcmd, irta, rtaddr, GSTS, IQH, IRTA};
use super::{Effect, Registers};

impl Registers {
    /// Carries out a GCMD write of `value` over the bytes in `mask`; bytes
    /// the access did not cover keep the current level states (a 1-byte
    /// write at 0x1B changes TE, SRTP, QIE, IRE and SIRTP only).
    pub(super) fn command(&mut self, value: u32, mask: u32, effects: &mut Vec<Effect>) {
        let mut gsts = self.gsts();
        let cmd = (value & mask) | (gsts & gcmd::LEVELS & !mask);
        let ecap_v = self.ecap();
        let ir = ecap_v & ecap::IR != 0;
        if cmd & gcmd::SRTP != 0 {
            gsts |= gcmd::SRTP;
            effects.push(Effect::SetRootTable(self.rtaddr() & rtaddr::RTA));
        }
        if ir && cmd & gcmd::SIRTP != 0 {
            gsts |= gcmd::SIRTP;
            let v = self.get(IRTA, 8);
            effects.push(Effect::SetInterruptTable {
                addr: v & irta::BASE,
                entries: 2 << (v & irta::S),
                eime: v & irta::EIME != 0,
            });
        }
        let levels = [
            (gcmd::TE, true, Effect::Translation as fn(bool) -> Effect),
            (
                gcmd::QIE,
                ecap_v & ecap::QI != 0,
                Effect::QueuedInvalidation,
            ),
            (gcmd::IRE, ir, Effect::InterruptRemapping),
            (gcmd::CFI, ir, Effect::CompatibilityFormat),
        ];
        for (bit, supported, effect) in levels {
            let on = cmd & bit != 0;
            if supported && on != (gsts & bit != 0) {
                gsts ^= bit;
                effects.push(effect(on));
            }
        }
        if gsts & gcmd::QIE == 0 {
            self.put(IQH, 8, 0);
        }
        self.put(GSTS, 4, u64::from(gsts));
    }
}
