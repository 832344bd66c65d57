use super::*;
use crate::testing::Machine;

/// The table: 256 entries at 64 KiB.
const TABLE: u64 = 0x1_0000;
const ENTRIES: u32 = 256;
const NVME: RequesterId = RequesterId(0x0018);
const IOAPIC: RequesterId = RequesterId(0xff00);

/// An IRTE as Linux's intel_irq_remapping writes one: present, fixed,
/// physical, edge, `vector` to x2APIC `dest`, SVT 1 SQ 0 for `sid`.
fn irte(vector: u8, dest: u32, sid: u16) -> (u64, u64) {
    (
        1 | u64::from(vector) << 16 | u64::from(dest) << 32,
        1 << 18 | u64::from(sid),
    )
}

/// Linux's fill_msi_msg: remappable, SHV, handle `index`, subhandle 0.
fn request(index: u16) -> MsiMessage {
    let i = u64::from(index);
    MsiMessage {
        address: MSI_ADDRESS_BASE | (i & 0x7fff) << 5 | 1 << 4 | 1 << 3 | (i >> 15) << 2,
        data: 0,
    }
}

fn rig() -> (Machine, InterruptRemapper) {
    let m = Machine::new();
    let ir = InterruptRemapper::new(m.ram().clone());
    ir.set_table(TABLE, ENTRIES, true);
    ir.set_enabled(true);
    (m, ir)
}

fn put(m: &Machine, index: u64, (lo, hi): (u64, u64)) {
    m.write_u64(TABLE + index * 16, lo);
    m.write_u64(TABLE + index * 16 + 8, hi);
}

fn reason(r: Result<MsiMessage, InterruptFault>) -> FaultReason {
    r.expect_err("blocked").reason
}

#[test]
fn test_remappable_msi_takes_vector_and_x2apic_destination_from_its_entry() {
    let (m, ir) = rig();
    put(&m, 5, irte(0x41, 0x1_0203, NVME.0));

    let msg = ir.remap(request(5), NVME).unwrap();

    // Destination bits 7:0 in 19:12, bits 31:8 in the upper address.
    assert_eq!(msg.address, 0x0001_0200_fee0_3000);
    assert_eq!(msg.data, 0x41);
}

#[test]
fn test_subhandle_adds_to_the_handle_for_multi_message_msi() {
    let (m, ir) = rig();
    put(&m, 9, irte(0x52, 1, NVME.0));
    let mut req = request(8);
    req.data = 1;

    assert_eq!(ir.remap(req, NVME).unwrap().data, 0x52);
}

#[test]
fn test_level_triggered_logical_lowest_priority_entry() {
    let (m, ir) = rig();
    let (lo, hi) = irte(0x60, 0x3, IOAPIC.0);
    put(&m, 2, (lo | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5, hi));

    let msg = ir.remap(request(2), IOAPIC).unwrap();

    assert_eq!(msg.address, 0xfee0_300c);
    assert_eq!(msg.data, 0x60 | 1 << 8 | 0x3 << 14);
}

#[test]
fn test_xapic_mode_takes_destination_bits_47_40() {
    let (m, ir) = rig();
    ir.set_table(TABLE, ENTRIES, false);
    put(&m, 1, (1 | 0x33 << 16 | 0x07 << 40, 0));

    assert_eq!(ir.remap(request(1), NVME).unwrap().address, 0xfee0_7000);

    put(&m, 1, (1 | 0x33 << 16 | 0x07 << 32, 0));
    assert_eq!(
        reason(ir.remap(request(1), NVME)),
        FaultReason::IrteReserved
    );
}

#[test]
fn test_remapping_off_passes_every_request_as_is() {
    let (_m, ir) = rig();
    ir.set_enabled(false);

    assert_eq!(ir.remap(request(3), NVME), Ok(request(3)));
}

#[test]
fn test_compatibility_format_blocked_unless_cfi() {
    let (_m, ir) = rig();
    let compat = MsiMessage {
        address: 0xfee0_1000,
        data: 0x30,
    };

    assert_eq!(
        ir.remap(compat, NVME),
        Err(InterruptFault {
            reason: FaultReason::CompatibilityBlocked,
            index: None,
            suppressed: false
        })
    );
    ir.set_compatibility(true);
    assert_eq!(ir.remap(compat, NVME), Ok(compat));
}

#[test]
fn test_hostile_requests_and_entries_fault_with_the_spec_reasons() {
    let (m, ir) = rig();
    put(&m, 4, (0, 0));
    put(&m, 6, (irte(0x41, 0, 0).0 | 1 << 15, 0)); // posted: CAP.PI clear
    put(&m, 7, (irte(0x41, 0, 0).0, 3 << 18)); // SVT 3 reserved
    put(&m, 8, (irte(0x41, 0, 0).0, 1 << 40));
    let mut reserved = request(1);
    reserved.address |= 1;

    assert_eq!(
        reason(ir.remap(reserved, NVME)),
        FaultReason::IrRequestReserved
    );
    assert_eq!(
        reason(ir.remap(request(256), NVME)),
        FaultReason::IrIndexBeyondTable
    );
    assert_eq!(
        reason(ir.remap(request(4), NVME)),
        FaultReason::IrteNotPresent
    );
    assert_eq!(
        reason(ir.remap(request(6), NVME)),
        FaultReason::IrteReserved
    );
    assert_eq!(
        reason(ir.remap(request(7), NVME)),
        FaultReason::IrteReserved
    );
    assert_eq!(
        reason(ir.remap(request(8), NVME)),
        FaultReason::IrteReserved
    );
    let mut overflow = request(0x7fff);
    overflow.data = 0xffff;
    assert_eq!(
        ir.remap(overflow, NVME).unwrap_err(),
        InterruptFault {
            reason: FaultReason::IrIndexBeyondTable,
            index: None,
            suppressed: false,
        },
        "handle + subhandle past 16 bits"
    );
}

#[test]
fn test_table_outside_ram_is_unreadable() {
    let (_m, ir) = rig();
    ir.set_table(0xff_0000_0000, ENTRIES, true);

    let f = ir.remap(request(3), NVME).unwrap_err();

    assert_eq!((f.reason, f.index), (FaultReason::IrteUnreadable, Some(3)));
}

#[test]
fn test_table_too_small_for_the_index() {
    let (m, ir) = rig();
    put(&m, 2, irte(0x41, 0, NVME.0));
    ir.set_table(TABLE, 2, true);

    assert_eq!(
        reason(ir.remap(request(2), NVME)),
        FaultReason::IrIndexBeyondTable
    );
}

#[test]
fn test_source_validation_exact_with_function_mask_and_bus_range() {
    let (m, ir) = rig();
    put(&m, 1, irte(0x41, 0, NVME.0));
    let (lo, _) = irte(0x42, 0, 0);
    put(&m, 2, (lo, 1 << 18 | 3 << 16 | 0x0018)); // ignore function bits
    put(&m, 3, (lo | 1 << 1, 2 << 18 | 0x0203)); // buses 2..=3, FPD

    assert!(ir.remap(request(1), NVME).is_ok());
    assert_eq!(
        reason(ir.remap(request(1), RequesterId(0x0019))),
        FaultReason::IrSourceMismatch
    );
    assert!(ir.remap(request(2), RequesterId(0x001f)).is_ok());
    assert!(ir.remap(request(2), RequesterId(0x0020)).is_err());
    assert!(ir.remap(request(3), RequesterId(0x0300)).is_ok());
    let f = ir.remap(request(3), RequesterId(0x0100)).unwrap_err();
    assert!(f.suppressed, "FPD keeps the fault from being recorded");
}

#[test]
fn test_table_changes_take_effect_at_the_next_request() {
    let (m, ir) = rig();
    put(&m, 1, irte(0x41, 0, NVME.0));
    let before = ir.remap(request(1), NVME).unwrap();

    put(&m, 1, irte(0x77, 0, NVME.0));

    assert_eq!(
        (before.data, ir.remap(request(1), NVME).unwrap().data),
        (0x41, 0x77)
    );
}
