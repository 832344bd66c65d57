//! An SR-IOV NVMe PF behind a root port, driven through ECAM as Linux's
//! `iov.c` drives it: VFs appear at the ARI functions after the PF when VF
//! Enable is set, their BARs decode on the MMIO bus at the PF's VF BAR
//! plus k × 16 KiB, and they are gone (config space and MMIO) when it is
//! cleared; enabling again brings fresh ones.

use std::path::PathBuf;
use std::sync::Arc;

use devices::BusDevice;
use pci::caps::list::{walk, walk_extended};
use pci::caps::pcie_regs::{devctl2, DEVCTL2};
use pci::caps::sriov_regs::{control, CONTROL, NUM_VFS, SRIOV_ID, VF_BAR0};
use pci::caps::{id, sriov_regs};
use pci::config::{command, COMMAND};
use pci::type1::reg;

use crate::bus::Bus;
use crate::config::{DeviceConfig, DeviceKind, NvmeConfig, NvmeNamespaceConfig, PciSlot};
use crate::pci_devices::test_wiring::TestWiring;
use crate::pci_devices::{self as pci_devices, PciBuildError};
use crate::pci_host::PciRoot;

const VF_BASE: u64 = 0xc010_0000;
const SECONDARY: u8 = 1;

struct Disk(PathBuf);

impl Disk {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "iovm-sriov-{}-{name}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        Self(path)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Machine {
    pci: PciRoot,
    mmio: Arc<Bus>,
    wiring: TestWiring,
    _disks: Vec<Disk>,
}

fn namespace(path: &Disk, vf: Option<u16>) -> DeviceConfig {
    DeviceConfig {
        bus: Some("n0".into()),
        ..DeviceConfig::new(DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
            path: path.0.clone(),
            readonly: false,
            block_size: 512,
            vf,
        }))
    }
}

fn devices(vfs: u16, disks: &[Disk]) -> Vec<DeviceConfig> {
    let mut d = vec![
        DeviceConfig {
            id: Some("rp0".into()),
            addr: Some(PciSlot {
                device: 1,
                function: 0,
            }),
            ..DeviceConfig::new(DeviceKind::RootPort(Default::default()))
        },
        DeviceConfig {
            id: Some("n0".into()),
            bus: Some("rp0".into()),
            ..DeviceConfig::new(DeviceKind::Nvme(NvmeConfig {
                sriov_vfs: vfs,
                queues: Some(2),
                ..NvmeConfig::default()
            }))
        },
        namespace(&disks[0], None),
    ];
    for (k, disk) in disks.iter().enumerate().skip(1) {
        d.push(namespace(disk, Some(k as u16 - 1)));
    }
    d
}

fn machine(vfs: u16) -> Result<Machine, PciBuildError> {
    let disks: Vec<Disk> = (0..=vfs.min(2))
        .map(|i| Disk::new(&format!("d{i}")))
        .collect();
    let mmio = Arc::new(Bus::new());
    let pci = PciRoot::new(Arc::new(Bus::new()), mmio.clone()).unwrap();
    let mut wiring = TestWiring::new();
    pci_devices::build(&devices(vfs, &disks), &pci, &mut wiring, 2)?;
    Ok(Machine {
        pci,
        mmio,
        wiring,
        _disks: disks,
    })
}

fn ecam(bus: u8, device: u8, function: u8, reg: usize) -> u64 {
    (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12) | reg as u64
}

impl Machine {
    fn read32(&self, bus: u8, dev: u8, f: u8, reg: usize) -> u32 {
        let mut d = [0u8; 4];
        self.pci.ecam().read(ecam(bus, dev, f, reg), &mut d);
        u32::from_le_bytes(d)
    }

    fn write(&self, bus: u8, dev: u8, f: u8, reg: usize, data: &[u8]) {
        self.pci.ecam().write(ecam(bus, dev, f, reg), data);
    }

    /// Bus numbers, a memory window over VF_BASE, decoding and ARI
    /// Forwarding on the root port, as Linux leaves them.
    fn set_up_root_port(&self) {
        self.write(0, 1, 0, reg::PRIMARY_BUS, &[0, SECONDARY, SECONDARY]);
        let window = ((VF_BASE >> 16) as u16, ((VF_BASE + 0xf_ffff) >> 16) as u16);
        self.write(0, 1, 0, reg::MEM_BASE, &window.0.to_le_bytes());
        self.write(0, 1, 0, reg::MEM_LIMIT, &window.1.to_le_bytes());
        let cmd = command::MEMORY | command::BUS_MASTER;
        self.write(0, 1, 0, COMMAND, &cmd.to_le_bytes());
        let pcie = walk(|o| self.read32(0, 1, 0, o))
            .into_iter()
            .find(|c| c.id == u16::from(id::PCIE))
            .unwrap()
            .offset;
        self.write(
            0,
            1,
            0,
            pcie + DEVCTL2,
            &devctl2::ARI_FORWARDING.to_le_bytes(),
        );
    }

    fn sriov(&self) -> usize {
        walk_extended(|o| self.read32(SECONDARY, 0, 0, o))
            .into_iter()
            .find(|c| c.id == SRIOV_ID)
            .expect("SR-IOV capability")
            .offset
    }

    /// `iov.c`'s enable: VF BAR placed, NumVFs, then VF Enable | VF MSE
    /// (with ARI Capable Hierarchy) in one write.
    fn enable_vfs(&self, n: u16) {
        let at = self.sriov();
        self.write(
            SECONDARY,
            0,
            0,
            at + VF_BAR0,
            &(VF_BASE as u32).to_le_bytes(),
        );
        self.write(SECONDARY, 0, 0, at + VF_BAR0 + 4, &0u32.to_le_bytes());
        self.write(SECONDARY, 0, 0, at + NUM_VFS, &n.to_le_bytes());
        let ctl = control::VF_ENABLE | control::VF_MSE | control::ARI_CAPABLE_HIERARCHY;
        self.write(SECONDARY, 0, 0, at + CONTROL, &ctl.to_le_bytes());
    }

    fn disable_vfs(&self) {
        let at = self.sriov();
        let ctl = control::ARI_CAPABLE_HIERARCHY;
        self.write(SECONDARY, 0, 0, at + CONTROL, &ctl.to_le_bytes());
    }

    /// The NVMe CAP register (low half) of the VF whose BAR is at `addr`.
    fn cap_at(&self, addr: u64) -> Option<u32> {
        let mut d = [0u8; 4];
        self.mmio.read(addr, &mut d).then(|| u32::from_le_bytes(d))
    }

    fn vf_wirings(&self) -> usize {
        self.wiring.function_wirings[0]
            .vectors
            .lock()
            .unwrap()
            .len()
    }
}

#[test]
fn test_sriov_vfs_appear_on_enable_with_bars_and_leave_on_disable() {
    let m = machine(2).unwrap();
    m.set_up_root_port();

    let before = m.read32(SECONDARY, 0, 1, 0);
    m.enable_vfs(2);
    let vf_ids = [m.read32(SECONDARY, 0, 1, 0), m.read32(SECONDARY, 0, 2, 0)];
    let vf_class = m.read32(SECONDARY, 0, 1, 8) >> 8;
    let third = m.read32(SECONDARY, 0, 3, 0);
    let caps = [m.cap_at(VF_BASE), m.cap_at(VF_BASE + 0x4000)];
    m.disable_vfs();

    assert_eq!(before, u32::MAX, "no VF before VF Enable");
    assert_eq!(vf_ids, [u32::MAX; 2], "VFs read FFFFh IDs");
    assert_eq!(vf_class, 0x01_08_02);
    assert_eq!(third, u32::MAX, "NumVFs = 2: no third VF");
    assert!(caps.iter().all(|c| c.is_some_and(|v| v & 0xffff == 1023)));
    assert_eq!(
        m.read32(SECONDARY, 0, 1, 8),
        u32::MAX,
        "gone from config space"
    );
    assert_eq!(m.cap_at(VF_BASE), None, "gone from the MMIO bus");
}

#[test]
fn test_sriov_enable_again_brings_fresh_vfs() {
    let m = machine(2).unwrap();
    m.set_up_root_port();

    m.enable_vfs(2);
    m.disable_vfs();
    m.enable_vfs(1);

    assert_eq!(m.read32(SECONDARY, 0, 1, 8) >> 8, 0x01_08_02);
    assert_eq!(m.read32(SECONDARY, 0, 2, 8), u32::MAX);
    assert!(m.cap_at(VF_BASE).is_some());
    assert_eq!(m.vf_wirings(), 3, "two VFs, then one fresh one");
}

#[test]
fn test_sriov_num_vfs_above_total_creates_nothing() {
    let m = machine(2).unwrap();
    m.set_up_root_port();

    m.enable_vfs(3);

    assert_eq!(m.read32(SECONDARY, 0, 1, 8), u32::MAX);
    assert_eq!(m.vf_wirings(), 0);
    assert_eq!(m.read32(SECONDARY, 0, 0, m.sriov() + CONTROL) & 1, 0);
}

#[test]
fn test_sriov_vf_mse_off_unmaps_vf_bars_and_on_maps_them() {
    let m = machine(2).unwrap();
    m.set_up_root_port();
    m.enable_vfs(2);
    let at = m.sriov();

    let enable = control::VF_ENABLE | control::ARI_CAPABLE_HIERARCHY;
    m.write(SECONDARY, 0, 0, at + CONTROL, &enable.to_le_bytes());
    let off = m.cap_at(VF_BASE + 0x4000);
    let on = enable | control::VF_MSE;
    m.write(SECONDARY, 0, 0, at + CONTROL, &on.to_le_bytes());

    assert_eq!(off, None);
    assert!(m.cap_at(VF_BASE + 0x4000).is_some());
    assert_eq!(m.read32(SECONDARY, 0, 2, 8) >> 8, 0x01_08_02, "VF stays");
}

#[test]
fn test_sriov_nine_vfs_use_ari_functions_past_seven() {
    let m = machine(9).unwrap();
    m.set_up_root_port();

    m.enable_vfs(9);

    let ninth = m.read32(SECONDARY, 1, 1, 8) >> 8;
    assert_eq!(
        ninth, 0x01_08_02,
        "VF 8 is ARI function 9: device 1, function 1"
    );
    assert!(m.cap_at(VF_BASE + 8 * 0x4000).is_some());
}

#[test]
fn test_sriov_pf_flr_removes_its_vfs() {
    let m = machine(2).unwrap();
    m.set_up_root_port();
    m.enable_vfs(2);
    let pcie = walk(|o| m.read32(SECONDARY, 0, 0, o))
        .into_iter()
        .find(|c| c.id == u16::from(id::PCIE))
        .unwrap()
        .offset;

    m.write(
        SECONDARY,
        0,
        0,
        pcie + pci::caps::pcie_regs::DEVCTL,
        &pci::caps::pcie_regs::devctl::INITIATE_FLR.to_le_bytes(),
    );

    assert_eq!(m.read32(SECONDARY, 0, 1, 8), u32::MAX);
    assert_eq!(m.cap_at(VF_BASE), None);
    assert_eq!(
        m.read32(SECONDARY, 0, 0, m.sriov() + sriov_regs::NUM_VFS),
        0
    );
}

#[test]
fn test_sriov_pf_must_sit_behind_a_root_port() {
    let mut d = devices(2, &[Disk::new("x")]);
    d[1].bus = None;

    let e = match pci_devices::build(
        &d,
        &crate::pci_devices::test_wiring::root(),
        &mut TestWiring::new(),
        1,
    ) {
        Ok(()) => panic!("built"),
        Err(e) => e.to_string(),
    };

    assert!(e.contains("behind a root port"), "{e}");
}
