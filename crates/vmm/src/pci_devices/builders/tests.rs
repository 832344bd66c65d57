//! Every kind goes through a builder of its own: one device of each kind,
//! built through a recording wiring, answers in configuration space as
//! that kind; a device that cannot be built names its kind and file as
//! before the builders were split.

use std::path::PathBuf;

use devices::ahci::{DEVICE_ICH9_AHCI, VENDOR_INTEL};
use devices::e1000e::DEVICE_82574L;
use devices::nvme::DEVICE_NVME;
use devices::pci_serial::{DEVICE_PCI_SERIAL, VENDOR_REDHAT};
use pci::bridge::{DEVICE_PCI_BRIDGE, DEVICE_ROOT_PORT};
use virtio::pci::caps::{DEVICE_ID_BASE, VENDOR_VIRTIO};

use crate::config::{
    AhciConfig, DeviceConfig, DeviceKind, E1000eConfig, NvmeConfig, NvmeNamespaceConfig,
    PciSerialConfig, PciSlot, SataDiskConfig, VfioPciConfig, VirtioBlkConfig, VirtioConfig,
    VirtioKind, VirtioNetConfig,
};
use crate::pci_devices::test_wiring::{self, TestWiring};
use crate::pci_devices::{self as pci_devices, PciBuildError};
use crate::pci_host::PciRoot;
use devices::BusDevice;

/// The vendor and device ID a device of `kind` has, or `None` for a kind
/// that is no PCI function. No catch-all: a new kind does not compile
/// here until this test knows what its builder makes.
fn identity(kind: &DeviceKind) -> Option<(u16, u16)> {
    let virtio = |id: u16| Some((VENDOR_VIRTIO, DEVICE_ID_BASE + id));
    match kind {
        DeviceKind::RootPort(_) => Some((VENDOR_REDHAT, DEVICE_ROOT_PORT)),
        DeviceKind::PciBridge => Some((VENDOR_REDHAT, DEVICE_PCI_BRIDGE)),
        DeviceKind::PciSerial(_) => Some((VENDOR_REDHAT, DEVICE_PCI_SERIAL)),
        DeviceKind::Nvme(_) => Some((VENDOR_REDHAT, DEVICE_NVME)),
        DeviceKind::NvmeNamespace(_) | DeviceKind::SataDisk(_) => None,
        DeviceKind::Ahci(_) => Some((VENDOR_INTEL, DEVICE_ICH9_AHCI)),
        DeviceKind::E1000e(_) => Some((VENDOR_INTEL, DEVICE_82574L)),
        DeviceKind::VfioPci(_) => Some((0x1b36, 0x0010)),
        DeviceKind::Virtio(v) => match v.device {
            VirtioKind::Net(_) => virtio(1),
            VirtioKind::Blk(_) => virtio(2),
            VirtioKind::Console => virtio(3),
            VirtioKind::Rng => virtio(4),
        },
    }
}

/// A disk image that is removed when dropped.
struct Disk(PathBuf);

impl Disk {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "iovm-builders-{}-{name}-{:?}.img",
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

fn on_slot(kind: DeviceKind, slot: u8) -> DeviceConfig {
    DeviceConfig {
        addr: Some(PciSlot {
            device: slot,
            function: 0,
        }),
        ..DeviceConfig::new(kind)
    }
}

fn virtio(device: VirtioKind) -> DeviceKind {
    DeviceKind::Virtio(VirtioConfig {
        device,
        no_msix: false,
    })
}

fn sata_disk(path: PathBuf, port: Option<u8>) -> DeviceConfig {
    DeviceConfig {
        bus: Some("a0".into()),
        ..DeviceConfig::new(DeviceKind::SataDisk(SataDiskConfig {
            path,
            port,
            ..Default::default()
        }))
    }
}

fn ahci(ports: Option<u8>, slot: u8) -> DeviceConfig {
    DeviceConfig {
        id: Some("a0".into()),
        ..on_slot(
            DeviceKind::Ahci(AhciConfig {
                ports,
                no_msi: false,
            }),
            slot,
        )
    }
}

fn namespace(path: PathBuf) -> DeviceConfig {
    DeviceConfig {
        bus: Some("n0".into()),
        ..DeviceConfig::new(DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
            path,
            readonly: false,
            block_size: 512,
            vf: None,
        }))
    }
}

/// The vendor and device ID at root-bus slot `slot`, through ECAM.
fn id_at(pci: &PciRoot, slot: u8) -> (u16, u16) {
    let mut data = [0u8; 4];
    pci.ecam().read(u64::from(slot) << 15, &mut data);
    (
        u16::from_le_bytes([data[0], data[1]]),
        u16::from_le_bytes([data[2], data[3]]),
    )
}

/// Where the fake host function of `vfio-pci` devices is.
const FAKE_HOST: &str = "/sys/bus/pci/devices/0000:07:00.0";

fn build(devices: &[DeviceConfig]) -> Result<(PciRoot, TestWiring), PciBuildError> {
    let pci = test_wiring::root();
    let mut wiring = TestWiring::new();
    wiring.hosts.insert(
        FAKE_HOST.into(),
        std::sync::Arc::new(vfio::testing::FakeHost::new(vfio::testing::nvme_config())),
    );
    pci_devices::build(devices, &pci, &mut wiring, 2)?;
    Ok((pci, wiring))
}

fn build_error(devices: &[DeviceConfig]) -> String {
    match build(devices) {
        Ok(_) => panic!("built {devices:?}"),
        Err(e) => e.to_string(),
    }
}

/// virtio-net needs a TAP interface, which a unit test does not create:
/// see [`test_virtio_net_goes_to_its_builder`].
#[test]
fn test_one_device_of_every_kind_builds_as_that_kind() {
    let nvme_disk = Disk::new("nvme");
    let blk_disk = Disk::new("blk");
    let sata_disk_file = Disk::new("sata");
    let nvme = DeviceConfig {
        id: Some("n0".into()),
        ..on_slot(DeviceKind::Nvme(NvmeConfig::default()), 4)
    };
    let devices = [
        on_slot(DeviceKind::RootPort(Default::default()), 1),
        on_slot(DeviceKind::PciBridge, 2),
        on_slot(DeviceKind::PciSerial(PciSerialConfig::default()), 3),
        nvme,
        namespace(nvme_disk.0.clone()),
        on_slot(
            virtio(VirtioKind::Blk(VirtioBlkConfig {
                path: blk_disk.0.clone(),
                ..Default::default()
            })),
            5,
        ),
        on_slot(virtio(VirtioKind::Console), 6),
        on_slot(virtio(VirtioKind::Rng), 7),
        on_slot(
            DeviceKind::VfioPci(VfioPciConfig {
                sysfs: FAKE_HOST.into(),
                no_msix: false,
                no_msi: false,
                no_mmap: false,
            }),
            8,
        ),
        ahci(None, 9),
        sata_disk(sata_disk_file.0.clone(), None),
    ];
    let (pci, wiring) = build(&devices).unwrap();
    for d in &devices {
        let Some(expected) = identity(&d.kind) else {
            continue;
        };
        let slot = d.addr.unwrap().device;
        assert_eq!(
            id_at(&pci, slot),
            expected,
            "{} on slot {slot}",
            d.kind.name()
        );
    }
    assert_eq!(
        wiring.console_inputs, 1,
        "the virtio console takes the input"
    );
    // Every endpoint function reports counters, by id or kind and number;
    // bridges and disks (parts of their controller) do not.
    let report = pci.counters().report();
    let names: Vec<&str> = report.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "a0",
            "n0",
            "_pci-serial2",
            "_virtio-blk5",
            "_virtio-console6",
            "_virtio-rng7",
            "_vfio-pci8",
            "vmm"
        ]
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        report["n0"].get("read_ops"),
        Some(0),
        "NVMe reports block figures"
    );
    assert_eq!(report["_virtio-blk5"].get("read_ops"), Some(0));
    assert_eq!(report["_virtio-rng7"].get("read_ops"), None);
    assert_eq!(report["vmm"].get("exits"), Some(0));
}

#[test]
fn test_virtio_net_goes_to_its_builder() {
    let net = virtio(VirtioKind::Net(VirtioNetConfig {
        tap: Some("a-name-longer-than-ifnamsiz".into()),
        ..Default::default()
    }));
    assert_eq!(identity(&net), Some((VENDOR_VIRTIO, DEVICE_ID_BASE + 1)));
    let e = build_error(&[DeviceConfig::new(net)]);
    assert!(
        e.starts_with("virtio-net: invalid TAP interface name"),
        "{e}"
    );
}

#[test]
fn test_virtio_net_with_a_tap_name_and_descriptors_or_other_queues_is_refused() {
    let fd = crate::config::TapFd::new(std::fs::File::open("/dev/null").unwrap().into());
    let both = virtio(VirtioKind::Net(VirtioNetConfig {
        tap: Some("tap0".into()),
        tap_fds: vec![fd.clone()],
        ..Default::default()
    }));
    let queues = virtio(VirtioKind::Net(VirtioNetConfig {
        tap_fds: vec![fd.clone()],
        queues: Some(2),
        ..Default::default()
    }));
    let not_tap = virtio(VirtioKind::Net(VirtioNetConfig {
        tap_fds: vec![fd],
        ..Default::default()
    }));

    let both = build_error(&[DeviceConfig::new(both)]);
    let queues = build_error(&[DeviceConfig::new(queues)]);
    let not_tap = build_error(&[DeviceConfig::new(not_tap)]);

    assert!(both.contains("not both"), "{both}");
    assert!(queues.contains("not queues=2"), "{queues}");
    assert!(
        not_tap.contains("not an attached TUN/TAP descriptor"),
        "{not_tap}"
    );
}

#[test]
fn test_e1000e_goes_to_its_builder() {
    let nic = DeviceKind::E1000e(E1000eConfig {
        tap: Some("a-name-longer-than-ifnamsiz".into()),
        ..Default::default()
    });
    assert_eq!(identity(&nic), Some((VENDOR_INTEL, DEVICE_82574L)));
    let e = build_error(&[DeviceConfig::new(nic)]);
    assert!(e.starts_with("e1000e: invalid TAP interface name"), "{e}");
}

#[test]
fn test_missing_disks_name_the_kind_and_file() {
    let missing = PathBuf::from("/nonexistent/disk.img");
    let nvme = DeviceConfig {
        id: Some("n0".into()),
        ..DeviceConfig::new(DeviceKind::Nvme(NvmeConfig::default()))
    };
    let e = build_error(&[nvme, namespace(missing.clone())]);
    assert!(e.starts_with("nvme-ns /nonexistent/disk.img: "), "{e}");
    let blk = virtio(VirtioKind::Blk(VirtioBlkConfig {
        path: missing,
        ..Default::default()
    }));
    let e = build_error(&[DeviceConfig::new(blk)]);
    assert!(e.starts_with("virtio-blk /nonexistent/disk.img: "), "{e}");
}

#[test]
fn test_sata_disk_ports_are_checked() {
    let a = Disk::new("sata-a");
    let b = Disk::new("sata-b");
    let e = build_error(&[ahci(Some(2), 3), sata_disk(a.0.clone(), Some(2))]);
    assert!(
        e.contains("port=2, but its ahci controller has ports 0-1"),
        "{e}"
    );
    let e = build_error(&[
        ahci(Some(2), 3),
        sata_disk(a.0.clone(), Some(1)),
        sata_disk(b.0.clone(), Some(1)),
    ]);
    assert!(e.contains("port 1 already has a disk"), "{e}");
    let e = build_error(&[
        ahci(Some(1), 3),
        sata_disk(a.0.clone(), None),
        sata_disk(b.0.clone(), None),
    ]);
    assert!(
        e.contains("all 1 ports of its ahci controller are taken"),
        "{e}"
    );
    let e = build_error(&[
        ahci(None, 3),
        sata_disk("/nonexistent/disk.img".into(), None),
    ]);
    assert!(e.starts_with("sata-disk /nonexistent/disk.img: "), "{e}");
    // Port given, then the lowest free one.
    build(&[
        ahci(Some(2), 3),
        sata_disk(a.0.clone(), Some(0)),
        sata_disk(b.0.clone(), None),
    ])
    .unwrap();
}

#[test]
fn test_unwritable_serial_output_names_the_file() {
    let serial = DeviceKind::PciSerial(PciSerialConfig {
        output: Some("/nonexistent/serial.txt".into()),
        ..Default::default()
    });
    let e = build_error(&[DeviceConfig::new(serial)]);
    assert!(
        e.starts_with("pci-serial output /nonexistent/serial.txt: "),
        "{e}"
    );
}
