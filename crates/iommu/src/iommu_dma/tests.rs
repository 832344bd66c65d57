//! A function's DMA through the remapper, driven as a guest driver would
//! program the tables.

use std::sync::Arc;

use dma::{Direction, Dma, DmaError, FunctionContext, HostRange, RequesterId};

use super::IommuDma;
use crate::caps::Capabilities;
use crate::fault::{FaultReason, FaultRecord};
use crate::remapper::{Piece, Remapper};
use crate::testing::{Machine, ROOT};
use crate::walk::Levels;

const CT: u64 = 0x2_0000;
const R: u64 = 1;
const W: u64 = 2;
const RW: u64 = R | W;
/// The function under test: 00:01.0.
const DEVFN: u8 = 0x08;

struct Setup {
    m: Machine,
    remapper: Arc<Remapper>,
    ctx: Arc<FunctionContext>,
    dma: IommuDma,
    top: u64,
}

/// Translation on, bus 0's context table at `CT`, 00:01.0 translated through
/// a 4-level table (AW 2, domain 1); `fault_records` faults kept.
fn setup_with(fault_records: usize) -> Setup {
    let m = Machine::new();
    let top = m.alloc_table();
    m.set_root(0, CT | 1);
    m.set_context(CT, DEVFN, top | 1, 2 | 1 << 8);
    let remapper = Arc::new(Remapper::new(
        m.ram().clone(),
        Capabilities::DEFAULT,
        fault_records,
    ));
    remapper.set_root_table(ROOT);
    remapper.set_enabled(true);
    let ctx = FunctionContext::new(RequesterId::new(0, 1, 0));
    let dma = IommuDma::new(ctx.clone(), remapper.clone());
    Setup {
        m,
        remapper,
        ctx,
        dma,
        top,
    }
}

fn setup() -> Setup {
    setup_with(8)
}

fn fault(s: &Setup, addr: u64) -> DmaError {
    DmaError::TranslationFault {
        addr,
        requester: s.ctx.requester(),
    }
}

#[test]
fn test_dma_translated_write_and_read_reach_mapped_gpa() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x1_0000_0000, 0x20_3000, 1, RW);

    s.dma.write(0x1_0000_0010, b"hello").unwrap();
    let mut back = [0u8; 5];
    s.dma.read(0x1_0000_0010, &mut back).unwrap();

    assert_eq!(s.m.read_bytes(0x20_3010, 5), b"hello");
    assert_eq!(&back, b"hello");
}

#[test]
fn test_dma_spanning_pages_is_split_across_discontiguous_gpas() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);
    s.m.map(s.top, Levels::Four, 0x5000, 0x21_0000, 1, RW);

    s.dma.write(0x4ffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();

    assert_eq!(s.m.read_bytes(0x25_0ffc, 4), [1, 2, 3, 4]);
    assert_eq!(s.m.read_bytes(0x21_0000, 4), [5, 6, 7, 8]);
}

#[test]
fn test_dma_crossing_into_unmapped_page_faults_and_writes_nothing() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);

    let got = s.dma.write(0x4ffc, &[0xaa; 8]);

    assert_eq!(got, Err(fault(&s, 0x5000)));
    assert_eq!(s.m.read_bytes(0x25_0ffc, 4), [0; 4]);
    assert_eq!(
        s.remapper.faults().records(),
        &[FaultRecord {
            requester: RequesterId::new(0, 1, 0),
            addr: 0x5000,
            reason: FaultReason::WriteNotPermitted,
            write: true,
        }]
    );
}

#[test]
fn test_dma_mapping_into_hole_writes_nothing() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);
    s.m.map(s.top, Levels::Four, 0x5000, 1 << 40, 1, RW);

    let got = s.dma.write(0x4ffc, &[0xaa; 8]);

    assert_eq!(
        got,
        Err(DmaError::OutOfRange {
            addr: 0x4ffc,
            len: 8
        })
    );
    assert_eq!(s.m.read_bytes(0x25_0ffc, 4), [0; 4]);
}

#[test]
fn test_dma_read_only_mapping_refuses_write_with_0x5() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, R);

    let got = s.dma.write(0x4000, &[0xaa; 4]);

    assert_eq!(got, Err(fault(&s, 0x4000)));
    assert_eq!(s.m.read_bytes(0x25_0000, 4), [0; 4]);
    let reasons: Vec<_> = s
        .remapper
        .faults()
        .records()
        .iter()
        .map(|f| f.reason.code())
        .collect();
    assert_eq!(reasons, [0x5]);
}

#[test]
fn test_dma_write_only_mapping_refuses_read_with_0x6() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, W);

    let got = s.dma.read(0x4000, &mut [0u8; 4]);

    assert_eq!(got, Err(fault(&s, 0x4000)));
    let faults = s.remapper.faults();
    assert_eq!(
        faults
            .records()
            .iter()
            .map(|f| (f.reason.code(), f.write))
            .collect::<Vec<_>>(),
        [(0x6, false)]
    );
}

#[test]
fn test_dma_root_and_context_not_present_fault_0x1_and_0x2() {
    let s = setup();
    s.ctx.set_requester(RequesterId::new(1, 1, 0));
    let on_bus_1 = s.dma.read(0, &mut [0u8; 4]);
    s.ctx.set_requester(RequesterId::new(0, 2, 0));
    let on_devfn_0x10 = s.dma.read(0, &mut [0u8; 4]);

    let reasons: Vec<_> = s
        .remapper
        .faults()
        .records()
        .iter()
        .map(|f| f.reason.code())
        .collect();

    assert!(on_bus_1.is_err() && on_devfn_0x10.is_err());
    assert_eq!(reasons, [0x1, 0x2]);
}

#[test]
fn test_dma_root_table_outside_ram_faults_0x8() {
    let s = setup();
    s.remapper.set_root_table(1 << 40);

    let got = s.dma.read(0, &mut [0u8; 4]);

    assert_eq!(got, Err(fault(&s, 0)));
    assert_eq!(
        s.remapper.faults().records()[0].reason,
        FaultReason::RootTableUnreadable
    );
}

#[test]
fn test_dma_translation_disabled_passes_through() {
    let s = setup();
    s.remapper.set_enabled(false);

    s.dma.write(0x30_0000, b"raw").unwrap();

    assert_eq!(s.m.read_bytes(0x30_0000, 3), b"raw");
    assert!(s.remapper.faults().records().is_empty());
}

#[test]
fn test_dma_pass_through_context_is_identity() {
    let s = setup();
    s.m.set_context(CT, DEVFN, 0b1001, 2);

    s.dma.write(0x30_0ffe, b"pt!!").unwrap();

    assert_eq!(s.m.read_bytes(0x30_0ffe, 4), b"pt!!");
}

#[test]
fn test_dma_follows_requester_id_change_live() {
    let s = setup();
    let other_top = s.m.alloc_table();
    s.m.set_context(CT, 0x10, other_top | 1, 1 | 2 << 8);
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);
    s.m.map(other_top, Levels::Three, 0x4000, 0x26_0000, 1, RW);
    s.m.write_bytes(0x25_0000, b"first");
    s.m.write_bytes(0x26_0000, b"other");
    let mut before = [0u8; 5];
    let mut after = [0u8; 5];

    s.dma.read(0x4000, &mut before).unwrap();
    s.ctx.set_requester(RequesterId::new(0, 2, 0));
    s.dma.read(0x4000, &mut after).unwrap();

    assert_eq!((&before, &after), (b"first", b"other"));
}

#[test]
fn test_dma_fault_log_overflow_keeps_first_and_counts_rest() {
    let s = setup_with(2);

    for page in 0..5u64 {
        let _ = s.dma.read(page << 12, &mut [0u8; 1]);
    }

    let faults = s.remapper.faults();
    let addrs: Vec<_> = faults.records().iter().map(|f| f.addr).collect();
    assert_eq!(addrs, [0, 0x1000]);
    assert_eq!(faults.overflowed(), 3);
}

#[test]
fn test_dma_fpd_context_faults_without_recording() {
    let s = setup();
    s.m.set_context(CT, DEVFN, s.top | 0b11, 2);

    let got = s.dma.read(0x4000, &mut [0u8; 4]);

    assert_eq!(got, Err(fault(&s, 0x4000)));
    assert!(s.remapper.faults().records().is_empty());
}

#[test]
fn test_dma_host_ranges_split_per_page_and_untouched_on_fault() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);
    s.m.map(s.top, Levels::Four, 0x5000, 0x21_0000, 1, RW);
    let mut out: Vec<HostRange> = Vec::new();

    s.dma
        .host_ranges(0x4800, 0x1000, Direction::ToDevice, &mut out)
        .unwrap();
    let lens: Vec<_> = out.iter().map(HostRange::len).collect();
    let refused = s
        .dma
        .host_ranges(0x5800, 0x1000, Direction::ToDevice, &mut out);

    assert_eq!(lens, [0x800, 0x800]);
    assert_eq!(refused, Err(fault(&s, 0x6000)));
    assert_eq!(out.len(), 2);
}

#[test]
fn test_dma_translate_stops_at_page_end() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);
    s.m.map(s.top, Levels::Four, 0x5000, 0x25_1000, 1, RW);

    let got = s
        .dma
        .translate(0x4f00, 0x1000, Direction::FromDevice)
        .unwrap();

    assert_eq!(got.len(), 0x100);
}

#[test]
fn test_dma_range_wrapping_2_pow_64_is_refused() {
    let s = setup();

    let got = s.dma.read(u64::MAX - 1, &mut [0u8; 4]);

    assert_eq!(
        got,
        Err(DmaError::Overflow {
            addr: u64::MAX - 1,
            len: 4
        })
    );
}

#[test]
fn test_remapper_translate_range_merges_contiguous_pages() {
    let s = setup();
    s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, RW);
    s.m.map(s.top, Levels::Four, 0x5000, 0x25_1000, 1, RW);
    s.m.map(s.top, Levels::Four, 0x6000, 0x20_0000, 1, RW);

    let got = s.remapper.translate_range(
        RequesterId::new(0, 1, 0),
        0x4800,
        0x2000,
        Direction::ToDevice,
    );

    assert_eq!(
        got,
        Ok(vec![
            Piece {
                gpa: 0x25_0800,
                len: 0x1800
            },
            Piece {
                gpa: 0x20_0000,
                len: 0x800
            },
        ])
    );
}

/// A one-byte DMA in direction `dir`.
fn access(dma: &IommuDma, dir: Direction, iova: u64) -> Result<(), DmaError> {
    match dir {
        Direction::ToDevice => dma.read(iova, &mut [0u8; 1]),
        Direction::FromDevice => dma.write(iova, &[0u8; 1]),
    }
}

/// One hostile table per fault reason, each met by a one-byte read or
/// write of 00:01.0 at IOVA 0x4000, or 2^48 for 0x4 (mapped read-only to 0x25_0000 through
/// a 4-level table before the damage).
#[test]
fn test_dma_every_fault_reason_is_recorded_with_its_code() {
    type Damage = fn(&Setup);
    let cases: [(Damage, Direction, u64, u8); 12] = [
        (|s| s.m.set_root(0, CT), Direction::ToDevice, 0x4000, 0x1),
        (
            |s| s.m.set_context(CT, DEVFN, 0, 0),
            Direction::ToDevice,
            0x4000,
            0x2,
        ),
        (
            |s| s.m.set_context(CT, DEVFN, s.top | 1, 3),
            Direction::ToDevice,
            0x4000,
            0x3,
        ),
        (|_| {}, Direction::ToDevice, 1 << 48, 0x4),
        (|_| {}, Direction::FromDevice, 0x4000, 0x5),
        (
            |s| s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, W),
            Direction::ToDevice,
            0x4000,
            0x6,
        ),
        (
            |s| s.m.set_context(CT, DEVFN, 1 << 40 | 1, 2),
            Direction::ToDevice,
            0x4000,
            0x7,
        ),
        (
            |s| s.remapper.set_root_table(1 << 40),
            Direction::ToDevice,
            0x4000,
            0x8,
        ),
        (
            |s| s.m.set_root(0, 1 << 40 | 1),
            Direction::ToDevice,
            0x4000,
            0x9,
        ),
        (
            |s| s.m.set_root_entry(0, CT | 1, 1),
            Direction::ToDevice,
            0x4000,
            0xA,
        ),
        (
            |s| s.m.set_context(CT, DEVFN, s.top | 1, 2 | 1 << 40),
            Direction::ToDevice,
            0x4000,
            0xB,
        ),
        (
            |s| {
                s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000 | 1 << 11, 1, R)
            },
            Direction::ToDevice,
            0x4000,
            0xC,
        ),
    ];

    let got: Vec<u8> = cases
        .iter()
        .map(|&(damage, dir, iova, _)| {
            let s = setup();
            s.m.map(s.top, Levels::Four, 0x4000, 0x25_0000, 1, R);
            damage(&s);
            let _ = access(&s.dma, dir, iova);
            s.remapper
                .faults()
                .records()
                .first()
                .map_or(0, |f| f.reason.code())
        })
        .collect();

    let want: Vec<u8> = cases.iter().map(|&(_, _, _, code)| code).collect();
    assert_eq!(got, want);
}
