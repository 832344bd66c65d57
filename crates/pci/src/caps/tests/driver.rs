//! The shared fake guest driver ([`crate::testing`]) against the endpoint:
//! it finds the capabilities by walking the list, sizes and places the BAR,
//! programs MSI-X (or MSI) as Linux does, and records which vectors the
//! device's interrupts arrive on.

use super::util::endpoint;
use crate::config::{command, BarWindow};
use crate::message::MsiMessage;
use crate::testing::function::FakeFunction;
use crate::testing::{BarDriver, ConfigDriver, MsiDriver, MsixDriver};

const BAR_ADDRESS: u64 = 0xfebf_0000;

fn message(v: u16) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000 | (u64::from(v) << 12),
        data: 0x4000 | (0x30 + u32::from(v)),
    }
}

/// Sizes BAR 0, places it and enables memory decoding and bus mastering.
fn place_bar(f: &mut FakeFunction) -> Vec<(usize, Option<BarWindow>)> {
    let size = f.size_bar(0).unwrap().size;
    assert_eq!(size, 0x4000, "BAR 0 is 16 KiB");
    f.place_bar(0, BAR_ADDRESS);
    let e = f.set_command(command::MEMORY | command::BUS_MASTER);
    e.bars.iter().map(|b| (b.index, b.new)).collect()
}

#[test]
fn test_driver_sizes_and_places_bar_then_decoding_reports_it() {
    let mut f = FakeFunction::new(endpoint());

    let bars = place_bar(&mut f);

    assert_eq!(
        bars,
        vec![(
            0,
            Some(BarWindow {
                addr: BAR_ADDRESS,
                size: 0x4000
            })
        )]
    );
}

#[test]
fn test_driver_programs_msix_and_records_the_vectors_fired() {
    let mut f = FakeFunction::new(endpoint());
    place_bar(&mut f);
    f.enable_msix(4, message).unwrap();

    for v in [2, 0, 3, 3] {
        f.fire(v);
    }

    assert_eq!(f.delivered_vectors(), vec![2, 0, 3, 3]);
    assert_eq!(f.delivered[0].message, message(2));
}

#[test]
fn test_driver_masks_a_vector_sees_pba_and_gets_it_on_unmask() {
    let mut f = FakeFunction::new(endpoint());
    f.enable_msix(4, message).unwrap();
    f.mask_msix_vector(1, true);

    f.fire(1);
    f.fire(0);
    let bits = f.msix_pending_bits();
    f.mask_msix_vector(1, false);

    assert_eq!(bits, 0b10);
    assert_eq!(f.delivered_vectors(), vec![0, 1]);
    assert_eq!(f.delivered[1].message, message(1));
}

#[test]
fn test_driver_falls_back_to_msi_with_multiple_messages() {
    let mut f = FakeFunction::new(endpoint());
    let capable = f.msi_layout().unwrap().vectors;
    let base = MsiMessage {
        address: 0xfee0_0000,
        data: 0x4050,
    };
    f.enable_msi(base, capable).unwrap();

    for v in [3, 1] {
        f.fire(v);
    }

    assert!(f.last_caps.msi.is_some());
    let data: Vec<_> = f.delivered.iter().map(|d| d.message.data).collect();
    assert_eq!(data, vec![0x4053, 0x4051]);
}
