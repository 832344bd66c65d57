//! A function's mirror driven by the invalidations a guest with caching
//! mode issues, against a fake host IOMMU.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dma::RequesterId;

use super::*;
use crate::caps::Capabilities;
use crate::regs::IotlbInvalidation;
use crate::testing::{Machine, ROOT};
use crate::walk::Levels;

const CT: u64 = 0x2_0000;
const R: u64 = 1;
const W: u64 = 2;
const RW: u64 = R | W;
/// The assigned function: 00:01.0, domain 5.
const DEVFN: u8 = 0x08;
const DID: u16 = 5;

/// The host IOMMU: what is mapped, and every call.
#[derive(Debug, Default)]
struct FakeHost {
    mapped: Mutex<BTreeMap<u64, (u64, u64, bool, bool)>>,
    identity: Mutex<bool>,
    calls: Mutex<Vec<String>>,
    /// Refuse maps at this input address.
    refuse: Mutex<Option<u64>>,
}

impl HostMapper for FakeHost {
    fn map(&self, iova: u64, gpa: u64, len: u64, read: bool, write: bool) -> io::Result<()> {
        self.calls.lock().unwrap().push(format!("map {iova:#x}"));
        if *self.refuse.lock().unwrap() == Some(iova) {
            return Err(io::Error::other("refused"));
        }
        let mut m = self.mapped.lock().unwrap();
        let before = m.range(..iova + len).next_back();
        let overlaps = before.is_some_and(|(&a, &(_, l, _, _))| a + l > iova);
        assert!(!overlaps, "VFIO refuses overlapping maps ({iova:#x})");
        m.insert(iova, (gpa, len, read, write));
        Ok(())
    }

    fn unmap(&self, iova: u64, len: u64) -> io::Result<()> {
        self.calls.lock().unwrap().push(format!("unmap {iova:#x}"));
        let gone = self.mapped.lock().unwrap().remove(&iova);
        assert_eq!(gone.map(|g| g.1), Some(len), "unmaps cover whole mappings");
        Ok(())
    }

    fn map_identity(&self) -> io::Result<()> {
        *self.identity.lock().unwrap() = true;
        self.calls.lock().unwrap().push("identity".into());
        Ok(())
    }

    fn unmap_identity(&self) -> io::Result<()> {
        *self.identity.lock().unwrap() = false;
        self.calls.lock().unwrap().push("no identity".into());
        Ok(())
    }
}

struct Rig {
    m: Machine,
    remapper: Remapper,
    host: Arc<FakeHost>,
    mirror: Mirror,
    top: u64,
}

fn rid() -> RequesterId {
    RequesterId::new(0, 1, 0)
}

/// Tables programmed (00:01.0 in domain 5 through a 4-level table), and
/// translation still off.
fn rig() -> Rig {
    let m = Machine::new();
    let top = m.alloc_table();
    m.set_root(0, CT | 1);
    m.set_context(CT, DEVFN, top | 1, 2 | u64::from(DID) << 8);
    let remapper = Remapper::new(m.ram().clone(), Capabilities::DEFAULT, 8);
    remapper.set_root_table(ROOT);
    let host = Arc::new(FakeHost::default());
    let mirror = Mirror::new(host.clone());
    Rig {
        m,
        remapper,
        host,
        mirror,
        top,
    }
}

impl Rig {
    fn sync(&mut self, effect: Effect) {
        let scope = SyncScope::of(&effect, rid(), self.mirror.domain());
        if let Some(scope) = scope {
            self.mirror.sync(&self.remapper, rid(), &scope);
        }
    }

    fn enable(&mut self) {
        self.remapper.set_enabled(true);
        self.sync(Effect::Translation(true));
    }

    fn psi(&mut self, did: u16, addr: u64, mask: u8) {
        self.sync(Effect::InvalidateIotlb(IotlbInvalidation {
            scope: IotlbScope::Pages {
                did,
                addr,
                mask,
                leaf_only: false,
            },
            drain_reads: false,
            drain_writes: false,
        }));
    }

    fn mapped(&self) -> Vec<(u64, u64, u64)> {
        self.host
            .mapped
            .lock()
            .unwrap()
            .iter()
            .map(|(&i, &(g, l, _, _))| (i, g, l))
            .collect()
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.host.calls.lock().unwrap())
    }
}

#[test]
fn test_translation_off_mirrors_all_ram_and_on_mirrors_the_domain() {
    let mut r = rig();
    r.m.map(r.top, Levels::Four, 0x1000, 0x30_0000, 1, RW);
    r.mirror.sync(&r.remapper, rid(), &SyncScope::All);
    assert!(r.mirror.is_identity());
    assert_eq!(r.calls(), ["identity"]);

    r.enable();
    assert_eq!(r.calls(), ["no identity", "map 0x1000"]);
    assert_eq!(r.mapped(), [(0x1000, 0x30_0000, 0x1000)]);
    assert_eq!(r.mirror.domain(), Some(DID));
}

#[test]
fn test_page_selective_invalidation_maps_the_new_page_and_unmaps_the_old() {
    let mut r = rig();
    r.enable();
    r.calls();

    // The guest maps a page and invalidates it (caching mode).
    r.m.map(r.top, Levels::Four, 0xffff_e000, 0x20_0000, 1, R);
    r.psi(DID, 0xffff_e000, 0);
    assert_eq!(r.calls(), ["map 0xffffe000"]);
    assert_eq!(
        r.host.mapped.lock().unwrap()[&0xffff_e000],
        (0x20_0000, 0x1000, true, false),
        "read-only stays read-only"
    );

    // An invalidation of another domain, or of a range without changes,
    // touches nothing.
    r.psi(DID + 1, 0xffff_e000, 0);
    r.psi(DID, 0xffff_e000, 0);
    assert!(r.calls().is_empty());

    // The guest unmaps it and invalidates.
    r.m.write_u64(r.m.entry_at(r.top, Levels::Four, 0xffff_e000, 1), 0);
    r.psi(DID, 0xffff_e000, 0);
    assert_eq!(r.calls(), ["unmap 0xffffe000"]);
    assert!(r.mapped().is_empty());
}

#[test]
fn test_a_range_invalidation_only_looks_at_its_range() {
    let mut r = rig();
    r.enable();
    // Two pages change, only one is invalidated: the other waits for its own.
    r.m.map(r.top, Levels::Four, 0x1000, 0x30_0000, 1, RW);
    r.m.map(r.top, Levels::Four, 0x9000, 0x30_1000, 1, RW);
    r.psi(DID, 0x1000, 0);
    assert_eq!(r.mapped(), [(0x1000, 0x30_0000, 0x1000)]);
    // A mask of 4 covers 0x0..0x10000.
    r.psi(DID, 0x8000, 4);
    assert_eq!(r.mapped().len(), 2);
}

#[test]
fn test_superpage_split_into_pages_is_remapped_whole() {
    let mut r = rig();
    r.m.map(r.top, Levels::Four, 0x4000_0000, 0x20_0000, 2, RW);
    r.enable();
    assert_eq!(r.mapped(), [(0x4000_0000, 0x20_0000, 0x20_0000)]);

    // The guest replaces the superpage by a table with two pages, and
    // invalidates only the first 4 KiB: the host superpage goes, and both
    // pages of the new table are listed because the sync covers it whole.
    let entry = r.m.entry_at(r.top, Levels::Four, 0x4000_0000, 2);
    r.m.write_u64(entry, 0);
    r.m.map(r.top, Levels::Four, 0x4000_0000, 0x30_0000, 1, RW);
    r.m.map(r.top, Levels::Four, 0x4010_0000, 0x30_1000, 1, RW);
    r.psi(DID, 0x4000_0000, 0);
    assert_eq!(
        r.mapped(),
        [
            (0x4000_0000, 0x30_0000, 0x1000),
            (0x4010_0000, 0x30_1000, 0x1000)
        ]
    );
}

#[test]
fn test_pass_through_and_blocked_contexts() {
    let mut r = rig();
    r.m.map(r.top, Levels::Four, 0x1000, 0x30_0000, 1, RW);
    r.enable();
    r.calls();

    // TT = 10b: pass-through is all of RAM again.
    r.m.set_context(CT, DEVFN, 1 | 2 << 2, 2 | u64::from(DID) << 8);
    r.sync(Effect::InvalidateContext(ContextInvalidation::Device {
        did: 0,
        source: rid(),
        function_mask: 0,
    }));
    assert_eq!(r.calls(), ["unmap 0x1000", "identity"]);

    // A context invalidation for another function leaves it alone.
    r.m.set_context(CT, DEVFN, 0, 0);
    r.sync(Effect::InvalidateContext(ContextInvalidation::Device {
        did: 0,
        source: RequesterId::new(0, 2, 0),
        function_mask: 0,
    }));
    assert!(r.calls().is_empty());

    // Its own: not present, blocked, nothing mapped.
    r.sync(Effect::InvalidateContext(ContextInvalidation::Global));
    assert_eq!(r.calls(), ["no identity"]);
    assert!(!r.mirror.is_identity());
    assert_eq!(r.mirror.domain(), None);
}

#[test]
fn test_moving_to_another_domain_replaces_every_mapping() {
    let mut r = rig();
    r.m.map(r.top, Levels::Four, 0x1000, 0x30_0000, 1, RW);
    r.enable();
    let other = r.m.alloc_table();
    r.m.map(other, Levels::Three, 0x5000, 0x31_0000, 1, W);
    r.m.set_context(CT, DEVFN, other | 1, 1 | 9 << 8);
    r.sync(Effect::InvalidateContext(ContextInvalidation::Domain {
        did: 9,
    }));
    assert_eq!(r.mirror.domain(), Some(9));
    assert_eq!(r.mapped(), [(0x5000, 0x31_0000, 0x1000)]);
}

#[test]
fn test_a_refused_host_map_is_retried_by_the_next_sync() {
    let mut r = rig();
    r.enable();
    *r.host.refuse.lock().unwrap() = Some(0x1000);
    r.m.map(r.top, Levels::Four, 0x1000, 0x30_0000, 1, RW);
    r.psi(DID, 0x1000, 0);
    assert!(r.mapped().is_empty());
    assert_eq!(r.mirror.leaves(), 0);
    *r.host.refuse.lock().unwrap() = None;
    r.psi(DID, 0x1000, 0);
    assert_eq!(r.mapped().len(), 1);
}

#[test]
fn test_a_hostile_looping_table_is_bounded_and_clear_unmaps_what_it_mapped() {
    let mut r = rig();
    for i in 0..512 {
        r.m.write_u64(r.top + i * 8, r.top | RW);
    }
    r.enable();
    assert_eq!(r.mirror.leaves(), LEAF_LIMIT);
    r.mirror.clear();
    assert!(r.mapped().is_empty());
}

#[test]
fn test_an_address_mask_past_the_width_covers_everything_without_overflow() {
    for mask in [51u8, 52, 63, 255] {
        let scope = SyncScope::of(
            &Effect::InvalidateIotlb(IotlbInvalidation {
                scope: IotlbScope::Pages {
                    did: 1,
                    addr: 0x1000,
                    mask,
                    leaf_only: false,
                },
                drain_reads: false,
                drain_writes: false,
            }),
            rid(),
            Some(1),
        );
        let Some(SyncScope::Range { range, .. }) = scope else {
            panic!("a range for mask {mask}");
        };
        assert_eq!(range.start, 0, "mask {mask}");
        assert!(range.end >= 1 << 63, "mask {mask}");
    }
}
