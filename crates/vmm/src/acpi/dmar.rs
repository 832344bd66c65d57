//! The DMA Remapping Reporting table (DMAR, VT-d 4.1 §8.1) for the
//! emulated VT-d unit: one DRHD (§8.3) covering every PCI function of
//! segment 0 (INCLUDE_PCI_ALL), with the IOAPIC's device scope (§8.3.1) so
//! that Linux can place the IOAPIC under the unit, as QEMU's
//! `build_dmar_q35` does. No RMRR, ATSR or SATC: Linux needs none of them.
//!
//! ```text
//!  DMAR header (36) │ HAW │ flags │ reserved (10)
//!  DRHD: type 0 │ len 24 │ INCLUDE_PCI_ALL │ size 0 (4 KiB) │ segment 0 │ register base
//!        IOAPIC scope: type 3 │ len 8 │ enumeration ID │ bus 0xFF │ dev 0 │ fn 0
//! ```

use acpi_tables::sdt::Sdt;

use super::{IOAPIC_ID, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::config::IommuConfig;
use crate::layout::VTD_START;

/// DMAR revision (§8.1).
const REVISION: u8 = 1;
/// Length of the DMAR's fixed part: header, HAW, flags, 10 reserved bytes.
const FIXED_LEN: u32 = 48;
/// DMAR flags (§8.1): the unit supports interrupt remapping.
pub const INTR_REMAP: u8 = 1 << 0;
/// Remapping structure type of a DRHD (§8.2).
const DRHD: u16 = 0;
/// DRHD flags (§8.3): every PCI function of the segment not under another
/// unit is under this one.
pub const INCLUDE_PCI_ALL: u8 = 1 << 0;
/// Device scope type of an IOAPIC (§8.3.1, Table 8-3).
pub const SCOPE_IOAPIC: u8 = 3;
/// The IOAPIC's source ID, bus and path (device, function): QEMU's
/// `Q35_PSEUDO_BUS_PLATFORM` 0xFF, device 0, function 0, so SID 0xFF00. The
/// interrupt remapping of its messages will key by it.
pub const IOAPIC_SOURCE: (u8, u8, u8) = (0xff, 0, 0);

/// The DMAR for `cfg` (§8.1): the host address width is the configured
/// address width (Linux rejects a HAW field below 11), INTR_REMAP only
/// when interrupt remapping is offered, X2APIC_OPT_OUT and
/// DMA_CTRL_PLATFORM_OPT_IN clear.
pub fn build(cfg: &IommuConfig) -> Vec<u8> {
    let mut dmar = Sdt::new(
        *b"DMAR",
        FIXED_LEN,
        REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dmar.write_u8(36, cfg.address_width.bits() - 1);
    dmar.write_u8(
        37,
        if cfg.interrupt_remapping {
            INTR_REMAP
        } else {
            0
        },
    );
    dmar.append_slice(&drhd());
    dmar.as_slice().to_vec()
}

/// The one DRHD (§8.3): segment 0, the 4 KiB register page at
/// [`VTD_START`], INCLUDE_PCI_ALL, and the IOAPIC's scope.
fn drhd() -> Vec<u8> {
    let scope = ioapic_scope();
    let len = 16 + scope.len();
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&DRHD.to_le_bytes());
    d.extend_from_slice(&(len as u16).to_le_bytes());
    d.push(INCLUDE_PCI_ALL);
    d.push(0); // Size: 2^0 pages of registers.
    d.extend_from_slice(&0u16.to_le_bytes()); // Segment 0.
    d.extend_from_slice(&VTD_START.to_le_bytes());
    d.extend_from_slice(&scope);
    d
}

/// The IOAPIC's device scope (§8.3.1): enumeration ID the MADT's IOAPIC
/// ID, start bus and one path entry from [`IOAPIC_SOURCE`].
fn ioapic_scope() -> [u8; 8] {
    let (bus, dev, func) = IOAPIC_SOURCE;
    [SCOPE_IOAPIC, 8, 0, 0, IOAPIC_ID, bus, dev, func]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AddressWidth;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }

    #[test]
    fn test_dmar_header_lengths_and_checksum() {
        let t = build(&IommuConfig::default());

        assert_eq!(&t[0..4], b"DMAR");
        assert_eq!(t.len(), 72, "48 fixed + 16 DRHD + 8 scope");
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 72);
        assert_eq!(t[8], 1, "revision");
        assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(t[36], 47, "HAW is 48 - 1");
        assert_eq!(
            t[37], INTR_REMAP,
            "INTR_REMAP by default, no X2APIC_OPT_OUT"
        );
        assert!(t[38..48].iter().all(|&b| b == 0));
    }

    #[test]
    fn test_dmar_haw_follows_aw_bits_and_intr_remap_flag_follows_config() {
        let t = build(&IommuConfig {
            interrupt_remapping: true,
            address_width: AddressWidth::Bits39,
            ..IommuConfig::default()
        });

        assert_eq!(t[36], 38);
        assert_eq!(t[37], INTR_REMAP);
        let off = build(&IommuConfig {
            interrupt_remapping: false,
            address_width: AddressWidth::Bits39,
            ..IommuConfig::default()
        });
        assert_eq!(off[37], 0);
    }

    #[test]
    fn test_dmar_one_drhd_include_all_with_ioapic_scope() {
        let t = build(&IommuConfig::default());
        let d = &t[48..];

        assert_eq!(u16_at(d, 0), 0, "DRHD");
        assert_eq!(u16_at(d, 2), 24);
        assert_eq!(d[4], INCLUDE_PCI_ALL);
        assert_eq!(d[5], 0, "one 4 KiB register page");
        assert_eq!(u16_at(d, 6), 0, "segment 0");
        assert_eq!(
            u64::from_le_bytes(d[8..16].try_into().unwrap()),
            0xfed9_0000
        );
        assert_eq!(&d[16..24], &[3, 8, 0, 0, 0, 0xff, 0, 0]);
    }
}
