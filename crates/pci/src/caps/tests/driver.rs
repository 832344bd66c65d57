//! A fake guest driver: finds the capabilities by walking the list, sizes
//! and places the BAR, programs MSI-X (or MSI) as Linux does, and records
//! which vectors the device's interrupts arrive on.

use super::util::{endpoint, ep_read32};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::list::walk;
use crate::caps::msi::control as msi_control;
use crate::caps::msix::control as msix_control;
use crate::caps::{id, msix_table::VECTOR_CONTROL};
use crate::config::{command, BarWindow, COMMAND};
use crate::message::{Delivery, MsiMessage, Trigger};

const BAR_ADDRESS: u64 = 0xfebf_0000;

/// What the guest sees: messages that arrived, in order.
#[derive(Default)]
struct Interrupts(Vec<Delivery>);

impl Interrupts {
    fn fire(&mut self, ep: &mut EndpointConfig, vector: u16) {
        if let Trigger::Deliver(message) = ep.trigger(vector) {
            self.0.push(Delivery { vector, message });
        }
    }

    fn vectors(&self) -> Vec<u16> {
        self.0.iter().map(|d| d.vector).collect()
    }
}

fn find(ep: &EndpointConfig, cap: u8) -> usize {
    let found = walk(|o| ep_read32(ep, o));
    found
        .iter()
        .find(|f| f.id == u16::from(cap))
        .unwrap()
        .offset
}

fn message(v: u16) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000 | (u64::from(v) << 12),
        data: 0x4000 | (0x30 + u32::from(v)),
    }
}

/// Sizes BAR 0, places it and enables memory decoding and bus mastering.
fn place_bar(ep: &mut EndpointConfig) -> Vec<(usize, Option<BarWindow>)> {
    ep.write(0x10, &u32::MAX.to_le_bytes());
    ep.write(0x14, &u32::MAX.to_le_bytes());
    let raw = u64::from(ep_read32(ep, 0x10) & !0xf) | u64::from(ep_read32(ep, 0x14)) << 32;
    assert_eq!(!raw + 1, 0x4000, "BAR 0 is 16 KiB");
    ep.write(0x10, &(BAR_ADDRESS as u32).to_le_bytes());
    ep.write(0x14, &0u32.to_le_bytes());
    let e = ep.write(
        COMMAND,
        &(command::MEMORY | command::BUS_MASTER).to_le_bytes(),
    );
    e.config.bars.iter().map(|b| (b.index, b.new)).collect()
}

/// Linux's order: enable with all masked, program entries, unmask them,
/// clear the function mask. Returns the table's (BAR, offset) and the PBA's.
fn enable_msix(ep: &mut EndpointConfig, vectors: u16) -> ((usize, u64), (usize, u64)) {
    let cap = find(ep, id::MSIX);
    let table = ep_read32(ep, cap + 4);
    let pba = ep_read32(ep, cap + 8);
    let table = ((table & 7) as usize, u64::from(table & !7));
    let pba = ((pba & 7) as usize, u64::from(pba & !7));
    let ctl = msix_control::ENABLE | msix_control::FUNCTION_MASK;
    ep.write(cap + 2, &ctl.to_le_bytes());
    for v in 0..vectors {
        let at = table.1 + 16 * u64::from(v);
        let m = message(v);
        ep.bar_write(table.0, at, &(m.address as u32).to_le_bytes());
        ep.bar_write(table.0, at + 4, &((m.address >> 32) as u32).to_le_bytes());
        ep.bar_write(table.0, at + 8, &m.data.to_le_bytes());
        ep.bar_write(table.0, at + VECTOR_CONTROL as u64, &0u32.to_le_bytes());
    }
    ep.write(cap + 2, &msix_control::ENABLE.to_le_bytes());
    (table, pba)
}

#[test]
fn test_driver_sizes_and_places_bar_then_decoding_reports_it() {
    let mut ep = endpoint();

    let bars = place_bar(&mut ep);

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
    let mut ep = endpoint();
    let mut irqs = Interrupts::default();
    place_bar(&mut ep);
    enable_msix(&mut ep, 4);

    for v in [2, 0, 3, 3] {
        irqs.fire(&mut ep, v);
    }

    assert_eq!(irqs.vectors(), vec![2, 0, 3, 3]);
    assert_eq!(irqs.0[0].message, message(2));
}

#[test]
fn test_driver_masks_a_vector_sees_pba_and_gets_it_on_unmask() {
    let mut ep = endpoint();
    let mut irqs = Interrupts::default();
    let (table, pba) = enable_msix(&mut ep, 4);
    let ctl_1 = table.1 + 16 + VECTOR_CONTROL as u64;
    ep.bar_write(table.0, ctl_1, &1u32.to_le_bytes());

    irqs.fire(&mut ep, 1);
    irqs.fire(&mut ep, 0);
    let mut bits = [0u8; 8];
    ep.bar_read(pba.0, pba.1, &mut bits);
    let unmask = ep.bar_write(table.0, ctl_1, &0u32.to_le_bytes()).unwrap();
    irqs.0.extend(unmask.deliver);

    assert_eq!(u64::from_le_bytes(bits), 0b10);
    assert_eq!(irqs.vectors(), vec![0, 1]);
    assert_eq!(irqs.0[1].message, message(1));
}

#[test]
fn test_driver_falls_back_to_msi_with_multiple_messages() {
    let mut ep = endpoint();
    let mut irqs = Interrupts::default();
    let cap = find(&ep, id::MSI);
    let mmc = (ep_read32(&ep, cap) >> 16) as u16 >> msi_control::MMC_SHIFT & 7;
    ep.write(cap + 4, &0xfee0_0000u64.to_le_bytes());
    ep.write(cap + 0xc, &0x4050u16.to_le_bytes());
    let ctl = msi_control::ENABLE | (mmc << msi_control::MME_SHIFT);
    let e = ep.write(cap + 2, &ctl.to_le_bytes());

    for v in [3, 1] {
        irqs.fire(&mut ep, v);
    }

    assert!(e.caps.msi.is_some());
    let data: Vec<_> = irqs.0.iter().map(|d| d.message.data).collect();
    assert_eq!(data, vec![0x4053, 0x4051]);
}
