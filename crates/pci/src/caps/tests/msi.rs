//! MSI: register semantics, multiple messages, masking and pending bits.

use super::util::{read32, write};
use crate::caps::msi::{control, MsiChange, MsiConfig, MsiState, ADDRESS, CONTROL};
use crate::caps::{CapError, Capabilities, CapabilityList};
use crate::message::{Delivery, MsiMessage, Trigger};
use crate::regs::RegisterMask;

fn placed(config: MsiConfig) -> (RegisterMask, Capabilities, usize) {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);
    list.msi(config).unwrap();
    let caps = list.finish();
    let offset = caps.msi().unwrap().offset();
    (regs, caps, offset)
}

fn cfg(vectors: u8, address64: bool, per_vector_mask: bool) -> MsiConfig {
    MsiConfig {
        vectors,
        address64,
        per_vector_mask,
    }
}

/// Programs address 0xfee0_0000, data `data`, `log2` vectors and enables.
fn program(caps: &mut Capabilities, regs: &mut RegisterMask, at: usize, data: u16, log2: u16) {
    let data_offset = caps.msi().unwrap().data_offset();
    write(caps, regs, at + ADDRESS, &0xfee0_0000u32.to_le_bytes());
    write(caps, regs, data_offset, &data.to_le_bytes());
    let ctl = control::ENABLE | (log2 << control::MME_SHIFT);
    write(caps, regs, at + CONTROL, &ctl.to_le_bytes());
}

fn deliver(data: u32) -> Trigger {
    Trigger::Deliver(MsiMessage {
        address: 0xfee0_0000,
        data,
    })
}

#[test]
fn test_msi_control_reset_advertises_capabilities_and_is_disabled() {
    let (regs, _, at) = placed(cfg(8, true, true));

    let ctl = regs.read_le(at + CONTROL, 2) as u16;

    assert_eq!(
        ctl,
        (3 << 1) | control::ADDRESS64 | control::PER_VECTOR_MASK
    );
}

#[test]
fn test_msi_32bit_variant_puts_data_at_8_and_has_no_upper_address() {
    let (mut regs, mut caps, at) = placed(cfg(1, false, false));

    write(&mut caps, &mut regs, at + 4, &[0xff; 8]);

    assert_eq!(caps.msi().unwrap().data_offset(), at + 8);
    assert_eq!(read32(&regs, at + 4), 0xffff_fffc, "address bits 1:0 are 0");
    assert_eq!(
        read32(&regs, at + 8),
        0xffff,
        "16-bit data, extended data RO"
    );
    assert_eq!(caps.msi().unwrap().state(&regs).address, 0xffff_fffc);
}

#[test]
fn test_msi_64bit_variant_has_writable_upper_address() {
    let (mut regs, mut caps, at) = placed(cfg(1, true, false));

    write(
        &mut caps,
        &mut regs,
        at + 4,
        &0x0000_0001_fee0_0000u64.to_le_bytes(),
    );

    assert_eq!(caps.msi().unwrap().data_offset(), at + 0xc);
    assert_eq!(caps.msi().unwrap().state(&regs).address, 0x1_fee0_0000);
}

#[test]
fn test_msi_read_only_control_bits_ignore_writes() {
    let (mut regs, mut caps, at) = placed(cfg(1, false, false));

    write(&mut caps, &mut regs, at + CONTROL, &[0xff, 0xff]);

    assert_eq!(regs.read_le(at + CONTROL, 2), u64::from(control::ENABLE));
}

#[test]
fn test_msi_multiple_message_enable_above_capable_is_clamped() {
    let (mut regs, mut caps, at) = placed(cfg(4, true, true));

    write(
        &mut caps,
        &mut regs,
        at + CONTROL,
        &(7u16 << control::MME_SHIFT).to_le_bytes(),
    );

    assert_eq!(
        (regs.read_le(at + CONTROL, 2) as u16 & control::MME) >> 4,
        2
    );
    assert_eq!(caps.msi().unwrap().state(&regs).vectors, 4);
}

#[test]
fn test_msi_enable_disable_and_reprogram_are_reported() {
    let (mut regs, mut caps, at) = placed(cfg(1, true, false));
    write(
        &mut caps,
        &mut regs,
        at + ADDRESS,
        &0xfee0_0000u32.to_le_bytes(),
    );

    let on = write(
        &mut caps,
        &mut regs,
        at + CONTROL,
        &control::ENABLE.to_le_bytes(),
    );
    let moved = write(&mut caps, &mut regs, at + 0xc, &0x41u16.to_le_bytes());
    let same = write(&mut caps, &mut regs, at + 0xc, &0x41u16.to_le_bytes());
    let off = write(&mut caps, &mut regs, at + CONTROL, &0u16.to_le_bytes());

    let state = MsiState {
        enabled: true,
        address: 0xfee0_0000,
        data: 0,
        vectors: 1,
        mask: 0,
        pending: 0,
    };
    assert_eq!(on.msi, Some(MsiChange::Enabled(state)));
    assert_eq!(
        moved.msi,
        Some(MsiChange::Reprogrammed(MsiState {
            data: 0x41,
            ..state
        }))
    );
    assert_eq!(same.msi, None);
    assert_eq!(off.msi, Some(MsiChange::Disabled));
}

#[test]
fn test_msi_trigger_while_disabled_is_disabled() {
    let (mut regs, mut caps, _) = placed(cfg(1, true, true));

    let t = caps.trigger(&mut regs, 0);

    assert_eq!(t, Trigger::Disabled);
}

#[test]
fn test_msi_multiple_messages_put_vector_in_low_data_bits() {
    let (mut regs, mut caps, at) = placed(cfg(8, true, false));
    program(&mut caps, &mut regs, at, 0x4420, 3);

    let fired: Vec<_> = [0, 5, 7].map(|v| caps.trigger(&mut regs, v)).to_vec();

    assert_eq!(
        fired,
        vec![deliver(0x4420), deliver(0x4425), deliver(0x4427)]
    );
}

#[test]
fn test_msi_vector_replaces_low_data_bits_the_guest_left_set() {
    let (mut regs, mut caps, at) = placed(cfg(4, true, false));
    program(&mut caps, &mut regs, at, 0x4423, 2);

    let t = caps.trigger(&mut regs, 1);

    assert_eq!(t, deliver(0x4421));
}

#[test]
fn test_msi_single_message_keeps_data_whole() {
    let (mut regs, mut caps, at) = placed(cfg(4, true, false));
    program(&mut caps, &mut regs, at, 0x4423, 0);

    let fired = [caps.trigger(&mut regs, 0), caps.trigger(&mut regs, 1)];

    assert_eq!(fired, [deliver(0x4423), Trigger::NoSuchVector]);
}

#[test]
fn test_msi_masked_vector_sets_pending_and_unmask_delivers_it() {
    let (mut regs, mut caps, at) = placed(cfg(4, true, true));
    let mask_at = caps.msi().unwrap().mask_offset();
    program(&mut caps, &mut regs, at, 0x4420, 2);
    write(&mut caps, &mut regs, mask_at, &0b0110u32.to_le_bytes());

    let t = caps.trigger(&mut regs, 2);
    let pending = read32(&regs, mask_at + 4);
    let unmask = write(&mut caps, &mut regs, mask_at, &0b0010u32.to_le_bytes());

    assert_eq!(t, Trigger::Pending);
    assert_eq!(pending, 0b0100);
    assert_eq!(
        unmask.deliver,
        vec![Delivery {
            vector: 2,
            message: MsiMessage {
                address: 0xfee0_0000,
                data: 0x4422
            }
        }]
    );
    assert_eq!(read32(&regs, mask_at + 4), 0, "pending bit cleared");
}

#[test]
fn test_msi_pending_bits_are_read_only_to_the_guest() {
    let (mut regs, mut caps, at) = placed(cfg(4, true, true));
    let mask_at = caps.msi().unwrap().mask_offset();
    program(&mut caps, &mut regs, at, 0, 2);
    write(&mut caps, &mut regs, mask_at, &1u32.to_le_bytes());
    caps.trigger(&mut regs, 0);

    write(&mut caps, &mut regs, mask_at + 4, &[0xff; 4]);
    write(&mut caps, &mut regs, mask_at + 4, &[0; 4]);

    assert_eq!(read32(&regs, mask_at + 4), 1);
}

#[test]
fn test_msi_mask_bits_beyond_capable_vectors_are_read_only() {
    let (mut regs, mut caps, _) = placed(cfg(4, false, true));
    let mask_at = caps.msi().unwrap().mask_offset();

    write(&mut caps, &mut regs, mask_at, &[0xff; 4]);

    assert_eq!(read32(&regs, mask_at), 0xf);
}

#[test]
fn test_msi_pending_vector_waits_while_disabled_and_fires_on_enable() {
    let (mut regs, mut caps, at) = placed(cfg(1, true, true));
    let mask_at = caps.msi().unwrap().mask_offset();
    program(&mut caps, &mut regs, at, 0x30, 0);
    write(&mut caps, &mut regs, mask_at, &1u32.to_le_bytes());
    caps.trigger(&mut regs, 0);
    write(&mut caps, &mut regs, at + CONTROL, &0u16.to_le_bytes());

    let unmask_disabled = write(&mut caps, &mut regs, mask_at, &0u32.to_le_bytes());
    let enable = write(
        &mut caps,
        &mut regs,
        at + CONTROL,
        &control::ENABLE.to_le_bytes(),
    );

    assert_eq!(unmask_disabled.deliver, vec![]);
    assert_eq!(enable.deliver.len(), 1);
    assert_eq!(enable.deliver[0].message.data, 0x30);
}

#[test]
fn test_msi_mask_change_while_enabled_is_reported_as_reprogrammed() {
    let (mut regs, mut caps, at) = placed(cfg(1, true, true));
    let mask_at = caps.msi().unwrap().mask_offset();
    program(&mut caps, &mut regs, at, 0x30, 0);

    let e = write(&mut caps, &mut regs, mask_at, &1u32.to_le_bytes());

    assert!(matches!(e.msi, Some(MsiChange::Reprogrammed(s)) if s.mask == 1));
}

#[test]
fn test_msi_without_per_vector_masking_has_no_mask_register() {
    let (mut regs, mut caps, at) = placed(cfg(2, false, false));
    program(&mut caps, &mut regs, at, 0x30, 1);

    write(&mut caps, &mut regs, at + 0xc, &[0xff; 8]);

    assert_eq!(regs.read_le(at + 0xc, 8), 0, "the next bytes are not MSI's");
    assert_eq!(caps.trigger(&mut regs, 1), deliver(0x31));
}

#[test]
fn test_msi_vector_counts_that_are_not_powers_of_two_up_to_32_are_refused() {
    let mut regs = RegisterMask::new(256);
    let mut list = CapabilityList::new(&mut regs);

    let errs = [3u8, 0, 64].map(|v| list.msi(cfg(v, true, true)));

    assert_eq!(
        errs,
        [3, 0, 64].map(|vectors| Err(CapError::MsiVectors { vectors }))
    );
}

#[test]
fn test_msi_32_vectors_mask_every_bit() {
    let (mut regs, mut caps, at) = placed(cfg(32, true, true));
    let mask_at = caps.msi().unwrap().mask_offset();
    program(&mut caps, &mut regs, at, 0x40, 5);
    write(&mut caps, &mut regs, mask_at, &[0xff; 4]);

    let t = caps.trigger(&mut regs, 31);
    let e = write(&mut caps, &mut regs, mask_at, &[0; 4]);

    assert_eq!(t, Trigger::Pending);
    assert_eq!(e.deliver[0].vector, 31);
    assert_eq!(e.deliver[0].message.data, 0x5f);
}
