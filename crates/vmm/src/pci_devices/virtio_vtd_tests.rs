//! Virtio functions built by the machine's own builders behind the VT-d
//! unit, driven as Linux drives them. virtio-blk: with VIRTIO_F_ACCESS_PLATFORM
//! accepted, rings and buffers are I/O virtual addresses the guest's page
//! tables map (the status byte write-only, as `DMA_FROM_DEVICE` maps it),
//! an unmapped buffer fails the request with IOERR and is recorded in the
//! fault recording register (VT-d 4.1 §7.2.1), an unwritable status byte
//! sets DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2); without the feature the
//! addresses are guest-physical and the unit is not asked. virtio-rng
//! fills a buffer at an IOVA, and one it cannot reach is a recorded fault.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dma::{Dma, GuestDma};
use irq::recording::RecordingMsiSink;
use virtio::features::{F_ACCESS_PLATFORM, F_VERSION_1};
use virtio::pci::layout::{ISR_OFFSET, NOTIFY_OFFSET};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::bus::Bus;
use crate::config::{
    DeviceConfig, DeviceKind, IommuConfig, PciSlot, VirtioBlkConfig, VirtioConfig, VirtioKind,
};
use crate::layout::{ECAM_SIZE, ECAM_START, VTD_SIZE, VTD_START};
use crate::pci_devices::test_wiring::TestWiring;
use crate::pci_host::PciRoot;
use crate::vtd::Vtd;

use crate::vtd::test_regs::{FEADDR, FECTL, FEDATA, FRCD, FSTS, GCMD, GSTS, RTADDR};
/// GCMD/GSTS bits as the MMIO helpers take them.
const TE: u64 = crate::vtd::test_regs::TE as u64;
const SRTP: u64 = crate::vtd::test_regs::SRTP as u64;
/// Second-level PTE permissions (§9.8).
const R: u64 = 1;
const W: u64 = 2;

// Common configuration fields (virtio 1.2 §4.1.4.3) and status bits.
const DFSELECT: u64 = 0x00;
const DF: u64 = 0x04;
const GFSELECT: u64 = 0x08;
const GF: u64 = 0x0c;
const STATUS: u64 = 0x14;
const Q_SELECT: u64 = 0x16;
const Q_SIZE: u64 = 0x18;
const Q_ENABLE: u64 = 0x1c;
const Q_DESC: u64 = 0x20;
const Q_DRIVER: u64 = 0x28;
const Q_DEVICE: u64 = 0x30;
const ACKNOWLEDGE: u64 = 1;
const DRIVER: u64 = 2;
const DRIVER_OK: u64 = 4;
const FEATURES_OK: u64 = 8;
const NEEDS_RESET: u64 = 0x40;
/// virtio-blk request types and status values (§5.2.6).
const T_IN: u32 = 0;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;

/// Guest RAM (TestWiring's 1 MiB): VT-d tables, then the queue and the
/// request's pages.
const ROOT: u64 = 0x8_0000;
const CONTEXT: u64 = 0x8_1000;
const PAGE_TABLES: u64 = 0x8_2000;
const RING_GPA: u64 = 0x9_0000;
const HDR_GPA: u64 = 0x9_1000;
const DATA_GPA: u64 = 0x9_2000;
const STATUS_GPA: u64 = 0x9_3000;
/// The I/O virtual addresses the guest maps them at, far from RAM.
const RING_IOVA: u64 = 0x40_0000_0000;
const HDR_IOVA: u64 = 0x40_0001_0000;
const DATA_IOVA: u64 = 0x40_0002_0000;
const STATUS_IOVA: u64 = 0x40_0003_0000;
const UNMAPPED_IOVA: u64 = 0x50_0000_0000;
/// The queue: 16 entries, its rings inside one page.
const QSIZE: u64 = 16;
const AVAIL_OFF: u64 = 16 * QSIZE;
const USED_OFF: u64 = 0x200;
/// The function's slot on the root bus, and its BAR 0.
const DEV: u8 = 4;
const BAR0: u64 = 0xc000_0000;
/// Bytes of the disk the tests read.
const SECTOR: usize = 512;

/// A disk image with a pattern in its first sector, removed when dropped.
struct Disk(PathBuf);

impl Disk {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "iovm-virtio-vtd-{}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(1 << 20).unwrap();
        file.write_all_at(&pattern(), 0).unwrap();
        Self(path)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern() -> Vec<u8> {
    (0..SECTOR)
        .map(|i| (i as u8).wrapping_mul(13) ^ 0x5a)
        .collect()
}

/// A machine's MMIO bus with ECAM, the VT-d page and one virtio function
/// whose DMA the unit translates when its driver asks.
struct Machine {
    _pci: PciRoot,
    _disk: Option<Disk>,
    mmio: Arc<Bus>,
    ram: Arc<GuestMemoryMmap>,
    unit: Arc<Vtd>,
    requests: u16,
}

impl Machine {
    /// With a virtio-blk disk.
    fn new() -> Self {
        let disk = Disk::new();
        let blk = VirtioKind::Blk(VirtioBlkConfig {
            path: disk.0.clone(),
            ..Default::default()
        });
        Self::with(blk, Some(disk))
    }

    /// With the virtio device `kind` (its `disk` kept until the end).
    fn with(kind: VirtioKind, disk: Option<Disk>) -> Self {
        let mut wiring = TestWiring::new();
        let ram = wiring.memory().clone();
        let guest: Arc<dyn Dma> = Arc::new(GuestDma::new(ram.clone()));
        let events = Arc::new(RecordingMsiSink::new());
        let unit = Vtd::new(&IommuConfig::default(), guest, events);
        wiring.iommu = Some(unit.clone());
        let mmio = Arc::new(Bus::new());
        let pci = PciRoot::new(Arc::new(Bus::new()), mmio.clone()).unwrap();
        mmio.insert(ECAM_START, ECAM_SIZE, 0, Arc::new(Mutex::new(pci.ecam())))
            .unwrap();
        let page = Arc::new(Mutex::new(unit.register_page()));
        mmio.insert(VTD_START, VTD_SIZE, 0, page).unwrap();
        let device = DeviceConfig {
            addr: Some(PciSlot {
                device: DEV,
                function: 0,
            }),
            ..DeviceConfig::new(DeviceKind::Virtio(VirtioConfig {
                device: kind,
                no_msix: false,
            }))
        };
        crate::pci_devices::build(&[device], &pci, &mut wiring, 1).unwrap();
        Self {
            _pci: pci,
            _disk: disk,
            mmio,
            ram,
            unit,
            requests: 0,
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

    fn ram_write<T: vm_memory::ByteValued>(&self, addr: u64, v: T) {
        self.ram.write_obj(v, GuestAddress(addr)).unwrap();
    }

    fn ram_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.ram.read_slice(&mut out, GuestAddress(addr)).unwrap();
        out
    }

    /// Root entry, a translated context entry (4-level, 48-bit, domain 1)
    /// for 00:04.0, and leaves mapping each page with its permissions.
    fn write_tables(&self, pages: &[(u64, u64, u64)]) {
        self.ram_write(ROOT, CONTEXT | 1);
        let entry = CONTEXT + u64::from(DEV) * 8 * 16;
        self.ram_write(entry, PAGE_TABLES | 1);
        self.ram_write(entry + 8, 1u64 << 8 | 2);
        let mut next = PAGE_TABLES + 0x1000;
        for &(iova, gpa, perm) in pages {
            let mut table = PAGE_TABLES;
            for level in (2..=4).rev() {
                let at = table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
                let current: u64 = self.ram.read_obj(GuestAddress(at)).unwrap();
                table = if current & 3 == 0 {
                    self.ram_write(at, next | R | W);
                    next += 0x1000;
                    next - 0x1000
                } else {
                    current & 0x000f_ffff_ffff_f000
                };
            }
            self.ram_write(table + ((iova >> 12) & 0x1ff) * 8, gpa | perm);
        }
    }

    /// Linux's order: RTADDR, SRTP, the fault event unmasked, TE.
    fn enable_translation(&self) {
        self.write(VTD_START + RTADDR, 8, ROOT);
        self.write(VTD_START + GCMD, 4, SRTP);
        self.write(VTD_START + FEDATA, 4, 0x41);
        self.write(VTD_START + FEADDR, 4, 0xfee0_0000);
        self.write(VTD_START + FECTL, 4, 0);
        self.write(VTD_START + GCMD, 4, TE);
        assert_ne!(self.read(VTD_START + GSTS, 4) & TE, 0, "TES");
    }

    fn common(&self, field: u64, len: usize, v: u64) {
        self.write(BAR0 + field, len, v);
    }

    fn device_status(&self) -> u64 {
        self.read(BAR0 + STATUS, 1)
    }

    /// The device's 64 feature bits.
    fn device_features(&self) -> u64 {
        self.common(DFSELECT, 4, 0);
        let low = self.read(BAR0 + DF, 4);
        self.common(DFSELECT, 4, 1);
        low | self.read(BAR0 + DF, 4) << 32
    }

    /// Places BAR 0 with memory decoding and Bus Master on, accepts
    /// `features`, sets queue 0 up with its rings at `rings` and sets
    /// DRIVER_OK.
    fn bring_up(&self, features: u64, rings: u64) {
        let cfg = ECAM_START | u64::from(DEV) << 15;
        self.write(cfg + 0x10, 4, BAR0);
        self.write(cfg + 0x14, 4, 0);
        self.write(cfg + 0x04, 2, 0x6);
        self.common(STATUS, 1, ACKNOWLEDGE);
        self.common(STATUS, 1, ACKNOWLEDGE | DRIVER);
        self.common(GFSELECT, 4, 0);
        self.common(GF, 4, features & 0xffff_ffff);
        self.common(GFSELECT, 4, 1);
        self.common(GF, 4, features >> 32);
        self.common(STATUS, 1, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        assert_ne!(self.device_status() & FEATURES_OK, 0, "FEATURES_OK");
        self.common(Q_SELECT, 2, 0);
        self.common(Q_SIZE, 2, QSIZE);
        self.common(Q_DESC, 8, rings);
        self.common(Q_DRIVER, 8, rings + AVAIL_OFF);
        self.common(Q_DEVICE, 8, rings + USED_OFF);
        self.common(Q_ENABLE, 2, 1);
        self.common(STATUS, 1, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// Submits a read of sector 0 into `data` (512 bytes) with its status
    /// at `status`; returns its used length.
    fn read_sector(&mut self, hdr: u64, data: u64, status: u64) -> u32 {
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&T_IN.to_le_bytes());
        self.ram
            .write_slice(&header, GuestAddress(HDR_GPA))
            .unwrap();
        self.ram_write(STATUS_GPA, 0xffu8);
        self.submit(&[(hdr, 16, 1), (data, 512, 3), (status, 1, 2)])
    }

    /// Writes the chain `descs` (address, length, flags), at most three
    /// descriptors, makes it available, notifies queue 0 and waits for
    /// the device to return it; returns its used length.
    fn submit(&mut self, descs: &[(u64, u32, u16)]) -> u32 {
        let head = u64::from(self.requests % 5) * 3;
        for (k, &(addr, len, flags)) in descs.iter().enumerate() {
            let at = RING_GPA + (head + k as u64) * 16;
            self.ram_write(at, addr);
            self.ram_write(at + 8, len);
            self.ram_write(at + 12, flags);
            self.ram_write(at + 14, (head + k as u64 + 1) as u16);
        }
        let slot = u64::from(self.requests) % QSIZE;
        self.ram_write(RING_GPA + AVAIL_OFF + 4 + 2 * slot, head as u16);
        self.requests += 1;
        self.ram_write(RING_GPA + AVAIL_OFF + 2, self.requests);
        self.write(BAR0 + NOTIFY_OFFSET, 2, 0);
        let start = Instant::now();
        loop {
            let used: u16 = self
                .ram
                .read_obj(GuestAddress(RING_GPA + USED_OFF + 2))
                .unwrap();
            if used == self.requests {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no used entry");
            std::thread::sleep(Duration::from_millis(1));
        }
        let elem = RING_GPA + USED_OFF + 4 + 8 * (u64::from(self.requests - 1) % QSIZE);
        self.ram.read_obj(GuestAddress(elem + 4)).unwrap()
    }

    /// The fault recording register: (FI, source ID, reason, T bit).
    fn fault(&self) -> (u64, u64, u64, bool) {
        let lo = self.read(VTD_START + FRCD, 8);
        let hi = self.read(VTD_START + FRCD + 8, 8);
        assert_ne!(hi & 1 << 63, 0, "F: a fault is recorded");
        (lo, hi & 0xffff, hi >> 32 & 0xff, hi & 1 << 62 != 0)
    }
}

/// The pages a Linux driver maps for one request: rings both ways, the
/// header for the device to read, the data and the status for it to write.
const LINUX_MAPPINGS: [(u64, u64, u64); 4] = [
    (RING_IOVA, RING_GPA, R | W),
    (HDR_IOVA, HDR_GPA, R),
    (DATA_IOVA, DATA_GPA, R | W),
    (STATUS_IOVA, STATUS_GPA, W),
];

#[test]
fn test_virtio_blk_offers_access_platform_behind_the_unit() {
    let m = Machine::new();
    let cfg = ECAM_START | u64::from(DEV) << 15;
    m.write(cfg + 0x10, 4, BAR0);
    m.write(cfg + 0x14, 4, 0);
    m.write(cfg + 0x04, 2, 0x6);

    let features = m.device_features();

    assert_ne!(features & F_ACCESS_PLATFORM, 0);
}

#[test]
fn test_virtio_blk_with_access_platform_moves_data_through_iovas() {
    let mut m = Machine::new();
    m.write_tables(&LINUX_MAPPINGS);
    m.enable_translation();
    m.bring_up(F_VERSION_1 | F_ACCESS_PLATFORM, RING_IOVA);

    let len = m.read_sector(HDR_IOVA, DATA_IOVA, STATUS_IOVA);

    assert_eq!(m.device_status() & NEEDS_RESET, 0);
    assert_eq!(len, 513, "512 bytes and the status");
    assert_eq!(m.ram_bytes(STATUS_GPA, 1), vec![S_OK]);
    assert_eq!(m.ram_bytes(DATA_GPA, SECTOR), pattern());
    assert_eq!(m.read(VTD_START + FSTS, 4), 0, "no fault");
}

#[test]
fn test_virtio_blk_buffer_at_an_unmapped_iova_is_ioerr_and_a_recorded_fault() {
    let mut m = Machine::new();
    m.write_tables(&LINUX_MAPPINGS);
    m.enable_translation();
    m.bring_up(F_VERSION_1 | F_ACCESS_PLATFORM, RING_IOVA);

    let len = m.read_sector(HDR_IOVA, UNMAPPED_IOVA, STATUS_IOVA);

    assert_eq!(len, 1, "the status only");
    assert_eq!(m.ram_bytes(STATUS_GPA, 1), vec![S_IOERR]);
    assert_eq!(m.device_status() & NEEDS_RESET, 0, "the device goes on");
    assert_eq!(m.read(VTD_START + FSTS, 4) & 0b10, 0b10, "PPF");
    let (fi, sid, reason, read) = m.fault();
    assert_eq!(fi, UNMAPPED_IOVA, "the faulting page");
    assert_eq!(sid, u64::from(DEV) << 3, "SID 00:04.0");
    assert_eq!(reason, 0x5, "write to a non-present page");
    assert!(!read, "T: a write");
    assert_eq!(m.read_sector(HDR_IOVA, DATA_IOVA, STATUS_IOVA), 513);
    assert_eq!(
        m.ram_bytes(DATA_GPA, SECTOR),
        pattern(),
        "the next one works"
    );
}

#[test]
fn test_virtio_blk_status_byte_mapped_read_only_needs_reset() {
    let mut m = Machine::new();
    m.write_tables(&LINUX_MAPPINGS);
    m.enable_translation();
    m.bring_up(F_VERSION_1 | F_ACCESS_PLATFORM, RING_IOVA);

    let len = m.read_sector(HDR_IOVA, DATA_IOVA, HDR_IOVA + 0x100);

    assert_eq!(len, 0, "returned unanswered");
    assert_eq!(m.ram_bytes(HDR_GPA + 0x100, 1), vec![0], "nothing written");
    assert_eq!(m.device_status() & NEEDS_RESET, NEEDS_RESET);
    assert_eq!(m.read(BAR0 + ISR_OFFSET, 1) & 2, 2, "configuration change");
    let (fi, sid, reason, read) = m.fault();
    assert_eq!(fi, HDR_IOVA, "the page");
    assert_eq!(sid, u64::from(DEV) << 3);
    assert_eq!(reason, 0x5, "PTE Write access is not set");
    assert!(!read);
}

#[test]
fn test_virtio_blk_without_access_platform_uses_guest_physical_addresses() {
    let mut m = Machine::new();
    m.write_tables(&LINUX_MAPPINGS);
    m.enable_translation();
    m.bring_up(F_VERSION_1, RING_GPA);

    let len = m.read_sector(HDR_GPA, DATA_GPA, STATUS_GPA);

    assert_eq!(len, 513);
    assert_eq!(m.ram_bytes(STATUS_GPA, 1), vec![S_OK]);
    assert_eq!(m.ram_bytes(DATA_GPA, SECTOR), pattern());
    assert_eq!(m.read(VTD_START + FSTS, 4), 0, "the unit was not asked");
    assert!(m.unit.remapper().enabled(), "though translation is on");
}

/// A virtio-rng machine with the driver's buffer page mapped writable.
fn rng() -> Machine {
    let m = Machine::with(VirtioKind::Rng, None);
    m.write_tables(&[(RING_IOVA, RING_GPA, R | W), (DATA_IOVA, DATA_GPA, W)]);
    m.enable_translation();
    m.bring_up(F_VERSION_1 | F_ACCESS_PLATFORM, RING_IOVA);
    m
}

#[test]
fn test_virtio_rng_with_access_platform_fills_a_buffer_at_an_iova() {
    let mut m = rng();

    let len = m.submit(&[(DATA_IOVA, 64, 2)]);

    assert_eq!(len, 64);
    assert_ne!(m.ram_bytes(DATA_GPA, 64), vec![0u8; 64], "entropy arrived");
    assert_eq!(m.read(VTD_START + FSTS, 4), 0, "no fault");
}

#[test]
fn test_virtio_rng_buffer_at_an_unmapped_iova_is_unfilled_and_a_recorded_fault() {
    let mut m = rng();

    let len = m.submit(&[(UNMAPPED_IOVA, 64, 2)]);

    assert_eq!(len, 0, "nothing written");
    assert_eq!(m.device_status() & NEEDS_RESET, 0);
    let (fi, sid, reason, read) = m.fault();
    assert_eq!(
        (fi, sid, reason, read),
        (UNMAPPED_IOVA, u64::from(DEV) << 3, 5, false)
    );
    assert_eq!(
        m.submit(&[(DATA_IOVA, 16, 2)]),
        16,
        "the next one is served"
    );
}
