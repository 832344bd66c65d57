//! Identity, capabilities and BAR, as a driver discovers them.

use pci::caps::id;
use pci::testing::ConfigDriver;

use super::driver::{rig, rig_with, FakeDevice};
use crate::pci::caps::{cfg_type, field};
use crate::pci::layout::NOTIFY_OFF_MULTIPLIER;
use crate::pci::{VirtioPci, VirtioPciError};

#[test]
fn test_identity_block_device_reads_modern_virtio_ids() {
    let r = rig();

    let ids = r.pci.config_read32(0);
    let class_rev = r.pci.config_read32(8);
    let subsystem = r.pci.config_read32(0x2c);
    let pin = r.pci.config_read8(0x3d);

    assert_eq!(ids, 0x1042_1af4);
    assert_eq!(class_rev, 0x0180_0001);
    assert_eq!(subsystem, 0x1100_1af4);
    assert_eq!(pin, 1, "INTA");
}

#[test]
fn test_capability_walk_finds_pm_msix_pcie_and_five_virtio_structures() {
    let r = rig();

    let ids: Vec<u16> = r.pci.capabilities().iter().map(|c| c.id).collect();
    let types: Vec<u8> = r.vendor_caps().iter().map(|&(_, t)| t).collect();

    let v = u16::from(id::VENDOR);
    assert_eq!(
        ids,
        vec![
            id::PM.into(),
            id::MSIX.into(),
            id::PCIE.into(),
            v,
            v,
            v,
            v,
            v
        ]
    );
    assert_eq!(
        types,
        vec![
            cfg_type::COMMON,
            cfg_type::NOTIFY,
            cfg_type::ISR,
            cfg_type::DEVICE,
            cfg_type::PCI_CFG
        ]
    );
}

#[test]
fn test_virtio_capabilities_point_inside_bar0_with_their_lengths() {
    let mut r = rig();
    let bar_size = r.place_bar();

    let caps: Vec<(u8, u8, u64, u64, u8)> = r
        .vendor_caps()
        .iter()
        .map(|&(off, ty)| {
            (
                ty,
                r.pci.config_read8(off + field::BAR),
                u64::from(r.pci.config_read32(off + field::OFFSET)),
                u64::from(r.pci.config_read32(off + field::LENGTH)),
                r.pci.config_read8(off + field::CAP_LEN),
            )
        })
        .collect();

    assert_eq!(bar_size, 0x8000);
    assert_eq!(r.at.multiplier, NOTIFY_OFF_MULTIPLIER);
    for &(ty, bar, offset, len, cap_len) in &caps {
        assert_eq!(bar, 0, "type {ty}");
        assert!(offset + len <= bar_size, "type {ty}");
        let expected_len = if matches!(ty, cfg_type::NOTIFY | cfg_type::PCI_CFG) {
            20
        } else {
            16
        };
        assert_eq!(cap_len, expected_len, "type {ty}");
    }
    let notify = caps.iter().find(|c| c.0 == cfg_type::NOTIFY).unwrap();
    assert_eq!(notify.3, 8, "two queues, 4 bytes each");
}

#[test]
fn test_bar0_sizing_reads_back_a_64bit_memory_bar() {
    let mut r = rig();

    r.pci.config_write32(0x10, 0xffff_ffff);
    r.pci.config_write32(0x14, 0xffff_ffff);

    assert_eq!(r.pci.config_read32(0x10), 0xffff_8004, "64-bit, 32 KiB");
    assert_eq!(r.pci.config_read32(0x14), 0xffff_ffff);
}

#[test]
fn test_virtio_capabilities_read_only_fields_ignore_writes() {
    let mut r = rig();
    let (common, _) = r.vendor_caps()[0];
    let before: Vec<u32> = (0..4)
        .map(|i| r.pci.config_read32(common + 4 * i))
        .collect();

    for i in 0..4 {
        r.pci.config_write32(common + 4 * i, 0xffff_ffff);
    }

    let after: Vec<u32> = (0..4)
        .map(|i| r.pci.config_read32(common + 4 * i))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn test_num_queues_and_notify_off_per_queue() {
    let mut r = rig();
    r.place_bar();

    let num = r.common_read(super::driver::cc::NUM_QUEUES, 2);
    r.common_write(super::driver::cc::Q_SELECT, 2, 1);
    let noff = r.common_read(super::driver::cc::Q_NOFF, 2);

    assert_eq!(num, 2);
    assert_eq!(noff, 1);
}

#[test]
fn test_device_config_reads_and_writes_reach_the_device() {
    let mut r = rig();
    r.place_bar();

    let word = r.bar_read(r.at.device + 2, 4);
    let past = r.bar_read(r.at.device + 6, 4);
    r.bar_write(r.at.device + 4, 2, 0xbeef);

    assert_eq!(word, 0x0605_0403);
    assert_eq!(past, 0x0807, "bytes past the device's config read 0");
    assert_eq!(r.device().config_writes, vec![(4, vec![0xef, 0xbe])]);
}

#[test]
fn test_new_with_bad_queue_max_size_fails() {
    let results = [vec![], vec![16, 12], vec![0]]
        .map(|sizes| rig_with_result(FakeDevice::new(sizes)).map(|_| ()));

    assert!(matches!(results[0], Err(VirtioPciError::QueueCount(0))));
    assert!(matches!(
        results[1],
        Err(VirtioPciError::QueueMaxSize { index: 1, size: 12 })
    ));
    assert!(matches!(
        results[2],
        Err(VirtioPciError::QueueMaxSize { index: 0, size: 0 })
    ));
}

#[test]
fn test_no_msix_vectors_builds_without_msix_capability() {
    let r = rig_with(FakeDevice::new(vec![16]), |c| c.msix_vectors = 0);

    let ids: Vec<u16> = r.pci.capabilities().iter().map(|c| c.id).collect();

    assert!(!ids.contains(&u16::from(id::MSIX)));
    assert_eq!(r.pci.layout().bar_size, 0x8000);
}

fn rig_with_result(device: FakeDevice) -> Result<VirtioPci, VirtioPciError> {
    use std::sync::Arc;
    let mem = Arc::new(
        vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x1000)]).unwrap(),
    );
    VirtioPci::new(crate::pci::VirtioPciConfig::new(
        Box::new(device),
        Arc::new(dma::GuestDma::new(mem)),
        Arc::new(irq::recording::RecordingVectors::new()),
        Arc::new(irq::recording::RecordingLine::new()),
    ))
}
