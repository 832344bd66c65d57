//! The assigned function driven as Linux's PCI core and nvme driver drive
//! it, against a fake host function.

use std::sync::Arc;

use irq::msi::MsiMessage;
use irq::recording::RecordingVectors;

use super::*;
use crate::testing::{nvme_config, FakeHost, FakeTriggers, IrqCall};

struct Rig {
    host: Arc<FakeHost>,
    vectors: Arc<RecordingVectors>,
    triggers: Arc<FakeTriggers>,
    f: AssignedFunction,
}

fn rig() -> Rig {
    let host = Arc::new(FakeHost::new(nvme_config()));
    let vectors = Arc::new(RecordingVectors::new());
    let triggers = Arc::new(FakeTriggers::default());
    let f = AssignedFunction::new(host.clone(), vectors.clone(), triggers.clone()).unwrap();
    Rig {
        host,
        vectors,
        triggers,
        f,
    }
}

fn read32(f: &AssignedFunction, offset: usize) -> u32 {
    let mut b = [0u8; 4];
    f.config_read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn write32(f: &mut AssignedFunction, offset: usize, v: u32) -> ConfigWriteEffects {
    f.config_write(offset, &v.to_le_bytes())
}

/// Read-modify-write of a dword: `(old & !clear) | set`.
fn update32(f: &mut AssignedFunction, offset: usize, clear: u32, set: u32) {
    let old = read32(f, offset);
    write32(f, offset, (old & !clear) | set);
}

/// The offset of capability `id` in the guest's view.
fn cap(f: &AssignedFunction, id: u8) -> Option<usize> {
    let mut at = (read32(f, 0x34) & 0xfc) as usize;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let h = read32(f, at);
        if h as u8 == id {
            return Some(at);
        }
        at = ((h >> 8) & 0xfc) as usize;
    }
    None
}

#[test]
fn test_guest_sees_the_host_identity_with_header_and_extras_virtualized() {
    let r = rig();

    assert_eq!(read32(&r.f, 0x00), 0x0010_1b36);
    assert_eq!(read32(&r.f, 0x08) >> 8, 0x01_08_02);
    assert_eq!(read32(&r.f, 0x2c), 0x1100_1af4);
    assert_eq!(
        (read32(&r.f, 0x0c) >> 16) as u8,
        0,
        "multi-function bit masked"
    );
    assert_eq!(read32(&r.f, 0x30), 0, "no expansion ROM");
    assert_eq!((read32(&r.f, 0x3c) >> 8) as u8, 0, "no INTx pin");
    assert_eq!(read32(&r.f, 0x100), 0, "no extended capability");
    assert!(cap(&r.f, 0x11).is_some() && cap(&r.f, 0x05).is_some());
    assert_eq!(*r.host.resets.lock().unwrap(), 1, "reset when assigned");
}

#[test]
fn test_bar_sizing_stays_in_the_shadow_and_never_reaches_the_device() {
    let mut r = rig();
    r.host.config_writes.lock().unwrap().clear();

    write32(&mut r.f, 0x10, 0xffff_ffff);
    write32(&mut r.f, 0x14, 0xffff_ffff);
    let (lo, hi) = (read32(&r.f, 0x10), read32(&r.f, 0x14));
    write32(&mut r.f, 0x10, 0xfebf_0000);

    assert_eq!((lo, hi), (0xffff_c004, 0xffff_ffff), "16 KiB, 64-bit");
    assert!(r.host.config_writes.lock().unwrap().is_empty());
}

#[test]
fn test_command_decode_and_bus_master_reach_the_device() {
    let mut r = rig();

    let effects = write32(&mut r.f, 0x04, 0x0546); // MEM | BME | PARITY | SERR | INTx-disable

    assert_eq!(effects.bus_master, Some(true));
    let device = u16::from_le_bytes(r.host.config.lock().unwrap()[4..6].try_into().unwrap());
    assert_eq!(
        device, 0x0406,
        "MEM, BME and INTx-disable; parity and SERR stay ours"
    );
}

#[test]
fn test_bar_accesses_reach_the_device_but_not_the_msix_table() {
    let mut r = rig();
    r.f.bar_write(0, 0x14, &0x0046_0001u32.to_le_bytes()); // CC
    r.f.bar_write(0, 0x2000, &0xfee0_0000u32.to_le_bytes()); // table entry 0

    let mut cc = [0u8; 4];
    r.f.bar_read(0, 0x14, &mut cc);
    let mut entry = [0u8; 4];
    r.f.bar_read(0, 0x2000, &mut entry);

    assert_eq!(u32::from_le_bytes(cc), 0x0046_0001);
    assert_eq!(
        &r.host.bar0.lock().unwrap()[0x14..0x18],
        &0x0046_0001u32.to_le_bytes()
    );
    assert_eq!(u32::from_le_bytes(entry), 0xfee0_0000, "emulated table");
    assert_eq!(
        &r.host.bar0.lock().unwrap()[0x2000..0x2004],
        &[0; 4],
        "device table untouched"
    );
}

#[test]
fn test_msix_enable_hands_every_vectors_irqfd_to_vfio_and_routes_the_table() {
    let mut r = rig();
    let msix = cap(&r.f, 0x11).unwrap();
    write32(&mut r.f, 0x04, 0x0006);
    // Linux: entry 1 programmed, then MSI-X enabled with the function masked, then unmasked.
    r.f.bar_write(0, 0x2010, &0xfee0_1000u32.to_le_bytes());
    r.f.bar_write(0, 0x2018, &0x0000_0031u32.to_le_bytes());
    r.f.bar_write(0, 0x201c, &0u32.to_le_bytes());
    update32(&mut r.f, msix, 0, 0xc000 << 16);
    update32(&mut r.f, msix, 0x4000 << 16, 0x8000 << 16);

    assert_eq!(
        *r.host.irqs.lock().unwrap(),
        [IrqCall::Set(IrqKind::Msix, 65)]
    );
    assert_eq!(r.triggers.asked.lock().unwrap().len(), 65);
    assert_eq!(
        r.vectors.route(1),
        Some(MsiMessage {
            address: 0xfee0_1000,
            data: 0x31
        })
    );

    update32(&mut r.f, msix, 0x8000 << 16, 0);
    assert_eq!(
        r.host.irqs.lock().unwrap().last(),
        Some(&IrqCall::Disable(IrqKind::Msix))
    );
    assert_eq!(r.vectors.route(1), None);
}

#[test]
fn test_msi_enable_signals_the_enabled_vector_count() {
    let mut r = rig();
    let msi = cap(&r.f, 0x05).unwrap();
    write32(&mut r.f, msi + 4, 0xfee0_0000);
    write32(&mut r.f, msi + 8, 0);
    r.f.config_write(msi + 12, &0x41u16.to_le_bytes());

    // Multiple Message Enable 2 (4 vectors), MSI Enable.
    r.f.config_write(
        msi + 2,
        &(0x80u16 | 0x100 | 5 << 1 | 2 << 4 | 1).to_le_bytes(),
    );

    assert_eq!(
        *r.host.irqs.lock().unwrap(),
        [IrqCall::Set(IrqKind::Msi, 4)]
    );
    assert_eq!(
        r.vectors.route(3).map(|m| m.data),
        Some(0x43),
        "data 0x41 with vector 3 in its low 2 bits"
    );
}

#[test]
fn test_direct_ranges_skip_the_msix_table_and_pba_pages() {
    let r = rig();

    assert_eq!(
        r.f.direct_ranges(),
        [DirectRange {
            bar: 0,
            offset: 0,
            len: 0x2000
        }],
        "registers and doorbells direct; table (0x2000) and PBA (0x3000) trapped"
    );
}

#[test]
fn test_direct_ranges_with_table_and_pba_sharing_a_page_mid_bar() {
    let mut c = nvme_config();
    c[0x44..0x48].copy_from_slice(&0x1000u32.to_le_bytes()); // table at 0x1000
    c[0x48..0x4c].copy_from_slice(&0x1800u32.to_le_bytes()); // PBA at 0x1800
    let host = Arc::new(FakeHost::new(c));
    let f = AssignedFunction::new(
        host,
        Arc::new(RecordingVectors::new()),
        Arc::new(FakeTriggers::default()),
    )
    .unwrap();

    assert_eq!(
        f.direct_ranges(),
        [
            DirectRange {
                bar: 0,
                offset: 0,
                len: 0x1000
            },
            DirectRange {
                bar: 0,
                offset: 0x2000,
                len: 0x2000
            },
        ]
    );
}

#[test]
fn test_unmappable_region_has_no_direct_range() {
    let mut host = FakeHost::new(nvme_config());
    host.mmap = false;
    let f = AssignedFunction::new(
        Arc::new(host),
        Arc::new(RecordingVectors::new()),
        Arc::new(FakeTriggers::default()),
    )
    .unwrap();

    assert_eq!(f.direct_ranges(), []);
}

#[test]
fn test_hidden_msix_leaves_msi_and_hiding_both_is_refused() {
    let host = Arc::new(FakeHost::new(nvme_config()));
    let new = |shown| {
        AssignedFunction::with_interrupts(
            host.clone(),
            Arc::new(RecordingVectors::new()),
            Arc::new(FakeTriggers::default()),
            None,
            shown,
        )
    };

    let msi_only = new(Interrupts {
        msix: false,
        msi: true,
        intx: true,
    })
    .unwrap();
    let none = new(Interrupts {
        msix: false,
        msi: false,
        intx: true,
    });

    assert!(cap(&msi_only, 0x11).is_none() && cap(&msi_only, 0x05).is_some());
    assert!(matches!(none, Err(AssignError::NoInterrupts)));
    // The MSI-X table's pages are ordinary BAR pages now.
    assert_eq!(
        msi_only.direct_ranges(),
        [DirectRange {
            bar: 0,
            offset: 0,
            len: 0x4000
        }]
    );
}

#[test]
fn test_dropping_the_function_quiesces_the_device() {
    let mut r = rig();
    let msix = cap(&r.f, 0x11).unwrap();
    write32(&mut r.f, 0x04, 0x0006);
    update32(&mut r.f, msix, 0, 0x8000 << 16);
    let host = r.host.clone();

    drop(r);

    assert_eq!(
        host.irqs.lock().unwrap().last(),
        Some(&IrqCall::Disable(IrqKind::Msix))
    );
    let command = u16::from_le_bytes(host.config.lock().unwrap()[4..6].try_into().unwrap());
    assert_eq!(command & 0x7, 0, "decoders and bus mastering off");
    assert_eq!(*host.resets.lock().unwrap(), 2);
}

/// An INTx relay that hands out plain eventfds.
#[derive(Debug)]
struct FakeRelay;

impl crate::host::IntxRelay for FakeRelay {
    fn eventfds(&self) -> std::io::Result<[vmm_sys_util::eventfd::EventFd; 2]> {
        Ok([
            vmm_sys_util::eventfd::EventFd::new(0)?,
            vmm_sys_util::eventfd::EventFd::new(0)?,
        ])
    }
}

fn intx_only(host: &Arc<FakeHost>) -> AssignedFunction {
    AssignedFunction::with_interrupts(
        host.clone(),
        Arc::new(RecordingVectors::new()),
        Arc::new(FakeTriggers::default()),
        Some(Arc::new(FakeRelay)),
        Interrupts {
            msix: false,
            msi: false,
            intx: true,
        },
    )
    .unwrap()
}

#[test]
fn test_intx_relayed_while_not_disabled_and_no_message_interrupt_is_on() {
    let host = Arc::new(FakeHost::new(nvme_config()));
    let mut f = intx_only(&host);

    let pin = (read32(&f, 0x3c) >> 8) as u8;
    write32(&mut f, 0x04, 0x0006);
    write32(&mut f, 0x04, 0x0406); // INTx disabled
    write32(&mut f, 0x04, 0x0006);

    assert_eq!(pin, 1, "INTA");
    assert_eq!(
        *host.irqs.lock().unwrap(),
        [
            IrqCall::Set(IrqKind::Intx, 2),
            IrqCall::Disable(IrqKind::Intx),
            IrqCall::Set(IrqKind::Intx, 2),
        ],
        "trigger and unmask eventfds"
    );
}

#[test]
fn test_intx_gives_way_to_msix_and_comes_back() {
    let host = Arc::new(FakeHost::new(nvme_config()));
    let mut f = AssignedFunction::with_interrupts(
        host.clone(),
        Arc::new(RecordingVectors::new()),
        Arc::new(FakeTriggers::default()),
        Some(Arc::new(FakeRelay)),
        Interrupts::default(),
    )
    .unwrap();
    let msix = cap(&f, 0x11).unwrap();

    write32(&mut f, 0x04, 0x0006);
    update32(&mut f, msix, 0, 0x8000 << 16);
    update32(&mut f, msix, 0x8000 << 16, 0);

    assert_eq!(
        *host.irqs.lock().unwrap(),
        [
            IrqCall::Set(IrqKind::Intx, 2),
            IrqCall::Disable(IrqKind::Intx),
            IrqCall::Set(IrqKind::Msix, 65),
            IrqCall::Disable(IrqKind::Msix),
            IrqCall::Set(IrqKind::Intx, 2),
        ],
        "VFIO takes one kind at a time"
    );
}

#[test]
fn test_without_a_pin_or_relay_there_is_no_intx() {
    let mut c = nvme_config();
    c[0x3d] = 0;
    let host = Arc::new(FakeHost::new(c));
    let none = AssignedFunction::with_interrupts(
        host,
        Arc::new(RecordingVectors::new()),
        Arc::new(FakeTriggers::default()),
        Some(Arc::new(FakeRelay)),
        Interrupts {
            msix: false,
            msi: false,
            intx: true,
        },
    );

    assert!(matches!(none, Err(AssignError::NoInterrupts)));
}

#[test]
fn test_hostile_config_writes_of_every_width_reach_only_the_command_bits() {
    let mut r = rig();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    r.host.config_writes.lock().unwrap().clear();

    for offset in 0..0x1000 {
        for width in [1, 2, 4] {
            let v = next().to_le_bytes();
            r.f.config_write(offset, &v[..width]);
            let mut back = [0u8; 4];
            r.f.config_read(offset, &mut back[..width]);
        }
    }

    let writes = r.host.config_writes.lock().unwrap();
    assert!(
        writes
            .iter()
            .all(|(off, bytes)| *off == 0x04 && bytes.len() == 2),
        "only the command register reaches the device"
    );
    let device = u16::from_le_bytes(r.host.config.lock().unwrap()[4..6].try_into().unwrap());
    assert_eq!(device & !0x0407, 0, "and only its forwarded bits");
    assert_eq!(read32(&r.f, 0x00), 0x0010_1b36, "identity unchanged");
}

/// MSI-X enabled the way Linux does it, with table entry 1 programmed and
/// unmasked and every other entry left masked as reset leaves them.
fn msix_on_with_vector_1(r: &mut Rig) -> usize {
    let msix = cap(&r.f, 0x11).unwrap();
    write32(&mut r.f, 0x04, 0x0006);
    r.f.bar_write(0, 0x2010, &0xfee0_1000u32.to_le_bytes());
    r.f.bar_write(0, 0x2018, &0x0000_0031u32.to_le_bytes());
    update32(&mut r.f, msix, 0, 0xc000 << 16);
    r.f.bar_write(0, 0x201c, &0u32.to_le_bytes());
    update32(&mut r.f, msix, 0x4000 << 16, 0x8000 << 16);
    msix
}

fn pba(f: &mut AssignedFunction) -> u64 {
    let mut b = [0u8; 8];
    f.bar_read(0, 0x3000, &mut b);
    u64::from_le_bytes(b)
}

#[test]
fn test_masked_msix_vector_holds_its_signal_as_pending_until_unmasked() {
    let mut r = rig();
    msix_on_with_vector_1(&mut r);
    let masked = r.triggers.masked.lock().unwrap().clone();
    assert!(!masked.contains(&1), "the unmasked entry delivers");
    assert_eq!(masked.len(), 64, "the 64 entries left masked hold");

    // The guest masks entry 1; the device signals it.
    r.f.bar_write(0, 0x201c, &1u32.to_le_bytes());
    assert!(r.triggers.masked.lock().unwrap().contains(&1));
    assert_eq!(pba(&mut r.f) & 0b10, 0, "nothing pending before the signal");
    r.triggers.fire(1);
    assert_eq!(
        pba(&mut r.f) & 0b10,
        0b10,
        "the held signal is its pending bit"
    );
    assert!(r.triggers.delivered_on_unmask.lock().unwrap().is_empty());

    // Unmasking delivers it once and the pending bit clears.
    r.f.bar_write(0, 0x201c, &0u32.to_le_bytes());
    assert_eq!(*r.triggers.delivered_on_unmask.lock().unwrap(), [1]);
    assert_eq!(pba(&mut r.f), 0);
    assert!(!r.triggers.masked.lock().unwrap().contains(&1));
}

#[test]
fn test_function_mask_holds_every_vector_and_clearing_it_restores_entry_masks() {
    let mut r = rig();
    let msix = msix_on_with_vector_1(&mut r);
    update32(&mut r.f, msix, 0, 0x4000 << 16);
    assert_eq!(r.triggers.masked.lock().unwrap().len(), 65);
    r.triggers.fire(1);
    assert_eq!(pba(&mut r.f), 0b10);

    update32(&mut r.f, msix, 0x4000 << 16, 0);
    let masked = r.triggers.masked.lock().unwrap().clone();
    assert_eq!(masked.len(), 64);
    assert!(!masked.contains(&1));
    assert_eq!(*r.triggers.delivered_on_unmask.lock().unwrap(), [1]);
}

#[test]
fn test_disabling_msix_releases_every_held_vector() {
    let mut r = rig();
    let msix = msix_on_with_vector_1(&mut r);
    update32(&mut r.f, msix, 0x8000 << 16, 0);
    assert!(r.triggers.masked.lock().unwrap().is_empty());
    assert_eq!(
        r.host.irqs.lock().unwrap().last(),
        Some(&IrqCall::Disable(IrqKind::Msix))
    );
}

#[test]
fn test_msi_per_vector_mask_holds_the_vector_and_shows_in_pending_bits() {
    let mut r = rig();
    let msi = cap(&r.f, 0x05).unwrap();
    write32(&mut r.f, msi + 4, 0xfee0_0000);
    write32(&mut r.f, msi + 8, 0);
    r.f.config_write(msi + 12, &0x41u16.to_le_bytes());
    // Vector 2 masked, then MSI enabled with 4 vectors.
    write32(&mut r.f, msi + 0x10, 0b100);
    r.f.config_write(msi + 2, &(0x80u16 | 0x100 | 2 << 4 | 1).to_le_bytes());
    assert_eq!(
        r.triggers
            .masked
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [2]
    );

    r.triggers.fire(2);
    assert_eq!(read32(&r.f, msi + 0x14), 0b100);
    let mut byte = [0u8; 1];
    r.f.config_read(msi + 0x14, &mut byte);
    assert_eq!(byte[0], 0b100, "a byte read sees it too");

    write32(&mut r.f, msi + 0x10, 0);
    assert_eq!(*r.triggers.delivered_on_unmask.lock().unwrap(), [2]);
    assert_eq!(read32(&r.f, msi + 0x14), 0);
}
