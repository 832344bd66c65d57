//! Admin commands as Linux issues them, and every error status.

use super::driver::*;
use crate::nvme::status::Status;

#[test]
fn test_nvme_identify_controller_fields_linux_reads() {
    let mut d = Driver::new();
    d.bring_up();
    let (c, id) = d.identify(1, 0);
    assert!(c.ok());
    assert_eq!(&id[0..2], &0x1b36u16.to_le_bytes(), "VID");
    assert_eq!(&id[4..12], b"IOVM0001");
    assert!(
        id[24..64].starts_with(b"iovm NVMe "),
        "MN keeps its space, padded with spaces: {:?}",
        String::from_utf8_lossy(&id[24..64])
    );
    assert_eq!(id[77], 5, "MDTS");
    assert_eq!(&id[80..84], &0x0001_0400u32.to_le_bytes(), "VER");
    assert_eq!(id[111], 1, "CNTRLTYPE I/O");
    assert_eq!(
        u16::from_le_bytes([id[256], id[257]]) & 0x100,
        0x100,
        "OACS DBBUF"
    );
    assert_eq!((id[512], id[513]), (0x66, 0x44), "SQES/CQES");
    assert_eq!(
        u32::from_le_bytes([id[516], id[517], id[518], id[519]]),
        1,
        "NN"
    );
    assert_eq!(id[520] & 0x0c, 0x0c, "ONCS DSM + Write Zeroes");
    assert_eq!(id[525] & 1, 1, "VWC present");
    assert!(id[768..].starts_with(b"nqn."), "SUBNQN");
}

#[test]
fn test_nvme_identify_namespace_geometry_and_write_protect() {
    let mut d = Driver::with(Setup {
        namespaces: vec![
            NsSpec::default(),
            NsSpec {
                bytes: 1 << 20,
                block_size: 4096,
                readonly: true,
            },
        ],
        ..Setup::default()
    });
    d.bring_up();
    let (c, ns) = d.identify(0, 1);
    assert!(c.ok());
    assert_eq!(
        u64::from_le_bytes(ns[0..8].try_into().unwrap()),
        8192,
        "NSZE"
    );
    assert_eq!(ns[130], 9, "LBADS 512");
    assert_eq!(ns[99], 0);
    let (_, ns) = d.identify(0, 2);
    assert_eq!(u64::from_le_bytes(ns[0..8].try_into().unwrap()), 256);
    assert_eq!(ns[130], 12, "LBADS 4096");
    assert_eq!(ns[99] & 1, 1, "write protected");
}

#[test]
fn test_nvme_identify_active_namespace_list_and_descriptors() {
    let mut d = Driver::with(Setup {
        namespaces: vec![NsSpec::default(), NsSpec::default()],
        ..Setup::default()
    });
    d.bring_up();
    let (c, list) = d.identify(2, 0);
    assert!(c.ok());
    assert_eq!(&list[0..12], &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    let (_, list) = d.identify(2, 1);
    assert_eq!(&list[0..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
    let (c, desc) = d.identify(3, 2);
    assert!(c.ok());
    assert_eq!(&desc[0..2], &[0x02, 16], "NGUID");
    assert_eq!(&desc[20..22], &[0x03, 16], "UUID");
    assert_eq!(&desc[40..43], &[0x04, 1, 0], "CSI NVM");
    let (_, d1) = d.identify(3, 1);
    assert_ne!(&d1[4..20], &desc[4..20], "NGUIDs differ");
}

#[test]
fn test_nvme_identify_bad_cns_and_nsids() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(d.identify(0x10, 0).0.is(Status::INVALID_FIELD));
    assert!(d.identify(0, 0).0.is(Status::INVALID_NAMESPACE));
    assert!(d.identify(0, 2).0.is(Status::INVALID_NAMESPACE));
    assert!(d.identify(0, 0xffff_ffff).0.is(Status::INVALID_NAMESPACE));
    assert!(d.identify(2, 0xffff_fffe).0.is(Status::INVALID_NAMESPACE));
    assert!(d.identify(6, 0).0.ok(), "CNS 06h (NVM) for Linux");
    assert!(d.identify(5, 1).0.ok());
}

#[test]
fn test_nvme_identify_to_memory_outside_ram_is_data_transfer_error() {
    let mut d = Driver::new();
    d.bring_up();
    let c = d.admin(sqe(0x06, 0, (OUTSIDE, 0), [1, 0, 0, 0, 0, 0]));
    assert!(c.is(Status::DATA_TRANSFER_ERROR));
}

#[test]
fn test_nvme_identify_with_offset_prp1_spills_into_prp2() {
    let mut d = Driver::new();
    d.bring_up();
    let c = d.admin(sqe(0x06, 0, (IDBUF + 0x800, DATA), [1, 0, 0, 0, 0, 0]));
    assert!(c.ok());
    let mut tail = [0u8; 8];
    d.dma.read(DATA, &mut tail).unwrap();
    // Bytes 2048..2056 of Identify Controller: power state 0 descriptor.
    assert_eq!(&tail[0..2], &2500u16.to_le_bytes());
}

#[test]
fn test_nvme_create_queue_errors() {
    let mut d = Driver::new();
    d.bring_up();
    let cases = [
        (create_cq(0, 16, cq_addr(1), 1), Status::INVALID_QUEUE_ID),
        (create_cq(5, 16, cq_addr(1), 1), Status::INVALID_QUEUE_ID),
        (create_cq(1, 1, cq_addr(1), 1), Status::INVALID_QUEUE_SIZE),
        (
            create_cq(1, 2048, cq_addr(1), 1),
            Status::INVALID_QUEUE_SIZE,
        ),
        (
            create_cq(1, 16, cq_addr(1) + 0x200, 1),
            Status::PRP_OFFSET_INVALID,
        ),
        (create_cq(1, 16, OUTSIDE, 1), Status::INVALID_FIELD),
        (
            create_cq(1, 16, cq_addr(1), 5),
            Status::INVALID_INTERRUPT_VECTOR,
        ),
        (
            create_sq(1, 16, sq_addr(1), 1),
            Status::COMPLETION_QUEUE_INVALID,
        ),
        (
            create_sq(1, 16, sq_addr(1), 0),
            Status::COMPLETION_QUEUE_INVALID,
        ),
    ];
    for (cmd, want) in cases {
        let c = d.admin(cmd);
        assert!(c.is(want), "{cmd:?}: got {:#x}, want {want:?}", c.status);
    }
    let mut no_pc = create_cq(1, 16, cq_addr(1), 1);
    no_pc.cdw[1] &= !1;
    assert!(
        d.admin(no_pc).is(Status::INVALID_FIELD),
        "PC=0 with CAP.CQR=1"
    );
    assert!(d.admin(create_cq(1, 16, cq_addr(1), 1)).ok());
    assert!(
        d.admin(create_cq(1, 16, cq_addr(1), 1))
            .is(Status::INVALID_QUEUE_ID),
        "exists"
    );
    let mut no_pc = create_sq(1, 16, sq_addr(1), 1);
    no_pc.cdw[1] &= !1;
    assert!(d.admin(no_pc).is(Status::INVALID_FIELD));
    assert!(d.admin(create_sq(1, 16, sq_addr(1), 1)).ok());
    assert!(d
        .admin(create_sq(1, 16, sq_addr(1), 1))
        .is(Status::INVALID_QUEUE_ID));
    assert!(
        d.admin(create_sq(2, 2, sq_addr(2), 1)).ok(),
        "two SQs may share a CQ"
    );
}

#[test]
fn test_nvme_create_queues_beyond_number_of_queues_is_invalid_id() {
    let mut d = Driver::new();
    d.bring_up();
    let c = d.admin(set_features(0x07, 0x0001_0001));
    assert_eq!(c.dw0, 0x0001_0001, "2 SQs and 2 CQs allocated");
    assert!(d
        .admin(create_cq(3, 16, cq_addr(3), 0))
        .is(Status::INVALID_QUEUE_ID));
    assert!(d.admin(create_cq(2, 16, cq_addr(2), 0)).ok());
    assert!(d
        .admin(create_sq(3, 16, sq_addr(3), 2))
        .is(Status::INVALID_QUEUE_ID));
}

#[test]
fn test_nvme_msix_vector_range_follows_the_table_size() {
    let mut d = Driver::new();
    d.enable_pci();
    d.enable();
    // MSI-X off, MSI off: pin-based, only vector 0.
    assert!(d
        .admin(create_cq(1, 16, cq_addr(1), 1))
        .is(Status::INVALID_INTERRUPT_VECTOR));
    assert!(d.admin(create_cq(1, 16, cq_addr(1), 0)).ok());
    d.enable_msix();
    assert!(d.admin(create_cq(2, 16, cq_addr(2), 4)).ok());
}

#[test]
fn test_nvme_delete_queue_errors_and_order() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    assert!(d.admin(delete_sq(0)).is(Status::INVALID_QUEUE_ID));
    assert!(d.admin(delete_cq(0)).is(Status::INVALID_QUEUE_ID));
    assert!(d.admin(delete_sq(3)).is(Status::INVALID_QUEUE_ID));
    assert!(
        d.admin(delete_cq(1)).is(Status::INVALID_QUEUE_DELETION),
        "SQ 1 uses it"
    );
    assert!(d.admin(delete_sq(1)).ok());
    assert!(d.admin(delete_sq(1)).is(Status::INVALID_QUEUE_ID));
    assert!(d.admin(delete_cq(1)).ok());
    assert!(d.admin(delete_cq(1)).is(Status::INVALID_QUEUE_ID));
}

#[test]
fn test_nvme_number_of_queues_after_creation_is_sequence_error() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let c = d.admin(set_features(0x07, 0));
    assert!(c.is(Status::COMMAND_SEQUENCE_ERROR));
    let c = d.admin(set_features(0x07, 0xffff));
    assert!(c.is(Status::INVALID_FIELD) || c.is(Status::COMMAND_SEQUENCE_ERROR));
    let c = d.admin(get_features(0x07, 0));
    assert_eq!(c.dw0, 0);
}

#[test]
fn test_nvme_features_set_then_get() {
    let mut d = Driver::new();
    d.bring_up();
    let cases: [(u8, u32, u32); 6] = [
        (0x01, 0x0302_0103, 0x0302_0103),
        (0x06, 0, 0),
        (0x08, 0x0a04, 0x0a04),
        (0x0b, 0x1ff, 0x1ff),
        (0x04, 0x0000_0160, 0x0000_0160),
        (0x02, 0, 0),
    ];
    for (fid, set, get) in cases {
        assert!(d.admin(set_features(fid, set)).ok(), "set {fid:#x}");
        assert_eq!(d.admin(get_features(fid, 0)).dw0, get, "get {fid:#x}");
    }
    assert!(d.admin(set_features(0x09, 3 | 1 << 16)).ok());
    assert_eq!(d.admin(get_features(0x09, 3)).dw0, 3 | 1 << 16);
}

#[test]
fn test_nvme_features_errors() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(
        d.admin(set_features(0x02, 1)).is(Status::INVALID_FIELD),
        "no PS 1"
    );
    assert!(
        d.admin(set_features(0x0c, 1)).is(Status::INVALID_FIELD),
        "no APST"
    );
    assert!(d.admin(get_features(0x80, 0)).is(Status::INVALID_FIELD));
    assert!(
        d.admin(get_features(0x09, 99)).is(Status::INVALID_FIELD),
        "no vector 99"
    );
    assert!(
        d.admin(get_features(0x04, 1 << 16))
            .is(Status::INVALID_FIELD),
        "sensor 1"
    );
    let mut save = set_features(0x06, 1);
    save.cdw[0] |= 1 << 31;
    assert!(d.admin(save).is(Status::FEATURE_NOT_SAVEABLE));
    let mut sel = get_features(0x06, 0);
    sel.cdw[0] |= 3 << 8;
    assert_eq!(d.admin(sel).dw0, 1 << 2, "changeable, not saveable");
}

#[test]
fn test_nvme_log_pages_firmware_effects_and_invalid() {
    let mut d = Driver::new();
    d.bring_up();
    let (c, fw) = d.log(0x03, 512, false);
    assert!(c.ok());
    assert_eq!(fw[0], 1);
    assert_eq!(&fw[8..11], b"1.0");
    let (c, eff) = d.log(0x05, 4096, false);
    assert!(c.ok());
    assert_eq!(eff[0x06 * 4] & 1, 1, "Identify supported");
    assert_eq!(eff[1024 + 4] & 3, 3, "Write changes content");
    assert!(d.log(0x04, 512, false).0.is(Status::INVALID_LOG_PAGE));
    let mut off = sqe(0x02, 0, (IDBUF, 0), [0x02 | 127 << 16, 0, 2, 0, 0, 0]);
    assert!(
        d.admin(off).is(Status::INVALID_FIELD),
        "offset not dword aligned"
    );
    off.cdw[2] = 4096;
    assert!(
        d.admin(off).is(Status::INVALID_FIELD),
        "offset past the log"
    );
    let big = sqe(
        0x02,
        0,
        (IDBUF, 0),
        [0x02 | 0xffff << 16, 0xffff, 0, 0, 0, 0],
    );
    assert!(d.admin(big).is(Status::INVALID_FIELD), "over MDTS");
}

#[test]
fn test_nvme_smart_log_for_one_namespace_is_invalid_field() {
    let mut d = Driver::new();
    d.bring_up();
    let c = d.admin(sqe(0x02, 1, (IDBUF, 0), [0x02 | 127 << 16, 0, 0, 0, 0, 0]));
    assert!(c.is(Status::INVALID_FIELD));
}

#[test]
fn test_nvme_error_log_records_failed_commands() {
    let mut d = Driver::new();
    d.bring_up();
    let bad = d.admin(identify(0x10, 0));
    let (c, log) = d.log(0x01, 128, false);
    assert!(c.ok());
    assert_eq!(
        u64::from_le_bytes(log[0..8].try_into().unwrap()),
        1,
        "error count"
    );
    assert_eq!(u16::from_le_bytes([log[10], log[11]]), bad.cid);
    assert_eq!(
        u16::from_le_bytes([log[12], log[13]]),
        Status::INVALID_FIELD.field()
    );
}

#[test]
fn test_nvme_unknown_admin_opcode_is_invalid_opcode() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(d
        .admin(sqe(0x80, 0, (0, 0), [0; 6]))
        .is(Status::INVALID_OPCODE));
}

#[test]
fn test_nvme_abort_reports_not_aborted() {
    let mut d = Driver::new();
    d.bring_up();
    let c = d.admin(sqe(0x08, 0, (0, 0), [1 | 5 << 16, 0, 0, 0, 0, 0]));
    assert!(c.ok());
    assert_eq!(c.dw0 & 1, 1);
}

#[test]
fn test_nvme_aer_limit_exceeded() {
    let mut d = Driver::new();
    d.bring_up();
    for _ in 0..4 {
        d.push(0, sqe(0x0c, 0, (0, 0), [0; 6]));
    }
    d.ring_sq(0);
    assert!(d.pop(0).is_none(), "four AERs stay outstanding");
    let c = d.admin(sqe(0x0c, 0, (0, 0), [0; 6]));
    assert!(c.is(Status::AER_LIMIT_EXCEEDED));
}

#[test]
fn test_nvme_invalid_doorbell_reports_error_event_once_until_log_read() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    let aer = d.push(0, sqe(0x0c, 0, (0, 0), [0; 6]));
    d.push(0, sqe(0x0c, 0, (0, 0), [0; 6]));
    d.ring_sq(0);
    d.write32(0x1000 + 8, 999); // SQ 1 tail past its size
    let c = d.pop(0).expect("AER completes");
    assert_eq!(c.cid, aer);
    assert_eq!(c.dw0, 0x01_01_00, "error, invalid doorbell value, log 01h");
    d.write32(0x1000 + 8 * 3, 1); // SQ 3 does not exist
    assert!(
        d.pop(0).is_none(),
        "error events masked until the log is read"
    );
    let (c, _) = d.log(0x01, 64, false);
    assert!(c.ok());
    d.write32(0x1000 + 8 * 3, 1);
    let c = d.pop(0).expect("second AER completes");
    assert_eq!(c.dw0, 0x01_00_00, "invalid doorbell register");
}

#[test]
fn test_nvme_cq_head_past_tail_is_invalid_doorbell_value() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    d.push(0, sqe(0x0c, 0, (0, 0), [0; 6]));
    d.ring_sq(0);
    d.write32(0x1000 + 12, 5); // CQ 1 head, nothing posted
    let c = d.pop(0).expect("AER");
    assert_eq!(c.dw0, 0x01_01_00);
}

#[test]
fn test_nvme_temperature_threshold_raises_smart_event() {
    let mut d = Driver::new();
    d.bring_up();
    d.push(0, sqe(0x0c, 0, (0, 0), [0; 6]));
    d.ring_sq(0);
    assert!(d.admin(set_features(0x0b, 0x02)).ok());
    let set = d.push(0, set_features(0x04, 300));
    d.ring_sq(0);
    let first = d.pop(0).expect("AER completes first");
    let second = d.pop(0).expect("then Set Features");
    assert_eq!(second.cid, set);
    assert_eq!(first.dw0, 0x02_01_01, "SMART, temperature, log 02h");
    let (_, smart) = d.log(0x02, 512, false);
    assert_eq!(smart[0] & 2, 2, "critical warning: temperature");
    assert_eq!(u16::from_le_bytes([smart[1], smart[2]]), 323);
}
