//! The caches as Linux's strict mode drives them: translations stay until
//! the invalidation that covers them, and only those go.

use std::sync::Arc;

use dma::{Dma, FunctionContext, RequesterId};

use super::*;
use crate::caps::Capabilities;
use crate::iommu_dma::IommuDma;
use crate::regs::{apply, Effect, IotlbInvalidation};
use crate::remapper::Remapper;
use crate::tables::Translation;
use crate::testing::{Machine, ROOT};
use crate::walk::Levels;

const CT: u64 = 0x2_0000;
const RW: u64 = 3;
const DEVFN: u8 = 0x08;
const DOMAIN: u16 = 1;

struct Rig {
    m: Machine,
    remapper: Arc<Remapper>,
    dma: IommuDma,
    top: u64,
}

/// 00:01.0 translated through a 4-level table in domain 1.
fn rig() -> Rig {
    let m = Machine::new();
    let top = m.alloc_table();
    m.set_root(0, CT | 1);
    m.set_context(CT, DEVFN, top | 1, 2 | u64::from(DOMAIN) << 8);
    let remapper = Arc::new(Remapper::new(m.ram().clone(), Capabilities::DEFAULT, 8));
    remapper.set_root_table(ROOT);
    remapper.set_enabled(true);
    let dma = IommuDma::new(
        FunctionContext::new(RequesterId::new(0, 1, 0)),
        remapper.clone(),
    );
    Rig {
        m,
        remapper,
        dma,
        top,
    }
}

fn iotlb(scope: IotlbScope) -> Effect {
    Effect::InvalidateIotlb(IotlbInvalidation {
        scope,
        drain_reads: false,
        drain_writes: false,
    })
}

fn read_u32(r: &Rig, iova: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    r.dma
        .read(iova, &mut b)
        .ok()
        .map(|()| u32::from_le_bytes(b))
}

#[test]
fn test_translation_is_cached_and_kept_until_its_invalidation() {
    let r = rig();
    r.m.map(r.top, Levels::Four, 0x1_0000_0000, 0x20_0000, 1, RW);
    r.m.write_bytes(0x20_0000, &7u32.to_le_bytes());
    r.m.write_bytes(0x30_0000, &9u32.to_le_bytes());

    let first = read_u32(&r, 0x1_0000_0000);
    // Linux's unmap-and-remap without a flush: the cached page stays.
    r.m.map(r.top, Levels::Four, 0x1_0000_0000, 0x30_0000, 1, RW);
    let stale = read_u32(&r, 0x1_0000_0000);
    apply(
        &iotlb(IotlbScope::Pages {
            did: DOMAIN,
            addr: 0x1_0000_0000,
            mask: 0,
            leaf_only: true,
        }),
        &r.remapper,
    );
    let fresh = read_u32(&r, 0x1_0000_0000);

    assert_eq!((first, stale, fresh), (Some(7), Some(7), Some(9)));
    assert_eq!(r.remapper.cached(), (1, 1));
}

#[test]
fn test_unmapped_page_faults_after_its_invalidation() {
    let r = rig();
    r.m.map(r.top, Levels::Four, 0x4000, 0x20_0000, 1, RW);
    assert!(read_u32(&r, 0x4000).is_some());

    r.m.map(r.top, Levels::Four, 0x4000, 0, 1, 0);
    apply(&iotlb(IotlbScope::Domain { did: DOMAIN }), &r.remapper);

    assert_eq!(read_u32(&r, 0x4000), None);
    assert_eq!(r.remapper.cached().1, 0, "faults are never cached");
}

#[test]
fn test_page_selective_invalidation_drops_exactly_its_pages() {
    let mut c = Caches::default();
    let g = c.generation();
    let page = |frame| CachedPage {
        frame,
        read: true,
        write: true,
    };
    for i in 0..8u64 {
        c.put_page(g, 1, 0x10_0000 + i * 0x1000, page(i));
    }
    c.put_page(g, 2, 0x10_2000, page(99));

    // AM 2: the four pages 0x10_0000..0x10_4000 of domain 1.
    c.invalidate_pages(&IotlbScope::Pages {
        did: 1,
        addr: 0x10_0000,
        mask: 2,
        leaf_only: false,
    });

    let left: Vec<u64> = (0..8u64)
        .filter(|i| c.page(1, 0x10_0000 + i * 0x1000).is_some())
        .collect();
    assert_eq!(left, [4, 5, 6, 7]);
    assert_eq!(c.page(2, 0x10_2000), Some(page(99)), "other domain kept");
}

#[test]
fn test_read_only_translation_does_not_serve_a_write() {
    let r = rig();
    r.m.map(r.top, Levels::Four, 0x8000, 0x20_0000, 1, 1);
    assert!(read_u32(&r, 0x8000).is_some());

    let write = r.dma.write(0x8000, &[1, 2, 3, 4]);

    assert!(write.is_err());
    assert_eq!(
        r.remapper
            .faults()
            .records()
            .last()
            .map(|f| f.reason.code()),
        Some(5),
        "PTE Write access is not set"
    );
}

#[test]
fn test_context_invalidation_by_device_honours_the_function_mask() {
    let mut c = Caches::default();
    let g = c.generation();
    let entry = ContextEntry {
        fault_processing_disabled: false,
        domain: 3,
        translation: Translation::PassThrough,
    };
    for f in 0..8 {
        c.put_context(g, RequesterId::new(0, 2, f), entry);
    }
    c.put_context(g, RequesterId::new(0, 3, 0), entry);

    c.invalidate_contexts(&ContextInvalidation::Device {
        did: 3,
        source: RequesterId::new(0, 2, 0),
        function_mask: 2,
    });

    let left: Vec<u8> = (0..8)
        .filter(|&f| c.context(RequesterId::new(0, 2, f)).is_some())
        .collect();
    assert_eq!(
        left,
        [1, 3, 5, 7],
        "bits 2:1 ignored: functions 0, 2, 4, 6 dropped"
    );
    assert!(c.context(RequesterId::new(0, 3, 0)).is_some());
}

#[test]
fn test_walk_that_raced_an_invalidation_is_not_cached() {
    let mut c = Caches::default();
    let before = c.generation();

    c.invalidate_pages(&IotlbScope::Global);
    c.put_page(
        before,
        1,
        0x1000,
        CachedPage {
            frame: 5,
            read: true,
            write: false,
        },
    );

    assert_eq!(c.page(1, 0x1000), None);
}

#[test]
fn test_changed_context_entry_takes_effect_after_its_invalidation() {
    let r = rig();
    r.m.map(r.top, Levels::Four, 0x20_0000, 0x30_0000, 1, RW);
    r.m.write_bytes(0x20_0000, &1u32.to_le_bytes());
    r.m.write_bytes(0x30_0000, &2u32.to_le_bytes());
    let translated = read_u32(&r, 0x20_0000);

    // The guest puts the function in pass-through (TT 2).
    r.m.set_context(CT, DEVFN, 2 << 2 | 1, 2 | u64::from(DOMAIN) << 8);
    let before = read_u32(&r, 0x20_0000);
    apply(
        &Effect::InvalidateContext(ContextInvalidation::Global),
        &r.remapper,
    );
    let after = read_u32(&r, 0x20_0000);

    assert_eq!((translated, before, after), (Some(2), Some(2), Some(1)));
}

#[test]
fn test_cache_is_bounded() {
    let mut c = Caches::default();
    let g = c.generation();
    for i in 0..(CAPACITY as u64 + 10) {
        c.put_page(
            g,
            1,
            i << 12,
            CachedPage {
                frame: i,
                read: true,
                write: true,
            },
        );
    }
    assert!(c.len().1 <= CAPACITY);
}
