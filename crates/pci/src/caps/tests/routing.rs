//! Routes follow the guest's programming; sends go through them.

use std::sync::Arc;

use irq::recording::RecordingVectors;

use super::util::{endpoint, TABLE_OFFSET};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::msi::control as msi_control;
use crate::caps::msix::control as msix_control;
use crate::caps::msix_table::VECTOR_CONTROL;
use crate::caps::routing::{MsiRouting, Signal};
use crate::config::{command, COMMAND};
use crate::message::MsiMessage;

fn message(v: u16) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000 | (u64::from(v) << 12),
        data: 0x30 + u32::from(v),
    }
}

struct Rig {
    ep: EndpointConfig,
    routing: MsiRouting,
    vectors: Arc<RecordingVectors>,
}

impl Rig {
    fn new() -> Self {
        let vectors = Arc::new(RecordingVectors::new());
        Self {
            ep: endpoint(),
            routing: MsiRouting::new(vectors.clone()),
            vectors,
        }
    }

    fn config(&mut self, offset: usize, data: &[u8]) {
        let e = self.ep.write(offset, data);
        self.routing.after_config_write(&self.ep, &e);
    }

    fn table(&mut self, offset: u64, data: &[u8]) {
        if let Some(e) = self.ep.bar_write(0, offset, data) {
            self.routing.after_table_write(&self.ep, &e);
        }
    }

    fn program_entry(&mut self, v: u16, masked: bool) {
        let at = TABLE_OFFSET + 16 * u64::from(v);
        let m = message(v);
        self.table(at, &m.address.to_le_bytes());
        self.table(at + 8, &m.data.to_le_bytes());
        self.table(at + VECTOR_CONTROL as u64, &u32::from(masked).to_le_bytes());
    }

    fn master(&mut self, on: bool) {
        let bits = command::MEMORY | if on { command::BUS_MASTER } else { 0 };
        self.config(COMMAND, &bits.to_le_bytes());
    }
}

#[test]
fn test_msix_enable_routes_every_entry_and_disable_removes_them() {
    let mut rig = Rig::new();
    rig.master(true);
    for v in 0..3 {
        rig.program_entry(v, false);
    }
    assert_eq!(rig.vectors.route(0), None, "no route while MSI-X is off");
    let cap = rig.ep.caps().msix().unwrap().offset();

    rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
    let enabled: Vec<_> = (0..3).map(|v| rig.vectors.route(v)).collect();
    rig.config(cap + 2, &0u16.to_le_bytes());

    assert_eq!(
        enabled,
        (0..3).map(|v| Some(message(v))).collect::<Vec<_>>()
    );
    assert_eq!(rig.vectors.route(0), None);
}

#[test]
fn test_msix_entry_reprogrammed_while_enabled_moves_its_route() {
    let mut rig = Rig::new();
    rig.master(true);
    let cap = rig.ep.caps().msix().unwrap().offset();
    rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
    rig.program_entry(1, false);

    rig.table(TABLE_OFFSET + 16 + 8, &0x99u32.to_le_bytes());

    assert_eq!(rig.vectors.route(1).unwrap().data, 0x99);
}

#[test]
fn test_signal_sends_through_route_and_masked_vector_waits_for_unmask() {
    let mut rig = Rig::new();
    rig.master(true);
    let cap = rig.ep.caps().msix().unwrap().offset();
    rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
    rig.program_entry(0, false);
    rig.program_entry(1, true);

    let s0 = rig.routing.signal(&mut rig.ep, 0);
    let s1 = rig.routing.signal(&mut rig.ep, 1);
    let before_unmask = rig.vectors.sent_vectors();
    rig.table(
        TABLE_OFFSET + 16 + VECTOR_CONTROL as u64,
        &0u32.to_le_bytes(),
    );

    assert_eq!((s0, s1), (Signal::Sent, Signal::Pending));
    assert_eq!(before_unmask, vec![0]);
    assert_eq!(rig.vectors.take(), vec![(0, message(0)), (1, message(1))]);
    let counted = rig.vectors.interrupt_counters();
    assert_eq!(
        counted.irq_msix.get(),
        2,
        "the held vector counts on unmask"
    );
    assert_eq!(counted.irq_msi.get(), 0);
}

#[test]
fn test_signal_without_bus_master_is_lost_and_without_msi_asks_for_intx() {
    let mut rig = Rig::new();
    rig.master(false);
    let idle = rig.routing.signal(&mut rig.ep, 0);
    let cap = rig.ep.caps().msix().unwrap().offset();
    rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
    rig.program_entry(0, false);

    let no_master = rig.routing.signal(&mut rig.ep, 0);

    assert_eq!(idle, Signal::UseIntx);
    assert_eq!(no_master, Signal::NoBusMaster);
    assert!(rig.vectors.take().is_empty());
    assert_eq!(rig.vectors.interrupt_counters().irq_msix.get(), 0);
}

#[test]
fn test_msi_multiple_message_enable_routes_that_many_vectors() {
    let mut rig = Rig::new();
    rig.master(true);
    let cap = rig.ep.caps().msi().unwrap().offset();
    rig.config(cap + 4, &0xfee0_1000u64.to_le_bytes());
    rig.config(cap + 0xc, &0x4040u16.to_le_bytes());

    let two = msi_control::ENABLE | (1 << msi_control::MME_SHIFT);
    rig.config(cap + 2, &two.to_le_bytes());
    let routed_two: Vec<_> = (0..4)
        .map(|v| rig.vectors.route(v).map(|m| m.data))
        .collect();
    let four = msi_control::ENABLE | (2 << msi_control::MME_SHIFT);
    rig.config(cap + 2, &four.to_le_bytes());
    let sent = rig.routing.signal(&mut rig.ep, 3);

    assert_eq!(routed_two, vec![Some(0x4040), Some(0x4041), None, None]);
    assert_eq!(rig.vectors.route(3).unwrap().data, 0x4043);
    assert_eq!(sent, Signal::Sent);
    let counted = rig.vectors.interrupt_counters();
    assert_eq!((counted.irq_msi.get(), counted.irq_msix.get()), (1, 0));
}

#[test]
fn test_clear_removes_every_route() {
    let mut rig = Rig::new();
    let cap = rig.ep.caps().msix().unwrap().offset();
    rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
    rig.program_entry(2, false);

    rig.routing.clear();

    assert_eq!(rig.vectors.route(2), None);
}

#[test]
fn test_toggling_msix_enable_is_one_update_per_write_whatever_the_vectors() {
    let mut rig = Rig::new();
    rig.master(true);
    let vectors = rig.ep.caps().msix_table().unwrap().vectors();
    for v in 0..vectors {
        rig.program_entry(v, false);
    }
    let cap = rig.ep.caps().msix().unwrap().offset();
    let before = rig.vectors.updates();

    for _ in 0..100 {
        rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
        rig.config(cap + 2, &0u16.to_le_bytes());
    }

    assert!(vectors > 1);
    assert_eq!(rig.vectors.updates() - before, 200);
}

#[test]
fn test_toggling_mask_bits_changes_no_route() {
    let mut rig = Rig::new();
    rig.master(true);
    let cap = rig.ep.caps().msix().unwrap().offset();
    rig.config(cap + 2, &msix_control::ENABLE.to_le_bytes());
    rig.program_entry(0, false);
    let before = rig.vectors.updates();

    for i in 0..1000u32 {
        rig.table(TABLE_OFFSET + VECTOR_CONTROL as u64, &(i & 1).to_le_bytes());
        let function_mask = if i & 1 == 0 {
            msix_control::FUNCTION_MASK
        } else {
            0
        };
        rig.config(
            cap + 2,
            &(msix_control::ENABLE | function_mask).to_le_bytes(),
        );
    }

    assert_eq!(rig.vectors.updates(), before);
    assert_eq!(rig.vectors.route(0), Some(message(0)));
}
