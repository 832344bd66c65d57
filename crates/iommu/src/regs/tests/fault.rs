//! Fault recording (§7.2.1, §11.4.14), FSTS (§11.4.9) and the fault event
//! (§7.3, §11.4.10 to §11.4.13).

use dma::{Direction, RequesterId};
use irq::msi::MsiMessage;

use super::*;
use crate::fault::{FaultReason, FaultRecord};
use crate::remapper::Remapper;
use crate::testing::{Machine, ROOT};
use layout::{ectl, fsts, FEADDR, FECTL, FEDATA, FEUADDR, FRCD, FSTS};

fn fault(addr: u64, write: bool) -> FaultRecord {
    FaultRecord {
        requester: RequesterId::new(0, 4, 0),
        addr,
        reason: FaultReason::WriteNotPermitted,
        write,
    }
}

const MESSAGE: MsiMessage = MsiMessage {
    address: 0xfee0_1000,
    data: 0x41,
};

/// Linux's fault MSI set-up, optionally unmasked.
fn programmed(unmask: bool) -> Registers {
    let mut r = regs();
    write32(&mut r, FEDATA, MESSAGE.data);
    write32(&mut r, FEADDR, MESSAGE.address as u32);
    write32(&mut r, FEUADDR, 0);
    if unmask {
        write32(&mut r, FECTL, 0);
    }
    r
}

/// Linux's dmar_fault: clear the record's F with writel at +12, then FSTS.
fn service(r: &mut Registers) -> Vec<Effect> {
    let mut e = write32(r, FRCD + 12, 1 << 31);
    e.extend(write32(r, FSTS, fsts::PFO | fsts::PPF));
    e
}

#[test]
fn test_record_fills_frcd_as_linux_reads_it() {
    let mut r = programmed(true);

    let e = r.record_fault(&fault(0x10_2abc, true));

    assert_eq!(e, Some(Effect::FaultEvent(MESSAGE)));
    assert_eq!(read64(&r, FRCD), 0x10_2000, "FI: the page");
    let top = read32(&r, FRCD + 12);
    assert_eq!(top >> 31, 1, "F");
    assert_eq!((top >> 30) & 1, 0, "T: a write");
    assert_eq!(top & 0xff, 0x05, "FR");
    assert_eq!(read32(&r, FRCD + 8), 0x0020, "SID 00:04.0, bits 95:80 zero");
    assert_eq!(r.fsts(), fsts::PPF, "PPF, FRI 0");
}

#[test]
fn test_read_fault_sets_t() {
    let mut r = programmed(true);

    r.record_fault(&fault(0x1000, false));

    assert_eq!((read32(&r, FRCD + 12) >> 30) & 1, 1);
}

#[test]
fn test_busy_record_sets_pfo_and_keeps_the_first() {
    let mut r = programmed(true);
    r.record_fault(&fault(0x1000, true));

    let second = r.record_fault(&fault(0x2000, true));
    let while_pfo = {
        service_record_only(&mut r);
        r.record_fault(&fault(0x3000, true))
    };

    assert_eq!(second, None, "not a new interrupt condition");
    assert_eq!(while_pfo, None, "nothing is recorded while PFO is set");
    assert_eq!(r.fsts(), fsts::PFO);
    assert_eq!(read64(&r, FRCD), 0x1000);
}

#[test]
fn test_repeat_of_the_pending_fault_is_collapsed_without_pfo() {
    let mut r = programmed(true);
    r.record_fault(&fault(0x1000, true));

    let repeat = r.record_fault(&fault(0x1000, true));
    let other_type = r.record_fault(&fault(0x1000, false));

    assert_eq!(repeat, None);
    assert_eq!(other_type, None);
    assert_eq!(r.fsts(), fsts::PPF | fsts::PFO, "only the read overflowed");
    assert_eq!(read64(&r, FRCD), 0x1000);
}

fn service_record_only(r: &mut Registers) {
    write32(r, FRCD + 12, 1 << 31);
}

#[test]
fn test_clearing_f_and_pfo_rearms_recording_and_the_event() {
    let mut r = programmed(true);
    r.record_fault(&fault(0x1000, true));
    r.record_fault(&fault(0x2000, true));

    let serviced = service(&mut r);
    let status = r.fsts();
    let next = r.record_fault(&fault(0x3000, false));

    assert!(serviced.is_empty());
    assert_eq!(status, 0, "PPF follows F, PFO cleared by writing 1");
    assert_eq!(next, Some(Effect::FaultEvent(MESSAGE)));
    assert_eq!(read64(&r, FRCD), 0x3000);
}

#[test]
fn test_masked_fault_is_held_in_ip_and_sent_on_unmask() {
    let mut r = programmed(false);

    let e = r.record_fault(&fault(0x1000, true));
    let ip = r.fectl();
    let unmask = write32(&mut r, FECTL, 0);

    assert_eq!(e, None);
    assert_eq!(ip, ectl::IM | ectl::IP);
    assert_eq!(unmask, [Effect::FaultEvent(MESSAGE)]);
    assert_eq!(r.fectl(), 0, "IP cleared once sent");
}

#[test]
fn test_masked_fault_serviced_before_unmask_is_dropped() {
    let mut r = programmed(false);
    r.record_fault(&fault(0x1000, true));

    service(&mut r);
    let ip = r.fectl();
    let unmask = write32(&mut r, FECTL, 0);

    assert_eq!(ip, ectl::IM, "IP cleared: no status left");
    assert!(unmask.is_empty());
}

#[test]
fn test_fault_message_uses_upper_address_with_eim() {
    let mut r = programmed(true);
    write32(&mut r, FEUADDR, 0x12);
    write32(&mut r, FEDATA, 0xffff_ffff);
    write32(&mut r, FEADDR, 0xffff_ffff);

    let m = r.fault_message();

    assert_eq!(
        m,
        MsiMessage {
            address: 0x12_ffff_fffc,
            data: 0xffff
        }
    );
}

#[test]
fn test_reset_fectl_masked() {
    let r = regs();

    assert_eq!(read32(&r, FECTL), ectl::IM);
    assert_eq!(read32(&r, layout::IECTL), ectl::IM);
}

/// A remapper with translation on and an empty root table: every request
/// faults 0x1 (root entry not present). Keeps `kept` faults.
fn faulting_remapper(kept: usize) -> (Machine, Remapper) {
    let m = Machine::new();
    let remapper = Remapper::new(m.ram().clone(), Capabilities::DEFAULT, kept);
    remapper.set_root_table(ROOT);
    remapper.set_enabled(true);
    (m, remapper)
}

fn fault_at(remapper: &Remapper, iova: u64) {
    let requester = RequesterId::new(0, 4, 0);
    let got = remapper.translate(requester, iova, Direction::FromDevice);
    assert!(got.is_err());
}

#[test]
fn test_forwarded_remapper_faults_fill_the_record_and_send_one_event() {
    let (_m, remapper) = faulting_remapper(4);
    let mut r = programmed(true);
    fault_at(&remapper, 0x5000);
    fault_at(&remapper, 0x6000);

    let events = forward_faults(&remapper, &mut r);
    let again = forward_faults(&remapper, &mut r);

    assert_eq!(events, [Effect::FaultEvent(MESSAGE)]);
    assert!(again.is_empty(), "the remapper's log was emptied");
    assert_eq!(read64(&r, FRCD), 0x5000);
    assert_eq!(
        read32(&r, FRCD + 12),
        1 << 31 | 0x1,
        "F, a write, reason 0x1"
    );
    assert_eq!(r.fsts(), fsts::PFO | fsts::PPF, "the second found it busy");
}

#[test]
fn test_faults_the_remapper_dropped_set_pfo() {
    let (_m, remapper) = faulting_remapper(1);
    let mut r = programmed(false);
    fault_at(&remapper, 0x5000);
    fault_at(&remapper, 0x6000);

    let events = forward_faults(&remapper, &mut r);

    assert!(events.is_empty(), "masked");
    assert_eq!(r.fsts(), fsts::PFO | fsts::PPF);
    assert_eq!(r.fectl(), ectl::IM | ectl::IP);
}
