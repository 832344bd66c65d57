//! Devices added to and removed from a running machine's hot-plug root
//! port, driven through ECAM by a fake guest that does what Linux's
//! `pciehp` does: enumerate the port, enable its MSI and slot events, power
//! the slot on when an adapter appears, read the new function's IDs, power
//! the slot off after the attention button. The run loop is played by
//! calling [`Controls`] as the loop does, with the Slot Control events the
//! ports send.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::BusDevice;
use irq::recording::RecordingVectors;
use pci::address::Bdf;
use pci::caps::list::walk;
use pci::caps::pcie_regs::{lnksta, sltctl, sltsta, LNKSTA, SLTCTL, SLTSTA};
use pci::caps::{id, msi};
use pci::config::{command, COMMAND};
use pci::type1::reg;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::Bus;
use crate::config::{
    DeviceConfig, DeviceKind, NvmeConfig, NvmeNamespaceConfig, PciSlot, RootPortConfig,
    VirtioBlkConfig, VirtioConfig, VirtioKind,
};
use crate::control::{AddRequest, Added, ControlError, ControlRequest, Controls, SlotEvent};
use crate::pci_devices::test_wiring::TestWiring;
use crate::pci_host::{IoEvents, PciRoot};

const PORT: u8 = 1;
const SECONDARY: u8 = 1;
const MEM_WINDOW: u64 = 0xc000_0000;
const PREF_WINDOW: u64 = 0xc100_0000;
const MSI_ADDRESS: u32 = 0xfee0_0000;
const MSI_DATA: u16 = 0x0031;
const VENDOR_VIRTIO: u16 = 0x1af4;

/// Guest-written addresses whose ioeventfds are registered now.
#[derive(Default)]
struct FakeIoEvents(Mutex<BTreeSet<(bool, u64)>>);

impl FakeIoEvents {
    fn registered(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl IoEvents for FakeIoEvents {
    fn register(&self, io: bool, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        self.0.lock().unwrap().insert((io, addr));
        Ok(())
    }

    fn unregister(&self, io: bool, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        self.0.lock().unwrap().remove(&(io, addr));
        Ok(())
    }
}

/// A disk image removed when dropped.
struct Disk(PathBuf);

impl Disk {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "iovm-hotplug-{}-{name}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        Self(path)
    }

    /// How many descriptors of this process have it open.
    fn open_fds(&self) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == self.0)
            .count()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A machine with hot-plug root ports, its run loop's state, and the
/// fake `pciehp` driving it.
struct Machine {
    pci: PciRoot,
    mmio: Arc<Bus>,
    wiring: TestWiring,
    controls: Controls,
    io_events: Arc<FakeIoEvents>,
    slot_events: Receiver<SlotEvent>,
    /// Where `pciehp` found the port's PCI Express capability.
    pcie: usize,
}

fn root_port(id: &str, slot: u8, hotplug: bool) -> DeviceConfig {
    DeviceConfig {
        id: Some(id.into()),
        addr: Some(PciSlot {
            device: slot,
            function: 0,
        }),
        ..DeviceConfig::new(DeviceKind::RootPort(RootPortConfig { hotplug }))
    }
}

fn blk(disk: &Disk) -> DeviceConfig {
    DeviceConfig::new(DeviceKind::Virtio(VirtioConfig {
        device: VirtioKind::Blk(VirtioBlkConfig {
            path: disk.0.clone(),
            queues: Some(1),
            ..Default::default()
        }),
        no_msix: false,
    }))
}

fn nvme_request(id: &str, disk: &Disk) -> AddRequest {
    AddRequest {
        device: DeviceConfig {
            id: Some(id.into()),
            ..DeviceConfig::new(DeviceKind::Nvme(NvmeConfig {
                queues: Some(1),
                ..Default::default()
            }))
        },
        parts: vec![DeviceConfig {
            id: Some(format!("{id}-ns1")),
            ..DeviceConfig::new(DeviceKind::NvmeNamespace(NvmeNamespaceConfig {
                path: disk.0.clone(),
                readonly: false,
                block_size: 512,
                vf: None,
            }))
        }],
    }
}

fn ecam(bus: u8, device: u8, function: u8, reg: usize) -> u64 {
    (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12) | reg as u64
}

impl Machine {
    fn new(devices: &[DeviceConfig]) -> Self {
        let mmio = Arc::new(Bus::new());
        let pci = PciRoot::new(Arc::new(Bus::new()), mmio.clone()).unwrap();
        let io_events = Arc::new(FakeIoEvents::default());
        pci.set_io_events(io_events.clone());
        let mut wiring = TestWiring::new();
        let (tx, slot_events) = mpsc::channel();
        let tx = Mutex::new(tx);
        let hotplug = super::build_hotplug(
            devices,
            &pci,
            &mut wiring,
            2,
            Arc::new(move |port, effects| {
                let _ = tx.lock().unwrap().send(SlotEvent::new(port, effects));
            }),
        )
        .unwrap();
        let mut m = Self {
            pci,
            mmio,
            wiring,
            controls: Controls::new(hotplug),
            io_events,
            slot_events,
            pcie: 0,
        };
        m.pcie = m.cap(0, PORT, id::PCIE).unwrap();
        m
    }

    fn read32(&self, bus: u8, dev: u8, reg: usize) -> u32 {
        let mut d = [0u8; 4];
        self.pci.ecam().read(ecam(bus, dev, 0, reg), &mut d);
        u32::from_le_bytes(d)
    }

    fn read16(&self, bus: u8, dev: u8, reg: usize) -> u16 {
        let mut d = [0u8; 2];
        self.pci.ecam().read(ecam(bus, dev, 0, reg), &mut d);
        u16::from_le_bytes(d)
    }

    fn write(&self, bus: u8, dev: u8, reg: usize, data: &[u8]) {
        self.pci.ecam().write(ecam(bus, dev, 0, reg), data);
    }

    fn cap(&self, bus: u8, dev: u8, cap: u8) -> Option<usize> {
        walk(|r| self.read32(bus, dev, r))
            .into_iter()
            .find(|f| f.id == u16::from(cap))
            .map(|f| f.offset)
    }

    fn sltsta(&self) -> u16 {
        self.read16(0, PORT, self.pcie + SLTSTA)
    }

    fn sltctl(&self) -> u16 {
        self.read16(0, PORT, self.pcie + SLTCTL)
    }

    fn link_active(&self) -> bool {
        self.read16(0, PORT, self.pcie + LNKSTA) & lnksta::DLLLA != 0
    }

    fn write_sltctl(&self, v: u16) {
        self.write(0, PORT, self.pcie + SLTCTL, &v.to_le_bytes());
    }

    /// `pciehp`'s interrupt handler: reads the events and clears them.
    fn ack(&self) -> u16 {
        let events = self.sltsta() & sltsta::EVENTS;
        self.write(0, PORT, self.pcie + SLTSTA, &events.to_le_bytes());
        events
    }

    /// The port's MSI vectors (the first function built).
    fn port_msi(&self) -> Arc<RecordingVectors> {
        self.wiring.vectors[0].clone()
    }

    /// What Linux does before `pciehp` binds, then `pciehp`'s probe:
    /// bus numbers and windows on the port, MSI, then the slot events it
    /// handles and the hot-plug interrupt, stale events cleared.
    fn enumerate_port(&self) {
        self.write(0, PORT, reg::PRIMARY_BUS, &[0, SECONDARY, SECONDARY]);
        let mem = (
            (MEM_WINDOW >> 16) as u16,
            ((MEM_WINDOW + 0xf_ffff) >> 16) as u16,
        );
        self.write(0, PORT, reg::MEM_BASE, &mem.0.to_le_bytes());
        self.write(0, PORT, reg::MEM_LIMIT, &mem.1.to_le_bytes());
        let pref = (
            (PREF_WINDOW >> 16) as u16,
            ((PREF_WINDOW + 0xf_ffff) >> 16) as u16,
        );
        self.write(0, PORT, reg::PREF_BASE, &pref.0.to_le_bytes());
        self.write(0, PORT, reg::PREF_LIMIT, &pref.1.to_le_bytes());
        self.write(0, PORT, reg::PREF_BASE_UPPER, &[0; 8]);
        let cmd = command::MEMORY | command::BUS_MASTER;
        self.write(0, PORT, COMMAND, &cmd.to_le_bytes());
        let at = self.cap(0, PORT, id::MSI).unwrap();
        self.write(0, PORT, at + msi::ADDRESS, &MSI_ADDRESS.to_le_bytes());
        self.write(0, PORT, at + msi::ADDRESS + 4, &[0; 4]);
        self.write(0, PORT, at + 0xc, &MSI_DATA.to_le_bytes());
        self.write(
            0,
            PORT,
            at + msi::CONTROL,
            &msi::control::ENABLE.to_le_bytes(),
        );
        let events = sltctl::ABP_ENABLE
            | sltctl::PDC_ENABLE
            | sltctl::CC_ENABLE
            | sltctl::DLLSC_ENABLE
            | sltctl::HP_INTERRUPT_ENABLE;
        self.write_sltctl(self.sltctl() | events);
        self.ack();
        self.port_msi().take();
    }

    /// `pciehp` on a presence change with the slot off: power on, power
    /// indicator on.
    fn power_on(&self) {
        let on = (self.sltctl() & !(sltctl::POWER_OFF | sltctl::POWER_INDICATOR))
            | (sltctl::INDICATOR_ON << sltctl::POWER_INDICATOR_SHIFT);
        self.write_sltctl(on);
    }

    /// `pciehp` after the attention button and its 5 s: the driver
    /// unbound, power off, indicators off.
    fn power_off(&self) {
        let off = (self.sltctl() & !sltctl::POWER_INDICATOR)
            | sltctl::POWER_OFF
            | (sltctl::INDICATOR_OFF << sltctl::POWER_INDICATOR_SHIFT);
        self.write_sltctl(off);
    }

    /// Sizes and places every BAR of the function behind the port, then
    /// enables decoding, as the PCI core does after a hot-add. Returns
    /// where the BARs went.
    fn enable_device(&self) -> Vec<u64> {
        let mut placed = Vec::new();
        let (mut mem, mut pref) = (MEM_WINDOW, PREF_WINDOW);
        let mut bar = 0;
        while bar < 6 {
            let at = 0x10 + 4 * bar;
            self.write(SECONDARY, 0, at, &u32::MAX.to_le_bytes());
            let low = self.read32(SECONDARY, 0, at);
            let is64 = low & 0b110 == 0b100;
            if low == 0 || low & 1 != 0 {
                bar += 1;
                continue;
            }
            let size = u64::from(!(low & !0xf)) + 1;
            let cursor = if low & 0b1000 != 0 {
                &mut pref
            } else {
                &mut mem
            };
            let addr = cursor.next_multiple_of(size);
            *cursor = addr + size;
            placed.push(addr);
            self.write(SECONDARY, 0, at, &(addr as u32).to_le_bytes());
            if is64 {
                self.write(SECONDARY, 0, at + 4, &((addr >> 32) as u32).to_le_bytes());
                bar += 1;
            }
            bar += 1;
        }
        let cmd = command::MEMORY | command::BUS_MASTER;
        self.write(SECONDARY, 0, COMMAND, &cmd.to_le_bytes());
        placed
    }

    /// Whether something answers at `addr` on the MMIO bus.
    fn mapped(&self, addr: u64) -> bool {
        self.mmio.read(addr, &mut [0u8; 4])
    }

    fn vendor_behind_port(&self) -> u16 {
        self.read16(SECONDARY, 0, 0)
    }

    fn add(&mut self, request: AddRequest) -> Result<Added, ControlError> {
        let (tx, rx) = mpsc::channel();
        let request = ControlRequest::Add(request, tx);
        self.controls
            .request(request, &self.pci, &mut self.wiring, Instant::now());
        rx.try_recv().expect("an add is answered at once")
    }

    fn remove(&mut self, id: &str, timeout: Duration) -> Receiver<Result<(), ControlError>> {
        let (tx, rx) = mpsc::channel();
        let request = ControlRequest::Remove(id.into(), timeout, tx);
        self.controls
            .request(request, &self.pci, &mut self.wiring, Instant::now());
        rx
    }

    /// One turn of the run loop: the Slot Control events the vCPUs sent.
    fn serve_slot_events(&mut self) {
        while let Ok(event) = self.slot_events.try_recv() {
            self.controls.slot(event, &self.pci);
        }
    }

    /// The function behind the port, as the root complex holds it.
    fn function_behind_port(
        &self,
    ) -> Option<std::sync::Weak<Mutex<dyn pci::function::PciFunction>>> {
        let bdf = Bdf {
            bus: SECONDARY,
            device: 0,
            function: 0,
        };
        let f = self.pci.function(bdf)?;
        Some(Arc::downgrade(&f))
    }
}

#[test]
fn test_hot_added_virtio_blk_is_announced_and_the_guest_powers_it_on_and_finds_it() {
    let disk = Disk::new("announce");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    assert_eq!(m.sltsta() & sltsta::PRESENCE, 0);
    assert_eq!(m.vendor_behind_port(), 0xffff);

    let added = m.add(AddRequest::new(blk(&disk))).unwrap();

    assert_eq!(added.id, "virtio-blk0");
    assert_eq!(
        added.bdf,
        Bdf {
            bus: SECONDARY,
            device: 0,
            function: 0
        }
    );
    let sent = m.port_msi().take();
    assert_eq!(sent.len(), 1, "one hot-plug interrupt: {sent:?}");
    assert_eq!(sent[0].1.data, u32::from(MSI_DATA));
    assert_ne!(m.sltsta() & sltsta::PRESENCE, 0);
    assert_eq!(
        m.ack(),
        sltsta::PDC | sltsta::ABP,
        "slot off: presence and the button (Linux powers on after it), no link yet"
    );
    assert!(!m.link_active());

    m.power_on();

    assert!(m.link_active());
    assert_eq!(m.ack(), sltsta::DLLSC | sltsta::CC);
    assert_eq!(m.port_msi().take().len(), 1);
    assert_eq!(m.vendor_behind_port(), VENDOR_VIRTIO);
}

#[test]
fn test_remove_waits_for_the_guest_to_power_off_then_releases_everything() {
    let disk = Disk::new("release");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    let fds_before = disk.open_fds();
    m.add(AddRequest::new(DeviceConfig {
        id: Some("disk1".into()),
        ..blk(&disk)
    }))
    .unwrap();
    m.ack();
    m.power_on();
    m.ack();
    let bars = m.enable_device();
    let device_msi = m.wiring.vectors.last().unwrap().clone();
    let function = m.function_behind_port().unwrap();
    assert!(m.io_events.registered() > 0, "queue notify ioeventfds");
    assert!(disk.open_fds() > fds_before, "the device holds its disk");
    assert!(!bars.is_empty() && bars.iter().all(|&b| m.mapped(b)));
    assert!(m.pci.counters().report().contains_key("disk1"));
    m.port_msi().take();

    let reply = m.remove("disk1", Duration::from_secs(30));

    assert!(
        reply.try_recv().is_err(),
        "no answer before the guest lets go"
    );
    assert_eq!(m.ack(), sltsta::ABP);
    assert_eq!(m.port_msi().take().len(), 1);
    assert_eq!(m.vendor_behind_port(), VENDOR_VIRTIO, "still there");

    m.power_off();
    m.serve_slot_events();

    assert_eq!(reply.try_recv(), Ok(Ok(())));
    assert_eq!(m.vendor_behind_port(), 0xffff);
    assert!(function.upgrade().is_none(), "the function is dropped");
    assert_eq!(m.io_events.registered(), 0, "ioeventfds unregistered");
    assert!(bars.iter().all(|&b| !m.mapped(b)), "BARs unmapped");
    assert_eq!(
        Arc::strong_count(&device_msi),
        2,
        "the device let its vectors go"
    );
    assert_eq!(disk.open_fds(), fds_before, "the disk is closed");
    assert!(
        !m.pci.counters().report().contains_key("disk1"),
        "its counters go"
    );
    assert_eq!(m.sltsta() & sltsta::PRESENCE, 0);
    assert_eq!(m.controls.hotplug().ports(), (1, 1));
}

#[test]
fn test_removal_times_out_when_the_guest_ignores_the_button_and_power_off_later_still_detaches() {
    let disk = Disk::new("timeout");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    let id = m.add(AddRequest::new(blk(&disk))).unwrap().id;
    m.power_on();

    let reply = m.remove(&id, Duration::ZERO);
    let deadline = m.controls.next_deadline().unwrap();
    m.controls.expire(deadline);

    let err = reply.try_recv().unwrap().unwrap_err();
    assert!(matches!(err, ControlError::RemoveTimeout { .. }), "{err}");
    assert!(err.to_string().contains(&id), "{err}");
    assert_eq!(m.controls.next_deadline(), None);
    assert_eq!(m.vendor_behind_port(), VENDOR_VIRTIO, "it stays");

    m.power_off();
    m.serve_slot_events();

    assert_eq!(
        m.vendor_behind_port(),
        0xffff,
        "the late power off detaches it"
    );
    assert_eq!(m.controls.hotplug().ports(), (1, 1));
}

#[test]
fn test_removing_a_device_whose_slot_the_guest_never_powered_is_immediate() {
    let disk = Disk::new("unpowered");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    let id = m.add(AddRequest::new(blk(&disk))).unwrap().id;

    let reply = m.remove(&id, Duration::from_secs(30));

    assert_eq!(reply.try_recv(), Ok(Ok(())));
    assert_eq!(m.vendor_behind_port(), 0xffff);
    assert_eq!(m.controls.hotplug().ports(), (1, 1));
}

#[test]
fn test_a_second_removal_request_does_not_press_the_button_again() {
    let disk = Disk::new("twice");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    let id = m.add(AddRequest::new(blk(&disk))).unwrap().id;
    m.power_on();
    m.ack();
    let first = m.remove(&id, Duration::from_secs(30));
    assert_eq!(m.ack(), sltsta::ABP);

    let second = m.remove(&id, Duration::from_secs(30));
    assert_eq!(m.ack(), 0, "a second press would cancel the first");
    m.power_off();
    m.serve_slot_events();

    assert_eq!(first.try_recv(), Ok(Ok(())));
    assert_eq!(second.try_recv(), Ok(Ok(())));
}

#[test]
fn test_add_refuses_duplicate_ids_unknown_kinds_placement_and_a_full_machine() {
    let disk = Disk::new("refuse");
    let other = Disk::new("refuse2");
    let mut m = Machine::new(&[root_port("rp0", PORT, true), root_port("rp1", 2, false)]);

    let dup = DeviceConfig {
        id: Some("rp1".into()),
        ..blk(&disk)
    };
    assert_eq!(
        m.add(AddRequest::new(dup)),
        Err(ControlError::DuplicateId("rp1".into()))
    );
    let console = DeviceConfig::new(DeviceKind::Virtio(VirtioConfig {
        device: VirtioKind::Console,
        no_msix: false,
    }));
    assert_eq!(
        m.add(AddRequest::new(console)),
        Err(ControlError::NotHotpluggable("virtio-console"))
    );
    let sriov = DeviceConfig::new(DeviceKind::Nvme(NvmeConfig {
        sriov_vfs: 2,
        ..Default::default()
    }));
    let err = m.add(AddRequest::new(sriov)).unwrap_err();
    assert!(err.to_string().contains("SR-IOV"), "{err}");
    let placed = DeviceConfig {
        bus: Some("rp0".into()),
        ..blk(&disk)
    };
    assert!(matches!(
        m.add(AddRequest::new(placed)),
        Err(ControlError::BadConfig(_))
    ));
    m.add(AddRequest::new(blk(&disk))).unwrap();
    assert_eq!(
        m.add(AddRequest::new(blk(&other))),
        Err(ControlError::NoFreePort),
        "rp1 has no hot-plug controller"
    );
}

#[test]
fn test_add_with_a_missing_disk_names_it_and_leaves_the_port_free() {
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    let missing = Disk::new("missing");
    let path = missing.0.clone();
    drop(missing);

    let err = m
        .add(AddRequest::new(blk(&Disk(path.clone()))))
        .unwrap_err();

    assert!(matches!(err, ControlError::BadConfig(_)), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(m.controls.hotplug().ports(), (1, 1));
    assert_eq!(m.sltsta() & sltsta::PRESENCE, 0);
}

#[test]
fn test_remove_of_an_unknown_id_or_a_device_not_behind_a_hotplug_port_is_refused() {
    let mut m = Machine::new(&[root_port("rp0", PORT, true), root_port("rp1", 2, false)]);

    let unknown = m.remove("nope", Duration::from_secs(1)).try_recv().unwrap();
    let port = m.remove("rp1", Duration::from_secs(1)).try_recv().unwrap();

    assert_eq!(unknown, Err(ControlError::UnknownId("nope".into())));
    assert_eq!(port, Err(ControlError::NotRemovable("rp1".into())));
}

#[test]
fn test_hot_added_nvme_with_its_namespace_goes_and_its_ids_are_free_again() {
    let disk = Disk::new("nvme");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    m.add(nvme_request("nv0", &disk)).unwrap();
    m.power_on();
    assert_eq!(m.vendor_behind_port(), 0x1b36);
    assert_eq!(
        m.add(nvme_request("nv0", &disk)),
        Err(ControlError::DuplicateId("nv0".into()))
    );

    let reply = m.remove("nv0", Duration::from_secs(30));
    m.power_off();
    m.serve_slot_events();

    assert_eq!(reply.try_recv(), Ok(Ok(())));
    assert_eq!(m.add(nvme_request("nv0", &disk)).unwrap().id, "nv0");
}

#[test]
fn test_boot_device_behind_a_hotplug_port_is_present_and_removable_by_id() {
    let disk = Disk::new("boot");
    let devices = [
        root_port("rp0", PORT, true),
        DeviceConfig {
            id: Some("boot-disk".into()),
            bus: Some("rp0".into()),
            ..blk(&disk)
        },
    ];
    let mut m = Machine::new(&devices);
    m.enumerate_port();
    assert!(m.link_active());
    assert_eq!(m.controls.hotplug().ports(), (1, 0));

    let reply = m.remove("boot-disk", Duration::from_secs(30));
    m.power_off();
    m.serve_slot_events();

    assert_eq!(reply.try_recv(), Ok(Ok(())));
    assert_eq!(m.vendor_behind_port(), 0xffff);
    assert_eq!(m.controls.hotplug().ports(), (1, 1));
}

#[test]
fn test_hotplug_off_port_reports_a_present_device_and_no_controller() {
    let m = Machine::new(&[root_port("rp0", PORT, false)]);

    assert_ne!(m.sltsta() & sltsta::PRESENCE, 0);
    assert!(m.link_active());
    assert_eq!(m.controls.hotplug().ports(), (0, 0));
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Run alone in a process of its own by
/// [`test_threads_and_fds_after_remove_are_those_before_add`], where no
/// other test's threads and files are counted.
#[test]
#[ignore = "run in a process of its own by test_threads_and_fds_after_remove_are_those_before_add"]
fn hotplug_counts_child() {
    let disk = Disk::new("counts");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    let (threads, fds) = (count("/proc/self/task"), count("/proc/self/fd"));

    for round in 0..2 {
        m.add(nvme_request("nv0", &disk)).unwrap();
        m.power_on();
        m.enable_device();
        assert!(
            count("/proc/self/task") > threads,
            "round {round}: its worker"
        );
        assert!(
            count("/proc/self/fd") > fds,
            "round {round}: its disk and eventfds"
        );
        let reply = m.remove("nv0", Duration::from_secs(30));
        m.power_off();
        m.serve_slot_events();
        assert_eq!(reply.try_recv(), Ok(Ok(())));

        assert_eq!(count("/proc/self/task"), threads, "round {round}: threads");
        assert_eq!(count("/proc/self/fd"), fds, "round {round}: fds");
    }
}

#[test]
fn test_threads_and_fds_after_remove_are_those_before_add() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pci_devices::hotplug_tests::hotplug_counts_child",
            "--ignored",
            "--test-threads=1",
        ])
        .output()
        .unwrap();

    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

/// Descriptors of this process open on `/dev/net/tun`.
fn tun_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == "/dev/net/tun")
        .count()
}

/// A TAP descriptor as a management stack opens and hands it over.
fn handed_over_tap(name: &str) -> std::os::fd::OwnedFd {
    use vmm_sys_util::ioctl::ioctl_with_mut_ref;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .unwrap();
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    let mut req = [0u8; 40];
    req[..name.len()].copy_from_slice(name.as_bytes());
    req[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a 40-byte `struct ifreq` through
    // the pointer, which points at a live 40-byte buffer laid out as one.
    let r = unsafe { ioctl_with_mut_ref(&file, libc::TUNSETIFF, &mut req) };
    assert!(r >= 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    file.into()
}

/// Runs in a thread of its own that moved to a new network namespace.
fn net_on_handed_over_tap() -> Result<(), String> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only the
    // calling thread, which no other code runs on.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    let fd = crate::config::TapFd::new(handed_over_tap("iovmhp0"));
    let net = DeviceConfig::new(DeviceKind::Virtio(VirtioConfig {
        device: VirtioKind::Net(crate::config::VirtioNetConfig {
            tap_fds: vec![fd.clone()],
            ..Default::default()
        }),
        no_msix: false,
    }));
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    let before = tun_fds();

    let id = m.add(AddRequest::new(net)).unwrap().id;
    m.power_on();
    assert_eq!(m.vendor_behind_port(), VENDOR_VIRTIO);
    assert_eq!(tun_fds(), before + 1, "the card's copy");
    let reply = m.remove(&id, Duration::from_secs(30));
    m.power_off();
    m.serve_slot_events();

    assert_eq!(reply.try_recv(), Ok(Ok(())));
    assert_eq!(
        tun_fds(),
        before,
        "the card's copy is closed, the caller's kept"
    );
    drop(fd);
    assert_eq!(tun_fds(), before - 1);
    Ok(())
}

#[test]
fn test_hot_added_virtio_net_on_a_handed_over_tap_closes_its_copy_when_removed() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIPPED: needs root and /dev/net/tun");
        return;
    }
    match std::thread::spawn(net_on_handed_over_tap).join().unwrap() {
        Ok(()) => {}
        Err(e) => println!("SKIPPED: {e}"),
    }
}

fn devices(m: &mut Machine) -> Vec<(Option<String>, &'static str, Bdf)> {
    let (tx, rx) = mpsc::channel();
    m.controls.request(
        ControlRequest::Devices(tx),
        &m.pci,
        &mut m.wiring,
        Instant::now(),
    );
    rx.try_recv()
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.kind, d.bdf))
        .collect()
}

fn at(bus: u8, device: u8) -> Bdf {
    Bdf {
        bus,
        device,
        function: 0,
    }
}

#[test]
fn test_device_list_has_boot_and_hot_added_functions_at_their_addresses_now() {
    let boot = Disk::new("list-boot");
    let added = Disk::new("list-added");
    let mut m = Machine::new(&[
        root_port("rp0", PORT, true),
        root_port("rp1", 2, false),
        DeviceConfig {
            id: Some("d0".into()),
            bus: Some("rp1".into()),
            ..blk(&boot)
        },
    ]);
    m.enumerate_port();
    m.write(0, 2, reg::PRIMARY_BUS, &[0, 5, 5]);

    let id = m.add(AddRequest::new(blk(&added))).unwrap().id;
    let listed = devices(&mut m);
    let reply = m.remove(&id, Duration::from_secs(30));
    let after = devices(&mut m);

    let rp = |id: &str, dev| (Some(id.to_string()), "root-port", at(0, dev));
    let blk0 = (Some("d0".to_string()), "virtio-blk", at(5, 0));
    let hot = (Some(id.clone()), "virtio-blk", at(SECONDARY, 0));
    assert_eq!(listed, [rp("rp0", PORT), rp("rp1", 2), blk0.clone(), hot]);
    assert_eq!(reply.try_recv(), Ok(Ok(())), "slot never powered: at once");
    assert_eq!(after, [rp("rp0", PORT), rp("rp1", 2), blk0]);
}

#[test]
fn test_add_and_removal_tell_the_run_loop_what_changed_in_the_device_list() {
    use crate::control::Change;
    let disk = Disk::new("changes");
    let mut m = Machine::new(&[root_port("rp0", PORT, true)]);
    m.enumerate_port();
    let (tx, rx) = mpsc::channel();
    let change = m.controls.request(
        ControlRequest::Add(AddRequest::new(blk(&disk)), tx),
        &m.pci,
        &mut m.wiring,
        Instant::now(),
    );
    let id = rx.try_recv().unwrap().unwrap().id;
    let expected = DeviceConfig {
        id: Some(id.clone()),
        bus: Some("rp0".into()),
        ..blk(&disk)
    };
    assert_eq!(change, Some(Change::Added(vec![expected])));
    m.ack();
    m.power_on();
    m.ack();

    let (tx, rx) = mpsc::channel();
    let change = m.controls.request(
        ControlRequest::Remove(id.clone(), Duration::from_secs(30), tx),
        &m.pci,
        &mut m.wiring,
        Instant::now(),
    );
    assert_eq!(change, None, "nothing went yet: the guest has the button");
    m.power_off();
    let mut changes = Vec::new();
    while let Ok(event) = m.slot_events.try_recv() {
        changes.extend(m.controls.slot(event, &m.pci));
    }

    assert_eq!(rx.try_recv(), Ok(Ok(())));
    assert_eq!(changes, vec![Change::Removed(id)]);
}
