//! Configuration accesses and capability walks.

use super::{bare, function, MSI64};
use crate::caps::id;
use crate::caps::list::Found;
use crate::config::{command, COMMAND};
use crate::message::MsiMessage;
use crate::testing::{ConfigDriver, MsiDriver, MsixDriver};

fn found(id: u16, version: u8, offset: usize) -> Found {
    Found {
        id,
        version,
        offset,
    }
}

#[test]
fn test_config_reads_of_every_width_see_the_header() {
    let f = function(MSI64);

    let reads = (f.config_read32(0), f.config_read16(2), f.config_read8(0x3d));

    assert_eq!(reads, (0x0010_1b36, 0x0010, 1));
}

#[test]
fn test_config_writes_of_every_width_return_their_effects() {
    let mut f = function(MSI64);

    let word = f.set_command(command::BUS_MASTER);
    let byte = f.config_write8(COMMAND, 0);
    let dword = f.config_write32(COMMAND, command::INTX_DISABLE.into());

    assert_eq!(word.bus_master, Some(true));
    assert_eq!(byte.bus_master, Some(false));
    assert_eq!(dword.intx_disabled, Some(true));
    assert_eq!(f.command(), command::INTX_DISABLE);
}

#[test]
fn test_capabilities_are_walked_in_order_at_the_offsets_the_model_placed() {
    let f = function(MSI64);
    let caps = f.ep.caps();
    let (msi, msix) = (caps.msi().unwrap().offset(), caps.msix().unwrap().offset());

    let found_caps = f.capabilities();

    assert_eq!(
        found_caps,
        vec![
            found(id::PM.into(), 0, 0x40),
            found(id::MSI.into(), 0, msi),
            found(id::MSIX.into(), 0, msix),
        ]
    );
    assert_eq!(f.capability(id::MSIX), Some(msix));
    assert_eq!(f.capability(id::PCIE), None);
}

#[test]
fn test_extended_capabilities_are_walked_from_0x100() {
    let f = function(MSI64);

    let found_caps = f.extended_capabilities();

    assert_eq!(
        found_caps,
        vec![found(0x000b, 1, 0x100), found(0x0001, 2, 0x10c)]
    );
    assert_eq!(f.extended_capability(0x0001), Some(0x10c));
    assert_eq!(f.extended_capability(0x0002), None);
}

#[test]
fn test_function_without_capabilities_offers_no_interrupt_setup() {
    let mut f = bare();
    let message = MsiMessage {
        address: 0xfee0_0000,
        data: 0x40,
    };

    assert_eq!(f.capabilities(), vec![]);
    assert_eq!(f.extended_capabilities(), vec![]);
    assert_eq!(f.msi_layout(), None);
    assert_eq!(f.enable_msi(message, 1), None);
    assert_eq!(f.msix_layout(), None);
    assert_eq!(f.enable_msix(1, |_| message), None);
}
