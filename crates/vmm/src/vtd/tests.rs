//! The VT-d unit in a machine: the register page as a guest programs it
//! (VT-d 4.1 §11.4), and an NVMe controller built by the machine's own
//! builders whose DMA it translates and whose faults it records (§7.2.1)
//! and signals (§7.3).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dma::{Dma, FunctionContext, FunctionDma, GuestDma, RequesterId};
use irq::msi::MsiMessage;
use irq::recording::RecordingMsiSink;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Vtd;
use crate::bus::Bus;
use crate::config::{AddressWidth, DeviceConfig, DeviceKind, IommuConfig, NvmeConfig, PciSlot};
use crate::layout::{ECAM_SIZE, ECAM_START, VTD_SIZE, VTD_START};
use crate::pci_devices::test_wiring::TestWiring;
use crate::pci_devices::{DmaRoute, Wiring};
use crate::pci_host::PciRoot;

use super::test_regs::*;

/// Guest RAM layout of the tests (TestWiring's 1 MiB).
const ROOT: u64 = 0x8_0000;
const CONTEXT: u64 = 0x8_1000;
const PAGE_TABLES: u64 = 0x8_2000;
const ASQ_GPA: u64 = 0x9_0000;
const ACQ_GPA: u64 = 0x9_1000;
const DATA_GPA: u64 = 0x9_2000;
/// The IOVAs the controller is given: far from the guest-physical pages.
const ASQ_IOVA: u64 = 0x40_0000_0000;
const ACQ_IOVA: u64 = 0x40_0000_1000;
const DATA_IOVA: u64 = 0x40_0000_2000;
const UNMAPPED_IOVA: u64 = 0x50_0000_0000;
/// The NVMe controller's slot on the root bus, and its BAR 0.
const NVME_DEV: u8 = 3;
const BAR0: u64 = 0xc000_0000;

/// A machine's MMIO bus with ECAM, the VT-d page and an NVMe controller
/// whose DMA goes through the unit.
struct Machine {
    _pci: PciRoot,
    mmio: Arc<Bus>,
    ram: Arc<GuestMemoryMmap>,
    events: Arc<RecordingMsiSink>,
    unit: Arc<Vtd>,
}

impl Machine {
    fn new() -> Self {
        let mut wiring = TestWiring::new();
        let ram = wiring.memory().clone();
        let events = Arc::new(RecordingMsiSink::new());
        let guest: Arc<dyn Dma> = Arc::new(GuestDma::new(ram.clone()));
        let unit = Vtd::new(&IommuConfig::default(), guest, events.clone());
        wiring.iommu = Some(unit.clone());
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let pci = PciRoot::new(pio, mmio.clone()).unwrap();
        mmio.insert(ECAM_START, ECAM_SIZE, 0, Arc::new(Mutex::new(pci.ecam())))
            .unwrap();
        mmio.insert(
            VTD_START,
            VTD_SIZE,
            0,
            Arc::new(Mutex::new(unit.register_page())),
        )
        .unwrap();
        let nvme = DeviceConfig {
            kind: DeviceKind::Nvme(NvmeConfig {
                serial: Some("VTD-TEST".into()),
                ..Default::default()
            }),
            id: Some("nvme0".into()),
            bus: None,
            addr: Some(PciSlot {
                device: NVME_DEV,
                function: 0,
            }),
        };
        crate::pci_devices::build(&[nvme], &pci, &mut wiring, 1).unwrap();
        Self {
            _pci: pci,
            mmio,
            ram,
            events,
            unit,
        }
    }

    fn read(&self, addr: u64, len: usize) -> u64 {
        let mut d = [0u8; 8];
        assert!(self.mmio.read(addr, &mut d[..len]), "{addr:#x} unclaimed");
        u64::from_le_bytes(d)
    }

    fn write(&self, addr: u64, len: usize, v: u64) {
        assert!(self.mmio.write(addr, &v.to_le_bytes()[..len]), "{addr:#x}");
    }

    fn vtd_read(&self, reg: u64, len: usize) -> u64 {
        self.read(VTD_START + reg, len)
    }

    fn vtd_write(&self, reg: u64, len: usize, v: u64) {
        self.write(VTD_START + reg, len, v);
    }

    fn ram_u64(&self, addr: u64, v: u64) {
        self.ram.write_obj(v, GuestAddress(addr)).unwrap();
    }

    /// The tables a guest driver writes for the NVMe function (bus 0,
    /// device 3): root entry (§9.1), context entry with a 4-level, 48-bit
    /// domain 1 (§9.3), and second-level leaves (§9.8) with Read and Write
    /// for the queues and the data page.
    fn write_tables(&self) {
        self.ram_u64(ROOT, CONTEXT | 1);
        let devfn = u64::from(NVME_DEV) << 3;
        self.ram_u64(CONTEXT + devfn * 16, PAGE_TABLES | 1);
        self.ram_u64(CONTEXT + devfn * 16 + 8, 1 << 8 | 2);
        let mut next = PAGE_TABLES + 0x1000;
        for (iova, gpa) in [
            (ASQ_IOVA, ASQ_GPA),
            (ACQ_IOVA, ACQ_GPA),
            (DATA_IOVA, DATA_GPA),
        ] {
            let mut table = PAGE_TABLES;
            for level in (2..=4).rev() {
                let entry = table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
                let current: u64 = self.ram.read_obj(GuestAddress(entry)).unwrap();
                table = if current & 3 == 0 {
                    self.ram_u64(entry, next | 3);
                    next += 0x1000;
                    next - 0x1000
                } else {
                    current & 0x000f_ffff_ffff_f000
                };
            }
            self.ram_u64(table + ((iova >> 12) & 0x1ff) * 8, gpa | 3);
        }
    }

    /// Linux's sequence (A4): RTADDR, GCMD.SRTP and wait for RTPS, the
    /// global invalidations, the fault event's message unmasked, GCMD.TE
    /// and wait for TES.
    fn enable_translation(&self) {
        self.vtd_write(RTADDR, 8, ROOT);
        self.vtd_write(GCMD, 4, u64::from(SRTP));
        assert_ne!(self.vtd_read(GSTS, 4) as u32 & SRTP, 0, "RTPS");
        self.vtd_write(0x28, 8, 1 << 63 | 1 << 61);
        self.vtd_write(0xf8, 8, 1 << 63 | 1 << 60);
        self.vtd_write(FEDATA, 4, 0x41);
        self.vtd_write(FEADDR, 4, 0xfee0_0000);
        self.vtd_write(FECTL, 4, 0);
        self.vtd_write(GCMD, 4, u64::from(TE));
        assert_ne!(self.vtd_read(GSTS, 4) as u32 & TE, 0, "TES");
    }

    /// Places BAR 0, turns on memory decoding and Bus Master, and enables
    /// the controller with its admin queues at the IOVAs.
    fn start_nvme(&self) {
        let cfg = ECAM_START | u64::from(NVME_DEV) << 15;
        self.write(cfg + 0x10, 4, BAR0);
        self.write(cfg + 0x14, 4, 0);
        self.write(cfg + 0x04, 2, 0x6);
        self.write(BAR0 + 0x24, 4, 3 << 16 | 3);
        self.write(BAR0 + 0x28, 8, ASQ_IOVA);
        self.write(BAR0 + 0x30, 8, ACQ_IOVA);
        self.write(BAR0 + 0x14, 4, 4 << 20 | 6 << 16 | 1);
        self.wait("CSTS.RDY", || self.read(BAR0 + 0x1c, 4) & 1 == 1);
    }

    /// Submits Identify Controller (CNS 1) with PRP1 `prp` as command
    /// `cid` at admin slot `slot`, and returns its completion's status.
    fn identify(&self, slot: u64, cid: u16, prp: u64) -> u16 {
        let sqe = ASQ_GPA + slot * 64;
        let mut cmd = [0u8; 64];
        cmd[0] = 0x06;
        cmd[2..4].copy_from_slice(&cid.to_le_bytes());
        cmd[24..32].copy_from_slice(&prp.to_le_bytes());
        cmd[40] = 1;
        self.ram.write_slice(&cmd, GuestAddress(sqe)).unwrap();
        self.write(BAR0 + 0x1000, 4, slot + 1);
        let cqe = ACQ_GPA + slot * 16 + 12;
        self.wait("the completion", || {
            let dw3: u32 = self.ram.read_obj(GuestAddress(cqe)).unwrap();
            dw3 & 0xffff == u32::from(cid) && dw3 & 1 << 16 != 0
        });
        let dw3: u32 = self.ram.read_obj(GuestAddress(cqe)).unwrap();
        (dw3 >> 17) as u16
    }

    fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "no {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn test_page_reports_queued_invalidation_and_interrupt_remapping_with_x2apic() {
    let m = Machine::new();

    assert_eq!(m.vtd_read(VER, 4), 0x10);
    let ecap = m.vtd_read(ECAP, 8);
    assert_ne!(ecap & 1 << 1, 0, "QI");
    assert_ne!(ecap & 1 << 3, 0, "IR");
    assert_ne!(ecap & 1 << 4, 0, "EIM");
    assert_ne!(ecap & 1 << 6, 0, "PT");
    let cap = m.vtd_read(CAP, 8);
    assert_eq!(cap >> 8 & 0x1f, 0b110, "SAGAW 39 and 48 bits");
    assert_eq!(cap >> 16 & 0x3f, 47, "MGAW");
    assert_eq!(m.vtd_read(GSTS, 4), 0);
}

#[test]
fn test_aw_bits_39_offers_3_level_tables_only() {
    let ram: Arc<dyn Dma> = Arc::new(GuestDma::new(TestWiring::new().memory().clone()));
    let cfg = IommuConfig {
        address_width: AddressWidth::Bits39,
        ..Default::default()
    };
    let unit = Vtd::new(&cfg, ram, Arc::new(RecordingMsiSink::new()));
    let mut cap = [0u8; 8];

    unit.read(CAP as usize, &mut cap);

    let cap = u64::from_le_bytes(cap);
    assert_eq!(cap >> 8 & 0x1f, 0b010);
    assert_eq!(cap >> 16 & 0x3f, 38);
}

#[test]
fn test_guest_programming_through_the_page_reaches_the_remapper() {
    let m = Machine::new();

    m.write_tables();
    m.enable_translation();

    assert_eq!(m.unit.remapper().root_table(), ROOT);
    assert!(m.unit.remapper().enabled());
    m.vtd_write(GCMD, 4, 0);
    assert!(!m.unit.remapper().enabled());
    assert_eq!(m.vtd_read(GSTS, 4) as u32 & TE, 0);
}

#[test]
fn test_nvme_dma_is_translated_and_an_unmapped_iova_faults_into_frcd() {
    let m = Machine::new();
    m.write_tables();
    m.enable_translation();
    m.start_nvme();

    let status = m.identify(0, 7, DATA_IOVA);

    assert_eq!(status, 0, "Identify through the IOMMU succeeds");
    let mut data = [0u8; 8];
    m.ram
        .read_slice(&mut data, GuestAddress(DATA_GPA + 4))
        .unwrap();
    assert_eq!(&data, b"VTD-TEST", "the serial number at the mapped page");
    assert_eq!(m.vtd_read(FSTS, 4), 0, "no fault yet");
    assert!(m.events.messages().is_empty());

    let status = m.identify(1, 8, UNMAPPED_IOVA);

    assert_ne!(status, 0, "the transfer failed");
    let fsts = m.vtd_read(FSTS, 4);
    assert_eq!(fsts & 0b10, 0b10, "PPF");
    let lo = m.vtd_read(FRCD, 8);
    let hi = m.vtd_read(FRCD + 8, 8);
    assert_eq!(lo, UNMAPPED_IOVA, "FI: the faulting page");
    assert_ne!(hi & 1 << 63, 0, "F");
    assert_eq!(hi & 0xffff, u64::from(NVME_DEV) << 3, "SID 00:03.0");
    assert_eq!(hi >> 32 & 0xff, 0x5, "FR: write to a non-present page");
    assert_eq!(hi & 1 << 62, 0, "T: a write");
    assert_eq!(
        m.events.messages(),
        vec![MsiMessage {
            address: 0xfee0_0000,
            data: 0x41
        }],
        "one fault event"
    );
}

#[test]
fn test_translated_dma_has_no_direct_path_and_bypass_route_skips_the_unit() {
    let m = Machine::new();
    let mut wiring = TestWiring::new();
    wiring.iommu = Some(m.unit.clone());
    let ctx = FunctionContext::new(RequesterId::new(0, NVME_DEV, 0));
    ctx.set_bus_master(true);
    m.write_tables();
    m.enable_translation();

    let translated = FunctionDma::new(ctx.clone(), wiring.dma(&ctx, DmaRoute::Iommu));
    let bypass = FunctionDma::new(ctx.clone(), wiring.dma(&ctx, DmaRoute::Bypass));

    assert!(translated.direct().is_none(), "no untranslated fast path");
    assert!(bypass.direct().is_some(), "virtio keeps guest RAM as it is");
    let mut buf = [0u8; 4];
    assert!(
        translated.read(DATA_GPA, &mut buf).is_err(),
        "GPA is no IOVA"
    );
    assert!(bypass.read(DATA_GPA, &mut buf).is_ok());
}

#[test]
fn test_masked_fault_event_is_held_and_sent_when_software_unmasks() {
    let m = Machine::new();
    m.write_tables();
    m.vtd_write(RTADDR, 8, ROOT);
    m.vtd_write(GCMD, 4, u64::from(SRTP));
    m.vtd_write(GCMD, 4, u64::from(TE));
    m.vtd_write(FEDATA, 4, 0x42);
    m.vtd_write(FEADDR, 4, 0xfee0_1000);
    m.start_nvme();

    assert_ne!(m.identify(0, 9, UNMAPPED_IOVA), 0);

    assert!(m.events.messages().is_empty(), "FECTL.IM is set at reset");
    assert_eq!(m.vtd_read(FECTL, 4), 3 << 30, "IM and IP");
    m.vtd_write(FECTL, 4, 0);
    assert_eq!(
        m.events.messages(),
        vec![MsiMessage {
            address: 0xfee0_1000,
            data: 0x42
        }],
        "sent by the write that clears IM"
    );
    assert_eq!(m.vtd_read(FECTL, 4), 0);
}

#[test]
fn test_queued_invalidation_through_the_page_writes_status_before_the_tail_write_returns() {
    // Linux's qi_submit_sync: a global IOTLB flush, then a wait descriptor
    // with a status write and the interrupt flag; it spins on the status
    // with interrupts off, so it must be written by the time IQT returns.
    const QUEUE: u64 = 0xa_0000;
    const STATUS: u64 = 0xa_1000;
    const IQT: u64 = 0x88;
    const IQA: u64 = 0x90;
    const IECTL: u64 = 0xa0;
    const IEDATA: u64 = 0xa4;
    const IEADDR: u64 = 0xa8;
    const QIE: u32 = 1 << 26;
    let m = Machine::new();
    m.vtd_write(IQA, 8, QUEUE);
    m.vtd_write(IQT, 4, 0);
    m.vtd_write(GCMD, 4, u64::from(QIE));
    m.vtd_write(IEDATA, 4, 0x61);
    m.vtd_write(IEADDR, 4, 0xfee0_0000);
    m.vtd_write(IECTL, 4, 0);
    m.ram_u64(QUEUE, 0x2 | 1 << 4);
    m.ram_u64(QUEUE + 8, 0);
    m.ram_u64(QUEUE + 16, 0x5 | 1 << 4 | 1 << 5 | 2 << 32);
    m.ram_u64(QUEUE + 24, STATUS);

    m.vtd_write(IQT, 4, 32);

    let status: u32 = m.ram.read_obj(GuestAddress(STATUS)).unwrap();
    assert_eq!(status, 2, "QI_DONE written");
    assert_eq!(m.vtd_read(GSTS, 4) as u32 & QIE, QIE);
    assert_eq!(m.vtd_read(0x80, 8), 32, "IQH at the tail");
    assert_eq!(
        m.events.messages(),
        [MsiMessage {
            address: 0xfee0_0000,
            data: 0x61
        }],
        "the invalidation completion event"
    );
}

/// Interrupt remapping as Linux's intel_setup_irq_remapping programs it:
/// IRTA with EIME and S = 0xF (65 536 entries), SIRTP, then IRE; the
/// fault event unmasked.
fn remapping_machine() -> Machine {
    const IRTA: u64 = 0xb8;
    const SIRTP: u32 = 1 << 24;
    const IRE: u32 = 1 << 25;
    let m = Machine::new();
    m.vtd_write(FEDATA, 4, 0x70);
    m.vtd_write(FEADDR, 4, 0xfee0_0000);
    m.vtd_write(FECTL, 4, 0);
    m.vtd_write(IRTA, 8, IR_TABLE | 1 << 11 | 0xf);
    m.vtd_write(GCMD, 4, u64::from(SIRTP));
    m.vtd_write(GCMD, 4, u64::from(IRE));
    assert_eq!(m.vtd_read(GSTS, 4) as u32 & (IRE | SIRTP), IRE | SIRTP);
    m
}

const IR_TABLE: u64 = 0xb_0000;
const NVME_RID: RequesterId = RequesterId(NVME_DEV as u16 * 8);

/// Linux's remappable MSI for IRTE `index`.
fn remappable(index: u64) -> MsiMessage {
    MsiMessage {
        address: 0xfee0_0000 | index << 5 | 1 << 4 | 1 << 3,
        data: 0,
    }
}

#[test]
fn test_interrupt_remapping_translates_through_the_guests_table() {
    use crate::interrupts::InterruptRemap;
    let m = remapping_machine();
    // IRTE 3: present, vector 0x45, x2APIC destination 0x10002 (cluster 1,
    // CPU bit 1), logical; source NVMe function exactly.
    m.ram_u64(IR_TABLE + 3 * 16, 1 | 1 << 2 | 0x45 << 16 | 0x1_0002 << 32);
    m.ram_u64(IR_TABLE + 3 * 16 + 8, 1 << 18 | u64::from(NVME_RID.0));

    let msg = m.unit.remap(remappable(3), NVME_RID, true);

    assert_eq!(
        msg,
        Some(MsiMessage {
            address: 0x0001_0000_fee0_2004,
            data: 0x45
        })
    );
    assert!(m.events.messages().is_empty(), "no fault");
}

#[test]
fn test_blocked_interrupt_records_its_fault_with_the_index_and_signals_it() {
    use crate::interrupts::InterruptRemap;
    let m = remapping_machine();

    let installing = m.unit.remap(remappable(7), NVME_RID, false);
    let quiet = m.vtd_read(FSTS, 4);
    let sent = m.unit.remap(remappable(7), NVME_RID, true);

    assert_eq!((installing, sent), (None, None));
    assert_eq!(quiet, 0, "a route being installed records nothing");
    let lo = m.vtd_read(FRCD, 8);
    let hi = m.vtd_read(FRCD + 8, 8);
    assert_eq!(lo >> 48, 7, "FI holds the interrupt index");
    assert_eq!((hi >> 32) & 0xff, 0x22, "IRTE not present");
    assert_eq!(hi & 0xffff, u64::from(NVME_RID.0));
    assert_eq!(
        m.events.messages(),
        [MsiMessage {
            address: 0xfee0_0000,
            data: 0x70
        }]
    );
}

#[test]
fn test_compatibility_interrupts_blocked_once_remapping_is_on() {
    use crate::interrupts::InterruptRemap;
    let m = remapping_machine();
    let compat = MsiMessage {
        address: 0xfee0_1000,
        data: 0x31,
    };

    assert_eq!(m.unit.remap(compat, NVME_RID, true), None);
    assert_eq!((m.vtd_read(FRCD + 8, 8) >> 32) & 0xff, 0x25);
    m.vtd_write(GCMD, 4, u64::from(1u32 << 25 | 1 << 23)); // IRE | CFI
    assert_eq!(m.unit.remap(compat, NVME_RID, true), Some(compat));
}

/// A host IOMMU that records what is mapped (input address → guest
/// address, length, write).
#[derive(Debug, Default)]
struct RecordingHost {
    mapped: Mutex<std::collections::BTreeMap<u64, (u64, u64, bool)>>,
    identity: Mutex<bool>,
}

impl iommu::HostMapper for RecordingHost {
    fn map(&self, iova: u64, gpa: u64, len: u64, _read: bool, write: bool) -> std::io::Result<()> {
        self.mapped.lock().unwrap().insert(iova, (gpa, len, write));
        Ok(())
    }

    fn unmap(&self, iova: u64, _len: u64) -> std::io::Result<()> {
        self.mapped.lock().unwrap().remove(&iova);
        Ok(())
    }

    fn map_identity(&self) -> std::io::Result<()> {
        *self.identity.lock().unwrap() = true;
        Ok(())
    }

    fn unmap_identity(&self) -> std::io::Result<()> {
        *self.identity.lock().unwrap() = false;
        Ok(())
    }
}

#[test]
fn test_caching_mode_is_advertised_when_asked_for() {
    let caps = |caching_mode| {
        let unit = Vtd::new(
            &IommuConfig {
                caching_mode,
                ..IommuConfig::default()
            },
            Arc::new(GuestDma::new(TestWiring::new().memory().clone())),
            Arc::new(RecordingMsiSink::new()),
        );
        let mut cap = [0u8; 8];
        unit.read(CAP as usize, &mut cap);
        u64::from_le_bytes(cap)
    };
    assert_eq!(caps(false) & 1 << 7, 0);
    assert_ne!(caps(true) & 1 << 7, 0, "CAP.CM");
}

#[test]
fn test_a_mirrored_function_follows_translation_and_page_invalidations() {
    let m = Machine::new();
    let host = Arc::new(RecordingHost::default());
    let ctx = FunctionContext::new(RequesterId::new(0, NVME_DEV, 0));
    m.unit.mirror(ctx, host.clone());
    assert!(
        *host.identity.lock().unwrap(),
        "translation off: all of RAM"
    );

    m.write_tables();
    m.enable_translation();
    assert!(!*host.identity.lock().unwrap());
    let iovas: Vec<u64> = host.mapped.lock().unwrap().keys().copied().collect();
    assert_eq!(iovas, [ASQ_IOVA, ACQ_IOVA, DATA_IOVA]);
    assert_eq!(
        host.mapped.lock().unwrap()[&DATA_IOVA],
        (DATA_GPA, 0x1000, true)
    );

    // The guest unmaps the data page and invalidates it through IVA and
    // the IOTLB register: page-selective (IIRG 11b), domain 1.
    let leaf = {
        let mut table = PAGE_TABLES;
        for level in (2..=4).rev() {
            let entry = table + ((DATA_IOVA >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
            let e: u64 = m.ram.read_obj(GuestAddress(entry)).unwrap();
            table = e & 0x000f_ffff_ffff_f000;
        }
        table + ((DATA_IOVA >> 12) & 0x1ff) * 8
    };
    m.ram_u64(leaf, 0);
    m.vtd_write(0xf0, 8, DATA_IOVA);
    m.vtd_write(0xf8, 8, 1 << 63 | 3 << 60 | 1 << 32);
    let iovas: Vec<u64> = host.mapped.lock().unwrap().keys().copied().collect();
    assert_eq!(iovas, [ASQ_IOVA, ACQ_IOVA]);
}
