//! `VIRTIO_F_ACCESS_PLATFORM` (virtio 1.2 §6): in a machine with an
//! IOMMU, the route of the device's DMA is picked at `DRIVER_OK` from
//! the features the driver accepted.

use vm_memory::{Bytes, GuestAddress};

use super::driver::{cc, rig_with_iommu, Rig, IOVA_OFFSET, TEST_RID};
use crate::features::{F_ACCESS_PLATFORM, F_VERSION_1};
use crate::pci::signals::ISR_CONFIG;
use crate::pci::status::{ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FEATURES_OK};

const RUNNING: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;
/// A guest-physical page the tests move data through.
const PAGE: u64 = 0x8000;

/// Sets up queue 0 (16 entries, vector 1) with its rings `shift` above
/// their guest-physical places, and enables it.
fn setup_queue_at(r: &mut Rig, shift: u64) -> (u64, u64, u64) {
    let (desc, avail, used) = Rig::rings(0, 16);
    let (desc, avail, used) = (desc + shift, avail + shift, used + shift);
    r.set_queue_addresses(0, 16, desc, avail, used);
    r.common_write(cc::Q_MSIX, 2, 1);
    r.common_write(cc::Q_ENABLE, 2, 1);
    (desc, avail, used)
}

#[test]
fn test_access_platform_accepted_takes_rings_and_buffers_through_the_iommu() {
    let (mut r, iommu) = rig_with_iommu();
    r.place_bar();
    r.negotiate(F_VERSION_1 | F_ACCESS_PLATFORM);
    let (desc, avail, used) = setup_queue_at(&mut r, IOVA_OFFSET);

    r.driver_ok();

    assert_eq!(r.status(), RUNNING);
    assert_eq!(
        r.device().activations,
        vec![F_VERSION_1 | F_ACCESS_PLATFORM]
    );
    for (what, iova) in [("descriptors", desc), ("avail", avail), ("used", used)] {
        assert!(iommu.touched(iova, 1), "{what} checked through the IOMMU");
    }
    let (memory, dma) = r.device().dma.clone().unwrap();
    dma.write(PAGE + IOVA_OFFSET, &[0x5a]).unwrap();
    memory
        .write_obj(0xa5_u8, GuestAddress(PAGE + IOVA_OFFSET + 1))
        .unwrap();
    let mut seen = [0u8; 2];
    r.mem.read_slice(&mut seen, GuestAddress(PAGE)).unwrap();
    assert_eq!(seen, [0x5a, 0xa5], "both land at the guest-physical page");
    assert!(iommu
        .accesses()
        .iter()
        .all(|&(rid, addr)| rid == TEST_RID && addr >= IOVA_OFFSET));
    assert!(dma.write(PAGE, &[1]).is_err(), "a GPA is no IOVA");
    assert!(memory.read_obj::<u8>(GuestAddress(PAGE)).is_err());
}

#[test]
fn test_access_platform_not_accepted_keeps_guest_physical_addresses() {
    let (mut r, iommu) = rig_with_iommu();
    r.place_bar();
    r.negotiate(F_VERSION_1);
    setup_queue_at(&mut r, 0);

    r.driver_ok();

    assert_eq!(r.status(), RUNNING);
    let (memory, dma) = r.device().dma.clone().unwrap();
    dma.write(PAGE, &[0x5a]).unwrap();
    memory.write_obj(0xa5_u8, GuestAddress(PAGE + 1)).unwrap();
    let mut seen = [0u8; 2];
    r.mem.read_slice(&mut seen, GuestAddress(PAGE)).unwrap();
    assert_eq!(seen, [0x5a, 0xa5]);
    assert!(
        memory.dma().direct().is_some(),
        "the untranslated fast path"
    );
    assert!(iommu.accesses().is_empty(), "nothing went to the IOMMU");
}

#[test]
fn test_access_platform_accepted_with_unmapped_rings_needs_reset() {
    let (mut r, iommu) = rig_with_iommu();
    r.place_bar();
    r.negotiate(F_VERSION_1 | F_ACCESS_PLATFORM);
    // Guest-physical ring addresses: below the IOMMU's window.
    let (desc, _, _) = setup_queue_at(&mut r, 0);

    r.driver_ok();

    assert!(r.device().activations.is_empty());
    assert_eq!(r.status(), RUNNING | DEVICE_NEEDS_RESET);
    assert_eq!(r.read_isr(), ISR_CONFIG, "configuration change sent");
    assert!(iommu.touched(desc, 1), "the IOMMU saw the faulting access");
}

#[test]
fn test_route_is_picked_again_after_reset() {
    let (mut r, iommu) = rig_with_iommu();
    r.place_bar();
    r.negotiate(F_VERSION_1 | F_ACCESS_PLATFORM);
    setup_queue_at(&mut r, IOVA_OFFSET);
    r.driver_ok();
    let seen = iommu.accesses().len();

    r.set_status(0);
    r.negotiate(F_VERSION_1);
    setup_queue_at(&mut r, 0);
    r.driver_ok();

    assert_eq!(r.status(), RUNNING);
    assert_eq!(iommu.accesses().len(), seen, "the second driver bypasses");
    assert_eq!(r.device().activations.len(), 2);
}
