//! The IOAPIC driven as a guest and a VMM would: registers through the MMIO
//! window only, devices through `set_irq`, the local APIC's EOI through
//! `end_of_interrupt`; messages checked as recorded by the sink.

use std::sync::{Arc, Mutex};

use super::regs::{
    ACTIVE_LOW, DELIVERY_STATUS, DESTINATION_LOGICAL, EOI_OFFSET, IOAPICARB, IOAPICID, IOAPICVER,
    IOREGSEL_OFFSET, IOWIN_OFFSET, LEVEL_TRIGGERED, MASKED, REMOTE_IRR,
};
use super::*;
use crate::msi::MsiMessage;
use crate::recording::RecordingMsiSink;
use crate::IrqLine;

type TestIoapic = Ioapic<RecordingMsiSink>;

const FIXED: u64 = 0b000 << 8;
const LOWEST_PRIORITY: u64 = 0b001 << 8;
const NMI: u64 = 0b100 << 8;

fn ioapic() -> TestIoapic {
    Ioapic::new(IoapicConfig::default(), RecordingMsiSink::new()).unwrap()
}

/// A redirection entry: `vector` to physical APIC `destination`, plus `flags`.
fn entry(vector: u8, destination: u8, flags: u64) -> u64 {
    u64::from(vector) | (u64::from(destination) << 56) | flags
}

fn select(io: &mut TestIoapic, index: u8) {
    let effect = io.mmio_write(IOREGSEL_OFFSET, &u32::from(index).to_le_bytes());
    assert_eq!(effect, IoapicWriteEffect::None);
}

fn write_reg(io: &mut TestIoapic, index: u8, value: u32) -> IoapicWriteEffect {
    select(io, index);
    io.mmio_write(IOWIN_OFFSET, &value.to_le_bytes())
}

fn read_reg(io: &mut TestIoapic, index: u8) -> u32 {
    select(io, index);
    let mut data = [0u8; 4];
    io.mmio_read(IOWIN_OFFSET, &mut data);
    u32::from_le_bytes(data)
}

/// Applies a write's effect as the VMM does: the route is installed (here:
/// nothing to install), then the pin is serviced.
fn apply(io: &mut TestIoapic, effect: IoapicWriteEffect) {
    if let IoapicWriteEffect::RouteChanged { pin, .. } = effect {
        io.service(pin);
    }
}

/// Programs `pin` the way Linux does: high dword first, then low.
fn program(io: &mut TestIoapic, pin: u8, value: u64) {
    let index = 0x10 + 2 * pin;
    let effect = write_reg(io, index + 1, (value >> 32) as u32);
    apply(io, effect);
    let effect = write_reg(io, index, (value & 0xFFFF_FFFF) as u32);
    apply(io, effect);
}

fn read_entry(io: &mut TestIoapic, pin: u8) -> u64 {
    let index = 0x10 + 2 * pin;
    (u64::from(read_reg(io, index + 1)) << 32) | u64::from(read_reg(io, index))
}

fn eoi_register(io: &mut TestIoapic, vector: u8) {
    let effect = io.mmio_write(EOI_OFFSET, &u32::from(vector).to_le_bytes());
    assert_eq!(effect, IoapicWriteEffect::None);
}

fn msg(address: u64, data: u32) -> MsiMessage {
    MsiMessage { address, data }
}

// --- registers ---

#[test]
fn test_redirection_entry_after_reset_reads_masked() {
    let mut io = ioapic();

    let value = read_entry(&mut io, 7);

    assert_eq!(value, MASKED);
}

#[test]
fn test_redirection_entry_write_all_ones_sets_only_writable_bits() {
    let mut io = ioapic();

    program(&mut io, 3, u64::MAX);

    assert_eq!(read_entry(&mut io, 3), 0xFFFF_0000_0001_AFFF);
}

#[test]
fn test_redirection_entry_write_cannot_set_remote_irr_or_delivery_status() {
    let mut io = ioapic();

    program(
        &mut io,
        3,
        entry(0x40, 0, LEVEL_TRIGGERED | REMOTE_IRR | DELIVERY_STATUS),
    );

    assert_eq!(read_entry(&mut io, 3), entry(0x40, 0, LEVEL_TRIGGERED));
}

#[test]
fn test_redirection_entry_write_cannot_clear_remote_irr() {
    let mut io = ioapic();
    program(&mut io, 9, entry(0x41, 0, LEVEL_TRIGGERED));
    io.set_irq(9, true).unwrap();

    program(&mut io, 9, entry(0x41, 0, LEVEL_TRIGGERED));

    assert_eq!(
        read_entry(&mut io, 9),
        entry(0x41, 0, LEVEL_TRIGGERED | REMOTE_IRR)
    );
    assert_eq!(io.sink().vectors(), vec![0x41]);
}

#[test]
fn test_version_register_reads_version_0x20_and_max_entry_23() {
    let mut io = ioapic();

    let value = read_reg(&mut io, IOAPICVER);

    assert_eq!(value, 0x0017_0020);
}

#[test]
fn test_version_register_with_8_pins_reads_max_entry_7() {
    let config = IoapicConfig { pins: 8, id: 0 };
    let mut io = Ioapic::new(config, RecordingMsiSink::new()).unwrap();

    let value = read_reg(&mut io, IOAPICVER);

    assert_eq!(value, 0x0007_0020);
}

#[test]
fn test_version_register_write_is_dropped() {
    let mut io = ioapic();

    let effect = write_reg(&mut io, IOAPICVER, 0xFFFF_FFFF);

    assert_eq!(effect, IoapicWriteEffect::None);
    assert_eq!(read_reg(&mut io, IOAPICVER), 0x0017_0020);
}

#[test]
fn test_id_register_write_keeps_bits_27_24_and_arbitration_follows() {
    let mut io = ioapic();

    let effect = write_reg(&mut io, IOAPICID, 0xFFFF_FFFF);

    assert_eq!(effect, IoapicWriteEffect::None);
    assert_eq!(read_reg(&mut io, IOAPICID), 0x0F00_0000);
    assert_eq!(read_reg(&mut io, IOAPICARB), 0x0F00_0000);
}

#[test]
fn test_id_register_reads_configured_id() {
    let config = IoapicConfig { pins: 24, id: 2 };
    let mut io = Ioapic::new(config, RecordingMsiSink::new()).unwrap();

    let value = read_reg(&mut io, IOAPICID);

    assert_eq!(value, 0x0200_0000);
}

#[test]
fn test_arbitration_register_write_is_dropped() {
    let mut io = ioapic();

    let effect = write_reg(&mut io, IOAPICARB, 0x0F00_0000);

    assert_eq!(effect, IoapicWriteEffect::None);
    assert_eq!(read_reg(&mut io, IOAPICARB), 0);
}

#[test]
fn test_ioregsel_reads_back_low_byte_of_dword_write() {
    let mut io = ioapic();
    let effect = io.mmio_write(IOREGSEL_OFFSET, &0xDEAD_BE13u32.to_le_bytes());
    let mut data = [0xAAu8; 4];

    io.mmio_read(IOREGSEL_OFFSET, &mut data);

    assert_eq!(effect, IoapicWriteEffect::None);
    assert_eq!(data, [0x13, 0, 0, 0]);
}

#[test]
fn test_undefined_index_reads_all_ones_and_write_is_dropped() {
    let mut io = ioapic();
    let before = io.state().clone();

    let effects: Vec<_> = [0x03, 0x0F, 0x40, 0xFF]
        .into_iter()
        .map(|i| write_reg(&mut io, i, 0x1234_5678))
        .collect();
    let reads: Vec<_> = [0x03, 0x0F, 0x40, 0xFF]
        .into_iter()
        .map(|i| read_reg(&mut io, i))
        .collect();

    assert!(effects.iter().all(|e| *e == IoapicWriteEffect::None));
    assert_eq!(reads, vec![u32::MAX; 4]);
    assert_eq!(io.state().redirection, before.redirection);
    assert_eq!(io.state().id, before.id);
}

#[test]
fn test_iowin_non_dword_access_reads_zero_and_write_is_dropped() {
    let mut io = ioapic();
    select(&mut io, 0x10);
    let mut two = [0xAAu8; 2];
    let mut eight = [0xAAu8; 8];

    let effect = io.mmio_write(IOWIN_OFFSET, &[0x20, 0x00]);
    io.mmio_read(IOWIN_OFFSET, &mut two);
    io.mmio_read(IOWIN_OFFSET, &mut eight);

    assert_eq!(effect, IoapicWriteEffect::None);
    assert_eq!(two, [0, 0]);
    assert_eq!(eight, [0; 8]);
    assert_eq!(read_entry(&mut io, 0), MASKED);
}

#[test]
fn test_unknown_offset_reads_zero_and_eoi_register_reads_zero() {
    let io = ioapic();
    let mut unknown = [0xAAu8; 4];
    let mut eoi = [0xAAu8; 4];

    io.mmio_read(0x20, &mut unknown);
    io.mmio_read(EOI_OFFSET, &mut eoi);

    assert_eq!(unknown, [0; 4]);
    assert_eq!(eoi, [0; 4]);
}

// --- edge-triggered pins ---

#[test]
fn test_edge_pin_delivers_on_rising_edge_only() {
    let mut io = ioapic();
    program(&mut io, 4, entry(0x24, 0, FIXED));

    io.set_irq(4, true).unwrap();
    io.set_irq(4, true).unwrap();
    io.set_irq(4, false).unwrap();
    io.set_irq(4, false).unwrap();
    io.set_irq(4, true).unwrap();

    assert_eq!(io.sink().vectors(), vec![0x24, 0x24]);
}

#[test]
fn test_edge_pin_does_not_set_remote_irr() {
    let mut io = ioapic();
    program(&mut io, 4, entry(0x24, 0, FIXED));

    io.set_irq(4, true).unwrap();

    assert_eq!(read_entry(&mut io, 4), entry(0x24, 0, FIXED));
}

#[test]
fn test_masked_edge_pin_edge_is_lost_even_after_unmask() {
    let mut io = ioapic();
    program(&mut io, 4, entry(0x24, 0, MASKED));

    io.set_irq(4, true).unwrap();
    program(&mut io, 4, entry(0x24, 0, FIXED));

    assert!(io.sink().messages().is_empty());
}

#[test]
fn test_active_low_edge_pin_delivers_when_input_falls() {
    let mut io = ioapic();
    io.set_irq(5, true).unwrap();
    program(&mut io, 5, entry(0x25, 0, ACTIVE_LOW));

    io.set_irq(5, true).unwrap();
    io.set_irq(5, false).unwrap();

    assert_eq!(io.sink().vectors(), vec![0x25]);
}

// --- level-triggered pins ---

#[test]
fn test_level_pin_asserted_delivers_once_and_sets_remote_irr() {
    let mut io = ioapic();
    program(&mut io, 10, entry(0x50, 1, LEVEL_TRIGGERED));

    io.set_irq(10, true).unwrap();
    io.set_irq(10, true).unwrap();

    assert_eq!(io.sink().vectors(), vec![0x50]);
    assert_eq!(
        read_entry(&mut io, 10),
        entry(0x50, 1, LEVEL_TRIGGERED | REMOTE_IRR)
    );
}

#[test]
fn test_level_pin_eoi_while_asserted_delivers_again() {
    let mut io = ioapic();
    program(&mut io, 10, entry(0x50, 1, LEVEL_TRIGGERED));
    io.set_irq(10, true).unwrap();

    io.end_of_interrupt(0x50);

    assert_eq!(io.sink().vectors(), vec![0x50, 0x50]);
    assert!(io.state().redirection[10].remote_irr());
}

#[test]
fn test_level_pin_eoi_after_deassert_clears_remote_irr_without_delivery() {
    let mut io = ioapic();
    program(&mut io, 10, entry(0x50, 1, LEVEL_TRIGGERED));
    io.set_irq(10, true).unwrap();
    io.set_irq(10, false).unwrap();

    io.end_of_interrupt(0x50);

    assert_eq!(io.sink().vectors(), vec![0x50]);
    assert_eq!(read_entry(&mut io, 10), entry(0x50, 1, LEVEL_TRIGGERED));
}

#[test]
fn test_level_pin_eoi_register_clears_remote_irr_and_redelivers() {
    let mut io = ioapic();
    program(&mut io, 10, entry(0x50, 1, LEVEL_TRIGGERED));
    io.set_irq(10, true).unwrap();

    eoi_register(&mut io, 0x50);

    assert_eq!(io.sink().vectors(), vec![0x50, 0x50]);
}

#[test]
fn test_eoi_for_other_vector_keeps_remote_irr_and_sends_nothing() {
    let mut io = ioapic();
    program(&mut io, 10, entry(0x50, 1, LEVEL_TRIGGERED));
    io.set_irq(10, true).unwrap();

    io.end_of_interrupt(0x51);
    eoi_register(&mut io, 0x51);

    assert_eq!(io.sink().vectors(), vec![0x50]);
    assert!(io.state().redirection[10].remote_irr());
}

#[test]
fn test_eoi_clears_remote_irr_of_every_pin_sharing_the_vector() {
    let mut io = ioapic();
    program(&mut io, 16, entry(0x60, 0, LEVEL_TRIGGERED));
    program(&mut io, 17, entry(0x60, 0, LEVEL_TRIGGERED));
    io.set_irq(16, true).unwrap();
    io.set_irq(17, true).unwrap();
    io.set_irq(16, false).unwrap();
    io.set_irq(17, false).unwrap();

    io.end_of_interrupt(0x60);

    assert!(!io.state().redirection[16].remote_irr());
    assert!(!io.state().redirection[17].remote_irr());
}

#[test]
fn test_masked_level_pin_asserted_delivers_nothing() {
    let mut io = ioapic();
    program(&mut io, 11, entry(0x51, 0, LEVEL_TRIGGERED | MASKED));

    io.set_irq(11, true).unwrap();

    assert!(io.sink().messages().is_empty());
    assert!(!io.state().redirection[11].remote_irr());
}

#[test]
fn test_unmask_of_asserted_level_pin_delivers() {
    let mut io = ioapic();
    program(&mut io, 11, entry(0x51, 0, LEVEL_TRIGGERED | MASKED));
    io.set_irq(11, true).unwrap();

    let effect = write_reg(
        &mut io,
        0x10 + 2 * 11,
        (entry(0x51, 0, LEVEL_TRIGGERED) & 0xFFFF_FFFF) as u32,
    );

    assert_eq!(effect, IoapicWriteEffect::None);
    assert_eq!(io.sink().vectors(), vec![0x51]);
    assert!(io.state().redirection[11].remote_irr());
}

#[test]
fn test_unmask_of_deasserted_level_pin_delivers_nothing() {
    let mut io = ioapic();
    program(&mut io, 11, entry(0x51, 0, LEVEL_TRIGGERED | MASKED));

    program(&mut io, 11, entry(0x51, 0, LEVEL_TRIGGERED));

    assert!(io.sink().messages().is_empty());
}

#[test]
fn test_active_low_level_pin_asserted_by_low_input() {
    let mut io = ioapic();
    io.set_irq(12, true).unwrap();
    program(&mut io, 12, entry(0x52, 0, LEVEL_TRIGGERED | ACTIVE_LOW));
    let idle = io.sink().messages().len();

    io.set_irq(12, false).unwrap();

    assert_eq!(idle, 0);
    assert_eq!(io.sink().vectors(), vec![0x52]);
}

#[test]
fn test_active_low_level_pin_with_low_input_delivers_when_programmed() {
    let mut io = ioapic();

    program(&mut io, 12, entry(0x52, 0, LEVEL_TRIGGERED | ACTIVE_LOW));

    assert_eq!(io.sink().vectors(), vec![0x52]);
}

#[test]
fn test_switch_to_edge_clears_remote_irr() {
    let mut io = ioapic();
    program(&mut io, 13, entry(0x53, 0, LEVEL_TRIGGERED));
    io.set_irq(13, true).unwrap();

    program(&mut io, 13, entry(0x53, 0, MASKED));

    assert_eq!(read_entry(&mut io, 13), entry(0x53, 0, MASKED));
}

#[test]
fn test_nmi_programmed_level_is_sent_as_edge_without_remote_irr() {
    let mut io = ioapic();
    program(&mut io, 14, entry(0x00, 0, NMI | LEVEL_TRIGGERED));

    io.set_irq(14, true).unwrap();
    io.set_irq(14, false).unwrap();
    io.set_irq(14, true).unwrap();

    assert_eq!(io.sink().messages(), vec![msg(0xFEE0_0000, 0x0400); 2]);
    assert!(!io.state().redirection[14].remote_irr());
}

#[test]
fn test_reserved_delivery_modes_deliver_nothing_and_have_no_route() {
    let mut io = ioapic();
    program(&mut io, 1, entry(0x31, 0, 0b011 << 8));
    program(&mut io, 2, entry(0x32, 0, (0b110 << 8) | LEVEL_TRIGGERED));

    io.set_irq(1, true).unwrap();
    io.set_irq(2, true).unwrap();

    assert!(io.sink().messages().is_empty());
    assert_eq!(io.route(1), None);
    assert_eq!(io.route(2), None);
    assert!(!io.state().redirection[2].remote_irr());
}

// --- messages ---

#[test]
fn test_message_physical_fixed_edge_encodes_destination_and_vector() {
    let mut io = ioapic();
    program(&mut io, 4, entry(0x34, 0x05, FIXED));

    io.set_irq(4, true).unwrap();

    assert_eq!(io.sink().messages(), vec![msg(0xFEE0_5000, 0x0034)]);
}

#[test]
fn test_message_logical_lowest_priority_level_encodes_dm_mode_and_trigger() {
    let mut io = ioapic();
    program(
        &mut io,
        20,
        entry(
            0xA1,
            0x0C,
            DESTINATION_LOGICAL | LOWEST_PRIORITY | LEVEL_TRIGGERED,
        ),
    );

    io.set_irq(20, true).unwrap();

    assert_eq!(io.sink().messages(), vec![msg(0xFEE0_C004, 0xC1A1)]);
}

#[test]
fn test_message_ignores_polarity_and_mask_bits() {
    let mut io = ioapic();
    program(&mut io, 6, entry(0x36, 0xFF, ACTIVE_LOW | MASKED));

    let route = io.route(6);

    assert_eq!(route, Some(msg(0xFEEF_F000, 0x0036)));
}

// --- routes (what the VMM installs for KVM) ---

#[test]
fn test_route_change_is_reported_and_delivery_waits_for_service() {
    let mut io = ioapic();
    program(&mut io, 15, entry(0x55, 0, LEVEL_TRIGGERED | MASKED));
    io.set_irq(15, true).unwrap();

    let effect = write_reg(
        &mut io,
        0x10 + 2 * 15,
        (entry(0x56, 0, LEVEL_TRIGGERED) & 0xFFFF_FFFF) as u32,
    );
    let held = io.sink().messages().len();
    io.service(15);

    assert_eq!(
        effect,
        IoapicWriteEffect::RouteChanged {
            pin: 15,
            route: Some(msg(0xFEE0_0000, 0xC056))
        }
    );
    assert_eq!(held, 0);
    assert_eq!(io.sink().vectors(), vec![0x56]);
}

#[test]
fn test_mask_only_write_reports_no_route_change() {
    let mut io = ioapic();
    program(&mut io, 15, entry(0x55, 0, MASKED));

    let effect = write_reg(&mut io, 0x10 + 2 * 15, 0x55);

    assert_eq!(effect, IoapicWriteEffect::None);
}

#[test]
fn test_service_of_pin_in_service_sends_nothing_more() {
    let mut io = ioapic();
    program(&mut io, 10, entry(0x50, 0, LEVEL_TRIGGERED));
    io.set_irq(10, true).unwrap();

    io.service(10);
    io.service(99);

    assert_eq!(io.sink().vectors(), vec![0x50]);
}

// --- host side ---

#[test]
fn test_set_irq_pin_out_of_range_returns_error_and_changes_nothing() {
    let mut io = ioapic();
    let before = io.state().clone();

    let result = io.set_irq(24, true);

    assert_eq!(
        result,
        Err(IoapicError::PinOutOfRange { pin: 24, pins: 24 })
    );
    assert_eq!(io.state(), &before);
}

#[test]
fn test_config_pin_count_outside_1_to_120_is_refused() {
    let refused: Vec<_> = [0, 121]
        .into_iter()
        .map(|pins| Ioapic::new(IoapicConfig { pins, id: 0 }, RecordingMsiSink::new()).err())
        .collect();

    assert_eq!(
        refused,
        vec![
            Some(IoapicError::PinCount { pins: 0, max: 120 }),
            Some(IoapicError::PinCount {
                pins: 121,
                max: 120
            })
        ]
    );
}

#[test]
fn test_from_state_sanitizes_hostile_entries_and_id() {
    let mut state = ioapic().state().clone();
    state.id = 0xFF;
    state.redirection[0] = RedirectionEntry(!LEVEL_TRIGGERED);

    let io = Ioapic::from_state(state, RecordingMsiSink::new()).unwrap();

    assert_eq!(io.state().id, 0x0F);
    assert_eq!(io.state().redirection[0].0, 0xFFFF_0000_0001_2FFF);
}

#[test]
fn test_from_state_with_mismatched_tables_is_refused() {
    let mut state = ioapic().state().clone();
    state.input_levels.pop();

    let result = Ioapic::from_state(state, RecordingMsiSink::new());

    assert_eq!(
        result.err(),
        Some(IoapicError::StateMismatch {
            entries: 24,
            levels: 23
        })
    );
}

#[test]
fn test_ioapic_line_active_low_wire_asserts_active_low_level_pin() {
    let shared = Arc::new(Mutex::new(ioapic()));
    let line = IoapicLine::new(Arc::clone(&shared), 16, WirePolarity::ActiveLow).unwrap();
    apply_program(&shared, 16, entry(0x70, 0, LEVEL_TRIGGERED | ACTIVE_LOW));

    line.set_level(true).unwrap();

    assert_eq!(shared.lock().unwrap().sink().vectors(), vec![0x70]);
}

#[test]
fn test_ioapic_line_pulse_on_edge_pin_delivers_once() {
    let shared = Arc::new(Mutex::new(ioapic()));
    let line = IoapicLine::new(Arc::clone(&shared), 4, WirePolarity::ActiveHigh).unwrap();
    apply_program(&shared, 4, entry(0x24, 0, FIXED));

    line.pulse().unwrap();

    assert_eq!(shared.lock().unwrap().sink().vectors(), vec![0x24]);
    assert!(!shared.lock().unwrap().state().input_levels[4]);
}

#[test]
fn test_ioapic_line_for_missing_pin_is_refused() {
    let shared = Arc::new(Mutex::new(ioapic()));

    let result = IoapicLine::new(shared, 24, WirePolarity::ActiveHigh);

    assert_eq!(
        result.err(),
        Some(IoapicError::PinOutOfRange { pin: 24, pins: 24 })
    );
}

fn apply_program(shared: &Mutex<TestIoapic>, pin: u8, value: u64) {
    program(&mut shared.lock().unwrap(), pin, value);
}

// --- hostile guest ---

/// xorshift64: a fixed pseudo-random sequence, so failures reproduce.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn test_hostile_register_sweep_then_normal_programming_works() {
    let mut io = ioapic();
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    for round in 0..4 {
        for index in 0..=u8::MAX {
            let effect = write_reg(&mut io, index, xorshift(&mut seed) as u32);
            apply(&mut io, effect);
            eoi_register(&mut io, index);
        }
        for offset in 0..0x100u64 {
            let bytes = xorshift(&mut seed).to_le_bytes();
            let effect = io.mmio_write(offset, &bytes[..[1, 2, 4, 8][round]]);
            apply(&mut io, effect);
            let mut data = [0u8; 8];
            io.mmio_read(offset, &mut data[..[1, 2, 4, 8][round]]);
        }
        for pin in 0..24 {
            io.set_irq(pin, xorshift(&mut seed) & 1 == 1).unwrap();
        }
    }
    io.sink().take();

    program(&mut io, 5, entry(0x35, 0x02, FIXED));
    io.set_irq(5, false).unwrap();
    io.set_irq(5, true).unwrap();

    assert_eq!(io.sink().messages(), vec![msg(0xFEE0_2000, 0x0035)]);
    assert_eq!(read_reg(&mut io, IOAPICVER), 0x0017_0020);
    assert_eq!(read_entry(&mut io, 5), entry(0x35, 0x02, FIXED));
}

#[test]
fn test_hostile_sweep_leaves_level_pin_usable_after_linux_style_clear() {
    let mut io = ioapic();
    let mut seed = 0x0123_4567_89AB_CDEF;
    for index in 0..=u8::MAX {
        let effect = write_reg(&mut io, index, xorshift(&mut seed) as u32);
        apply(&mut io, effect);
    }
    for pin in 0..24 {
        io.set_irq(pin, true).unwrap();
        io.set_irq(pin, false).unwrap();
    }
    // Linux's clear_IO_APIC_pin: mask, switch to edge (clears Remote IRR).
    program(&mut io, 9, entry(0, 0, MASKED));
    io.sink().take();

    program(&mut io, 9, entry(0x49, 0x01, LEVEL_TRIGGERED));
    io.set_irq(9, true).unwrap();
    io.end_of_interrupt(0x49);

    assert_eq!(io.sink().messages(), vec![msg(0xFEE0_1000, 0xC049); 2]);
}

#[test]
fn test_remappable_entry_sends_its_interrupt_index_in_the_address() {
    // Linux behind VT-d interrupt remapping: format bit 48, index 0x1234
    // (bits 14..0 at 63..49, bit 15 at 11), subhandle 5 in the vector
    // field, level-triggered.
    let index: u64 = 0x9234;
    let raw = 5 | LEVEL_TRIGGERED | (index >> 15) << 11 | 1 << 48 | (index & 0x7fff) << 49;

    let msg = RedirectionEntry(raw).message().expect("fixed delivery");

    assert_eq!(
        msg.address,
        0xFEE0_0000 | (index & 0x7fff) << 5 | 1 << 4 | 1 << 2,
        "remappable request with the index, SHV clear"
    );
    assert_eq!(msg.data & 0xff, 5);
}

#[test]
fn test_end_of_interrupt_where_matches_by_pin() {
    let mut io = ioapic();
    program(&mut io, 2, entry(0x02, 0, LEVEL_TRIGGERED));
    io.set_irq(2, true).unwrap();
    assert!(io.state().redirection[2].remote_irr());

    io.end_of_interrupt(0x41);
    let still = io.state().redirection[2].remote_irr();
    io.end_of_interrupt_where(|pin, _| pin == 2);

    assert!(still, "a plain EOI for another vector leaves it");
    assert_eq!(
        io.sink().vectors(),
        vec![0x02, 0x02],
        "resent: still asserted"
    );
}
