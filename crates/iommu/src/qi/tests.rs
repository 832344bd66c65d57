use super::*;

const LIMITS: Limits = Limits {
    dma_drain: true,
    max_address_mask: 18,
};

fn parsed(qw0: u64, qw1: u64) -> Result<Descriptor, DescriptorError> {
    parse(qw0, qw1, &LIMITS)
}

#[test]
fn test_context_descriptor_granularities() {
    assert_eq!(
        parsed(0x1 | 1 << 4, 0),
        Ok(Descriptor::Context(ContextInvalidation::Global))
    );
    assert_eq!(
        parsed(0x1 | 2 << 4 | 7 << 16, 0),
        Ok(Descriptor::Context(ContextInvalidation::Domain { did: 7 }))
    );
    assert_eq!(
        parsed(0x1 | 3 << 4 | 7 << 16 | 0x0018 << 32 | 2 << 48, 0),
        Ok(Descriptor::Context(ContextInvalidation::Device {
            did: 7,
            source: RequesterId(0x18),
            function_mask: 2,
        }))
    );
    assert_eq!(parsed(0x1, 0), Err(DescriptorError::ReservedGranularity));
}

#[test]
fn test_iotlb_descriptor_as_linux_writes_a_page_flush() {
    // qi_flush_iotlb: PSI, DR|DW, DID 3; ADDR, IH, AM 2.
    let d = parsed(
        0x2 | 3 << 4 | 1 << 6 | 1 << 7 | 3 << 16,
        0x12_3000 | 1 << 6 | 2,
    );

    assert_eq!(
        d,
        Ok(Descriptor::Iotlb(IotlbInvalidation {
            scope: IotlbScope::Pages {
                did: 3,
                addr: 0x12_0000,
                mask: 2,
                leaf_only: true,
            },
            drain_reads: true,
            drain_writes: true,
        }))
    );
}

#[test]
fn test_iotlb_mask_above_mamv_flushes_the_domain() {
    let d = parsed(0x2 | 3 << 4 | 9 << 16, 19);

    assert!(matches!(
        d,
        Ok(Descriptor::Iotlb(IotlbInvalidation {
            scope: IotlbScope::Domain { did: 9 },
            ..
        }))
    ));
}

#[test]
fn test_iotlb_drain_bits_reserved_without_drain_support() {
    let limits = Limits {
        dma_drain: false,
        ..LIMITS
    };

    assert!(matches!(
        parse(0x2 | 1 << 4 | 1 << 7, 0, &limits),
        Err(DescriptorError::Reserved(..))
    ));
    assert!(parse(0x2 | 1 << 4, 0, &limits).is_ok());
}

#[test]
fn test_interrupt_entry_descriptor_global_and_index() {
    assert_eq!(
        parsed(0x4, 0),
        Ok(Descriptor::InterruptEntries(InterruptInvalidation::Global))
    );
    // IIDX 0x2d, IM 2: entries 0x2c..=0x2f.
    let Ok(Descriptor::InterruptEntries(iec)) = parsed(0x4 | 1 << 4 | 2 << 27 | 0x2d << 32, 0)
    else {
        panic!("not an IEC descriptor");
    };

    assert_eq!(
        iec,
        InterruptInvalidation::Index {
            index: 0x2c,
            mask: 2
        }
    );
    let covered: Vec<u16> = (0x28..0x34).filter(|&i| iec.covers(i)).collect();
    assert_eq!(covered, [0x2c, 0x2d, 0x2e, 0x2f]);
}

#[test]
fn test_interrupt_entry_mask_wider_than_the_index_covers_all() {
    let Ok(Descriptor::InterruptEntries(iec)) = parsed(0x4 | 1 << 4 | 31 << 27 | 0xffff << 32, 0)
    else {
        panic!("not an IEC descriptor");
    };

    assert!(iec.covers(0) && iec.covers(0xffff));
}

#[test]
fn test_wait_descriptor_as_linux_writes_it() {
    // QI_IWD_STATUS_DATA(QI_DONE) | QI_IWD_STATUS_WRITE | QI_IWD_TYPE.
    let d = parsed(0x5 | 1 << 5 | 2 << 32, 0x7_1234);

    assert_eq!(
        d,
        Ok(Descriptor::Wait(Wait {
            interrupt: false,
            status: Some((0x7_1234, 2)),
            fence: false,
        }))
    );
}

#[test]
fn test_wait_with_unaligned_status_address_is_invalid() {
    assert!(matches!(
        parsed(0x5 | 1 << 5, 0x7_1236),
        Err(DescriptorError::Reserved(0, 2))
    ));
}

#[test]
fn test_unsupported_types_are_invalid() {
    for ty in [0x0, 0x3, 0x6, 0x7, 0x8, 0xf] {
        assert_eq!(
            parsed(ty, 0),
            Err(DescriptorError::UnsupportedType(ty as u8)),
            "type {ty:#x}"
        );
    }
    // A high type bit (bits 11:9) makes a type above 0xf.
    assert_eq!(
        parsed(0x1 | 1 << 4 | 1 << 9, 0),
        Err(DescriptorError::UnsupportedType(0x11))
    );
}

#[test]
fn test_reserved_bits_make_every_type_invalid() {
    let cases = [
        (0x1 | 1 << 4 | 1 << 50, 0),
        (0x1 | 1 << 4, 1),
        (0x2 | 1 << 4 | 1 << 32, 0),
        (0x2 | 1 << 4, 1 << 7),
        (0x4 | 1 << 8, 0),
        (0x4, 1 << 63),
        (0x5 | 1 << 12, 0),
        (0x5 | 1 << 7, 0),
    ];
    for (qw0, qw1) in cases {
        assert!(
            matches!(parsed(qw0, qw1), Err(DescriptorError::Reserved(..))),
            "{qw0:#x} {qw1:#x}"
        );
    }
}
