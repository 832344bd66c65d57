//! Feature negotiation (§2.2, §3.1.1 steps 4–6).

use super::driver::{cc, rig, rig_with_iommu, DEVICE_FEATURES};
use crate::features::{F_ACCESS_PLATFORM, F_RING_EVENT_IDX, F_VERSION_1, TRANSPORT_FEATURES};
use crate::pci::status::{ACKNOWLEDGE, DRIVER, FEATURES_OK};

const NEGOTIATED: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK;

#[test]
fn test_device_features_offer_device_and_transport_bits() {
    let mut r = rig();
    r.place_bar();

    let offered = r.device_features();
    r.common_write(cc::DFSELECT, 4, 2);
    let beyond = r.common_read(cc::DF, 4);

    assert_eq!(offered, DEVICE_FEATURES | TRANSPORT_FEATURES);
    assert_eq!(beyond, 0);
}

#[test]
fn test_access_platform_with_an_iommu_is_offered() {
    let (mut r, _) = rig_with_iommu();
    r.place_bar();

    let offered = r.device_features();

    assert_eq!(offered & F_ACCESS_PLATFORM, F_ACCESS_PLATFORM);
    assert_eq!(rig().pci.offered_features() & F_ACCESS_PLATFORM, 0);
}

#[test]
fn test_features_ok_with_offered_subset_sticks() {
    let mut r = rig();
    r.place_bar();

    let status = r.negotiate(F_VERSION_1 | F_RING_EVENT_IDX | 1 << 5);
    r.common_write(cc::GFSELECT, 4, 1);
    let high = r.common_read(cc::GF, 4);

    assert_eq!(status, NEGOTIATED);
    assert_eq!(high, 1, "VERSION_1 reads back in window 1");
}

#[test]
fn test_features_ok_with_unoffered_bit_reads_back_clear() {
    let mut r = rig();
    r.place_bar();

    let status = r.negotiate(F_VERSION_1 | 1 << 6);

    assert_eq!(status, ACKNOWLEDGE | DRIVER);
}

#[test]
fn test_features_ok_without_version_1_reads_back_clear() {
    let mut r = rig();
    r.place_bar();

    let status = r.negotiate(1 << 5);

    assert_eq!(status, ACKNOWLEDGE | DRIVER);
}

#[test]
fn test_driver_feature_after_features_ok_is_ignored() {
    let mut r = rig();
    r.place_bar();
    r.negotiate(F_VERSION_1);

    r.common_write(cc::GFSELECT, 4, 0);
    r.common_write(cc::GF, 4, 1 << 5);
    let low = r.common_read(cc::GF, 4);

    assert_eq!(low, 0);
}

#[test]
fn test_driver_feature_window_past_one_is_ignored() {
    let mut r = rig();
    r.place_bar();

    r.common_write(cc::GFSELECT, 4, 7);
    r.common_write(cc::GF, 4, 0xffff_ffff);
    let status = r.negotiate(F_VERSION_1);

    assert_eq!(status, NEGOTIATED, "the stray window did not add bits");
}
