//! The PCI configuration access capability (§4.1.4.9): BAR accesses
//! through configuration space.

use pci::testing::ConfigDriver;

use super::driver::{cc, rig, Rig};
use crate::pci::caps::field;
use crate::pci::status::ACKNOWLEDGE;

fn aim(r: &mut Rig, bar: u8, offset: u64, len: u32) {
    let cap = r.at.pci_cfg;
    r.pci.config_write8(cap + field::BAR, bar);
    r.pci.config_write32(cap + field::OFFSET, offset as u32);
    r.pci.config_write32(cap + field::LENGTH, len);
}

#[test]
fn test_pci_cfg_read_returns_the_bar_field() {
    let mut r = rig();
    let target = r.at.common + cc::NUM_QUEUES;
    aim(&mut r, 0, target, 2);

    let data = r.pci.config_read32(r.at.pci_cfg + field::PCI_CFG_DATA);

    assert_eq!(data & 0xffff, 2);
}

#[test]
fn test_pci_cfg_write_reaches_the_bar_field() {
    let mut r = rig();
    let target = r.at.common + cc::STATUS;
    aim(&mut r, 0, target, 1);

    r.pci
        .config_write32(r.at.pci_cfg + field::PCI_CFG_DATA, ACKNOWLEDGE.into());

    assert_eq!(r.status(), ACKNOWLEDGE);
}

#[test]
fn test_pci_cfg_fields_read_back_what_the_driver_wrote() {
    let mut r = rig();

    aim(&mut r, 0, 0x1234, 4);

    let cap = r.at.pci_cfg;
    assert_eq!(r.pci.config_read32(cap + field::OFFSET), 0x1234);
    assert_eq!(r.pci.config_read32(cap + field::LENGTH), 4);
    assert_eq!(r.pci.config_read8(cap + field::BAR), 0);
}

#[test]
fn test_pci_cfg_with_another_bar_or_bad_length_does_not_touch_the_bar() {
    let mut r = rig();
    let status = r.at.common + cc::STATUS;

    aim(&mut r, 2, status, 1);
    r.pci.config_write32(r.at.pci_cfg + field::PCI_CFG_DATA, 1);
    aim(&mut r, 0, status, 3);
    r.pci.config_write32(r.at.pci_cfg + field::PCI_CFG_DATA, 1);
    aim(&mut r, 0, u64::from(u32::MAX) - 1, 2);
    r.pci.config_write32(r.at.pci_cfg + field::PCI_CFG_DATA, 1);

    assert_eq!(r.status(), 0);
}
