//! MSI layout and programming.

use super::{function, FakeFunction, MSI32, MSI64};
use crate::caps::msi::{MsiChange, MsiState};
use crate::message::MsiMessage;
use crate::testing::{MsiDriver, MsiLayout};

fn state(f: &FakeFunction) -> MsiState {
    f.ep.caps().msi().unwrap().state(f.ep.config().regs())
}

#[test]
fn test_msi_layout_reads_the_variant_from_message_control() {
    let wide = function(MSI64).msi_layout().unwrap();
    let narrow = function(MSI32).msi_layout().unwrap();

    assert_eq!(
        wide,
        MsiLayout {
            offset: 0x48,
            vectors: 4,
            address64: true,
            per_vector_mask: true
        }
    );
    assert_eq!(
        narrow,
        MsiLayout {
            offset: 0x48,
            vectors: 2,
            address64: false,
            per_vector_mask: false
        }
    );
    assert_eq!((wide.data_offset(), narrow.data_offset()), (0x54, 0x50));
}

#[test]
fn test_enable_msi_programs_the_64_bit_variant_the_function_then_reports() {
    let mut f = function(MSI64);
    let message = MsiMessage {
        address: 0x1_fee0_1000,
        data: 0x4050,
    };

    f.enable_msi(message, 4).unwrap();

    let s = state(&f);
    assert_eq!(
        s,
        MsiState {
            enabled: true,
            address: 0x1_fee0_1000,
            data: 0x4050,
            vectors: 4,
            mask: 0,
            pending: 0
        }
    );
    assert_eq!(f.last_caps.msi, Some(MsiChange::Enabled(s)));
}

#[test]
fn test_enable_msi_programs_the_32_bit_variant_the_function_then_reports() {
    let mut f = function(MSI32);
    let message = MsiMessage {
        address: 0xfee0_2000,
        data: 0x4060,
    };

    f.enable_msi(message, 2).unwrap();

    let s = state(&f);
    assert_eq!((s.enabled, s.vectors), (true, 2));
    assert_eq!(
        s.message(1),
        MsiMessage {
            data: 0x4061,
            ..message
        }
    );
}
