//! MSI-X layout, entries, masks and control.

use super::{function, FakeFunction, MSI64, MSIX_VECTORS, PBA, TABLE};
use crate::caps::msix::{BarLocation, MsixControl};
use crate::caps::msix_table::MsixEntry;
use crate::message::{MsiMessage, Trigger};
use crate::testing::{MsixDriver, MsixLayout};

fn message(v: u16) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000 | (u64::from(v) << 12),
        data: 0x40 + u32::from(v),
    }
}

fn entries(f: &FakeFunction) -> Vec<MsixEntry> {
    let table = f.ep.caps().msix_table().unwrap();
    (0..MSIX_VECTORS).map(|v| table.entry(v).unwrap()).collect()
}

fn reset_entry() -> MsixEntry {
    MsixEntry {
        address: 0,
        data: 0,
        masked: true,
    }
}

#[test]
fn test_msix_layout_reads_table_size_and_locations() {
    let f = function(MSI64);

    let layout = f.msix_layout().unwrap();

    assert_eq!(
        layout,
        MsixLayout {
            offset: 0x60,
            vectors: MSIX_VECTORS,
            table: BarLocation {
                bar: 0,
                offset: TABLE
            },
            pba: BarLocation {
                bar: 0,
                offset: PBA
            },
        }
    );
    assert_eq!(layout.entry(3), u64::from(TABLE) + 0x30);
}

#[test]
fn test_enable_msix_programs_the_entries_the_function_then_reports() {
    let mut f = function(MSI64);

    f.enable_msix(5, message).unwrap();

    let unmasked = |v| MsixEntry {
        address: message(v).address,
        data: message(v).data,
        masked: false,
    };
    let mut expected: Vec<_> = (0..5).map(unmasked).collect();
    expected.extend([reset_entry(); 3]);
    let on = MsixControl {
        enabled: true,
        function_masked: false,
    };
    assert_eq!(entries(&f), expected);
    assert_eq!(f.ep.caps().msix_table().unwrap().control(), on);
    assert_eq!(f.last_caps.msix, Some(on));
}

#[test]
fn test_enable_msix_programs_at_most_the_table() {
    let mut f = function(MSI64);

    f.enable_msix(u16::MAX, message).unwrap();

    assert!(entries(&f).iter().all(|e| !e.masked));
}

#[test]
fn test_write_msix_entry_keeps_the_mask() {
    let mut f = function(MSI64);

    f.write_msix_entry(6, message(6));

    let e = entries(&f)[6];
    assert_eq!((e.message(), e.masked), (message(6), true));
}

#[test]
fn test_masked_vector_is_pending_until_unmasked() {
    let mut f = function(MSI64);
    f.enable_msix(MSIX_VECTORS, message).unwrap();
    f.mask_msix_vector(2, true);

    let fired = f.fire(2);
    let pending = f.msix_pending_bits();
    f.mask_msix_vector(2, false);

    assert_eq!(fired, Trigger::Pending);
    assert_eq!(pending, 1 << 2);
    assert_eq!(f.delivered_vectors(), vec![2]);
    assert_eq!(f.msix_pending_bits(), 0);
}

#[test]
fn test_function_mask_holds_vectors_until_cleared() {
    let mut f = function(MSI64);
    f.enable_msix(MSIX_VECTORS, message).unwrap();
    f.set_msix_control(true, true);

    let fired = f.fire(1);
    let e = f.set_msix_control(true, false);

    assert_eq!(fired, Trigger::Pending);
    assert_eq!(f.delivered_vectors(), vec![1]);
    assert_eq!(f.delivered[0].message, message(1));
    assert!(e.bars.is_empty());
}
