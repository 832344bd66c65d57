//! Register-based invalidation: CCMD (§11.4.7), IOTLB and IVA (§11.4.8).

use dma::RequesterId;

use super::*;
use layout::{ccmd, iotlb, CCMD, IOTLB, IVA};

fn context(granularity: u64, sid: u64, did: u64, fm: u64) -> u64 {
    ccmd::ICC | granularity << 61 | fm << 32 | sid << 16 | did
}

#[test]
fn test_context_invalidations_report_caig_and_clear_icc() {
    let cases = [
        (1, ContextInvalidation::Global),
        (2, ContextInvalidation::Domain { did: 7 }),
        (
            3,
            ContextInvalidation::Device {
                did: 7,
                source: RequesterId::new(0, 4, 0),
                function_mask: 3,
            },
        ),
    ];

    for (granularity, want) in cases {
        let mut r = regs();
        let e = write64(&mut r, CCMD, context(granularity, 0x20, 7, 3));
        let v = read64(&r, CCMD);

        assert_eq!(e, [Effect::InvalidateContext(want)]);
        assert_eq!(v & ccmd::ICC, 0, "ICC cleared");
        assert_eq!((v >> 59) & 3, granularity, "CAIG = CIRG");
    }
}

#[test]
fn test_reserved_context_granularity_is_not_performed() {
    let mut r = regs();

    let e = write64(&mut r, CCMD, context(0, 0, 0, 0));

    assert!(e.is_empty());
    assert_eq!(read64(&r, CCMD), 0, "ICC cleared, CAIG 00");
}

#[test]
fn test_context_command_in_two_dword_writes_fires_on_the_upper() {
    let mut r = regs();
    let v = context(2, 0, 9, 0);

    let low = write32(&mut r, CCMD, v as u32);
    let high = write32(&mut r, CCMD + 4, (v >> 32) as u32);

    assert!(low.is_empty());
    assert_eq!(
        high,
        [Effect::InvalidateContext(ContextInvalidation::Domain {
            did: 9
        })]
    );
}

fn iotlb_cmd(granularity: u64, did: u64) -> u64 {
    iotlb::IVT | granularity << 60 | did << 32
}

#[test]
fn test_iotlb_invalidations_report_iaig_and_clear_ivt() {
    let cases = [
        (1, 1, IotlbScope::Global),
        (2, 2, IotlbScope::Domain { did: 3 }),
        (
            3,
            3,
            IotlbScope::Pages {
                did: 3,
                addr: 0x12_0000,
                mask: 5,
                leaf_only: true,
            },
        ),
    ];

    for (granularity, iaig, scope) in cases {
        let mut r = regs();
        write64(&mut r, IVA, 0x12_3000 | 1 << 6 | 5);
        let e = write64(&mut r, IOTLB, iotlb_cmd(granularity, 3) | iotlb::DR);
        let v = read64(&r, IOTLB);

        let want = IotlbInvalidation {
            scope,
            drain_reads: true,
            drain_writes: false,
        };
        assert_eq!(e, [Effect::InvalidateIotlb(want)]);
        assert_eq!(v & iotlb::IVT, 0, "IVT cleared");
        assert_eq!((v >> 57) & 3, iaig, "IAIG");
    }
}

#[test]
fn test_page_invalidation_beyond_mamv_covers_the_domain() {
    let mut r = regs();
    write64(&mut r, IVA, 0x4000_0000 | 19);

    let e = write64(&mut r, IOTLB, iotlb_cmd(3, 1));

    let want = IotlbInvalidation {
        scope: IotlbScope::Domain { did: 1 },
        drain_reads: false,
        drain_writes: false,
    };
    assert_eq!(e, [Effect::InvalidateIotlb(want)]);
    assert_eq!((read64(&r, IOTLB) >> 57) & 3, 2, "IAIG: domain");
}

#[test]
fn test_reserved_iotlb_granularity_and_no_drain_without_cap() {
    let opts = Options {
        dma_drain: false,
        ..Options::DEFAULT
    };
    let mut r = Registers::new(&Capabilities::DEFAULT, &opts);

    let reserved = write64(&mut r, IOTLB, iotlb_cmd(0, 1));
    let global = write64(&mut r, IOTLB, iotlb_cmd(1, 0) | iotlb::DR | iotlb::DW);

    assert!(reserved.is_empty());
    let want = IotlbInvalidation {
        scope: IotlbScope::Global,
        drain_reads: false,
        drain_writes: false,
    };
    assert_eq!(global, [Effect::InvalidateIotlb(want)]);
}
