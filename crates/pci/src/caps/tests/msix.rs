//! MSI-X: capability registers, table programming, masking, PBA.

use super::util::{
    bar_read32, endpoint, ep_read32, msix_config, MSIX_VECTORS, PBA_OFFSET, TABLE_OFFSET,
};
use crate::caps::endpoint::EndpointConfig;
use crate::caps::msix::{control, BarLocation, MsixControl, CONTROL, PBA, TABLE};
use crate::caps::msix_table::{MsixEntry, MsixTable, MsixVectorChange, MASKED, VECTOR_CONTROL};
use crate::caps::CapError;
use crate::message::{Delivery, MsiMessage, Trigger};

const CAP: usize = 0x60;

fn entry(v: u16) -> u64 {
    TABLE_OFFSET + 16 * u64::from(v)
}

fn message(v: u16) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_1000,
        data: 0x40 + u32::from(v),
    }
}

/// Programs entry `v` with 32-bit writes, leaving it masked.
fn program(ep: &mut EndpointConfig, v: u16) {
    let m = message(v);
    ep.bar_write(0, entry(v), &(m.address as u32).to_le_bytes());
    ep.bar_write(0, entry(v) + 4, &0u32.to_le_bytes());
    ep.bar_write(0, entry(v) + 8, &m.data.to_le_bytes());
}

fn set_mask(ep: &mut EndpointConfig, v: u16, masked: bool) -> Vec<Delivery> {
    let ctl = u32::from(masked);
    let e = ep.bar_write(0, entry(v) + VECTOR_CONTROL as u64, &ctl.to_le_bytes());
    e.unwrap().deliver
}

fn set_control(ep: &mut EndpointConfig, bits: u16) -> Vec<Delivery> {
    ep.write(CAP + CONTROL, &bits.to_le_bytes()).caps.deliver
}

fn delivery(v: u16) -> Delivery {
    Delivery {
        vector: v,
        message: message(v),
    }
}

#[test]
fn test_msix_capability_reports_table_size_and_locations_read_only() {
    let mut ep = endpoint();

    ep.write(CAP, &[0xff; 12]);

    assert_eq!(
        ep_read32(&ep, CAP) >> 16 & 0x7ff,
        u32::from(MSIX_VECTORS - 1)
    );
    assert_eq!(ep_read32(&ep, CAP + TABLE), TABLE_OFFSET as u32);
    assert_eq!(ep_read32(&ep, CAP + PBA), PBA_OFFSET as u32);
}

#[test]
fn test_msix_enable_and_function_mask_writes_are_reported() {
    let mut ep = endpoint();

    let e = ep.write(
        CAP + CONTROL,
        &(control::ENABLE | control::FUNCTION_MASK).to_le_bytes(),
    );
    let again = ep.write(
        CAP + CONTROL,
        &(control::ENABLE | control::FUNCTION_MASK).to_le_bytes(),
    );

    assert_eq!(
        e.caps.msix,
        Some(MsixControl {
            enabled: true,
            function_masked: true
        })
    );
    assert_eq!(again.caps.msix, None);
    assert_eq!(ep_read32(&ep, CAP) >> 16 & 0xc000, 0xc000);
}

#[test]
fn test_msix_table_entries_reset_masked_and_zero() {
    let ep = endpoint();

    let words: Vec<_> = (0..4)
        .map(|i| bar_read32(&ep, 0, entry(7) + 4 * i))
        .collect();

    assert_eq!(words, vec![0, 0, 0, MASKED]);
}

#[test]
fn test_msix_table_programming_reports_changed_vectors() {
    let mut ep = endpoint();

    let e = ep.bar_write(0, entry(3), &0x0000_0001_fee0_1000u64.to_le_bytes());
    let same = ep.bar_write(0, entry(3), &0x0000_0001_fee0_1000u64.to_le_bytes());

    assert_eq!(
        e.unwrap().changed,
        vec![MsixVectorChange {
            vector: 3,
            entry: MsixEntry {
                address: 0x1_fee0_1000,
                data: 0,
                masked: true
            }
        }]
    );
    assert_eq!(same.unwrap().changed, vec![]);
}

#[test]
fn test_msix_qword_write_across_two_entries_changes_both() {
    let mut ep = endpoint();

    let e = ep
        .bar_write(0, entry(1) + 12, &[0, 0, 0, 0, 4, 0, 0, 0])
        .unwrap();

    let vectors: Vec<_> = e
        .changed
        .iter()
        .map(|c| (c.vector, c.entry.masked))
        .collect();
    assert_eq!(vectors, vec![(1, false), (2, true)]);
    assert_eq!(bar_read32(&ep, 0, entry(2)), 4);
}

#[test]
fn test_msix_address_low_bits_and_reserved_control_bits_are_read_only() {
    let mut ep = endpoint();

    ep.bar_write(0, entry(0), &[0xff; 16]);

    assert_eq!(bar_read32(&ep, 0, entry(0)), 0xffff_fffc);
    assert_eq!(bar_read32(&ep, 0, entry(0) + 12), 1);
}

#[test]
fn test_msix_trigger_while_disabled_is_disabled_and_not_pending() {
    let mut ep = endpoint();
    program(&mut ep, 0);
    set_mask(&mut ep, 0, false);

    let t = ep.trigger(0);

    assert_eq!(t, Trigger::Disabled);
    assert_eq!(bar_read32(&ep, 0, PBA_OFFSET), 0);
}

#[test]
fn test_msix_unmasked_vector_delivers_its_message() {
    let mut ep = endpoint();
    program(&mut ep, 5);
    set_mask(&mut ep, 5, false);
    set_control(&mut ep, control::ENABLE);

    let t = ep.trigger(5);

    assert_eq!(t, Trigger::Deliver(message(5)));
}

#[test]
fn test_msix_masked_vector_sets_pba_bit_and_unmask_delivers() {
    let mut ep = endpoint();
    program(&mut ep, 6);
    set_control(&mut ep, control::ENABLE);

    let t = ep.trigger(6);
    let pba = bar_read32(&ep, 0, PBA_OFFSET);
    let delivered = set_mask(&mut ep, 6, false);

    assert_eq!(t, Trigger::Pending);
    assert_eq!(pba, 1 << 6);
    assert_eq!(delivered, vec![delivery(6)]);
    assert_eq!(bar_read32(&ep, 0, PBA_OFFSET), 0);
}

#[test]
fn test_msix_function_mask_holds_vectors_until_cleared() {
    let mut ep = endpoint();
    for v in [1, 2] {
        program(&mut ep, v);
        set_mask(&mut ep, v, false);
    }
    set_control(&mut ep, control::ENABLE | control::FUNCTION_MASK);

    let fired = [ep.trigger(2), ep.trigger(1)];
    let still_masked = set_mask(&mut ep, 1, false);
    let delivered = set_control(&mut ep, control::ENABLE);

    assert_eq!(fired, [Trigger::Pending, Trigger::Pending]);
    assert_eq!(still_masked, vec![]);
    assert_eq!(delivered, vec![delivery(1), delivery(2)]);
}

#[test]
fn test_msix_pending_vector_still_masked_by_entry_waits_for_it() {
    let mut ep = endpoint();
    program(&mut ep, 4);
    set_control(&mut ep, control::ENABLE | control::FUNCTION_MASK);
    ep.trigger(4);

    let function_unmasked = set_control(&mut ep, control::ENABLE);
    let entry_unmasked = set_mask(&mut ep, 4, false);

    assert_eq!(function_unmasked, vec![]);
    assert_eq!(entry_unmasked, vec![delivery(4)]);
}

#[test]
fn test_msix_pba_is_read_only() {
    let mut ep = endpoint();
    set_control(&mut ep, control::ENABLE);
    ep.trigger(0);

    let e = ep.bar_write(0, PBA_OFFSET, &[0; 8]);
    ep.bar_write(0, PBA_OFFSET, &[0xff; 8]);

    assert_eq!(e, Some(Default::default()));
    assert_eq!(bar_read32(&ep, 0, PBA_OFFSET), 1);
}

#[test]
fn test_msix_accesses_outside_table_and_pba_are_not_claimed() {
    let mut ep = endpoint();
    let mut d = [0xaa; 4];

    let claimed = [
        ep.bar_read(0, entry(MSIX_VECTORS), &mut d),
        ep.bar_read(1, TABLE_OFFSET, &mut d),
        ep.bar_read(0, TABLE_OFFSET - 1, &mut d),
        ep.bar_read(0, PBA_OFFSET + 8, &mut d),
        ep.bar_read(0, u64::MAX, &mut d),
        ep.bar_write(0, entry(MSIX_VECTORS), &[0; 4]).is_some(),
        ep.bar_write(5, u64::MAX, &[0; 4]).is_some(),
    ];

    assert_eq!(claimed, [false; 7]);
    assert_eq!(d, [0xaa; 4]);
}

#[test]
fn test_msix_access_straddling_table_end_reads_zero_past_it() {
    let mut ep = endpoint();
    let last = entry(MSIX_VECTORS - 1) + 12;
    let mut d = [0xaa; 8];

    let e = ep.bar_write(0, last, &[0; 8]).unwrap();
    ep.bar_read(0, last, &mut d);

    assert_eq!(e.changed.len(), 1);
    assert_eq!(d, [0; 8]);
}

#[test]
fn test_msix_byte_writes_program_an_entry() {
    let mut ep = endpoint();
    set_control(&mut ep, control::ENABLE);

    for (i, b) in 0xfee0_1000u32.to_le_bytes().into_iter().enumerate() {
        ep.bar_write(0, entry(0) + i as u64, &[b]);
    }
    ep.bar_write(0, entry(0) + 8, &[0x40]);
    ep.bar_write(0, entry(0) + 12, &[0]);

    assert_eq!(ep.trigger(0), Trigger::Deliver(message(0)));
}

#[test]
fn test_msix_trigger_of_missing_vector_records_nothing() {
    let mut ep = endpoint();
    set_control(&mut ep, control::ENABLE);

    let t = ep.trigger(MSIX_VECTORS);

    assert_eq!(t, Trigger::NoSuchVector);
    assert_eq!(bar_read32(&ep, 0, PBA_OFFSET), 0);
}

#[test]
fn test_msix_pba_of_many_vectors_spans_qwords() {
    let mut table = MsixTable::new(msix_config(100));
    table.set_control(MsixControl {
        enabled: true,
        function_masked: false,
    });
    table.trigger(70);
    let mut d = [0u8; 8];

    table.read(0, PBA_OFFSET + 8, &mut d);

    assert_eq!(u64::from_le_bytes(d), 1 << 6);
    assert!(table.is_pending(70));
}

#[test]
fn test_msix_clear_pending_drops_the_event() {
    let mut table = MsixTable::new(msix_config(8));
    table.set_control(MsixControl {
        enabled: true,
        function_masked: false,
    });
    table.trigger(3);

    table.clear_pending(3);
    let e = table.write(0, entry(3) + 12, &[0; 4]).unwrap();

    assert_eq!(e.deliver, vec![]);
}

#[test]
fn test_msix_reset_masks_all_and_clears_pending() {
    let mut ep = endpoint();
    program(&mut ep, 0);
    set_control(&mut ep, control::ENABLE);
    ep.trigger(0);
    let table = ep.caps().msix_table().unwrap().clone();
    let mut reset = table.clone();

    reset.reset();

    assert!(table.is_pending(0));
    assert_eq!(reset, MsixTable::new(msix_config(MSIX_VECTORS)));
}

#[test]
fn test_msix_invalid_configs_are_refused() {
    let loc = |bar, offset| BarLocation { bar, offset };
    let base = msix_config(8);

    let errs = [
        msix_config(0).validate(),
        msix_config(2049).validate(),
        crate::caps::msix::MsixConfig {
            table: loc(6, 0),
            ..base
        }
        .validate(),
        crate::caps::msix::MsixConfig {
            pba: loc(0, 4),
            ..base
        }
        .validate(),
        crate::caps::msix::MsixConfig {
            pba: loc(0, TABLE_OFFSET as u32 + 0x78),
            ..base
        }
        .validate(),
        crate::caps::msix::MsixConfig {
            pba: loc(2, TABLE_OFFSET as u32),
            ..base
        }
        .validate(),
    ];

    assert_eq!(
        errs,
        [
            Err(CapError::MsixVectors { vectors: 0 }),
            Err(CapError::MsixVectors { vectors: 2049 }),
            Err(CapError::MsixLocation { bar: 6, offset: 0 }),
            Err(CapError::MsixLocation { bar: 0, offset: 4 }),
            Err(CapError::MsixOverlap),
            Ok(()),
        ]
    );
}

#[test]
fn test_msix_takes_precedence_over_msi_when_enabled() {
    let mut ep = endpoint();
    program(&mut ep, 0);
    set_mask(&mut ep, 0, false);
    set_control(&mut ep, control::ENABLE);

    let t = ep.trigger(0);

    assert_eq!(t, Trigger::Deliver(message(0)));
}
