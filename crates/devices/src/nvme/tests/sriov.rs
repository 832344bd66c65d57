//! SR-IOV: a PF with VFs, each VF a whole controller of the PF's subsystem
//! with a private namespace; the PF's SR-IOV capability placing the VFs'
//! BARs; Function Level Reset of a VF, mid-I/O too.

use backend::EngineKind;
use pci::caps::ari::ARI_ID;
use pci::caps::id;
use pci::caps::pcie_regs::{devctl, DEVCTL};
use pci::caps::sriov::VfChange;
use pci::caps::sriov_regs::{control, *};
use pci::config::BarWindow;
use pci::function::PciFunction;
use pci::testing::{BarDriver, ConfigDriver};

use super::driver::*;
use crate::nvme::identify::{CMIC_MULTI_CONTROLLER, CMIC_SRIOV_VF};
use crate::nvme::{NvmeConfig, PciRole, SubsystemConfig, BAR0_SIZE};

const NQN: &str = "nqn.2026-12.dev.iovm:sriov-test";
const VFS: u16 = 4;

fn subsystem(cntlid: u16, first_nsid: u32) -> SubsystemConfig {
    SubsystemConfig {
        nqn: Some(NQN.into()),
        cntlid,
        multi_controller: true,
        first_nsid,
        max_nsid: Some(1 + u32::from(VFS)),
    }
}

fn as_pf(cfg: &mut NvmeConfig) {
    cfg.role = PciRole::PhysicalFunction { total_vfs: VFS };
    cfg.subsystem = subsystem(0, 1);
}

fn as_vf0(cfg: &mut NvmeConfig) {
    cfg.role = PciRole::VirtualFunction;
    cfg.subsystem = subsystem(1, 2);
}

fn as_vf1(cfg: &mut NvmeConfig) {
    cfg.role = PciRole::VirtualFunction;
    cfg.subsystem = subsystem(2, 3);
}

fn driver(configure: fn(&mut NvmeConfig)) -> Driver {
    Driver::with(Setup {
        configure,
        ..Setup::default()
    })
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn nqn(id: &[u8]) -> String {
    let field = &id[768..1024];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

#[test]
fn test_pf_offers_sriov_ari_and_flr() {
    let d = driver(as_pf);
    let sriov = d.nvme.extended_capability(SRIOV_ID).expect("SR-IOV");
    let pcie = d.nvme.capability(id::PCIE).unwrap();

    assert_eq!(d.nvme.config_read16(sriov + TOTAL_VFS), VFS);
    assert_eq!(d.nvme.config_read16(sriov + INITIAL_VFS), VFS);
    assert_eq!(d.nvme.config_read16(sriov + VF_DEVICE_ID), 0x0010);
    let vf_bar = d.nvme.config_read32(sriov + VF_BAR0);
    assert_eq!(vf_bar & 0xf, 0x4, "VF BAR0 is 64-bit memory");
    assert!(d.nvme.extended_capability(ARI_ID).is_some());
    assert_ne!(d.nvme.config_read32(pcie + 4) & (1 << 28), 0, "FLR capable");
    assert_eq!(d.nvme.config_read16(0), 0x1b36, "the PF has its own IDs");
}

#[test]
fn test_pf_vf_enable_reports_effect_and_places_vf_bars() {
    let mut d = driver(as_pf);
    let sriov = d.nvme.extended_capability(SRIOV_ID).unwrap();
    d.nvme.config_write32(sriov + VF_BAR0, 0x8000_0000);
    d.nvme.config_write32(sriov + VF_BAR0 + 4, 0x1);
    d.nvme.config_write16(sriov + NUM_VFS, 2);

    let e = d
        .nvme
        .config_write16(sriov + CONTROL, control::VF_ENABLE | control::VF_MSE);

    assert_eq!(e.sriov.unwrap().vfs, Some(VfChange::Enabled(2)));
    let windows: Vec<_> = (0..3).map(|vf| d.nvme.vf_bar_windows(vf)[0].1).collect();
    assert_eq!(
        windows,
        vec![
            Some(BarWindow {
                addr: 0x1_8000_0000,
                size: BAR0_SIZE
            }),
            Some(BarWindow {
                addr: 0x1_8000_0000 + BAR0_SIZE,
                size: BAR0_SIZE
            }),
            None,
        ]
    );
    assert_eq!(d.nvme.vf_function(0), Some(1));
    assert_eq!(d.nvme.vf_function(3), Some(4));
    assert!(
        d.nvme.bar_windows()[0].1.is_none(),
        "the PF's own BAR is apart"
    );
}

#[test]
fn test_pf_num_vfs_above_total_enables_nothing() {
    let mut d = driver(as_pf);
    let sriov = d.nvme.extended_capability(SRIOV_ID).unwrap();
    d.nvme.config_write16(sriov + NUM_VFS, VFS + 1);

    let e = d.nvme.config_write16(sriov + CONTROL, control::VF_ENABLE);

    assert_eq!(e.sriov, None);
    assert_eq!(d.nvme.config_read16(sriov + CONTROL), 0);
}

#[test]
fn test_vf_header_reads_ffff_ids_msix_only_no_intx() {
    let mut d = driver(as_vf0);

    let size = d.nvme.size_bar(0);

    assert_eq!(d.nvme.config_read32(0), 0xffff_ffff);
    assert_eq!(d.nvme.config_read32(8) >> 8, 0x01_08_02);
    assert_eq!(d.nvme.config_read8(0x3d), 0, "no interrupt pin");
    assert!(d.nvme.capability(id::MSIX).is_some());
    assert!(d.nvme.capability(id::MSI).is_none());
    assert!(size.is_none(), "VF BARs are read-only zero");
    assert!(
        d.nvme.bar_windows()[0].1.is_none(),
        "until the PF places it"
    );
}

#[test]
fn test_vf_identify_reports_subsystem_cntlid_cmic_and_its_namespace() {
    let mut d = driver(as_vf1);
    d.bring_up();

    let (c, id) = d.identify(0x01, 0);
    let (_, active) = d.identify(0x02, 0);
    let (own, ns) = d.identify(0x00, 3);
    let (other, other_ns) = d.identify(0x00, 2);
    let (past, _) = d.identify(0x00, 6);

    assert!(c.ok());
    assert_eq!(le16(&id, 78), 2, "CNTLID");
    assert_eq!(id[76], CMIC_MULTI_CONTROLLER | CMIC_SRIOV_VF);
    assert_eq!(nqn(&id), NQN);
    assert_eq!(le32(&id, 516), 1 + u32::from(VFS), "NN: the subsystem's");
    assert_eq!(le32(&active, 0), 3, "only its own namespace is active");
    assert_eq!(le32(&active, 4), 0);
    assert!(own.ok() && ns[0..8] != [0; 8], "NSZE of NSID 3");
    assert!(other.ok(), "another controller's NSID is valid, inactive");
    assert!(other_ns.iter().all(|&b| b == 0));
    assert!(!past.ok(), "beyond NN: Invalid Namespace");
}

#[test]
fn test_pf_identify_has_multi_controller_but_no_vf_bit() {
    let mut d = driver(as_pf);
    d.bring_up();

    let (_, id) = d.identify(0x01, 0);

    assert_eq!(le16(&id, 78), 0);
    assert_eq!(id[76], CMIC_MULTI_CONTROLLER);
    assert_eq!(nqn(&id), NQN);
}

#[test]
fn test_vfs_do_io_to_their_own_files_with_their_own_vectors() {
    let mut vf0 = driver(as_vf0);
    let mut vf1 = driver(as_vf1);
    vf0.bring_up_with_queues(1);
    vf1.bring_up_with_queues(1);
    vf0.dma.write(DATA, &[0xa0; 4096]).unwrap();
    vf1.dma.write(DATA, &[0xa1; 4096]).unwrap();

    let w0 = vf0.io(1, rw(true, 2, 0, 8, (DATA, 0)));
    let w1 = vf1.io(1, rw(true, 3, 0, 8, (DATA, 0)));
    let wrong = vf0.io(1, rw(true, 3, 0, 8, (DATA, 0)));

    assert!(w0.ok() && w1.ok());
    assert!(wrong.is(crate::nvme::status::Status::INVALID_NAMESPACE));
    assert!(vf0.files[0].read_at(0, 4096).iter().all(|&b| b == 0xa0));
    assert!(vf1.files[0].read_at(0, 4096).iter().all(|&b| b == 0xa1));
    assert!(!vf0.vectors.sent_vectors().is_empty() && !vf1.vectors.sent_vectors().is_empty());
}

#[test]
fn test_vf_flr_resets_controller_and_msix_then_it_comes_back() {
    let mut d = driver(as_vf0);
    d.bring_up_with_queues(1);
    let pcie = d.nvme.capability(id::PCIE).unwrap();

    let e = d.nvme.config_write16(pcie + DEVCTL, devctl::INITIATE_FLR);

    assert_eq!(e.bus_master, Some(false));
    assert_eq!(d.csts() & 1, 0, "not ready after FLR");
    assert_eq!(d.read32(crate::nvme::regs::CC as u64), 0, "CC reset");
    let msix = d.nvme.capability(id::MSIX).unwrap();
    assert_eq!(d.nvme.config_read16(msix + 2) & 0x8000, 0, "MSI-X off");
    assert_eq!(
        d.nvme.config_read16(pcie + DEVCTL) & devctl::INITIATE_FLR,
        0
    );
    d.bring_up_with_queues(1);
    d.dma.write(DATA, &[0x5a; 4096]).unwrap();
    assert!(d.io(1, rw(true, 2, 16, 8, (DATA, 0))).ok());
    assert!(d.files[0]
        .read_at(16 * 512, 4096)
        .iter()
        .all(|&b| b == 0x5a));
}

#[test]
fn test_vf_flr_mid_io_completes_nothing_into_old_queues_and_recovers() {
    let mut d = Driver::with(Setup {
        configure: as_vf0,
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.bring_up_with_queues(1);
    d.dma.write(DATA, &[0x77; 4096]).unwrap();
    for i in 0..16u64 {
        d.push(1, rw(true, 2, i * 8, 8, (DATA, 0)));
    }
    d.ring_sq(1);
    let pcie = d.nvme.capability(id::PCIE).unwrap();
    let sent_before = d.vectors.sent_vectors().len();

    d.nvme.config_write16(pcie + DEVCTL, devctl::INITIATE_FLR);
    d.nvme.wait_idle();

    assert_eq!(d.csts() & 3, 0, "drained, not ready, not fatal");
    assert_eq!(d.nvme.with_controller(|c| c.in_flight()), 0);
    assert_eq!(
        d.vectors.sent_vectors().len(),
        sent_before,
        "no interrupt after the reset: MSI-X is off"
    );
    d.bring_up_with_queues(1);
    assert!(d.io(1, rw(false, 2, 0, 8, (DATA, 0))).ok());
}

#[test]
fn test_vf_hostile_config_sweep_keeps_ids_and_never_decodes_on_its_own() {
    let mut d = driver(as_vf0);
    let mut x: u64 = 0x5eed_f00d;

    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % 0x200) as usize;
        let len = [1usize, 2, 4][(x >> 20) as usize % 3];
        d.nvme.config_write(off, &x.to_le_bytes()[..len]);
    }

    assert_eq!(d.nvme.config_read32(0), 0xffff_ffff);
    assert_eq!(d.nvme.config_read8(0x3d), 0);
    assert!(d.nvme.bar_windows()[0].1.is_none());
}

#[test]
fn test_vf_dropped_with_io_in_flight_drains_it_into_its_file() {
    let mut d = Driver::with(Setup {
        configure: as_vf0,
        engine: EngineKind::IoUring,
        ..Setup::default()
    });
    d.nvme.start_worker().unwrap();
    d.bring_up_with_queues(1);
    d.dma.write(DATA, &[0x3c; 4096]).unwrap();
    for i in 0..16u64 {
        d.push(1, rw(true, 2, i * 8, 8, (DATA, 0)));
    }
    d.ring_sq(1);
    let Driver { nvme, files, .. } = d;
    // What the VMM does when the guest clears VF Enable: the VF's last
    // reference goes (worker joined, backend drained).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while files[0].read_at(0, 1)[0] != 0x3c && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    drop(nvme);

    let data = files[0].read_at(0, 16 * 4096);
    for (i, block) in data.chunks(4096).enumerate() {
        let whole = block.iter().all(|&b| b == 0x3c) || block.iter().all(|&b| b == 0);
        assert!(whole, "write {i} is all there or not at all");
    }
    assert!(
        data[..4096].iter().all(|&b| b == 0x3c),
        "the first write landed"
    );
}
