//! Queued invalidation (§6.5.2) driven as Linux's qi_submit_sync does:
//! descriptors written at the tail, a wait descriptor last, IQT moved,
//! and the status word polled.

use irq::msi::MsiMessage;

use super::*;
use crate::qi::InterruptInvalidation;
use crate::testing::Machine;
use layout::{ectl, fsts, gcmd, ICS, IEADDR, IECTL, IEDATA, IQA, IQT};

/// The queue: one 4 KiB page (QS = 0, 256 descriptors).
const QUEUE: u64 = 0x3_0000;
/// Where wait descriptors write their status.
const STATUS: u64 = 0x3_1000;
const QI_DONE: u64 = 2;

fn wait(status: u64) -> (u64, u64) {
    (0x5 | 1 << 5 | QI_DONE << 32, status)
}

struct Rig {
    m: Machine,
    r: Registers,
    tail: u64,
}

impl Rig {
    /// Linux's intel_iommu_init_qi: IQA, IQT 0, then QIE.
    fn new() -> Self {
        let mut r = regs();
        write64(&mut r, IQA, QUEUE);
        write32(&mut r, IQT, 0);
        let e = write32(&mut r, GCMD, gcmd::QIE);
        assert_eq!(e, [Effect::QueuedInvalidation(true)]);
        Self {
            m: Machine::new(),
            r,
            tail: 0,
        }
    }

    fn push(&mut self, (qw0, qw1): (u64, u64)) {
        let at = QUEUE + (self.tail % 256) * 16;
        self.m.write_u64(at, qw0);
        self.m.write_u64(at + 8, qw1);
        self.tail = (self.tail + 1) % 256;
    }

    /// Writes IQT and, as the VMM does, processes the queue if asked.
    fn submit(&mut self) -> Vec<Effect> {
        let mut effects = write32(&mut self.r, IQT, (self.tail * 16) as u32);
        if effects.contains(&Effect::ProcessQueue) {
            effects.retain(|e| *e != Effect::ProcessQueue);
            effects.extend(self.r.process_queue(self.m.ram().as_ref()));
        }
        effects
    }
}

#[test]
fn test_batch_is_carried_out_in_order_and_the_wait_status_written() {
    let mut q = Rig::new();
    q.push((0x1 | 1 << 4, 0));
    q.push((0x2 | 1 << 4, 0));
    q.push((0x4, 0));
    q.push(wait(STATUS));

    let effects = q.submit();

    assert_eq!(
        effects,
        [
            Effect::InvalidateContext(ContextInvalidation::Global),
            Effect::InvalidateIotlb(IotlbInvalidation {
                scope: IotlbScope::Global,
                drain_reads: false,
                drain_writes: false,
            }),
            Effect::InvalidateInterruptEntries(InterruptInvalidation::Global),
        ]
    );
    assert_eq!(q.m.read_bytes(STATUS, 4), QI_DONE.to_le_bytes()[..4]);
    assert_eq!(q.r.iqh(), 4 * 16, "IQH reached the tail");
}

#[test]
fn test_queue_wraps_at_its_end() {
    let mut q = Rig::new();
    for _ in 0..254 {
        q.push(wait(STATUS));
    }
    q.submit();
    q.m.write_u64(STATUS, 0);

    q.push((0x2 | 2 << 4 | 5 << 16, 0));
    q.push((0x2 | 2 << 4 | 6 << 16, 0));
    q.push(wait(STATUS));
    let effects = q.submit();

    assert_eq!(effects.len(), 2);
    assert_eq!(q.r.iqh(), 16, "head wrapped to entry 1");
    assert_eq!(q.m.read_u64(STATUS), QI_DONE);
}

#[test]
fn test_invalid_descriptor_stops_the_queue_with_iqe_until_cleared() {
    let mut q = Rig::new();
    write32(&mut q.r, layout::FEDATA, 0x44);
    write32(&mut q.r, layout::FEADDR, 0xfee0_0000);
    write32(&mut q.r, layout::FECTL, 0);
    q.push((0x1 | 1 << 4, 0));
    q.push((0x3, 0)); // device-TLB: ECAP.DT is clear
    q.push(wait(STATUS));

    let effects = q.submit();

    assert_eq!(
        effects,
        [
            Effect::InvalidateContext(ContextInvalidation::Global),
            Effect::FaultEvent(MsiMessage {
                address: 0xfee0_0000,
                data: 0x44
            }),
        ]
    );
    assert_eq!(q.r.fsts() & fsts::IQE, fsts::IQE);
    assert_eq!(q.r.iqh(), 16, "IQH points at the bad descriptor");
    assert_eq!(q.m.read_u64(STATUS), 0, "nothing after it ran");
    assert!(q.r.process_queue(q.m.ram().as_ref()).is_empty(), "stopped");

    // Linux's qi_check_fault: the bad descriptor replaced by a wait, IQE cleared.
    q.m.write_u64(QUEUE + 16, wait(STATUS).0);
    q.m.write_u64(QUEUE + 24, STATUS);
    let resumed = write32(&mut q.r, FSTS, fsts::IQE);

    assert_eq!(resumed, [Effect::ProcessQueue]);
    assert!(q.r.process_queue(q.m.ram().as_ref()).is_empty());
    assert_eq!(q.m.read_u64(STATUS), QI_DONE);
    assert_eq!(q.r.iqh(), 3 * 16);
}

#[test]
fn test_tail_beyond_the_queue_size_is_an_error() {
    let mut q = Rig::new();

    let e = write32(&mut q.r, IQT, 0x1000); // entry 256 of a 256-entry queue
    let effects = if e.contains(&Effect::ProcessQueue) {
        q.r.process_queue(q.m.ram().as_ref())
    } else {
        Vec::new()
    };

    assert!(effects.is_empty(), "fault event masked at reset");
    assert_eq!(q.r.fsts() & fsts::IQE, fsts::IQE);
    assert_eq!(q.r.fectl() & ectl::IP, ectl::IP, "held while masked");
    assert_eq!(q.r.iqh(), 0);
}

#[test]
fn test_queue_in_unreadable_memory_is_an_error() {
    let mut q = Rig::new();
    write64(&mut q.r, IQA, 0xff_0000_0000);
    q.tail = 1;

    q.submit();

    assert_eq!(q.r.fsts() & fsts::IQE, fsts::IQE);
    assert_eq!(q.r.iqh(), 0);
}

#[test]
fn test_larger_queue_size_takes_more_entries() {
    let mut q = Rig::new();
    write64(&mut q.r, IQA, QUEUE | 1); // QS 1: 512 entries
    q.tail = 300;
    q.m.write_u64(QUEUE + 299 * 16, wait(STATUS).0);
    q.m.write_u64(QUEUE + 299 * 16 + 8, STATUS);
    for i in 0..299 {
        q.m.write_u64(QUEUE + i * 16, 0x4);
    }

    let effects = q.submit();

    assert_eq!(effects.len(), 299);
    assert_eq!(q.r.fsts() & fsts::IQE, 0);
    assert_eq!(q.m.read_u64(STATUS), QI_DONE);
}

#[test]
fn test_wait_with_interrupt_flag_sets_iwc_and_sends_the_event_once() {
    let mut q = Rig::new();
    write32(&mut q.r, IEDATA, 0x51);
    write32(&mut q.r, IEADDR, 0xfee0_2000);
    write32(&mut q.r, IECTL, 0);
    q.push((0x5 | 1 << 4, 0));
    q.push((0x5 | 1 << 4, 0));

    let effects = q.submit();

    let event = Effect::InvalidationEvent(MsiMessage {
        address: 0xfee0_2000,
        data: 0x51,
    });
    assert_eq!(effects, [event], "the second finds IWC set");
    assert_eq!(read32(&q.r, ICS), 1);
    write32(&mut q.r, ICS, 1);
    assert_eq!(read32(&q.r, ICS), 0, "IWC is write-1-to-clear");
}

#[test]
fn test_wait_interrupt_held_while_masked_and_sent_on_unmask() {
    let mut q = Rig::new();
    write32(&mut q.r, IEDATA, 0x52);
    write32(&mut q.r, IEADDR, 0xfee0_0000);
    q.push((0x5 | 1 << 4, 0));

    let held = q.submit();
    let unmasked = write32(&mut q.r, IECTL, 0);

    assert!(held.is_empty());
    assert_eq!(
        unmasked,
        [Effect::InvalidationEvent(MsiMessage {
            address: 0xfee0_0000,
            data: 0x52
        })]
    );
    assert_eq!(read32(&q.r, IECTL) & ectl::IP, 0);
}

#[test]
fn test_queue_off_processes_nothing() {
    let mut r = regs();
    let m = Machine::new();
    write64(&mut r, IQA, QUEUE);
    m.write_u64(QUEUE, wait(STATUS).0);
    m.write_u64(QUEUE + 8, STATUS);

    let e = write32(&mut r, IQT, 16);

    assert!(e.is_empty());
    assert!(r.process_queue(m.ram().as_ref()).is_empty());
    assert_eq!(m.read_u64(STATUS), 0);
}

#[test]
fn test_turning_the_queue_on_with_pending_descriptors_processes_them() {
    let mut r = regs();
    let m = Machine::new();
    write64(&mut r, IQA, QUEUE);
    m.write_u64(QUEUE, wait(STATUS).0);
    m.write_u64(QUEUE + 8, STATUS);
    write32(&mut r, IQT, 16);

    let e = write32(&mut r, GCMD, gcmd::QIE);

    assert_eq!(e, [Effect::QueuedInvalidation(true), Effect::ProcessQueue]);
    r.process_queue(m.ram().as_ref());
    assert_eq!(m.read_u64(STATUS), QI_DONE);
}
