//! Laying out and walking the capability lists.

use super::util::{endpoint, ep_read32, msix_config, read32, MSI};
use crate::caps::list::{walk, walk_extended, Found};
use crate::caps::pm::PmConfig;
use crate::caps::{
    id, CapError, CapabilityList, MaskedCapability, ReadOnlyCapability, ReadOnlyExtended,
    CAPABILITIES_POINTER,
};
use crate::config::{status, STATUS};
use crate::regs::RegisterMask;

fn found(id: u16, offset: usize) -> Found {
    Found {
        id,
        version: 0,
        offset,
    }
}

#[test]
fn test_walk_from_capabilities_pointer_finds_every_capability_in_order() {
    let ep = endpoint();

    let caps = walk(|o| ep_read32(&ep, o));

    assert_eq!(
        caps,
        vec![
            found(id::PM.into(), 0x40),
            found(id::MSI.into(), 0x48),
            found(id::MSIX.into(), 0x60),
            found(id::PCIE.into(), 0x6c),
        ]
    );
}

#[test]
fn test_capability_list_sets_status_bit_and_pointer() {
    let ep = endpoint();

    let status = (ep_read32(&ep, STATUS & !3) >> 16) as u16;
    let pointer = ep_read32(&ep, CAPABILITIES_POINTER) & 0xff;

    assert_ne!(status & status::CAPABILITIES, 0);
    assert_eq!(pointer, 0x40);
}

#[test]
fn test_empty_list_leaves_status_bit_clear_and_walks_to_nothing() {
    let mut regs = RegisterMask::new(4096);
    let caps = CapabilityList::new(&mut regs).finish();

    let found = walk(|o| read32(&regs, o));

    assert!(caps.msi().is_none());
    assert_eq!(found, vec![]);
    assert_eq!(regs.read_le(STATUS, 2), 0);
}

#[test]
fn test_custom_capability_body_is_laid_out_dword_aligned_and_read_only() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    let vendor = ReadOnlyCapability {
        id: id::VENDOR,
        body: vec![5, 0xaa, 0xbb],
    };
    let first = list.add(&vendor).unwrap();
    let second = list.add(&vendor).unwrap();
    list.finish();

    regs.write(first, &[0xff; 8]);

    assert_eq!((first, second), (0x40, 0x48));
    assert_eq!(read32(&regs, 0x40), 0xaa05_4809);
    assert_eq!(read32(&regs, 0x44), 0xbb);
    assert_eq!(walk(|o| read32(&regs, o)).len(), 2);
}

#[test]
fn test_masked_capability_takes_writable_bits_and_keeps_the_rest() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    let vendor = MaskedCapability {
        id: id::VENDOR,
        body: vec![6, 0x05, 0x00, 0x11],
        writable: vec![0x00, 0x00, 0x0f],
    };
    let offset = list.add(&vendor).unwrap();
    list.finish();

    regs.write(offset, &[0xff; 6]);

    assert_eq!(offset, 0x40);
    assert_eq!(
        read32(&regs, 0x40),
        0x0506_0009,
        "ID, next, body 0-1 read-only"
    );
    assert_eq!(
        read32(&regs, 0x44),
        0x110f,
        "body 2 takes its mask, body 3 read-only"
    );
}

#[test]
fn test_masked_capability_masks_past_the_body_are_ignored() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    let vendor = MaskedCapability {
        id: id::VENDOR,
        body: vec![0],
        writable: vec![0xff, 0xff, 0xff],
    };
    let offset = list.add(&vendor).unwrap();
    list.finish();

    regs.write(offset, &[0xff; 8]);

    assert_eq!(read32(&regs, 0x40), 0x00ff_0009);
    assert_eq!(read32(&regs, 0x44), 0);
}

#[test]
fn test_extended_walk_from_0x100_finds_ids_versions_and_offsets() {
    let mut regs = RegisterMask::new(4096);
    let mut list = CapabilityList::new(&mut regs);
    let a = ReadOnlyExtended {
        id: 0x000b,
        version: 1,
        body: vec![0x11; 10],
    };
    let b = ReadOnlyExtended {
        id: 0x0023,
        version: 0xf,
        body: vec![],
    };
    list.add_extended(&a).unwrap();
    list.add_extended(&b).unwrap();
    list.finish();

    let found = walk_extended(|o| read32(&regs, o));

    assert_eq!(
        found,
        vec![
            Found {
                id: 0x000b,
                version: 1,
                offset: 0x100
            },
            Found {
                id: 0x0023,
                version: 0xf,
                offset: 0x110
            },
        ]
    );
    assert_eq!(read32(&regs, 0x100), 0x1101_000b);
}

#[test]
fn test_no_extended_capabilities_reads_zero_header() {
    let ep = endpoint();

    let header = ep_read32(&ep, 0x100);

    assert_eq!(header, 0);
    assert_eq!(walk_extended(|o| ep_read32(&ep, o)), vec![]);
}

#[test]
fn test_extended_capability_in_conventional_space_is_refused() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    let cap = ReadOnlyExtended {
        id: 1,
        version: 1,
        body: vec![],
    };

    let result = list.add_extended(&cap);

    assert_eq!(
        result,
        Err(CapError::NoRoom {
            id: 1,
            size: 4,
            offset: 0x100
        })
    );
}

#[test]
fn test_full_conventional_space_refuses_and_keeps_list_intact() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    let big = ReadOnlyCapability {
        id: id::VENDOR,
        body: vec![0; 0x5e],
    };
    list.add(&big).unwrap();
    list.add(&big).unwrap();

    let third = list.add(&big);
    list.finish();

    assert!(matches!(third, Err(CapError::NoRoom { offset: 0x100, .. })));
    assert_eq!(walk(|o| read32(&regs, o)).len(), 2);
}

#[test]
fn test_duplicate_msi_is_refused() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    list.msi(MSI).unwrap();

    let again = list.msi(MSI);

    assert_eq!(again, Err(CapError::Duplicate { id: id::MSI }));
}

#[test]
fn test_invalid_capability_config_leaves_list_unchanged() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    list.power_management(PmConfig::default()).unwrap();

    let bad = list.msix(msix_config(0));
    list.finish();

    assert_eq!(bad, Err(CapError::MsixVectors { vectors: 0 }));
    assert_eq!(walk(|o| read32(&regs, o)), vec![found(id::PM.into(), 0x40)]);
}

#[test]
fn test_pointers_and_headers_are_read_only() {
    let mut ep = endpoint();
    let before = walk(|o| ep_read32(&ep, o));

    ep.write(CAPABILITIES_POINTER, &[0xff; 4]);
    for f in &before {
        ep.write(f.offset, &[0xff, 0xff]);
    }

    assert_eq!(walk(|o| ep_read32(&ep, o)), before);
}

#[test]
fn test_looping_list_walk_is_bounded() {
    let mut regs = RegisterMask::new(256);
    regs.set_value(STATUS, 2, status::CAPABILITIES.into())
        .unwrap();
    regs.set_value(CAPABILITIES_POINTER, 1, 0x40).unwrap();
    regs.set_value(0x40, 2, 0x4001).unwrap();

    let found = walk(|o| read32(&regs, o));

    assert_eq!(found.len(), 48);
}
