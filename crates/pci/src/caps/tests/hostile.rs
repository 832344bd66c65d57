//! Hostile sweeps: random writes of random sizes anywhere in configuration
//! space and the MSI-X BAR, interleaved with device interrupts; afterwards
//! the read-only registers are intact and a normal driver still works.

use super::util::{bar_read32, endpoint, ep_read32, write, Rng, PBA_OFFSET, TABLE_OFFSET};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::list::walk;
use crate::caps::msi::control as msi_control;
use crate::caps::msix::control as msix_control;
use crate::caps::pcie::{LinkConfig, LinkSpeed, LinkWidth, MaxPayload, PcieConfig, PcieDevice};
use crate::caps::pcie_regs::{DEVCTL, LNKCTL2};
use crate::caps::pm::PowerState;
use crate::caps::CapabilityList;
use crate::message::{MsiMessage, Trigger};
use crate::regs::RegisterMask;

const PM: usize = 0x40;
const MSI: usize = 0x48;
const MSIX: usize = 0x60;
const PCIE: usize = 0x6c;

/// Read-only words that must survive: header IDs, cap headers, PMC, MSI
/// control's capable bits, MSI-X locations, PCIe capabilities.
fn read_only_words(ep: &EndpointConfig) -> Vec<u32> {
    let words = [
        0x00,
        0x08,
        0x2c,
        PM,
        MSIX + 4,
        MSIX + 8,
        PCIE,
        PCIE + 4,
        PCIE + 0xc,
        PCIE + 0x24,
        PCIE + 0x2c,
    ];
    let mut v: Vec<_> = words.iter().map(|&o| ep_read32(ep, o)).collect();
    v.push(ep_read32(ep, MSI) & 0x0180_ffff);
    v.push(ep_read32(ep, MSIX) & 0x07ff_ffff);
    v.push(ep_read32(ep, PCIE + 0x10) >> 16 & 0x03ff);
    v
}

fn sweep(ep: &mut EndpointConfig, rng: &mut Rng, rounds: usize) {
    for _ in 0..rounds {
        let data = rng.data();
        match rng.below(8) {
            0 => {
                ep.write(rng.below(0x1010) as usize, &data);
            }
            1..=4 => {
                ep.write(0x40 + rng.below(0x70) as usize, &data);
            }
            5 => {
                ep.bar_write(0, TABLE_OFFSET - 8 + rng.below(0x98), &data);
            }
            6 => {
                ep.bar_write(rng.below(7) as usize, rng.next() >> rng.below(64), &data);
                ep.bar_write(0, PBA_OFFSET + rng.below(16), &data);
            }
            _ => {
                ep.trigger(rng.below(40) as u16);
            }
        }
    }
}

#[test]
fn test_hostile_sweep_keeps_read_only_registers_and_invariants() {
    let mut ep = endpoint();
    let caps_before = walk(|o| ep_read32(&ep, o));
    let ro_before = read_only_words(&ep);
    let mut rng = Rng::new(0x5eed_cafe);

    sweep(&mut ep, &mut rng, 20_000);

    let regs = ep.config().regs();
    let caps = ep.caps();
    let msi_mme = (ep_read32(&ep, MSI) >> 16) as u16 & msi_control::MME;
    assert_eq!(walk(|o| ep_read32(&ep, o)), caps_before);
    assert_eq!(read_only_words(&ep), ro_before);
    assert!(matches!(
        caps.pm().unwrap().power_state(regs),
        PowerState::D0 | PowerState::D3Hot
    ));
    assert!(ep_read32(&ep, PM + 4) & 3 != 1 && ep_read32(&ep, PM + 4) & 3 != 2);
    assert!(msi_mme >> msi_control::MME_SHIFT <= 2);
    assert!(caps.pcie().unwrap().max_payload_size(regs) <= 256);
    assert!(caps.pcie().unwrap().max_read_request_size(regs) <= 4096);
    assert!((1..=3).contains(&(ep_read32(&ep, PCIE + LNKCTL2) & 0xf)));
}

#[test]
fn test_hostile_sweep_then_msix_programming_works() {
    let mut ep = endpoint();
    let mut rng = Rng::new(42);
    sweep(&mut ep, &mut rng, 20_000);
    let expected = MsiMessage {
        address: 0xfee0_3000,
        data: 0x4077,
    };

    ep.write(MSI + 2, &0u16.to_le_bytes());
    ep.write(
        MSIX + 2,
        &(msix_control::ENABLE | msix_control::FUNCTION_MASK).to_le_bytes(),
    );
    ep.bar_write(0, TABLE_OFFSET + 48, &expected.address.to_le_bytes());
    ep.bar_write(
        0,
        TABLE_OFFSET + 56,
        &u64::from(expected.data).to_le_bytes(),
    );
    ep.write(MSIX + 2, &msix_control::ENABLE.to_le_bytes());

    assert_eq!(ep.trigger(3), Trigger::Deliver(expected));
    assert_eq!(bar_read32(&ep, 0, PBA_OFFSET) & 1 << 3, 0);
}

#[test]
fn test_hostile_sweep_then_msi_programming_works() {
    let mut ep = endpoint();
    let mut rng = Rng::new(7);
    sweep(&mut ep, &mut rng, 20_000);

    ep.write(MSIX + 2, &0u16.to_le_bytes());
    ep.write(MSI + 2, &0u16.to_le_bytes());
    ep.write(MSI + 4, &0xfee0_1000u64.to_le_bytes());
    ep.write(MSI + 0xc, &0x4060u16.to_le_bytes());
    ep.write(MSI + 0x10, &0u32.to_le_bytes());
    let ctl = msi_control::ENABLE | 2 << msi_control::MME_SHIFT;
    ep.write(MSI + 2, &ctl.to_le_bytes());

    let t = ep.trigger(2);

    assert_eq!(
        t,
        Trigger::Deliver(MsiMessage {
            address: 0xfee0_1000,
            data: 0x4062
        })
    );
}

#[test]
fn test_hostile_sweep_of_root_port_keeps_identity_and_valid_fields() {
    let mut regs = RegisterMask::new(4096);
    let mut list = CapabilityList::new(&mut regs);
    list.pci_express(PcieConfig {
        device: PcieDevice::RootPort {
            port_number: 1,
            link: LinkConfig {
                max_speed: LinkSpeed::Gen2,
                max_width: LinkWidth::X16,
                speed: LinkSpeed::Gen2,
                width: LinkWidth::X16,
            },
            slot: Some(crate::caps::slot::SlotConfig {
                number: 2,
                hotplug: false,
            }),
            present: true,
        },
        max_payload: MaxPayload::B128,
    })
    .unwrap();
    let mut caps = list.finish();
    let identity: Vec<_> = [0x40, 0x44, 0x4c, 0x54, 0x64, 0x6c]
        .map(|o| regs.read_le(o, 4))
        .to_vec();
    let mut rng = Rng::new(99);

    for _ in 0..20_000 {
        let data = rng.data();
        write(&mut caps, &mut regs, 0x40 + rng.below(0x40) as usize, &data);
    }

    let pcie = caps.pcie().unwrap();
    assert_eq!(
        [0x40, 0x44, 0x4c, 0x54, 0x64, 0x6c]
            .map(|o| regs.read_le(o, 4))
            .to_vec(),
        identity
    );
    assert_eq!(pcie.max_payload_size(&regs), 128);
    assert!(pcie.read(&regs, DEVCTL, 2) >> 12 & 7 <= 5);
    assert!((1..=2).contains(&(pcie.read(&regs, LNKCTL2, 2) & 0xf)));
}
