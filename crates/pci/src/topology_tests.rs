//! Configuration routing through bridges and root ports, driven as Linux
//! enumerates: program primary/secondary/subordinate, then scan behind.

use std::sync::{Arc, Mutex};

use crate::address::Bdf;
use crate::bridge::{PciBridge, RootPort, RootPortConfig};
use crate::host_bridge::HostBridge;
use crate::root::{AttachError, BridgeId, RootComplex, SharedFunction};
use crate::type1::reg;

fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf {
        bus,
        device,
        function,
    }
}

fn ecam(b: Bdf, reg: usize) -> u64 {
    (u64::from(b.bus) << 20)
        | (u64::from(b.device) << 15)
        | (u64::from(b.function) << 12)
        | reg as u64
}

fn read32(rc: &RootComplex, b: Bdf, reg: usize) -> u32 {
    let mut d = [0u8; 4];
    rc.ecam_read(ecam(b, reg), &mut d);
    u32::from_le_bytes(d)
}

fn write32(rc: &RootComplex, b: Bdf, reg: usize, v: u32) {
    rc.ecam_write(ecam(b, reg), &v.to_le_bytes());
}

fn endpoint() -> SharedFunction {
    Arc::new(Mutex::new(HostBridge::new()))
}

fn root_port() -> Arc<Mutex<RootPort>> {
    Arc::new(Mutex::new(
        RootPort::new(RootPortConfig::default()).unwrap(),
    ))
}

fn pci_bridge() -> Arc<Mutex<PciBridge>> {
    Arc::new(Mutex::new(PciBridge::new().unwrap()))
}

/// 00:00.0 host bridge, 00:1c.0 root port → 00.0 PCI bridge → 03.0 and
/// 1f.0 endpoints; 00:1d.0 root port → 00.0 endpoint.
struct Machine {
    rc: RootComplex,
    port_a: BridgeId,
    pci: BridgeId,
}

fn machine() -> Machine {
    let mut rc = RootComplex::new();
    rc.attach(bdf(0, 0, 0), endpoint()).unwrap();
    let port_a = rc.attach_bridge(bdf(0, 0x1c, 0), root_port()).unwrap();
    let pci = rc.attach_bridge_behind(port_a, 0, 0, pci_bridge()).unwrap();
    rc.attach_behind(pci, 3, 0, endpoint()).unwrap();
    rc.attach_behind(pci, 0x1f, 0, endpoint()).unwrap();
    let port_b = rc.attach_bridge(bdf(0, 0x1d, 0), root_port()).unwrap();
    rc.attach_behind(port_b, 0, 0, endpoint()).unwrap();
    Machine { rc, port_a, pci }
}

/// Linux's depth-first scan (`pci_scan_bridge`): found functions with
/// their vendor:device, numbering buses from `*next`.
fn scan(rc: &RootComplex, bus: u8, next: &mut u8, found: &mut Vec<(Bdf, u32)>) {
    for device in 0..32 {
        let functions = if read32(rc, bdf(bus, device, 0), 0x0c) >> 16 & 0x80 != 0 {
            8
        } else {
            1
        };
        for function in 0..functions {
            let b = bdf(bus, device, function);
            let id = read32(rc, b, 0);
            if id == u32::MAX {
                continue;
            }
            found.push((b, id));
            if read32(rc, b, 0x0c) >> 16 & 0x7f == 1 {
                *next += 1;
                let secondary = *next;
                let buses = u32::from(bus) | u32::from(secondary) << 8 | 0xff << 16;
                write32(rc, b, reg::PRIMARY_BUS, buses);
                scan(rc, secondary, next, found);
                let buses = (buses & 0xffff) | u32::from(*next) << 16;
                write32(rc, b, reg::PRIMARY_BUS, buses);
            }
        }
    }
}

fn enumerate(rc: &RootComplex) -> Vec<(Bdf, u32)> {
    let mut found = Vec::new();
    scan(rc, 0, &mut 0, &mut found);
    found
}

const HOST: u32 = 0x0008_1b36;
const ROOT_PORT: u32 = 0x000c_1b36;
const BRIDGE: u32 = 0x0001_1b36;

fn expected() -> Vec<(Bdf, u32)> {
    vec![
        (bdf(0, 0, 0), HOST),
        (bdf(0, 0x1c, 0), ROOT_PORT),
        (bdf(1, 0, 0), BRIDGE),
        (bdf(2, 3, 0), HOST),
        (bdf(2, 0x1f, 0), HOST),
        (bdf(0, 0x1d, 0), ROOT_PORT),
        (bdf(3, 0, 0), HOST),
    ]
}

#[test]
fn test_enumeration_through_two_levels_finds_every_function() {
    let m = machine();
    let found = enumerate(&m.rc);
    assert_eq!(found, expected());
    assert_eq!(read32(&m.rc, bdf(0, 0x1c, 0), reg::PRIMARY_BUS), 0x02_0100);
    assert_eq!(read32(&m.rc, bdf(1, 0, 0), reg::PRIMARY_BUS), 0x02_0201);
    assert_eq!(read32(&m.rc, bdf(0, 0x1d, 0), reg::PRIMARY_BUS), 0x03_0300);
}

#[test]
fn test_nothing_behind_bridges_is_reachable_before_bus_numbers() {
    let m = machine();
    assert_eq!(read32(&m.rc, bdf(1, 0, 0), 0), u32::MAX);
    assert_eq!(read32(&m.rc, bdf(2, 3, 0), 0), u32::MAX);
    assert_eq!(
        read32(&m.rc, bdf(0, 5, 0), 0),
        u32::MAX,
        "bus 0 stays type 0"
    );
}

#[test]
fn test_routing_follows_renumbering_live() {
    let m = machine();
    enumerate(&m.rc);
    write32(&m.rc, bdf(0, 0x1c, 0), reg::PRIMARY_BUS, 0x30_1000);
    assert_eq!(read32(&m.rc, bdf(1, 0, 0), 0), u32::MAX, "old number gone");
    assert_eq!(read32(&m.rc, bdf(0x10, 0, 0), 0), BRIDGE);
    assert_eq!(
        read32(&m.rc, bdf(2, 3, 0), 0),
        u32::MAX,
        "outside 0x10..=0x30"
    );
    write32(&m.rc, bdf(0x10, 0, 0), reg::PRIMARY_BUS, 0x20_2010);
    assert_eq!(read32(&m.rc, bdf(0x20, 3, 0), 0), HOST);
    assert!(m.rc.function(bdf(0x20, 0x1f, 0)).is_some());
}

#[test]
fn test_bus_beyond_a_bridge_subordinate_is_not_forwarded() {
    let m = machine();
    write32(&m.rc, bdf(0, 0x1c, 0), reg::PRIMARY_BUS, 0x01_0100);
    write32(&m.rc, bdf(1, 0, 0), reg::PRIMARY_BUS, 0x02_0201);
    assert_eq!(read32(&m.rc, bdf(1, 0, 0), 0), BRIDGE);
    assert_eq!(
        read32(&m.rc, bdf(2, 3, 0), 0),
        u32::MAX,
        "parent stops at 1"
    );
    write32(&m.rc, bdf(0, 0x1c, 0), reg::PRIMARY_BUS, 0x02_0100);
    assert_eq!(read32(&m.rc, bdf(2, 3, 0), 0), HOST);
    assert_eq!(read32(&m.rc, bdf(2, 4, 0), 0), u32::MAX, "absent device");
    assert_eq!(read32(&m.rc, bdf(2, 3, 1), 0), u32::MAX, "absent function");
}

#[test]
fn test_writes_behind_bridges_reach_the_function_and_report_it() {
    let m = machine();
    enumerate(&m.rc);
    let out =
        m.rc.ecam_write(ecam(bdf(2, 3, 0), 0x04), &0x0004u16.to_le_bytes());
    assert_eq!(out.bdf, Some(bdf(2, 3, 0)));
    assert_eq!(out.effects.bus_master, Some(true));
    let out = m.rc.ecam_write(ecam(bdf(4, 0, 0), 0x04), &[6, 0]);
    assert_eq!(out.bdf, None, "no bus 4");
}

#[test]
fn test_legacy_mechanism_routes_through_bridges() {
    let mut m = machine();
    enumerate(&m.rc);
    let cf8 = (1u32 << 31) | (2 << 16) | (0x1f << 11);
    m.rc.legacy_write(0, &cf8.to_le_bytes());
    let mut d = [0u8; 4];
    m.rc.legacy_read(4, &mut d);
    assert_eq!(u32::from_le_bytes(d), HOST);
}

#[test]
fn test_root_port_secondary_bus_has_device_zero_only() {
    let mut m = machine();
    enumerate(&m.rc);
    for device in 1..32 {
        assert_eq!(
            read32(&m.rc, bdf(1, device, 0), 0),
            u32::MAX,
            "dev {device}"
        );
    }
    assert_eq!(
        m.rc.attach_behind(m.port_a, 0, 0, endpoint()),
        Err(AttachError::SlotTaken {
            device: 0,
            function: 0
        })
    );
    assert_eq!(
        m.rc.attach_behind(m.pci, 3, 0, endpoint()),
        Err(AttachError::SlotTaken {
            device: 3,
            function: 0
        })
    );
}

#[test]
fn test_root_port_window_effects_come_back_routed() {
    let m = machine();
    enumerate(&m.rc);
    let port = bdf(0, 0x1c, 0);
    write32(&m.rc, port, reg::MEM_BASE, 0xfe1f_fe00);
    let out = m.rc.ecam_write(ecam(port, 0x04), &[0x02, 0x00]);
    assert_eq!(out.bdf, Some(port));
    assert_eq!(
        out.effects.bridge.windows[0].new,
        Some(0xfe00_0000..=0xfe1f_ffff)
    );
}

#[test]
fn test_root_port_capabilities_as_pcieport_expects() {
    let m = machine();
    let port = bdf(0, 0x1c, 0);
    let caps = crate::caps::list::walk(|off| read32(&m.rc, port, off));
    let ids: Vec<u16> = caps.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![0x10, 0x01, 0x05]);
    let pcie = caps[0].offset;
    let flags = read32(&m.rc, port, pcie) >> 16;
    assert_eq!(flags & 0xf0, 0x40, "Device/Port Type: root port");
    assert_ne!(flags & 0x100, 0, "slot implemented");
    let lnksta = read32(&m.rc, port, pcie + 0x10) >> 16;
    assert_eq!(lnksta >> 4 & 0x3f, 1, "x1");
    assert_ne!(lnksta & (1 << 13), 0, "link active");
    assert_eq!(read32(&m.rc, port, 0x3c) >> 8 & 0xff, 1, "INTA");
}

#[test]
fn test_hostile_sweep_of_bridges_then_enumeration_still_works() {
    let m = machine();
    enumerate(&m.rc);
    let bridges = [bdf(0, 0x1c, 0), bdf(1, 0, 0), bdf(2, 3, 0), bdf(0, 0x1d, 0)];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..30_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let target = bridges[(x % 4) as usize];
        let off = (x >> 8) % 0x1000;
        let len = [1usize, 2, 4][(x >> 24) as usize % 3];
        m.rc.ecam_write(ecam(target, 0) + off, &(x >> 32).to_le_bytes()[..len]);
        let mut d = [0u8; 4];
        m.rc.ecam_read((x >> 3) & 0x0fff_ffff, &mut d[..len]);
    }
    // Linux on reboot: clear the bus numbers, then enumerate again.
    for b in [bdf(0, 0x1c, 0), bdf(0, 0x1d, 0)] {
        write32(&m.rc, b, reg::PRIMARY_BUS, 0);
    }
    let mut found = Vec::new();
    scan(&m.rc, 0, &mut 0, &mut found);
    assert_eq!(found, expected());
}

/// An endpoint with a 4 KiB memory BAR 0 and a 16-port I/O BAR 1.
struct BarDevice(crate::config::Type0Config);

impl crate::function::PciFunction for BarDevice {
    fn config_read(&self, offset: usize, data: &mut [u8]) {
        self.0.read(offset, data);
    }
    fn config_write(&mut self, offset: usize, data: &[u8]) -> crate::config::ConfigWriteEffects {
        self.0.write(offset, data)
    }
    fn bar_read(&mut self, _: usize, _: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn bar_write(&mut self, _: usize, _: u64, _: &[u8]) {}
    fn bar_windows(&self) -> Vec<(crate::bar::BarSpec, Option<crate::config::BarWindow>)> {
        self.0.bar_windows()
    }
}

fn bar_device() -> SharedFunction {
    use crate::bar::{BarKind, BarSpec};
    let bars = [
        BarSpec {
            index: 0,
            kind: BarKind::Mem32 {
                prefetchable: false,
            },
            size: 0x1000,
        },
        BarSpec {
            index: 1,
            kind: BarKind::Io,
            size: 0x10,
        },
    ];
    let id = crate::config::Identity {
        vendor: 0x1b36,
        device: 0x00ff,
        class: 0xff_00_00,
        revision: 0,
        subsystem_vendor: 0,
        subsystem: 0,
    };
    Arc::new(Mutex::new(BarDevice(
        crate::config::Type0Config::new(id, &bars, 1).unwrap(),
    )))
}

#[test]
fn test_function_zero_says_multi_function_only_when_its_slot_has_more() {
    let mut rc = RootComplex::new();
    rc.attach(bdf(0, 3, 0), bar_device()).unwrap();
    rc.attach(bdf(0, 4, 0), bar_device()).unwrap();
    rc.attach(bdf(0, 4, 2), bar_device()).unwrap();

    let header = |b| read32(&rc, b, 0x0c) >> 16 & 0xff;

    assert_eq!(header(bdf(0, 3, 0)), 0x00);
    assert_eq!(header(bdf(0, 4, 0)), 0x80);
    assert_eq!(
        header(bdf(0, 4, 2)),
        0x00,
        "only function 0 carries the bit"
    );
    let mut byte = [0u8; 1];
    rc.ecam_read(ecam(bdf(0, 4, 0), 0x0e), &mut byte);
    assert_eq!(byte, [0x80], "a byte read of the header type too");
}

#[test]
fn test_bar_behind_a_bridge_decodes_only_inside_its_open_windows() {
    use crate::config::{command, COMMAND};
    let mut rc = RootComplex::new();
    let port = rc.attach_bridge(bdf(0, 1, 0), root_port()).unwrap();
    rc.attach_behind(port, 0, 0, bar_device()).unwrap();
    let p = bdf(0, 1, 0);
    write32(&rc, p, reg::PRIMARY_BUS, 0x00_01_01_00);
    let dev = bdf(1, 0, 0);
    write32(&rc, dev, 0x10, 0xc010_0000);
    write32(&rc, dev, 0x14, 0x2000);
    write32(&rc, dev, COMMAND, u32::from(command::MEMORY | command::IO));
    let windows = |rc: &RootComplex| {
        let mut w: Vec<_> = rc
            .decoded_bars()
            .iter()
            .map(|d| (d.bar.index, d.window.addr))
            .collect();
        w.sort();
        w
    };
    let closed = windows(&rc);

    // Memory window 0xc010_0000-0xc01f_ffff, I/O window 0x2000-0x2fff.
    write32(&rc, p, reg::MEM_BASE, 0xc010_c010);
    write32(&rc, p, reg::IO_BASE, 0x2020);
    let decode_off = windows(&rc);
    write32(&rc, p, COMMAND, u32::from(command::MEMORY));
    let memory_only = windows(&rc);
    write32(&rc, p, COMMAND, u32::from(command::MEMORY | command::IO));
    let both = windows(&rc);
    write32(&rc, dev, 0x10, 0xc020_0000);
    let outside = windows(&rc);

    assert_eq!(closed, vec![]);
    assert_eq!(decode_off, vec![]);
    assert_eq!(memory_only, vec![(0, 0xc010_0000)]);
    assert_eq!(both, vec![(0, 0xc010_0000), (1, 0x2000)]);
    assert_eq!(
        outside,
        vec![(1, 0x2000)],
        "a BAR outside the window is not reachable"
    );
}

/// The requester ID `f` carries in `rc` now.
fn rid_of(rc: &RootComplex, f: &SharedFunction) -> Bdf {
    let ids = rc.requester_ids();
    let found: Vec<_> = ids
        .iter()
        .filter(|(g, _)| Arc::ptr_eq(g, f))
        .map(|(_, b)| *b)
        .collect();
    assert_eq!(found.len(), 1, "each function once: {found:?}");
    found[0]
}

#[test]
fn test_requester_ids_follow_bus_numbers_and_conventional_bridges_alias() {
    let mut rc = RootComplex::new();
    let host = endpoint();
    rc.attach(bdf(0, 0, 0), host.clone()).unwrap();
    let port_a = rc.attach_bridge(bdf(0, 0x1c, 0), root_port()).unwrap();
    let bridge = pci_bridge();
    let pci = rc
        .attach_bridge_behind(port_a, 0, 0, bridge.clone())
        .unwrap();
    let behind_bridge = endpoint();
    rc.attach_behind(pci, 3, 0, behind_bridge.clone()).unwrap();
    let port_b = rc.attach_bridge(bdf(0, 0x1d, 0), root_port()).unwrap();
    let behind_port = endpoint();
    rc.attach_behind(port_b, 0, 0, behind_port.clone()).unwrap();
    let bridge: SharedFunction = bridge;
    assert_eq!(rc.requester_ids().len(), 6, "every function and bridge");

    enumerate(&rc);
    assert_eq!(rid_of(&rc, &host), bdf(0, 0, 0));
    assert_eq!(rid_of(&rc, &bridge), bdf(1, 0, 0), "a root port keeps IDs");
    assert_eq!(
        rid_of(&rc, &behind_bridge),
        bdf(1, 0, 0),
        "behind a conventional bridge, DMA carries the bridge's ID"
    );
    assert_eq!(rid_of(&rc, &behind_port), bdf(3, 0, 0));

    // The guest renumbers both ports' buses.
    write32(&rc, bdf(0, 0x1d, 0), reg::PRIMARY_BUS, 0x09_0900);
    write32(&rc, bdf(0, 0x1c, 0), reg::PRIMARY_BUS, 0x08_0700);
    write32(&rc, bdf(7, 0, 0), reg::PRIMARY_BUS, 0x08_0807);
    assert_eq!(rid_of(&rc, &behind_port), bdf(9, 0, 0));
    assert_eq!(rid_of(&rc, &bridge), bdf(7, 0, 0));
    assert_eq!(rid_of(&rc, &behind_bridge), bdf(7, 0, 0));
}

#[test]
fn test_root_port_reaches_ari_functions_only_with_ari_forwarding_enabled() {
    let m = machine();
    // ARI function 9 of the device behind port B: device 1, function 1 in
    // the non-ARI view of the secondary bus.
    let mut rc = m.rc;
    let port_b = rc.attach_bridge(bdf(0, 0x1e, 0), root_port()).unwrap();
    rc.attach_behind(port_b, 0, 0, endpoint()).unwrap();
    let nine = endpoint();
    rc.attach_behind(port_b, 1, 1, nine.clone()).unwrap();
    enumerate(&rc);
    let port = bdf(0, 0x1e, 0);
    let secondary = (read32(&rc, port, reg::PRIMARY_BUS) >> 8) as u8;
    assert_eq!(read32(&rc, bdf(secondary, 0, 0), 0), HOST);
    assert_eq!(
        read32(&rc, bdf(secondary, 1, 1), 0),
        u32::MAX,
        "not forwarded yet"
    );

    // Device Control 2 (PCIe capability + 0x28), ARI Forwarding Enable.
    let pcie = find_pcie(&rc, port);
    let ctl2 = read32(&rc, port, pcie + 0x28);
    write32(&rc, port, pcie + 0x28, ctl2 | 1 << 5);
    assert_eq!(read32(&rc, bdf(secondary, 1, 1), 0), HOST, "ARI function 9");
    assert_eq!(
        read32(&rc, bdf(secondary, 2, 0), 0),
        u32::MAX,
        "nothing there"
    );

    write32(&rc, port, pcie + 0x28, ctl2);
    assert_eq!(read32(&rc, bdf(secondary, 1, 1), 0), u32::MAX, "off again");
}

/// The offset of `b`'s PCI Express capability.
fn find_pcie(rc: &RootComplex, b: Bdf) -> usize {
    let mut at = (read32(rc, b, 0x34) & 0xfc) as usize;
    while at != 0 {
        let header = read32(rc, b, at);
        if header & 0xff == 0x10 {
            return at;
        }
        at = ((header >> 8) & 0xfc) as usize;
    }
    panic!("no PCI Express capability");
}

#[test]
fn test_detached_function_no_longer_answers_and_its_slot_takes_a_new_one() {
    let mut rc = RootComplex::new();
    let port = rc.attach_bridge(bdf(0, 1, 0), root_port()).unwrap();
    let first = endpoint();
    rc.attach_behind(port, 0, 0, first.clone()).unwrap();
    let root_card = endpoint();
    rc.attach(bdf(0, 5, 0), root_card.clone()).unwrap();
    enumerate(&rc);
    assert_eq!(read32(&rc, bdf(1, 0, 0), 0), HOST);

    let slot = crate::root::Slot::Behind {
        bridge: port,
        device: 0,
        function: 0,
    };
    let gone = rc.detach(slot).unwrap();
    assert!(Arc::ptr_eq(&gone, &first));
    assert_eq!(
        read32(&rc, bdf(1, 0, 0), 0),
        u32::MAX,
        "no answer after detach"
    );
    assert!(rc
        .requester_ids()
        .iter()
        .all(|(f, _)| !Arc::ptr_eq(f, &first)));
    assert_eq!(
        rc.detach(slot).map(|_| ()),
        Err(AttachError::NothingAt(slot))
    );
    assert_eq!(
        rc.detach(crate::root::Slot::Root(bdf(0, 1, 0))).map(|_| ()),
        Err(AttachError::NothingAt(crate::root::Slot::Root(bdf(
            0, 1, 0
        )))),
        "a bridge is not detached"
    );

    let second: SharedFunction = Arc::new(Mutex::new(PciBridge::new().unwrap()));
    rc.attach_behind(port, 0, 0, second).unwrap();
    assert_eq!(read32(&rc, bdf(1, 0, 0), 0), BRIDGE, "the new one answers");

    let root_gone = rc.detach(crate::root::Slot::Root(bdf(0, 5, 0))).unwrap();
    assert!(Arc::ptr_eq(&root_gone, &root_card));
    assert_eq!(read32(&rc, bdf(0, 5, 0), 0), u32::MAX);
}

#[test]
fn test_address_of_follows_the_bus_numbers_the_guest_programmed() {
    let mut rc = RootComplex::new();
    let port = root_port();
    let port_id = rc.attach_bridge(bdf(0, 0x1c, 0), port.clone()).unwrap();
    let bridge = pci_bridge();
    let bridge_id = rc
        .attach_bridge_behind(port_id, 0, 0, bridge.clone())
        .unwrap();
    let card = endpoint();
    rc.attach_behind(bridge_id, 3, 1, card.clone()).unwrap();
    let (port, bridge): (SharedFunction, SharedFunction) = (port, bridge);
    assert_eq!(rc.address_of(&card), Some(bdf(0, 3, 1)), "before numbering");

    enumerate(&rc);

    assert_eq!(rc.address_of(&port), Some(bdf(0, 0x1c, 0)));
    assert_eq!(rc.address_of(&bridge), Some(bdf(1, 0, 0)));
    assert_eq!(rc.address_of(&card), Some(bdf(2, 3, 1)));
    assert_eq!(rc.address_of(&endpoint()), None);
}
