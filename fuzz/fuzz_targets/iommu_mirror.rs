//! Fuzzes the mirroring of a function's address space into a host IOMMU
//! (`iommu::Mirror`, `iommu::leaves`): guest-written tables changed and
//! invalidated in any order, as a hostile guest with an assigned device
//! behind the unit in caching mode might.
//!
//! Input layout: 1 byte of flags (widths, superpages, pass-through, host
//! address width), 2 bytes of requester ID, 8 bytes of root table address,
//! then operations of 11 bytes each: a kind byte, 8 bytes of value and 2 of
//! offset (a u64 stored into guest RAM at the offset, or an invalidation
//! whose fields come from the value). Guest RAM is 64 KiB from 0, zero at
//! first. Nothing may panic, and the host IOMMU must only ever see what
//! VFIO accepts: no overlapping mappings, unmaps of whole earlier mappings,
//! identity mapped at most once; and the mirror's count of leaves must be
//! what the host holds.

#![no_main]

mod iommu_common;

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use dma::{Dma, GuestDma, RequesterId};
use iommu::regs::{ContextInvalidation, IotlbInvalidation, IotlbScope};
use iommu::{Capabilities, Effect, HostMapper, Mirror, Remapper, SyncScope};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

const RAM: u64 = iommu_common::RAM as u64;

#[derive(Debug, Default)]
struct StrictHost {
    mapped: Mutex<BTreeMap<u64, u64>>,
    identity: Mutex<bool>,
}

impl HostMapper for StrictHost {
    fn map(&self, iova: u64, _gpa: u64, len: u64, read: bool, write: bool) -> io::Result<()> {
        assert!(read || write, "a mapping with no rights");
        assert!(
            len > 0 && iova % len == 0,
            "unaligned leaf {iova:#x}+{len:#x}"
        );
        let mut m = self.mapped.lock().unwrap();
        let end = iova.checked_add(len).expect("mapping wraps");
        if let Some((&a, &l)) = m.range(..end).next_back() {
            assert!(
                a + l <= iova,
                "overlapping map {iova:#x}+{len:#x} over {a:#x}+{l:#x}"
            );
        }
        m.insert(iova, len);
        Ok(())
    }

    fn unmap(&self, iova: u64, len: u64) -> io::Result<()> {
        let gone = self.mapped.lock().unwrap().remove(&iova);
        assert_eq!(
            gone,
            Some(len),
            "unmap of {iova:#x}+{len:#x} is not a whole mapping"
        );
        Ok(())
    }

    fn map_identity(&self) -> io::Result<()> {
        let mut id = self.identity.lock().unwrap();
        assert!(!*id, "identity mapped twice");
        assert!(
            self.mapped.lock().unwrap().is_empty(),
            "identity over leaves"
        );
        *id = true;
        Ok(())
    }

    fn unmap_identity(&self) -> io::Result<()> {
        let mut id = self.identity.lock().unwrap();
        assert!(*id, "identity unmapped while not mapped");
        *id = false;
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, lo, hi], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Some((root, ops)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some(mem) = iommu_common::guest_ram(&[]) else {
        return;
    };
    let mem = Arc::new(mem);
    let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(mem.clone()));
    let caps = Capabilities {
        width_39: true,
        width_48: flags & 1 != 0,
        host_address_width: if flags & 2 == 0 { 39 } else { 48 },
        page_2m: flags & 4 != 0,
        page_1g: flags & 8 != 0,
        pass_through: flags & 0x10 != 0,
    };
    let remapper = Remapper::new(ram, caps, 4);
    remapper.set_root_table(u64::from_le_bytes(*root));
    let requester = RequesterId(u16::from_le_bytes([lo, hi]));
    let host = Arc::new(StrictHost::default());
    let mut mirror = Mirror::new(host.clone());
    mirror.sync(&remapper, requester, &SyncScope::All);

    for op in ops.chunks_exact(11).take(64) {
        let value = u64::from_le_bytes(op[1..9].try_into().unwrap());
        let offset = u64::from(u16::from_le_bytes([op[9], op[10]])) & !7;
        let effect = match op[0] % 8 {
            0 | 1 | 2 => {
                let _ = mem.write_obj(value, GuestAddress(offset % RAM));
                continue;
            }
            3 => {
                let on = value & 1 != 0;
                remapper.set_enabled(on);
                Effect::Translation(on)
            }
            4 => Effect::InvalidateIotlb(IotlbInvalidation {
                scope: IotlbScope::Pages {
                    did: value as u16,
                    addr: value & !0xfff,
                    mask: (value >> 16) as u8 & 0x3f,
                    leaf_only: false,
                },
                drain_reads: false,
                drain_writes: false,
            }),
            5 => Effect::InvalidateIotlb(IotlbInvalidation {
                scope: if value & 1 == 0 {
                    IotlbScope::Global
                } else {
                    IotlbScope::Domain {
                        did: (value >> 8) as u16,
                    }
                },
                drain_reads: false,
                drain_writes: false,
            }),
            6 => Effect::InvalidateContext(ContextInvalidation::Device {
                did: value as u16,
                source: RequesterId((value >> 16) as u16),
                function_mask: (value >> 32) as u8 & 3,
            }),
            _ => Effect::InvalidateContext(ContextInvalidation::Global),
        };
        remapper.invalidate(&effect);
        if let Some(scope) = SyncScope::of(&effect, requester, mirror.domain()) {
            mirror.sync(&remapper, requester, &scope);
        }
        let held = host.mapped.lock().unwrap().len();
        assert_eq!(mirror.leaves(), held, "the mirror and the host disagree");
        assert_eq!(mirror.is_identity(), *host.identity.lock().unwrap());
    }
    mirror.clear();
    assert!(host.mapped.lock().unwrap().is_empty());
    assert!(!*host.identity.lock().unwrap());
});
