//! PCI identity, BAR0, capabilities, and the CC/CSTS state machine.

use pci::function::PciFunction;
use pci::testing::ConfigDriver;

use super::driver::*;
use crate::nvme::regs::{self, cc, csts};

#[test]
fn test_nvme_pci_identity_class_and_64bit_bar0() {
    let mut d = Driver::new();
    assert_eq!(d.nvme.config_read32(0), 0x0010_1b36);
    assert_eq!(d.nvme.config_read32(8) >> 8, 0x01_08_02);
    d.nvme.config_write(0x10, &[0xff; 4]);
    d.nvme.config_write(0x14, &[0xff; 4]);
    assert_eq!(
        d.nvme.config_read32(0x10),
        0xffff_c004,
        "16 KiB, 64-bit memory"
    );
    assert_eq!(d.nvme.config_read32(0x14), 0xffff_ffff);
}

#[test]
fn test_nvme_capabilities_pm_msi_msix_pcie_are_listed() {
    let d = Driver::new();
    for id in [0x01, 0x05, 0x11, 0x10] {
        assert!(d.nvme.capability(id).is_some(), "capability {id:#x}");
    }
    let msix = d.nvme.capability(0x11).unwrap();
    assert_eq!(
        (d.nvme.config_read32(msix) >> 16) & 0x7ff,
        4,
        "5 vectors: admin + 4 I/O"
    );
    assert_eq!(
        d.nvme.config_read32(msix + 4),
        0x2000,
        "table in BAR0 at 0x2000"
    );
    assert_eq!(
        d.nvme.config_read32(msix + 8),
        0x3000,
        "PBA in BAR0 at 0x3000"
    );
}

#[test]
fn test_nvme_cap_and_version_registers() {
    let mut d = Driver::new();
    let cap = d.read64(regs::CAP as u64);
    assert_eq!(cap & 0xffff, 1023, "MQES");
    assert_eq!((cap >> 16) & 1, 1, "CQR");
    assert_eq!((cap >> 37) & 1, 1, "NVM command set");
    assert_eq!(d.read32(regs::VS as u64), 0x0001_0400);
}

#[test]
fn test_nvme_enable_sets_ready_and_disable_clears_it() {
    let mut d = Driver::new();
    d.enable();
    assert_eq!(d.csts(), csts::RDY);
    d.write32(regs::CC as u64, 0);
    assert_eq!(d.csts(), 0);
}

#[test]
fn test_nvme_enable_with_unsupported_page_size_is_fatal_until_reset() {
    let mut d = Driver::new();
    d.write32(regs::AQA as u64, 0x001f_001f);
    d.write32(regs::CC as u64, Driver::cc_value() | 1 << cc::MPS_SHIFT);
    assert_eq!(d.csts() & (csts::CFS | csts::RDY), csts::CFS);
    d.write32(regs::CC as u64, 0);
    assert_eq!(d.csts(), 0, "reset clears CFS");
    d.enable();
    assert_eq!(d.csts(), csts::RDY);
}

#[test]
fn test_nvme_enable_with_empty_admin_queue_is_fatal() {
    let mut d = Driver::new();
    d.write32(regs::AQA as u64, 0);
    d.write32(regs::CC as u64, Driver::cc_value());
    assert_ne!(d.csts() & csts::CFS, 0);
}

#[test]
fn test_nvme_shutdown_reports_complete_and_stops_processing() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let cc_now = d.read32(regs::CC as u64);
    d.write32(regs::CC as u64, cc_now | 1 << cc::SHN_SHIFT);
    assert_eq!(d.csts() & csts::SHST_MASK, csts::SHST_COMPLETE);
    d.push(0, identify(1, 0));
    d.ring_sq(0);
    assert!(d.pop(0).is_none(), "no command runs after shutdown");
    d.write32(regs::CC as u64, 0);
    assert_eq!(d.csts(), 0, "reset clears SHST");
    d.enable();
    let (c, _) = d.identify(1, 0);
    assert!(c.ok());
}

#[test]
fn test_nvme_reset_deletes_io_queues() {
    let mut d = Driver::new();
    d.bring_up_with_queues(2);
    d.write32(regs::CC as u64, 0);
    d.enable();
    let c = d.admin(delete_sq(1));
    assert!(c.is(crate::nvme::status::Status::INVALID_QUEUE_ID));
    d.create_queue_pair(1, 16, 1);
}

#[test]
fn test_nvme_cc_writes_while_enabled_keep_the_controller_running() {
    let mut d = Driver::new();
    d.enable();
    d.write32(regs::CC as u64, Driver::cc_value() | 1 << cc::AMS_SHIFT);
    assert_eq!(d.csts(), csts::RDY);
}

#[test]
fn test_nvme_aqa_asq_acq_read_back_masked() {
    let mut d = Driver::new();
    d.write32(regs::AQA as u64, 0xffff_ffff);
    d.write64(regs::ASQ as u64, 0x1234_5fff);
    assert_eq!(d.read32(regs::AQA as u64), 0x0fff_0fff);
    assert_eq!(d.read64(regs::ASQ as u64), 0x1234_5000);
}

#[test]
fn test_nvme_doorbells_and_reserved_space_read_zero() {
    let mut d = Driver::new();
    d.bring_up();
    assert_eq!(d.read32(0x1000), 0);
    assert_eq!(d.read32(0x0f00), 0);
    assert_eq!(d.read32(0x3ff0), 0);
}
