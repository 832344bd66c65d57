//! Fuzzes the VT-d remapping core's parsing of guest-written tables: the
//! second-level page walk (`iommu::walk`) and the whole root → context →
//! walk translation of a function's DMA (`iommu::IommuDma`).
//!
//! Input layout: 8 bytes of IOVA, 8 bytes of table pointer (the walk's top
//! table, and the root table), 1 byte of flags (depth, direction, which
//! widths, superpages and pass-through the hardware supports, host address
//! width, translation on), the requester ID (2 bytes), then guest RAM from
//! address 0 (64 KiB, the rest zero). Neither may panic; a mapping the walk
//! returns must keep the page offset, stay inside its page and allow the
//! access asked for; a translated range must cover exactly the request.

#![no_main]

mod iommu_common;

use std::sync::Arc;

use dma::{Direction, Dma, FunctionContext, GuestDma, RequesterId};
use iommu::{walk, Capabilities, IommuDma, Levels, Remapper};
use libfuzzer_sys::fuzz_target;

/// Largest DMA tried through the whole path.
const MAX_DMA: u64 = 0x4000;

fuzz_target!(|data: &[u8]| {
    let Some((iova, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((table, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some((&[flags, bus, devfn], ram)) = rest.split_first_chunk::<3>() else {
        return;
    };
    let (iova, table) = (u64::from_le_bytes(*iova), u64::from_le_bytes(*table));
    let Some(mem) = iommu_common::guest_ram(ram) else {
        return;
    };
    let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(Arc::new(mem)));
    let levels = if flags & 1 == 0 {
        Levels::Three
    } else {
        Levels::Four
    };
    let dir = if flags & 2 == 0 {
        Direction::ToDevice
    } else {
        Direction::FromDevice
    };
    let caps = Capabilities {
        width_39: true,
        width_48: flags & 4 != 0,
        host_address_width: if flags & 0x80 == 0 { 39 } else { 48 },
        page_2m: flags & 8 != 0,
        page_1g: flags & 0x10 != 0,
        pass_through: flags & 0x20 != 0,
    };

    if let Ok(m) = walk(ram.as_ref(), table, levels, iova, dir, &caps) {
        assert!(m.len >= 1 && m.len <= 1 << 30, "{m:?}");
        assert_eq!(m.gpa & 0xfff, iova & 0xfff, "page offset lost: {m:?}");
        assert!(m.gpa.checked_add(m.len).is_some(), "{m:?}");
        let allowed = match dir {
            Direction::ToDevice => m.read,
            Direction::FromDevice => m.write,
        };
        assert!(allowed, "walk allowed a denied access: {m:?}");
    }

    let remapper = Arc::new(Remapper::new(ram, caps, 4));
    remapper.set_root_table(table);
    remapper.set_enabled(flags & 0x40 != 0);
    let requester = RequesterId(u16::from_le_bytes([devfn, bus]));
    let len = (table >> 48) % MAX_DMA;
    if let Ok(pieces) = remapper.translate_range(requester, iova, len, dir) {
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        assert_eq!(total, len.min((!iova).saturating_add(1)));
    }
    let ctx = FunctionContext::new(requester);
    let dma = IommuDma::new(ctx, remapper.clone());
    let mut buf = vec![0u8; len as usize];
    let _ = dma.read(iova, &mut buf);
    let _ = dma.write(iova, &buf);
    assert!(remapper.faults().records().len() <= 4);
});
