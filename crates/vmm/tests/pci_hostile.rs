//! A hostile guest against the whole PCI tree, no VM needed: the machine's
//! own root complex, buses and devices (built from the same `--device`
//! config as a real machine), driven through ECAM on the MMIO bus.
//!
//! A fake guest enumerates the tree as Linux does, checks every serial card
//! through its BAR, then, one function at a time, writes random values to
//! every configuration register and to its BARs. After each attack the
//! cards outside the attacked function's subtree must still work, and a
//! fresh enumeration must bring every card back. Nothing may panic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dma::{Dma, FunctionContext, GuestDma};
use irq::msi::MsiVectors;
use irq::recording::{RecordingLine, RecordingVectors};
use irq::IrqLine;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm::bus::Bus;
use vmm::config::{
    DeviceConfig, DeviceKind, NvmeConfig, NvmeNamespaceConfig, PciSerialConfig, PciSlot,
    VirtioBlkConfig, VirtioConfig, VirtioKind,
};
use vmm::console::ConsoleInput;
use vmm::layout::{ECAM_SIZE, ECAM_START};
use vmm::pci_devices::{self, DmaRoute, FunctionWiring, PciBuildError, Wiring};
use vmm::pci_host::{PciRoot, CONFIG_PORTS_SIZE};

const IO_START: u64 = 0x1000;
const MEM_START: u64 = 0xc000_0000;
const CONFIG_PORTS: u64 = 0xcf8;

/// xorshift64: reproducible randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Interrupts recorded; DMA onto 16 MiB of guest RAM.
struct TestWiring {
    pins: BTreeMap<u32, Arc<RecordingLine>>,
    memory: Arc<GuestMemoryMmap>,
}

/// Run-time wiring (SR-IOV VFs): recording vectors, the same RAM.
#[derive(Debug)]
struct TestFunctionWiring {
    memory: Arc<GuestMemoryMmap>,
}

impl FunctionWiring for TestFunctionWiring {
    fn msi_vectors(&self, _ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors> {
        Arc::new(RecordingVectors::new())
    }

    fn dma(&self, _ctx: &Arc<FunctionContext>, _route: DmaRoute) -> Arc<dyn Dma> {
        Arc::new(GuestDma::new(self.memory.clone()))
    }
}

impl Wiring for TestWiring {
    fn function_wiring(&mut self) -> Arc<dyn FunctionWiring> {
        Arc::new(TestFunctionWiring {
            memory: self.memory.clone(),
        })
    }

    fn intx_pin(&mut self, gsi: u32) -> Result<Arc<dyn IrqLine>, PciBuildError> {
        Ok(self.pins.entry(gsi).or_default().clone())
    }

    fn msi_vectors(&mut self, _ctx: &Arc<FunctionContext>) -> Arc<dyn MsiVectors> {
        Arc::new(RecordingVectors::new())
    }

    fn dma(&mut self, _ctx: &Arc<FunctionContext>, _route: DmaRoute) -> Arc<dyn Dma> {
        Arc::new(GuestDma::new(self.memory.clone()))
    }

    fn has_iommu(&self) -> bool {
        false
    }

    fn console_output(&mut self) -> Box<dyn std::io::Write + Send> {
        Box::new(std::io::sink())
    }

    fn console_input(&mut self, _input: Arc<dyn ConsoleInput>) {}

    fn host_device(
        &mut self,
        sysfs: &std::path::Path,
        _ctx: &Arc<dma::FunctionContext>,
    ) -> Result<Arc<dyn vfio::HostDevice>, PciBuildError> {
        Err(PciBuildError::Device(format!(
            "no host functions here: {}",
            sysfs.display()
        )))
    }

    fn intx_relay(
        &mut self,
        _line: Arc<dyn IrqLine>,
        _gsi: u32,
    ) -> Result<Option<Arc<dyn vfio::IntxRelay>>, PciBuildError> {
        Ok(None)
    }

    fn triggered_vectors(
        &mut self,
        _ctx: &Arc<FunctionContext>,
    ) -> (Arc<dyn MsiVectors>, Arc<dyn vfio::VectorTriggers>) {
        (
            Arc::new(RecordingVectors::new()),
            Arc::new(vfio::testing::FakeTriggers::default()),
        )
    }
}

struct Machine {
    /// The owner of the tree (the buses hold it weakly, as in the VMM).
    _pci: PciRoot,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    disks: Vec<std::path::PathBuf>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        for d in &self.disks {
            let _ = std::fs::remove_file(d);
        }
    }
}

/// A virtio device of type `device` on the next free root-bus slot.
fn virtio(device: VirtioKind) -> DeviceConfig {
    DeviceConfig::new(DeviceKind::Virtio(VirtioConfig {
        device,
        no_msix: false,
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Bdf(u8, u8, u8);

/// A function the fake guest found, with what lies behind it if a bridge.
#[derive(Clone, Debug)]
struct Found {
    bdf: Bdf,
    class: u32,
    /// (I/O?, address, size) of each BAR it assigned.
    bars: Vec<(bool, u64, u64)>,
    /// Functions behind it (bridges).
    behind: Vec<Bdf>,
}

impl Machine {
    fn ecam(b: Bdf, reg: u64) -> u64 {
        ECAM_START | (u64::from(b.0) << 20) | (u64::from(b.1) << 15) | (u64::from(b.2) << 12) | reg
    }

    fn read(&self, b: Bdf, reg: u64, len: usize) -> u32 {
        let mut d = [0u8; 4];
        self.mmio.read(Self::ecam(b, reg), &mut d[..len]);
        u32::from_le_bytes(d)
    }

    fn write(&self, b: Bdf, reg: u64, len: usize, v: u32) {
        self.mmio.write(Self::ecam(b, reg), &v.to_le_bytes()[..len]);
    }

    /// Linux's order, simplified: clear each bridge before using it,
    /// number buses depth first, size and place BARs, open bridge windows
    /// around what lies behind, enable decoding.
    fn enumerate(&self) -> Vec<Found> {
        let mut found = Vec::new();
        let mut next_bus = 0u8;
        let mut io = IO_START;
        let mut mem = MEM_START;
        self.scan(0, &mut next_bus, &mut io, &mut mem, &mut found);
        found
    }

    fn scan(
        &self,
        bus: u8,
        next_bus: &mut u8,
        io: &mut u64,
        mem: &mut u64,
        found: &mut Vec<Found>,
    ) -> Vec<Bdf> {
        let mut here = Vec::new();
        for dev in 0..32 {
            let multi = self.read(Bdf(bus, dev, 0), 0x0c, 4) >> 16 & 0x80 != 0;
            for func in 0..if multi { 8 } else { 1 } {
                let b = Bdf(bus, dev, func);
                if self.read(b, 0, 4) == u32::MAX {
                    continue;
                }
                here.push(b);
                let class = self.read(b, 0x08, 4) >> 8;
                self.write(b, 0x04, 2, 0);
                let header = self.read(b, 0x0e, 1) & 0x7f;
                if header == 1 {
                    *next_bus += 1;
                    let secondary = *next_bus;
                    let buses = u32::from(bus) | u32::from(secondary) << 8 | 0xff << 16;
                    self.write(b, 0x18, 4, buses);
                    *io = io.next_multiple_of(0x1000);
                    *mem = mem.next_multiple_of(0x10_0000);
                    let (io_base, mem_base) = (*io, *mem);
                    let behind = self.scan(secondary, next_bus, io, mem, found);
                    let buses =
                        u32::from(bus) | u32::from(secondary) << 8 | u32::from(*next_bus) << 16;
                    self.write(b, 0x18, 4, buses);
                    *io = io.next_multiple_of(0x1000);
                    *mem = mem.next_multiple_of(0x10_0000);
                    if *io > io_base {
                        let limit = *io - 1;
                        self.write(b, 0x1c, 1, (io_base >> 8) as u32 & 0xf0);
                        self.write(b, 0x1d, 1, (limit >> 8) as u32 & 0xf0);
                        self.write(b, 0x30, 4, 0);
                    } else {
                        self.write(b, 0x1c, 2, 0x00f0);
                    }
                    if *mem > mem_base {
                        let limit = *mem - 1;
                        self.write(
                            b,
                            0x20,
                            4,
                            ((mem_base >> 16) as u32 & 0xfff0)
                                | (((limit >> 16) as u32 & 0xfff0) << 16),
                        );
                    } else {
                        self.write(b, 0x20, 4, 0x0000_fff0);
                    }
                    self.write(b, 0x24, 4, 0x0000_fff0);
                    self.write(b, 0x28, 4, 0);
                    self.write(b, 0x2c, 4, 0);
                    self.write(b, 0x04, 2, 0x7);
                    found.push(Found {
                        bdf: b,
                        class,
                        bars: Vec::new(),
                        behind,
                    });
                } else {
                    let bars = self.place_bars(b, io, mem);
                    self.write(b, 0x04, 2, 0x7);
                    found.push(Found {
                        bdf: b,
                        class,
                        bars,
                        behind: Vec::new(),
                    });
                }
            }
        }
        here
    }

    fn place_bars(&self, b: Bdf, io: &mut u64, mem: &mut u64) -> Vec<(bool, u64, u64)> {
        let mut bars = Vec::new();
        let mut i = 0;
        while i < 6 {
            let reg = 0x10 + 4 * i;
            self.write(b, reg, 4, u32::MAX);
            let raw = self.read(b, reg, 4);
            if raw == 0 {
                i += 1;
                continue;
            }
            let is_io = raw & 1 != 0;
            let is64 = !is_io && raw & 0b110 == 0b100;
            let size = if is_io {
                u64::from(!(raw & !3) & 0xffff) + 1
            } else {
                let mut mask = u64::from(raw & !0xf);
                if is64 {
                    self.write(b, reg + 4, 4, u32::MAX);
                    mask |= u64::from(self.read(b, reg + 4, 4)) << 32;
                } else {
                    mask |= 0xffff_ffff_0000_0000;
                }
                !mask + 1
            };
            let pool = if is_io { &mut *io } else { &mut *mem };
            let addr = pool.next_multiple_of(size);
            *pool = addr + size;
            self.write(b, reg, 4, addr as u32);
            if is64 {
                self.write(b, reg + 4, 4, (addr >> 32) as u32);
            }
            bars.push((is_io, addr, size));
            i += if is64 { 2 } else { 1 };
        }
        bars
    }

    /// Whether the serial card with I/O BAR at `port` answers: its scratch
    /// register keeps what is written.
    fn card_works(&self, port: u64, value: u8) -> bool {
        let mut d = [0u8; 1];
        self.pio.write(port + 7, &[value]) && self.pio.read(port + 7, &mut d) && d[0] == value
    }
}

fn serial(id: Option<&str>, bus: Option<&str>, addr: Option<(u8, u8)>) -> DeviceConfig {
    DeviceConfig {
        kind: DeviceKind::PciSerial(PciSerialConfig::default()),
        id: id.map(String::from),
        bus: bus.map(String::from),
        addr: addr.map(|(device, function)| PciSlot { device, function }),
    }
}

fn bridge(kind: DeviceKind, id: &str, bus: Option<&str>) -> DeviceConfig {
    DeviceConfig {
        kind,
        id: Some(id.into()),
        bus: bus.map(String::from),
        addr: None,
    }
}

fn machine() -> Machine {
    let disk = std::env::temp_dir().join(format!(
        "iovm-pci-hostile-{}-{:?}.img",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let virtio_disk = disk.with_extension("virtio.img");
    std::fs::write(&virtio_disk, vec![0u8; 1 << 20]).unwrap();
    let devices = vec![
        bridge(DeviceKind::RootPort(Default::default()), "rp0", None),
        bridge(DeviceKind::RootPort(Default::default()), "rp1", None),
        bridge(DeviceKind::PciBridge, "br0", Some("rp1")),
        serial(None, Some("br0"), Some((2, 0))),
        serial(None, Some("rp0"), None),
        serial(None, None, Some((5, 0))),
        serial(None, None, Some((5, 1))),
        DeviceConfig {
            kind: DeviceKind::Nvme(NvmeConfig::default()),
            id: Some("nvme0".into()),
            bus: None,
            addr: Some(PciSlot {
                device: 6,
                function: 0,
            }),
        },
        namespace(&disk, "nvme0", None),
        virtio(VirtioKind::Blk(VirtioBlkConfig {
            path: virtio_disk.clone(),
            ..Default::default()
        })),
        virtio(VirtioKind::Rng),
        virtio(VirtioKind::Console),
    ];
    machine_of(&devices, vec![disk, virtio_disk])
}

fn namespace(disk: &std::path::Path, bus: &str, vf: Option<u16>) -> DeviceConfig {
    DeviceConfig {
        kind: DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
            path: disk.to_path_buf(),
            readonly: false,
            block_size: 512,
            vf,
        }),
        id: None,
        bus: Some(bus.into()),
        addr: None,
    }
}

/// The tree of `devices` on buses of its own, reached through ECAM and
/// the configuration ports; `disks` are removed with it.
fn machine_of(devices: &[DeviceConfig], disks: Vec<std::path::PathBuf>) -> Machine {
    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let pci = PciRoot::new(pio.clone(), mmio.clone()).unwrap();
    pio.insert(
        CONFIG_PORTS,
        CONFIG_PORTS_SIZE,
        0,
        Arc::new(Mutex::new(pci.config_ports())),
    )
    .unwrap();
    mmio.insert(ECAM_START, ECAM_SIZE, 0, Arc::new(Mutex::new(pci.ecam())))
        .unwrap();
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let mut wiring = TestWiring {
        pins: BTreeMap::new(),
        memory: Arc::new(memory),
    };
    pci_devices::build(devices, &pci, &mut wiring, 1).unwrap();
    Machine {
        _pci: pci,
        pio,
        mmio,
        disks,
    }
}

const CLASS_SERIAL: u32 = 0x07_00_02;
const CLASS_NVME: u32 = 0x01_08_02;

/// The NVMe controller's BAR 0 address, if enumerated.
fn nvme_bar(found: &[Found]) -> Option<u64> {
    found
        .iter()
        .find(|f| f.class == CLASS_NVME)
        .map(|f| f.bars[0].1)
}

/// Whether the NVMe controller answers at its BAR: VS reads 1.4.
fn nvme_answers(m: &Machine, bar: u64) -> bool {
    let mut vs = [0u8; 4];
    m.mmio.read(bar + 8, &mut vs) && u32::from_le_bytes(vs) == 0x0001_0400
}

fn cards(found: &[Found]) -> Vec<(Bdf, u64)> {
    found
        .iter()
        .filter(|f| f.class == CLASS_SERIAL)
        .map(|f| (f.bdf, f.bars[0].1))
        .collect()
}

/// `target` and every function behind it.
fn subtree(found: &[Found], target: Bdf) -> Vec<Bdf> {
    let mut out = vec![target];
    let mut i = 0;
    while i < out.len() {
        if let Some(f) = found.iter().find(|f| f.bdf == out[i]) {
            out.extend(f.behind.iter().copied());
        }
        i += 1;
    }
    out
}

#[test]
fn test_fake_guest_enumerates_the_tree_and_reaches_every_card() {
    let m = machine();

    let found = m.enumerate();
    let cards = cards(&found);

    let bdfs: Vec<_> = cards.iter().map(|c| c.0).collect();
    assert_eq!(
        bdfs,
        vec![Bdf(1, 0, 0), Bdf(3, 2, 0), Bdf(0, 5, 0), Bdf(0, 5, 1)]
    );
    for (bdf, port) in cards {
        assert!(m.card_works(port, 0x5a), "{bdf:?} at {port:#x}");
    }
}

#[test]
fn test_hostile_config_and_bar_writes_to_each_function_spare_the_others() {
    let m = machine();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let found = m.enumerate();
    let targets: Vec<Found> = found.clone();
    assert_eq!(
        targets.len(),
        12,
        "host bridge, 2 root ports, a bridge, 4 cards, an NVMe controller, \
         virtio block, entropy and console: {targets:?}"
    );

    for target in targets {
        for _ in 0..3000 {
            let reg = rng.below(4096);
            let len = [1usize, 2, 4][rng.below(3) as usize];
            m.write(target.bdf, reg & !(len as u64 - 1), len, rng.next() as u32);
        }
        for &(io, addr, size) in &target.bars {
            for _ in 0..200 {
                let at = addr + rng.below(size);
                let v = [rng.next() as u8];
                if io {
                    m.pio.write(at, &v);
                } else {
                    m.mmio.write(at, &v);
                }
            }
        }
        for _ in 0..200 {
            let port = CONFIG_PORTS + rng.below(8);
            let v = (rng.next() as u32).to_le_bytes();
            let len = [1usize, 2, 4][rng.below(3) as usize];
            m.pio.write(port, &v[..len]);
        }

        let hit = subtree(&found, target.bdf);
        for (bdf, port) in cards(&found) {
            if !hit.contains(&bdf) {
                assert!(
                    m.card_works(port, 0xa5),
                    "{bdf:?} broken by writes to {:?}",
                    target.bdf
                );
            }
        }
        if target.class != CLASS_NVME {
            let bar = nvme_bar(&found).unwrap();
            assert!(
                nvme_answers(&m, bar),
                "NVMe broken by writes to {:?}",
                target.bdf
            );
        }
        let again = m.enumerate();
        assert_eq!(cards(&again).len(), 4, "after attacking {:?}", target.bdf);
        let bar = nvme_bar(&again).unwrap();
        assert!(
            nvme_answers(&m, bar),
            "NVMe does not come back after attacking {:?}",
            target.bdf
        );
        for (bdf, port) in cards(&again) {
            assert!(
                m.card_works(port, 0x3c),
                "{bdf:?} does not come back after attacking {:?}",
                target.bdf
            );
        }
        assert_eq!(
            cards(&again),
            cards(&found),
            "the same addresses once enumerated again"
        );
    }
}

#[test]
fn test_a_bar_moved_onto_another_cards_leaves_that_card_working() {
    let m = machine();
    let found = m.enumerate();
    let cards = cards(&found);
    let (victim, victim_port) = cards[2];
    let (attacker, _) = cards[3];

    m.write(attacker, 0x10, 4, victim_port as u32 | 1);

    assert!(m.card_works(victim_port, 0x77), "{victim:?}");
    let mut d = [0u8; 1];
    m.pio.write(victim_port + 7, &[0x11]);
    m.pio.read(victim_port + 7, &mut d);
    assert_eq!(d, [0x11], "the victim still owns its ports");
}

/// A root port with an SR-IOV NVMe PF (4 VFs, a namespace each) behind
/// it, and a serial card on the root bus.
fn sriov_machine() -> Machine {
    let disks: Vec<std::path::PathBuf> = (0..5)
        .map(|i| {
            let d = std::env::temp_dir().join(format!(
                "iovm-pci-hostile-sriov-{}-{:?}-{i}.img",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::write(&d, vec![0u8; 1 << 20]).unwrap();
            d
        })
        .collect();
    let mut devices = vec![
        bridge(DeviceKind::RootPort(Default::default()), "rp0", None),
        DeviceConfig {
            kind: DeviceKind::Nvme(NvmeConfig {
                sriov_vfs: 4,
                ..NvmeConfig::default()
            }),
            id: Some("pf".into()),
            bus: Some("rp0".into()),
            addr: None,
        },
        namespace(&disks[0], "pf", None),
        serial(None, None, Some((5, 0))),
    ];
    for (k, d) in disks.iter().enumerate().skip(1) {
        devices.push(namespace(d, "pf", Some(k as u16 - 1)));
    }
    machine_of(&devices, disks)
}

/// The SR-IOV capability's offset in the PF at `pf`.
fn sriov_cap(m: &Machine, pf: Bdf) -> u64 {
    pci::caps::list::walk_extended(|o| m.read(pf, o as u64, 4))
        .into_iter()
        .find(|c| c.id == pci::caps::sriov_regs::SRIOV_ID)
        .expect("SR-IOV capability")
        .offset as u64
}

#[test]
fn test_hostile_writes_to_an_sriov_pf_and_its_vfs_spare_the_rest_and_it_comes_back() {
    use pci::caps::sriov_regs::{control, CONTROL, NUM_VFS, SIZE};
    let m = sriov_machine();
    let mut rng = Rng(0x5eed_0020_0000_0001);
    let found = m.enumerate();
    let pf = Bdf(1, 0, 0);
    assert_eq!(m.read(pf, 0x08, 4) >> 8, CLASS_NVME, "{found:?}");
    let port = found.iter().find(|f| f.bdf == Bdf(0, 1, 0)).unwrap().bdf;
    let pcie = pci::caps::list::walk(|o| m.read(port, o as u64, 4))
        .into_iter()
        .find(|c| c.id == 0x10)
        .unwrap()
        .offset as u64;
    // ARI Forwarding, so VFs past function 7 are reachable too.
    m.write(port, pcie + 0x28, 2, 1 << 5);
    let at = sriov_cap(&m, pf);

    for _ in 0..20 {
        for _ in 0..500 {
            let len = [1usize, 2, 4][rng.below(3) as usize];
            let reg = if rng.below(2) == 0 {
                at + rng.below(SIZE as u64)
            } else {
                rng.below(4096)
            };
            m.write(pf, reg & !(len as u64 - 1), len, rng.next() as u32);
        }
        for f in 1..=5u8 {
            let vf = Bdf(1, f >> 3, f & 7);
            for _ in 0..50 {
                let len = [1usize, 2, 4][rng.below(3) as usize];
                let reg = rng.below(4096) & !(len as u64 - 1);
                m.write(vf, reg, len, rng.next() as u32);
            }
        }
        let (card, io) = cards(&found)[0];
        assert!(m.card_works(io, 0x5a), "{card:?} broken by the PF's writes");
    }

    let again = m.enumerate();
    m.write(port, pcie + 0x28, 2, 1 << 5);
    let at = sriov_cap(&m, pf);
    m.write(pf, at + CONTROL as u64, 2, 0);
    m.write(pf, at + NUM_VFS as u64, 2, 2);
    let on = control::VF_ENABLE | control::VF_MSE | control::ARI_CAPABLE_HIERARCHY;
    m.write(pf, at + CONTROL as u64, 2, u32::from(on));
    let vf_classes: Vec<u32> = (1..=3).map(|f| m.read(Bdf(1, 0, f), 0x08, 4)).collect();
    m.write(pf, at + CONTROL as u64, 2, 0);
    let after: Vec<u32> = (1..=3).map(|f| m.read(Bdf(1, 0, f), 0, 4)).collect();

    let (card, port_io) = cards(&again)[0];
    assert!(m.card_works(port_io, 0xa5), "{card:?}");
    assert!(nvme_answers(&m, nvme_bar(&again).unwrap()), "the PF");
    assert_eq!(vf_classes[0] >> 8, CLASS_NVME);
    assert_eq!(vf_classes[1] >> 8, CLASS_NVME);
    assert_eq!(vf_classes[2], u32::MAX, "NumVFs 2: no third VF");
    assert_eq!(after, vec![u32::MAX; 3], "all gone after VF Enable clears");
}
