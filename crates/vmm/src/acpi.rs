//! ACPI tables for a hardware-reduced x86 platform (ACPI 6.5): RSDP (§5.2.5),
//! XSDT (§5.2.8), FADT (§5.2.9), MADT (§5.2.12) and a DSDT (§5.2.11.1) that
//! names the devices present.
//!
//! Hardware-reduced ACPI (§4.1) means no fixed PM1/GPE register blocks and
//! no SCI: power-off goes through the sleep control register and `\_S5`,
//! reboot through the FADT reset register (both served by
//! [`devices::legacy::AcpiPowerDevice`]), and the guest uses its local APIC
//! timer instead of the PIT. Tables are built as bytes at fixed guest
//! addresses inside the BIOS area the E820 map reserves. With an IOMMU the
//! XSDT also lists a DMAR (VT-d 4.1 §8.1, `dmar.rs`); without one there is
//! none, as Debian's kernel turns DMA remapping on whenever a DMAR exists.

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use devices::legacy::acpi_pm::{
    ACPI_PM_PORT, RESET_OFFSET, RESET_VALUE, S5_SLEEP_TYPE, SLEEP_CONTROL_OFFSET,
    SLEEP_STATUS_OFFSET,
};
use devices::legacy::cmos::CMOS_PORT;
use devices::legacy::ged::{GedEvent, GED_IRQ, GED_PORT};
use devices::legacy::pvpanic::PVPANIC_PORT;

use crate::config::IommuConfig;
use crate::layout::{
    ACPI_TABLES_START, ECAM_SIZE, ECAM_START, HIGH_MEMORY_START, IOAPIC_START, LAPIC_START,
    PCI_MMIO32_SIZE, PCI_MMIO32_START, PCI_MMIO64_SIZE,
};

const OEM_ID: [u8; 6] = *b"IOVM  ";
const OEM_TABLE_ID: [u8; 8] = *b"IOVMMACH";
const OEM_REVISION: u32 = 1;

mod dmar;

/// COM1's port and ISA IRQ.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's ISA IRQ (and IOAPIC pin).
pub const COM1_IRQ: u32 = 4;
/// The CMOS RTC's ISA IRQ.
pub const RTC_IRQ: u32 = 8;
/// Pins of the IOAPIC.
pub const IOAPIC_PINS: u32 = 24;
/// The IOAPIC's ID, in the MADT and in the DMAR's IOAPIC device scope.
const IOAPIC_ID: u8 = 0;

/// MADT flags: none. In particular not PCAT_COMPAT (bit 0): the machine
/// has no 8259 PICs, only the IOAPIC (KVM's split irqchip).
const MADT_FLAGS: u32 = 0;
/// MADT structure types (ACPI 6.5 Table 5.45).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_LOCAL_APIC_NMI: u8 = 4;
/// MADT structure type: Processor Local x2APIC (ACPI 6.5 §5.2.12.12).
const MADT_LOCAL_X2APIC: u8 = 9;
/// MADT structure type: Local x2APIC NMI (ACPI 6.5 §5.2.12.13).
const MADT_LOCAL_X2APIC_NMI: u8 = 0xa;
/// Local APIC flags: enabled.
const LAPIC_ENABLED: u32 = 1;

/// FADT IA-PC boot architecture flags (ACPI 6.5 Table 5.11).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;

/// What the tables must describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Number of vCPUs (APIC IDs 0..cpus).
    pub cpus: u32,
    /// Start of the 64-bit PCI memory window (above RAM).
    pub pci_mmio64_start: u64,
    /// The VT-d unit the DMAR describes, if the machine has one.
    pub iommu: Option<IommuConfig>,
}

/// The tables as bytes, each with its guest-physical address.
#[derive(Debug)]
pub struct AcpiTables {
    /// `(address, bytes)` for every table, RSDP first.
    pub blobs: Vec<(u64, Vec<u8>)>,
}

impl AcpiTables {
    /// Address of the RSDP (the zero page points the kernel at it too).
    pub fn rsdp_addr(&self) -> u64 {
        self.blobs[0].0
    }
}

fn align(addr: u64, to: u64) -> u64 {
    addr.div_ceil(to) * to
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// Builds every table for `cfg`.
pub fn build(cfg: &AcpiConfig) -> AcpiTables {
    let rsdp_addr = ACPI_TABLES_START;
    let dsdt_addr = align(rsdp_addr + Rsdp::len() as u64, 16);
    let dsdt = build_dsdt(cfg);
    let fadt_addr = align(dsdt_addr + dsdt.len() as u64, 16);
    let fadt = build_fadt(dsdt_addr);
    let madt_addr = align(fadt_addr + fadt.len() as u64, 16);
    let madt = build_madt(cfg);
    let mcfg_addr = align(madt_addr + madt.len() as u64, 16);
    let mut mcfg = acpi_tables::mcfg::MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(ECAM_START, 0, 0, (ECAM_SIZE >> 20).saturating_sub(1) as u8);
    let mcfg = bytes(&mcfg);
    let mut next = align(mcfg_addr + mcfg.len() as u64, 16);
    let dmar = cfg.iommu.as_ref().map(|c| {
        let at = next;
        let table = dmar::build(c);
        next = align(at + table.len() as u64, 16);
        (at, table)
    });
    let xsdt_addr = next;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    xsdt.add_entry(mcfg_addr);
    if let Some((at, _)) = &dmar {
        xsdt.add_entry(*at);
    }
    let xsdt = bytes(&xsdt);
    let rsdp = bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    let mut blobs = vec![
        (rsdp_addr, rsdp),
        (dsdt_addr, dsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
        (mcfg_addr, mcfg),
    ];
    blobs.extend(dmar);
    blobs.push((xsdt_addr, xsdt));
    let tables = AcpiTables { blobs };
    let (last_addr, last) = tables
        .blobs
        .last()
        .map(|(a, b)| (*a, b.len() as u64))
        .unwrap_or_default();
    debug_assert!(last_addr + last <= HIGH_MEMORY_START);
    tables
}

fn io_gas(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

fn build_fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_VGA_NOT_PRESENT.into();
    fadt.sleep_control_reg = io_gas(ACPI_PM_PORT + SLEEP_CONTROL_OFFSET as u16);
    fadt.sleep_status_reg = io_gas(ACPI_PM_PORT + SLEEP_STATUS_OFFSET as u16);
    fadt.reset_reg = io_gas(ACPI_PM_PORT + RESET_OFFSET as u16);
    fadt.reset_value = RESET_VALUE;
    bytes(&fadt.finalize())
}

fn build_madt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut madt = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    madt.write_u32(36, LAPIC_START as u32);
    madt.write_u32(40, MADT_FLAGS);
    for id in 0..cfg.cpus {
        if let Some(small) = u8::try_from(id).ok().filter(|&i| i != 0xff) {
            let mut e = vec![MADT_LOCAL_APIC, 8, small, small];
            e.extend_from_slice(&LAPIC_ENABLED.to_le_bytes());
            madt.append_slice(&e);
        } else {
            // ACPI 6.5 §5.2.12.12: APIC IDs from 255 up need a Processor
            // Local x2APIC structure (interrupt remapping's x2APIC mode).
            let mut e = vec![MADT_LOCAL_X2APIC, 16, 0, 0];
            e.extend_from_slice(&id.to_le_bytes());
            e.extend_from_slice(&LAPIC_ENABLED.to_le_bytes());
            e.extend_from_slice(&id.to_le_bytes());
            madt.append_slice(&e);
        }
    }
    let mut ioapic = vec![MADT_IO_APIC, 12, IOAPIC_ID, 0];
    ioapic.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes());
    madt.append_slice(&ioapic);
    // No interrupt source overrides: there is no PIT, and ISA IRQs 1-15
    // reach the IOAPIC pins of the same number.
    // LINT1 of every processor is wired to NMI.
    madt.append_slice(&[MADT_LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
    if cfg.cpus > 0xff {
        // The same for the x2APIC processors (ACPI 6.5 §5.2.12.13): every
        // processor UID, LINT1.
        madt.append_slice(&[
            MADT_LOCAL_X2APIC_NMI,
            12,
            0,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            1,
            0,
            0,
            0,
        ]);
    }
    madt.as_slice().to_vec()
}

/// One `Device` with a hardware ID, an optional unique ID and a `_CRS`.
fn device(path: &str, hid: &dyn Aml, uid: Option<u8>, resources: Vec<&dyn Aml>) -> Vec<u8> {
    let crs = aml::ResourceTemplate::new(resources);
    let hid = aml::Name::new("_HID".into(), hid);
    let crs = aml::Name::new("_CRS".into(), &crs);
    let uid_value = uid.unwrap_or(0);
    let uid = aml::Name::new("_UID".into(), &uid_value);
    let mut children: Vec<&dyn Aml> = vec![&hid, &crs];
    if uid_value != 0 || path.ends_with("COM1") {
        children.push(&uid);
    }
    bytes(&aml::Device::new(path.into(), children))
}

/// The PCIe host bridge (ACPI 6.5 §6.1.5 `_HID` PNP0A08 with `_CID` PNP0A03;
/// PCI Firmware 3.3 §4.1): segment 0, buses 0–255, the port I/O space outside
/// the configuration ports, and the 32- and 64-bit memory windows.
fn pci_host_bridge(cfg: &AcpiConfig) -> Vec<u8> {
    let last_bus = (ECAM_SIZE >> 20).saturating_sub(1) as u16;
    let buses = aml::AddressSpace::new_bus_number(0u16, last_bus);
    let config_ports = aml::IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = aml::AddressSpace::new_io(0u16, 0xcf7, None);
    let io_high = aml::AddressSpace::new_io(0xd00u16, 0xffff, None);
    let mem32 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO32_START as u32,
        (PCI_MMIO32_START + PCI_MMIO32_SIZE - 1) as u32,
        None,
    );
    let mem64 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        cfg.pci_mmio64_start,
        cfg.pci_mmio64_start + PCI_MMIO64_SIZE - 1,
        None,
    );
    let crs = aml::ResourceTemplate::new(vec![
        &buses,
        &config_ports,
        &io_low,
        &io_high,
        &mem32,
        &mem64,
    ]);
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A08"));
    let cid = aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A03"));
    let adr = aml::Name::new("_ADR".into(), &aml::ZERO);
    let seg = aml::Name::new("_SEG".into(), &aml::ZERO);
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let bbn = aml::Name::new("_BBN".into(), &aml::ZERO);
    let crs = aml::Name::new("_CRS".into(), &crs);
    // _OSC (ACPI 6.5 §6.2.11, PCI Firmware 3.3 §4.5): the platform keeps no
    // PCIe feature for itself, so it hands back the capabilities buffer the
    // OS passed in (Arg3) unchanged: every control the OS asks for is granted
    // and no error bit is set.
    let osc_return = aml::Return::new(&aml::Arg(3));
    let osc = aml::Method::new("_OSC".into(), 4, false, vec![&osc_return]);
    // _PRT (ACPI 6.5 §6.2.13): every slot's INTA–INTD on bus 0 to its GSI,
    // as `pci::intx::gsi_for` wires them; no link devices, so the GSIs are
    // level-triggered and shared.
    let routes: Vec<(u32, u8, u32)> = (0..32u8)
        .flat_map(|slot| {
            (1..=pci::intx::PINS).map(move |pin| {
                (
                    (u32::from(slot) << 16) | 0xffff,
                    pin - 1,
                    pci::intx::gsi_for(slot, pin),
                )
            })
        })
        .collect();
    let route_packages: Vec<aml::Package> = routes
        .iter()
        .map(|(addr, pin, gsi)| aml::Package::new(vec![addr, pin, &aml::ZERO, gsi]))
        .collect();
    let prt_package = aml::Package::new(route_packages.iter().map(|p| p as &dyn Aml).collect());
    let prt = aml::Name::new("_PRT".into(), &prt_package);
    bytes(&aml::Device::new(
        "_SB_.PCI0".into(),
        vec![&hid, &cid, &adr, &seg, &uid, &bbn, &crs, &osc, &prt],
    ))
}

/// The power button (ACPI 6.5 §4.8.2.2.1.2, a control-method button: the
/// FADT's PWR_BUTTON flag says there is no fixed-feature one) and the
/// Generic Event Device that presses it (§5.6.9): its interrupt makes the
/// guest run `_EVT`, which reads the event register (cleared by the read)
/// and sends `Notify(PWRB, 0x80)` ("button pressed", §5.6.6) when the
/// power-button bit is set.
fn power_button() -> Vec<u8> {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C0C"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let mut out = bytes(&aml::Device::new("_SB_.PWRB".into(), vec![&hid, &uid]));

    let ged_hid: &'static str = "ACPI0013";
    let hid = aml::Name::new("_HID".into(), &ged_hid);
    let irq = aml::Interrupt::new(true, true, false, false, GED_IRQ);
    let crs = aml::ResourceTemplate::new(vec![&irq]);
    let crs = aml::Name::new("_CRS".into(), &crs);
    let port = u32::from(GED_PORT);
    let region = aml::OpRegion::new(
        "GDST".into(),
        aml::OpRegionSpace::SystemIO,
        &port,
        &aml::ONE,
    );
    let field = aml::Field::new(
        "GDST".into(),
        aml::FieldAccessType::Byte,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![aml::FieldEntry::Named(*b"GDAT", 8)],
    );
    let gdat = aml::Path::new("GDAT");
    let read = aml::Store::new(&aml::Local(0), &gdat);
    let bit = u32::from(GedEvent::PowerButton.bit());
    let masked = aml::And::new(&aml::Local(1), &aml::Local(0), &bit);
    let pwrb = aml::Path::new("\\_SB_.PWRB");
    let pressed = aml::Notify::new(&pwrb, &0x80u8);
    let test = aml::NotEqual::new(&aml::Local(1), &aml::ZERO);
    let notify = aml::If::new(&test, vec![&pressed]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&read, &masked, &notify]);
    out.extend(bytes(&aml::Device::new(
        "_SB_.GED_".into(),
        vec![&hid, &uid, &crs, &region, &field, &evt],
    )));
    out
}

fn build_dsdt(cfg: &AcpiConfig) -> Vec<u8> {
    let s5_package = aml::Package::new(vec![&S5_SLEEP_TYPE, &S5_SLEEP_TYPE]);
    let s5 = bytes(&aml::Name::new("_S5_".into(), &s5_package));

    let com1_io = aml::IO::new(COM1_PORT, COM1_PORT, 1, 8);
    let com1_irq = aml::Interrupt::new(true, true, false, false, COM1_IRQ);
    let com1 = device(
        "_SB_.COM1",
        &aml::EISAName::new("PNP0501"),
        Some(0),
        vec![&com1_io, &com1_irq],
    );

    let rtc_io = aml::IO::new(CMOS_PORT, CMOS_PORT, 1, 2);
    let rtc_irq = aml::Interrupt::new(true, true, false, false, RTC_IRQ);
    let rtc = device(
        "_SB_.RTC_",
        &aml::EISAName::new("PNP0B00"),
        None,
        vec![&rtc_io, &rtc_irq],
    );

    let pvpanic_io = aml::IO::new(PVPANIC_PORT, PVPANIC_PORT, 1, 1);
    let pvpanic_hid: &'static str = "QEMU0001";
    let pvpanic = device("_SB_.PEVT", &pvpanic_hid, None, vec![&pvpanic_io]);

    let pm_io = aml::IO::new(ACPI_PM_PORT, ACPI_PM_PORT, 1, 3);
    let pm = device(
        "_SB_.PMRS",
        &aml::EISAName::new("PNP0C02"),
        Some(1),
        vec![&pm_io],
    );

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for item in [
        s5,
        pci_host_bridge(cfg),
        com1,
        rtc,
        pvpanic,
        pm,
        power_button(),
    ] {
        dsdt.append_slice(&item);
    }
    dsdt.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_cfg(cpus: u32) -> AcpiConfig {
        AcpiConfig {
            cpus,
            pci_mmio64_start: 1 << 32,
            iommu: None,
        }
    }

    fn with_iommu(cpus: u32) -> AcpiConfig {
        AcpiConfig {
            iommu: Some(IommuConfig::default()),
            ..test_cfg(cpus)
        }
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn table<'a>(t: &'a AcpiTables, sig: &[u8; 4]) -> (u64, &'a [u8]) {
        t.blobs
            .iter()
            .find(|(_, b)| &b[0..4] == sig)
            .map(|(a, b)| (*a, b.as_slice()))
            .unwrap()
    }

    #[test]
    fn test_acpi_every_table_checksums_to_zero_and_length_matches() {
        let t = build(&test_cfg(2));
        let (_, rsdp) = &t.blobs[0];
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[0..20]), 0);
        assert_eq!(sum(rsdp), 0);
        for (_, b) in &t.blobs[1..] {
            assert_eq!(sum(b), 0, "{:?}", std::str::from_utf8(&b[0..4]));
            assert_eq!(u32_at(b, 4) as usize, b.len());
        }
    }

    #[test]
    fn test_acpi_rsdp_xsdt_fadt_dsdt_chain() {
        let t = build(&test_cfg(1));
        let rsdp = &t.blobs[0].1;
        let (xsdt_addr, xsdt) = table(&t, b"XSDT");
        assert_eq!(u64_at(rsdp, 24), xsdt_addr);
        let (fadt_addr, fadt) = table(&t, b"FACP");
        let (madt_addr, _) = table(&t, b"APIC");
        assert_eq!(u64_at(xsdt, 36), fadt_addr);
        assert_eq!(u64_at(xsdt, 44), madt_addr);
        let (mcfg_addr, mcfg) = table(&t, b"MCFG");
        assert_eq!(u64_at(xsdt, 52), mcfg_addr);
        // MCFG: 36-byte header, 8 reserved, then base, segment, start and end bus.
        assert_eq!(u64_at(mcfg, 44), ECAM_START);
        assert_eq!((mcfg[54], mcfg[55]), (0, 255));
        let (dsdt_addr, _) = table(&t, b"DSDT");
        assert_eq!(u64_at(fadt, 140), dsdt_addr);
        assert_ne!(u32_at(fadt, 112) & (Flags::HwReducedAcpi as u32), 0);
    }

    #[test]
    fn test_acpi_without_iommu_has_no_dmar() {
        let t = build(&test_cfg(2));
        let (_, xsdt) = table(&t, b"XSDT");

        assert!(t.blobs.iter().all(|(_, b)| &b[0..4] != b"DMAR"));
        assert_eq!(xsdt.len(), 36 + 3 * 8, "FADT, MADT, MCFG");
    }

    #[test]
    fn test_acpi_with_iommu_lists_a_checksummed_dmar_in_the_xsdt() {
        let t = build(&with_iommu(254));
        let (xsdt_addr, xsdt) = table(&t, b"XSDT");
        let (dmar_addr, dmar) = table(&t, b"DMAR");
        let (_, madt) = table(&t, b"APIC");

        assert_eq!(u64_at(&t.blobs[0].1, 24), xsdt_addr);
        assert_eq!(xsdt.len(), 36 + 4 * 8);
        assert_eq!(u64_at(xsdt, 60), dmar_addr);
        assert_eq!(sum(dmar), 0);
        assert_eq!(u32_at(dmar, 4) as usize, dmar.len());
        let mut off = 44;
        while madt[off] != MADT_IO_APIC {
            off += usize::from(madt[off + 1]);
        }
        let ioapic = madt[off + 2];
        assert_eq!(
            dmar[48 + 16 + 4],
            ioapic,
            "scope's enumeration ID is the MADT's IOAPIC ID"
        );
        for pair in t.blobs.windows(2) {
            assert!(pair[0].0 + pair[0].1.len() as u64 <= pair[1].0);
        }
        let (last_addr, last) = t.blobs.last().unwrap();
        assert!(last_addr + last.len() as u64 <= HIGH_MEMORY_START);
    }

    #[test]
    fn test_acpi_tables_fit_in_bios_area_without_overlap() {
        let t = build(&test_cfg(254));
        for pair in t.blobs.windows(2) {
            assert!(pair[0].0 + pair[0].1.len() as u64 <= pair[1].0);
        }
        let (a, b) = t.blobs.last().unwrap();
        assert!(a + b.len() as u64 <= HIGH_MEMORY_START);
    }

    #[test]
    fn test_madt_has_one_lapic_per_cpu_one_ioapic_and_no_pics() {
        let t = build(&test_cfg(3));
        let (_, madt) = table(&t, b"APIC");
        assert_eq!(u32_at(madt, 36), LAPIC_START as u32);
        let mut off = 44;
        let mut lapic_ids = vec![];
        let mut ioapics = 0;
        let mut overrides = vec![];
        while off < madt.len() {
            let (kind, len) = (madt[off], usize::from(madt[off + 1]));
            match kind {
                MADT_LOCAL_APIC => {
                    assert_eq!(u32_at(madt, off + 4), LAPIC_ENABLED);
                    lapic_ids.push(madt[off + 3]);
                }
                MADT_IO_APIC => {
                    ioapics += 1;
                    assert_eq!(u32_at(madt, off + 4), IOAPIC_START as u32);
                }
                2 => overrides.push((madt[off + 3], u32_at(madt, off + 4))),
                _ => {}
            }
            off += len;
        }
        assert_eq!(off, madt.len());
        assert_eq!(lapic_ids, vec![0, 1, 2]);
        assert_eq!(ioapics, 1);
        assert_eq!(overrides, vec![]);
        assert_eq!(
            u32_at(madt, 40) & 1,
            0,
            "no PCAT_COMPAT: there are no 8259s"
        );
    }

    #[test]
    fn test_madt_lists_apic_ids_from_255_as_x2apic_processors() {
        let t = build(&with_iommu(300));
        let (_, madt) = table(&t, b"APIC");
        let mut off = 44;
        let (mut xapic, mut x2apic, mut x2apic_nmi) = (vec![], vec![], 0);
        while off < madt.len() {
            let (kind, len) = (madt[off], usize::from(madt[off + 1]));
            match kind {
                MADT_LOCAL_APIC => xapic.push(u32::from(madt[off + 3])),
                MADT_LOCAL_X2APIC => {
                    assert_eq!(len, 16);
                    assert_eq!(u32_at(madt, off + 8), LAPIC_ENABLED);
                    assert_eq!(u32_at(madt, off + 12), u32_at(madt, off + 4), "UID");
                    x2apic.push(u32_at(madt, off + 4));
                }
                MADT_LOCAL_X2APIC_NMI => x2apic_nmi += 1,
                _ => {}
            }
            off += len;
        }
        assert_eq!(xapic, (0..255).collect::<Vec<_>>());
        assert_eq!(x2apic, (255..300).collect::<Vec<_>>());
        assert_eq!(x2apic_nmi, 1);
    }

    #[test]
    fn test_fadt_points_at_power_registers() {
        let t = build(&test_cfg(1));
        let (_, fadt) = table(&t, b"FACP");
        // reset_reg GAS at 116, its address at 120; reset value at 128.
        assert_eq!(fadt[116], AddressSpace::SystemIo as u8);
        assert_eq!(u64_at(fadt, 120), u64::from(ACPI_PM_PORT) + RESET_OFFSET);
        assert_eq!(fadt[128], RESET_VALUE);
        // sleep control GAS at 244, sleep status at 256.
        assert_eq!(
            u64_at(fadt, 248),
            u64::from(ACPI_PM_PORT) + SLEEP_CONTROL_OFFSET
        );
        assert_eq!(
            u64_at(fadt, 260),
            u64::from(ACPI_PM_PORT) + SLEEP_STATUS_OFFSET
        );
    }

    #[test]
    fn test_dsdt_names_s5_and_devices() {
        let t = build(&test_cfg(1));
        let (_, dsdt) = table(&t, b"DSDT");
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"_S5_"));
        assert!(has(b"COM1"));
        assert!(has(b"QEMU0001"));
        assert!(has(b"PEVT"));
        assert!(has(b"PCI0"));
        assert!(has(b"_OSC"));
        assert!(has(b"_PRT"));
        // Slot 1's INTA: address 0x0001ffff (DWordPrefix), pin 0 (ZeroOp),
        // source Zero (ZeroOp), GSI 17 (BytePrefix 0x11).
        assert!(has(&[0x0c, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x0a, 17]));
        assert!(has(&[0x41, 0xd0, 0x0a, 0x08]), "EISA ID PNP0A08");
    }

    #[test]
    fn test_dsdt_has_power_button_and_generic_event_device_on_its_port() {
        let t = build(&test_cfg(1));
        let (_, dsdt) = table(&t, b"DSDT");
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(&[0x41, 0xd0, 0x0c, 0x0c]), "EISA ID PNP0C0C");
        assert!(has(b"ACPI0013"));
        assert!(has(b"_EVT"));
        // OperationRegion (GDST, SystemIO, 0x0610, One).
        let port = GED_PORT.to_le_bytes();
        assert!(has(&[
            0x5b, 0x80, b'G', b'D', b'S', b'T', 0x01, 0x0b, port[0], port[1], 0x01
        ]));
        // Notify (\_SB_.PWRB, 0x80).
        assert!(has(&[
            0x86, b'\\', b'.', b'_', b'S', b'B', b'_', b'P', b'W', b'R', b'B', 0x0a, 0x80
        ]));
    }
}
