//! The register page at reset as a [`RegisterMask`]: each register's reset
//! value and which bits the guest may write or clear (VT-d 4.1 §11.4).
//! Everything not listed, reserved bits and unimplemented registers
//! included, is read-only zero.

use pci::regs::{RegisterMask, Semantics};

use super::capability::{cap_value, ecap, ecap_value, Options};
use super::layout::*;
use crate::caps::Capabilities;

/// The version: 1.0 (§11.4.1; Linux prints "ver 1:0").
pub const VERSION: u64 = 0x10;

/// One register: offset, size, reset value, read-write bits, write-1-to-
/// clear bits.
struct Reg(usize, usize, u64, u64, u64);

/// The register page of a unit with `caps` and `opts`, at reset.
pub(super) fn reset_block(caps: &Capabilities, opts: &Options) -> RegisterMask {
    let ecap_v = ecap_value(caps, opts);
    let eim = ecap_v & ecap::EIM != 0;
    let ir = ecap_v & ecap::IR != 0;
    let upper = if eim { 0xffff_ffff } else { 0 };
    let irta_rw = if ir {
        irta::BASE | irta::S | if eim { irta::EIME } else { 0 }
    } else {
        0
    };
    let drain = if opts.dma_drain {
        iotlb::DR | iotlb::DW
    } else {
        0
    };
    let im = u64::from(ectl::IM);
    let table = [
        Reg(VER, 4, VERSION, 0, 0),
        Reg(CAP, 8, cap_value(caps, opts), 0, 0),
        Reg(ECAP, 8, ecap_v, 0, 0),
        Reg(GCMD, 4, 0, 0, 0),
        Reg(GSTS, 4, 0, 0, 0),
        Reg(RTADDR, 8, 0, rtaddr::RTA, 0),
        Reg(CCMD, 8, 0, ccmd::WRITABLE, 0),
        Reg(FSTS, 4, 0, 0, u64::from(fsts::W1C)),
        Reg(FECTL, 4, im, im, 0),
        Reg(FEDATA, 4, 0, 0xffff, 0),
        Reg(FEADDR, 4, 0, 0xffff_fffc, 0),
        Reg(FEUADDR, 4, 0, upper, 0),
        Reg(IQH, 8, 0, 0, 0),
        Reg(IQT, 8, 0, iq::OFFSET, 0),
        Reg(IQA, 8, 0, iq::BASE | iq::QS, 0),
        Reg(ICS, 4, 0, 0, 1),
        Reg(IECTL, 4, im, im, 0),
        Reg(IEDATA, 4, 0, 0xffff, 0),
        Reg(IEADDR, 4, 0, 0xffff_fffc, 0),
        Reg(IEUADDR, 4, 0, upper, 0),
        Reg(IQERCD, 8, 0, 0, 0),
        Reg(IRTA, 8, 0, irta_rw, 0),
        Reg(IVA, 8, 0, iotlb::IVA_WRITABLE, 0),
        Reg(IOTLB, 8, 0, iotlb::WRITABLE | drain, 0),
        Reg(FRCD, 8, 0, 0, 0),
        Reg(FRCD + 8, 8, 0, 0, frcd::F),
    ];
    let mut block = RegisterMask::new(REGS_SIZE);
    for Reg(offset, len, value, writable, w1c) in table {
        let semantics = Semantics {
            writable,
            w1c,
            ..Semantics::default()
        };
        let ok = block
            .set_value(offset, len, value)
            .and_then(|()| block.set_semantics(offset, len, semantics));
        if let Err(e) = ok {
            unreachable!("VT-d register table is inside the page and consistent: {e}");
        }
    }
    block
}
