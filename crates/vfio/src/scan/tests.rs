use super::*;
use crate::testing::nvme_config;

fn sizes(i: usize) -> u64 {
    [0x4000, 0, 0, 0, 0, 0][i]
}

#[test]
fn test_scan_reads_identity_bars_and_message_capabilities() {
    let h = scan(&nvme_config(), sizes).unwrap();

    assert_eq!(
        (h.identity.vendor, h.identity.device, h.identity.class),
        (0x1b36, 0x0010, 0x01_08_02)
    );
    assert_eq!(
        (h.identity.subsystem_vendor, h.identity.subsystem),
        (0x1af4, 0x1100)
    );
    assert_eq!(
        h.bars,
        [BarSpec {
            index: 0,
            kind: BarKind::Mem64 {
                prefetchable: false
            },
            size: 0x4000
        }]
    );
    let msix = h.msix.unwrap();
    assert_eq!(msix.vectors, 65);
    assert_eq!((msix.table.bar, msix.table.offset), (0, 0x2000));
    assert_eq!((msix.pba.bar, msix.pba.offset), (0, 0x3000));
    let msi = h.msi.unwrap();
    assert_eq!(
        (msi.vectors, msi.address64, msi.per_vector_mask),
        (32, true, true)
    );
}

#[test]
fn test_looping_capability_list_ends() {
    let mut c = nvme_config();
    c[0x61] = 0x40; // MSI points back at MSI-X

    let h = scan(&c, sizes).unwrap();

    assert!(h.msix.is_some() && h.msi.is_some());
}

#[test]
fn test_msix_table_outside_its_bar_is_dropped() {
    let mut c = nvme_config();
    c[0x44..0x48].copy_from_slice(&0x8000u32.to_le_bytes());

    assert_eq!(scan(&c, sizes).unwrap().msix, None);
}

#[test]
fn test_bridge_and_absent_functions_are_refused() {
    let mut bridge = nvme_config();
    bridge[0x0e] = 0x01;
    let absent = [0xffu8; 256];

    assert_eq!(scan(&bridge, sizes), Err(ScanError::NotEndpoint(1)));
    assert_eq!(scan(&absent, sizes), Err(ScanError::Absent));
}

#[test]
fn test_io_and_32_bit_bars_and_unsized_ones() {
    let mut c = nvme_config();
    c[0x10] = 0x01; // BAR 0: I/O
    c[0x14] = 0x08; // BAR 1: 32-bit prefetchable
    let sized = |i: usize| [0x20, 0x1000, 0, 0, 0, 0][i];

    let h = scan(&c, sized).unwrap();

    assert_eq!(
        h.bars
            .iter()
            .map(|b| (b.index, b.kind, b.size))
            .collect::<Vec<_>>(),
        [
            (0, BarKind::Io, 0x20),
            (1, BarKind::Mem32 { prefetchable: true }, 0x1000)
        ]
    );
}
