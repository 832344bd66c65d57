//! The PCI Express capability: endpoint, integrated endpoint, root port.

use super::util::{endpoint_pcie, read32, write};
use crate::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use crate::caps::pcie_regs::*;
use crate::caps::slot::SlotConfig;
use crate::caps::{CapError, Capabilities, CapabilityList};
use crate::regs::RegisterMask;

const AT: usize = 0x40;

fn placed(config: PcieConfig) -> (RegisterMask, Capabilities) {
    let mut regs = RegisterMask::new(4096);
    let mut list = CapabilityList::new(&mut regs);
    list.pci_express(config).unwrap();
    let caps = list.finish();
    (regs, caps)
}

fn root_port(slot: Option<u16>) -> PcieConfig {
    PcieConfig {
        device: PcieDevice::RootPort {
            port_number: 3,
            link: LinkConfig {
                max_speed: LinkSpeed::Gen4,
                max_width: LinkWidth::X16,
                speed: LinkSpeed::Gen4,
                width: LinkWidth::X8,
            },
            slot: slot.map(|number| SlotConfig {
                number,
                hotplug: false,
            }),
            present: true,
        },
        max_payload: MaxPayload::B128,
    }
}

fn r16(regs: &RegisterMask, reg: usize) -> u16 {
    regs.read_le(AT + reg, 2) as u16
}

fn w16(caps: &mut Capabilities, regs: &mut RegisterMask, reg: usize, v: u16) {
    write(caps, regs, AT + reg, &v.to_le_bytes());
}

#[test]
fn test_pcie_endpoint_identifies_as_version_2_endpoint() {
    let (regs, _) = placed(endpoint_pcie());

    assert_eq!(r16(&regs, CAPS), 0x0002);
    assert_eq!(regs.read_le(AT, 1), 0x10);
}

#[test]
fn test_pcie_device_capabilities_report_max_payload_and_are_read_only() {
    let (mut regs, mut caps) = placed(endpoint_pcie());

    write(&mut caps, &mut regs, AT + DEVCAP, &[0; 4]);

    let devcap = read32(&regs, AT + DEVCAP);
    assert_eq!(devcap & devcap::MPS, 1, "256 bytes");
    assert_ne!(devcap & devcap::RBER, 0);
}

#[test]
fn test_pcie_device_control_reset_value() {
    let (regs, caps) = placed(endpoint_pcie());

    let pcie = caps.pcie().unwrap();

    assert_eq!(r16(&regs, DEVCTL), 0x2910);
    assert_eq!(pcie.max_payload_size(&regs), 128);
    assert_eq!(pcie.max_read_request_size(&regs), 512);
}

#[test]
fn test_pcie_max_payload_up_to_supported_is_accepted_and_above_discarded() {
    let (mut regs, mut caps) = placed(endpoint_pcie());
    let mps = |v: u16| 0x2910 | (v << 5);

    w16(&mut caps, &mut regs, DEVCTL, mps(1));
    let at_256 = caps.pcie().unwrap().max_payload_size(&regs);
    w16(
        &mut caps,
        &mut regs,
        DEVCTL,
        mps(2) | devctl::ERROR_REPORTING,
    );

    assert_eq!(at_256, 256);
    assert_eq!(
        r16(&regs, DEVCTL),
        mps(1) | devctl::ERROR_REPORTING,
        "MPS kept, other bits taken"
    );
}

#[test]
fn test_pcie_reserved_max_read_request_is_discarded() {
    let (mut regs, mut caps) = placed(endpoint_pcie());

    w16(&mut caps, &mut regs, DEVCTL, 0x5910);
    let mrrs_4k = caps.pcie().unwrap().max_read_request_size(&regs);
    w16(&mut caps, &mut regs, DEVCTL, 0x7910);

    assert_eq!(mrrs_4k, 4096);
    assert_eq!(r16(&regs, DEVCTL), 0x5910);
}

#[test]
fn test_pcie_device_status_error_bits_are_write_one_to_clear() {
    let (mut regs, mut caps) = placed(endpoint_pcie());
    let pcie = *caps.pcie().unwrap();
    pcie.raise_device_status(&mut regs, devsta::FATAL | devsta::CORRECTABLE);

    w16(&mut caps, &mut regs, DEVSTA, 0);
    let kept = r16(&regs, DEVSTA);
    w16(&mut caps, &mut regs, DEVSTA, devsta::FATAL);

    assert_eq!(kept, devsta::FATAL | devsta::CORRECTABLE);
    assert_eq!(r16(&regs, DEVSTA), devsta::CORRECTABLE);
}

#[test]
fn test_pcie_link_capabilities_report_max_speed_and_width() {
    let (regs, _) = placed(endpoint_pcie());

    let lnkcap = read32(&regs, AT + LNKCAP);

    assert_eq!(lnkcap & 0x3ff, 0x043, "Gen3 x4");
    assert_eq!(read32(&regs, AT + LNKCAP2), 0b1110, "2.5, 5 and 8 GT/s");
}

#[test]
fn test_pcie_link_status_reports_negotiated_link_read_only() {
    let (mut regs, mut caps) = placed(endpoint_pcie());

    w16(&mut caps, &mut regs, LNKSTA, 0xffff);

    assert_eq!(r16(&regs, LNKSTA), 0x1012, "Gen2 x1, common clock");
}

#[test]
fn test_pcie_link_control_writable_subset() {
    let (mut regs, mut caps) = placed(endpoint_pcie());

    w16(&mut caps, &mut regs, LNKCTL, 0xffff);

    assert_eq!(r16(&regs, LNKCTL), 0x00cb);
}

#[test]
fn test_pcie_target_link_speed_resets_to_max_and_refuses_unsupported() {
    let (mut regs, mut caps) = placed(endpoint_pcie());
    let reset = r16(&regs, LNKCTL2);

    w16(&mut caps, &mut regs, LNKCTL2, 1);
    let gen1 = r16(&regs, LNKCTL2);
    w16(&mut caps, &mut regs, LNKCTL2, 4);
    let refused_gen4 = r16(&regs, LNKCTL2);
    w16(&mut caps, &mut regs, LNKCTL2, 0);

    assert_eq!((reset, gen1, refused_gen4), (3, 1, 1));
    assert_eq!(r16(&regs, LNKCTL2), 1);
}

#[test]
fn test_pcie_endpoint_root_and_slot_registers_read_zero_and_ignore_writes() {
    let (mut regs, mut caps) = placed(endpoint_pcie());

    write(&mut caps, &mut regs, AT + SLTCAP, &[0xff; 0x10]);

    let words: Vec<_> = (0..4).map(|i| read32(&regs, AT + SLTCAP + 4 * i)).collect();
    assert_eq!(words, vec![0; 4]);
}

#[test]
fn test_pcie_integrated_endpoint_has_no_link_registers() {
    let (mut regs, mut caps) = placed(PcieConfig {
        device: PcieDevice::IntegratedEndpoint,
        max_payload: MaxPayload::B128,
    });

    write(&mut caps, &mut regs, AT + LNKCAP, &[0xff; 8]);
    write(&mut caps, &mut regs, AT + LNKCAP2, &[0xff; 8]);

    assert_eq!(r16(&regs, CAPS), 0x0092);
    assert_eq!(regs.read_le(AT + LNKCAP, 8), 0);
    assert_eq!(regs.read_le(AT + LNKCAP2, 8), 0);
}

#[test]
fn test_pcie_root_port_with_slot_identifies_and_reports_presence() {
    let (regs, _) = placed(root_port(Some(5)));

    assert_eq!(r16(&regs, CAPS), 0x0142);
    assert_eq!(
        read32(&regs, AT + SLTCAP),
        (5 << 19) | sltcap::NO_COMMAND_COMPLETED
    );
    assert_eq!(r16(&regs, SLTSTA), sltsta::PRESENCE);
    assert_eq!(
        r16(&regs, LNKSTA),
        0x3084,
        "Gen4 x8, common clock, link active"
    );
    assert_eq!(read32(&regs, AT + LNKCAP) >> 24, 3, "port number");
}

#[test]
fn test_pcie_root_port_presence_change_sets_write_one_to_clear_bits() {
    let (mut regs, mut caps) = placed(root_port(Some(5)));
    let pcie = *caps.pcie().unwrap();

    pcie.set_presence(&mut regs, false);
    let gone = r16(&regs, SLTSTA);
    let link = r16(&regs, LNKSTA) & lnksta::DLLLA;
    w16(
        &mut caps,
        &mut regs,
        SLTSTA,
        sltsta::PDC | sltsta::DLLSC | sltsta::PRESENCE,
    );

    assert_eq!(gone, sltsta::PDC | sltsta::DLLSC);
    assert_eq!(link, 0);
    assert_eq!(r16(&regs, SLTSTA), 0);
}

#[test]
fn test_pcie_root_port_without_slot_has_no_slot_registers() {
    let (mut regs, mut caps) = placed(root_port(None));

    write(&mut caps, &mut regs, AT + SLTCAP, &[0xff; 8]);

    assert_eq!(r16(&regs, CAPS) & caps::SLOT_IMPLEMENTED, 0);
    assert_eq!(regs.read_le(AT + SLTCAP, 8), 0);
}

#[test]
fn test_pcie_root_control_is_writable_and_root_capabilities_read_only() {
    let (mut regs, mut caps) = placed(root_port(Some(1)));

    write(&mut caps, &mut regs, AT + RTCTL, &[0xff; 4]);

    assert_eq!(read32(&regs, AT + RTCTL), 0x000f);
}

#[test]
fn test_pcie_root_status_pme_is_write_one_to_clear_with_pending() {
    let (mut regs, mut caps) = placed(root_port(Some(1)));
    let pcie = *caps.pcie().unwrap();
    pcie.report_pme(&mut regs, 0x0100);
    pcie.report_pme(&mut regs, 0x0200);
    let both = read32(&regs, AT + RTSTA);

    write(
        &mut caps,
        &mut regs,
        AT + RTSTA,
        &rtsta::PME_STATUS.to_le_bytes(),
    );

    assert_eq!(both, rtsta::PME_STATUS | rtsta::PME_PENDING | 0x0100);
    assert_eq!(read32(&regs, AT + RTSTA), rtsta::PME_PENDING | 0x0100);
}

#[test]
fn test_pcie_root_port_link_bandwidth_bits_are_write_one_to_clear() {
    let (mut regs, mut caps) = placed(root_port(None));
    regs.device_set(AT + LNKSTA, 2, (lnksta::LBMS | lnksta::LABS).into());

    w16(&mut caps, &mut regs, LNKSTA, lnksta::LBMS);

    assert_eq!(r16(&regs, LNKSTA) & 0xc000, lnksta::LABS);
}

#[test]
fn test_pcie_capabilities_2_registers_for_linux() {
    let (mut regs, mut caps) = placed(root_port(None));

    w16(&mut caps, &mut regs, DEVCTL2, 0xffff);

    assert_eq!(
        read32(&regs, AT + DEVCAP2),
        devcap2::CT_DISABLE | devcap2::ARI_FORWARDING
    );
    assert_eq!(
        r16(&regs, DEVCTL2),
        devctl2::CT_DISABLE | devctl2::ARI_FORWARDING
    );
    assert_eq!(read32(&regs, AT + LNKCAP2), 0b1_1110, "up to 16 GT/s");
}

#[test]
fn test_pcie_negotiated_link_above_max_is_refused() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    let mut config = endpoint_pcie();
    config.device = PcieDevice::Endpoint {
        link: LinkConfig {
            max_speed: LinkSpeed::Gen1,
            max_width: LinkWidth::X1,
            speed: LinkSpeed::Gen1,
            width: LinkWidth::X2,
        },
    };

    let result = list.pci_express(config);

    assert_eq!(result, Err(CapError::LinkAboveMax));
}
