//! The Latency Tolerance Reporting extended capability (PCIe 6.0 §7.8.2):
//! the largest snoop and no-snoop latencies the system allows the function
//! to report, written by system software.
//!
//! ```text
//! +0x0  header: ID 0x0018, version 1
//! +0x4  Max Snoop Latency     bits 9:0 value, 12:10 scale (RW), rest reserved
//! +0x6  Max No-Snoop Latency  same
//! ```
//!
//! The registers only hold what software wrote: a virtual device sends no
//! LTR messages. Reserved bits are read-only zero.

use super::{CapError, ExtendedCapability};
use crate::regs::RegisterMask;

/// Extended capability ID of LTR.
pub const LTR_ID: u16 = 0x0018;
/// Writable bits of each latency register: value (9:0) and scale (12:10).
pub const LATENCY_MASK: u64 = 0x1fff;

/// The LTR extended capability, at reset (both latencies 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ltr;

impl ExtendedCapability for Ltr {
    fn id(&self) -> u16 {
        LTR_ID
    }

    fn version(&self) -> u8 {
        1
    }

    fn size(&self) -> usize {
        8
    }

    fn install(&self, regs: &mut RegisterMask, offset: usize) -> Result<(), CapError> {
        regs.set_masks(offset + 4, 2, LATENCY_MASK, 0)?;
        regs.set_masks(offset + 6, 2, LATENCY_MASK, 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::list::CapabilityList;
    use crate::caps::FIRST_EXTENDED;
    use crate::config::CONFIG_SPACE_SIZE;

    #[test]
    fn test_ltr_latencies_keep_value_and_scale_and_drop_reserved_bits() {
        let mut regs = RegisterMask::new(CONFIG_SPACE_SIZE);
        let mut list = CapabilityList::new(&mut regs);
        let at = list.add_extended(&Ltr).unwrap();
        list.finish();

        regs.write(at + 4, &0xffffu16.to_le_bytes());
        regs.write(at + 6, &0x1234u16.to_le_bytes());
        regs.write(at, &0u32.to_le_bytes());

        assert_eq!(at, FIRST_EXTENDED);
        assert_eq!(regs.read_le(at + 4, 2), 0x1fff);
        assert_eq!(regs.read_le(at + 6, 2), 0x1234);
        assert_eq!(
            regs.read_le(at, 4) & 0x000f_ffff,
            0x0001_0018,
            "header is read-only"
        );
    }
}
