//! Register-based invalidation (VT-d 4.1 §6.5.1): the Context Command
//! register (§11.4.7) and the IOTLB registers (§11.4.8). Software sets ICC
//! or IVT with a requested granularity; hardware performs it, reports the
//! granularity it used (CAIG, IAIG) and clears ICC or IVT before the write
//! returns. A reserved granularity (00) is not performed and reports 00.
//! Requests are performed whatever GSTS.QIES says; Linux uses these
//! registers only when queued invalidation is unavailable.

use dma::RequesterId;

use super::capability::MAMV;
use super::layout::{ccmd, iotlb, CCMD, IOTLB, IVA};
use super::{ContextInvalidation, Effect, IotlbInvalidation, IotlbScope, Registers};

impl Registers {
    /// After a write that touched CCMD: performs the request if ICC is set.
    pub(super) fn context_command(&mut self, effects: &mut Vec<Effect>) {
        let v = self.get(CCMD, 8);
        if v & ccmd::ICC == 0 {
            return;
        }
        let granularity = (v >> ccmd::CIRG_SHIFT) & 0b11;
        let did = v as u16;
        let request = match granularity {
            1 => Some(ContextInvalidation::Global),
            2 => Some(ContextInvalidation::Domain { did }),
            3 => Some(ContextInvalidation::Device {
                did,
                source: RequesterId((v >> ccmd::SID_SHIFT) as u16),
                function_mask: ((v >> ccmd::FM_SHIFT) & 0b11) as u8,
            }),
            _ => None,
        };
        let caig = if request.is_some() { granularity } else { 0 };
        let kept = v & !ccmd::ICC & !(0b11 << ccmd::CAIG_SHIFT);
        self.put(CCMD, 8, kept | caig << ccmd::CAIG_SHIFT);
        effects.extend(request.map(Effect::InvalidateContext));
    }

    /// After a write that touched the IOTLB register: performs the request
    /// if IVT is set. A page-selective request's address is aligned down
    /// to its 2^AM pages; one whose mask exceeds MAMV (undefined in
    /// §11.4.8.2) is performed for the whole domain, and IAIG says so.
    pub(super) fn iotlb_command(&mut self, effects: &mut Vec<Effect>) {
        let v = self.get(IOTLB, 8);
        if v & iotlb::IVT == 0 {
            return;
        }
        let did = (v >> iotlb::DID_SHIFT) as u16;
        let iva = self.get(IVA, 8);
        let mask = (iva & 0x3f) as u8;
        let scope = match (v >> iotlb::IIRG_SHIFT) & 0b11 {
            1 => Some((1, IotlbScope::Global)),
            2 => Some((2, IotlbScope::Domain { did })),
            3 if u64::from(mask) <= MAMV => Some((
                3,
                IotlbScope::Pages {
                    did,
                    addr: iva & !((0x1000 << mask) - 1),
                    mask,
                    leaf_only: iva & iotlb::IH != 0,
                },
            )),
            3 => Some((2, IotlbScope::Domain { did })),
            _ => None,
        };
        let iaig = scope.map_or(0, |(g, _)| g);
        let kept = v & !iotlb::IVT & !(0b11 << iotlb::IAIG_SHIFT);
        self.put(IOTLB, 8, kept | iaig << iotlb::IAIG_SHIFT);
        effects.extend(scope.map(|(_, scope)| {
            Effect::InvalidateIotlb(IotlbInvalidation {
                scope,
                drain_reads: v & iotlb::DR != 0,
                drain_writes: v & iotlb::DW != 0,
            })
        }));
    }
}
