//! Doorbell Buffer Config: shadow doorbells, EventIdx, and the hooks the
//! VMM uses to put ioeventfds on SQ doorbells.

use std::sync::Arc;

use dma::{Direction, Dma, DmaError, HostRange};

use super::driver::*;
use crate::nvme::status::Status;

const SHADOW: u64 = 0x7_0000;
const EVENTIDX: u64 = 0x7_1000;

fn dbbc(d: &mut Driver, shadow: u64, eventidx: u64) -> Cqe {
    d.admin(sqe(0x7c, 0, (shadow, eventidx), [0; 6]))
}

fn read_u32(d: &Driver, addr: u64) -> u32 {
    let mut b = [0u8; 4];
    d.dma.read(addr, &mut b).unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn test_nvme_doorbell_buffer_config_validates_buffers() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(dbbc(&mut d, SHADOW + 8, EVENTIDX).is(Status::INVALID_FIELD));
    assert!(dbbc(&mut d, SHADOW, EVENTIDX + 0x100).is(Status::INVALID_FIELD));
    assert!(dbbc(&mut d, OUTSIDE, EVENTIDX).is(Status::INVALID_FIELD));
    assert!(dbbc(&mut d, SHADOW, SHADOW).is(Status::INVALID_FIELD));
    assert_eq!(d.nvme.take_doorbell_mode_change(), None);
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    assert_eq!(d.nvme.take_doorbell_mode_change(), Some(true));
    assert_eq!(d.nvme.take_doorbell_mode_change(), None);
}

#[test]
fn test_nvme_shadow_tail_without_mmio_runs_on_a_kick_and_sets_eventidx() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    d.dma.write(DATA, &[0xab; 512]).unwrap();
    d.push(1, rw(true, 1, 5, 1, (DATA, 0)));
    // Linux: shadow tail, then MMIO only if the EventIdx asks; here an
    // ioeventfd took the MMIO write, so the device only gets a kick.
    d.dma.write(SHADOW + 8, &1u32.to_le_bytes()).unwrap();
    d.nvme.poll();
    let c = d.pop(1).expect("command ran from the shadow tail");
    assert!(c.ok());
    assert_eq!(d.files[0].read_at(5 * 512, 1), [0xab]);
    assert_eq!(
        read_u32(&d, EVENTIDX + 8),
        1,
        "SQ 1 EventIdx = consumed tail"
    );
}

#[test]
fn test_nvme_invalid_shadow_tail_is_an_error_event() {
    let mut d = Driver::new();
    d.bring_up_with_queues(1);
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    d.push(0, sqe(0x0c, 0, (0, 0), [0; 6]));
    d.ring_sq(0);
    d.dma.write(SHADOW + 8, &500u32.to_le_bytes()).unwrap();
    d.nvme.poll();
    let c = d.pop(0).expect("AER");
    assert_eq!(c.dw0, 0x01_01_00);
}

#[test]
fn test_nvme_shadow_cq_head_frees_a_full_cq_without_mmio() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    assert!(d.admin(create_cq(1, 2, cq_addr(1), 1)).ok());
    assert!(d.admin(create_sq(1, 8, sq_addr(1), 1)).ok());
    d.queues[1] = Some(QueuePair {
        sq: sq_addr(1),
        cq: cq_addr(1),
        entries: 8,
        tail: 0,
        head: 0,
        phase: true,
    });
    d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    d.dma.write(SHADOW + 8, &2u32.to_le_bytes()).unwrap();
    d.ring_sq(1);
    let mut b = [0u8; 32];
    d.dma.read(cq_addr(1), &mut b).unwrap();
    assert_eq!((b[14] & 1, b[30] & 1), (1, 0), "second completion held");
    d.dma.write(SHADOW + 12, &1u32.to_le_bytes()).unwrap();
    d.nvme.poll();
    d.dma.read(cq_addr(1), &mut b).unwrap();
    assert_eq!(b[30] & 1, 1, "posted once the shadow head moved");
    assert_eq!(
        read_u32(&d, EVENTIDX + 12),
        1,
        "CQ EventIdx follows the head"
    );
}

#[test]
fn test_nvme_reset_turns_shadow_doorbells_off() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    assert_eq!(d.nvme.take_doorbell_mode_change(), Some(true));
    d.write32(0x14, 0);
    assert_eq!(d.nvme.take_doorbell_mode_change(), Some(false));
    d.enable();
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    assert!(
        d.io(1, rw(false, 1, 0, 1, (DATA, 0))).ok(),
        "MMIO tails work again"
    );
}

#[test]
fn test_nvme_sq_doorbell_slots_for_ioeventfds() {
    let d = Driver::new();
    let slots: Vec<_> = d.nvme.sq_doorbell_eventfds().map(|(s, _)| s).collect();
    assert_eq!(slots.len(), 4);
    assert_eq!(
        (slots[0].qid, slots[0].bar, slots[0].offset, slots[0].len),
        (1, 0, 0x1008, 4)
    );
    assert_eq!(slots[3].offset, 0x1020);
}

/// What a host running on another CPU does right after the device writes
/// `buf` at `addr`: its own writes to `mem`.
type React = fn(mem: &dyn Dma, addr: u64, buf: &[u8]) -> Result<(), DmaError>;

/// Guest memory where the host reacts to each write of the device.
struct ReactingHost {
    mem: Arc<dyn Dma>,
    react: React,
}

impl std::fmt::Debug for ReactingHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReactingHost")
    }
}

impl Dma for ReactingHost {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.mem.read(addr, buf)
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
        self.mem.write(addr, buf)?;
        (self.react)(&*self.mem, addr, buf)
    }

    fn host_ranges<'a>(
        &'a self,
        addr: u64,
        len: u64,
        dir: Direction,
        out: &mut Vec<HostRange<'a>>,
    ) -> Result<(), DmaError> {
        self.mem.host_ranges(addr, len, dir, out)
    }
}

/// Two reads on queue 1 with shadow doorbells: the host writes shadow tail
/// 1 and, through `wrap`'s reactions, tail 2, never ringing. Returns whether
/// both completed in order, and SQ 1's EventIdx after.
fn two_reads_through(wrap: WrapDma) -> (bool, u32) {
    let mut d = Driver::with(Setup {
        wrap_dma: Some(wrap),
        ..Setup::default()
    });
    d.bring_up();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    let first = d.push(1, rw(false, 1, 0, 1, (DATA, 0)));
    let second = d.push(1, rw(false, 1, 1, 1, (DATA, 0)));
    d.dma.write(SHADOW + 8, &1u32.to_le_bytes()).unwrap();

    d.nvme.poll();

    let cids = [d.pop(1).map(|c| c.cid), d.pop(1).map(|c| c.cid)];
    (
        cids == [Some(first), Some(second)],
        read_u32(&d, EVENTIDX + 8),
    )
}

#[test]
fn test_nvme_shadow_tail_written_during_processing_is_not_lost() {
    // The host writes tail 2 right after the device publishes EventIdx 1,
    // having read the old EventIdx (so it does not ring): the race the
    // device must close by looking again.
    let (both, event_idx) = two_reads_through(|m| {
        Arc::new(ReactingHost {
            mem: m,
            react: |mem, addr, buf| {
                if addr == EVENTIDX + 8 && buf == 1u32.to_le_bytes() {
                    mem.write(SHADOW + 8, &2u32.to_le_bytes())?;
                }
                Ok(())
            },
        })
    });

    assert!(both);
    assert_eq!(event_idx, 2);
}

/// Set once the host of the next test has written a tail without ringing.
static SPARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[test]
fn test_nvme_sq_eventidx_spares_the_doorbell_while_a_command_is_in_flight() {
    // The host writes tail 2 once the device publishes an EventIdx that
    // spares it the doorbell (Linux's rule) for going from 1 to 2.
    let (both, event_idx) = two_reads_through(|m| {
        Arc::new(ReactingHost {
            mem: m,
            react: |mem, addr, buf| {
                let Ok(e) = <[u8; 4]>::try_from(buf) else {
                    return Ok(());
                };
                let spared = !host_must_ring(u32::from_le_bytes(e), 2, 1);
                if addr == EVENTIDX + 8
                    && spared
                    && !SPARED.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    mem.write(SHADOW + 8, &2u32.to_le_bytes())?;
                }
                Ok(())
            },
        })
    });

    assert!(
        SPARED.load(std::sync::atomic::Ordering::SeqCst),
        "the host had to ring for its second command"
    );
    assert!(both, "the unrung tail was read");
    assert_eq!(event_idx, 2, "idle again: the next command rings");
}

/// Linux's rule (`nvme_dbbuf_need_event`): ring the MMIO doorbell when the
/// EventIdx lies in [old, new) of 16-bit counters.
fn host_must_ring(event_idx: u32, new: u32, old: u32) -> bool {
    let (e, n, o) = (event_idx as u16, new as u16, old as u16);
    n.wrapping_sub(e).wrapping_sub(1) < n.wrapping_sub(o)
}

/// Runs one read on queue 1 (16 entries), consuming its completion
/// through the shadow CQ head only; returns the (old, new) head.
fn read_with_shadow_head(d: &mut Driver, lba: u64) -> (u32, u32) {
    d.push(1, rw(false, 1, lba, 1, (DATA, 0)));
    let tail = d.queues[1].unwrap().tail;
    d.dma.write(SHADOW + 8, &tail.to_le_bytes()).unwrap();
    d.nvme.poll();
    let q = d.queues[1].as_mut().unwrap();
    let old = q.head;
    q.head = (q.head + 1) % q.entries;
    if q.head == 0 {
        q.phase = !q.phase;
    }
    let new = q.head;
    d.dma.write(SHADOW + 12, &new.to_le_bytes()).unwrap();
    (old, new)
}

#[test]
fn test_nvme_cq_eventidx_spares_the_head_doorbell_with_msix_for_whole_laps() {
    let mut d = Driver::new();
    d.bring_up();
    d.enable_msix();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    // Three laps of the 16-entry CQ, the host never ringing the CQ head
    // doorbell (it would have to, were the EventIdx in its way).
    for i in 0..48 {
        let (old, new) = read_with_shadow_head(&mut d, i);
        let e = read_u32(&d, EVENTIDX + 12);
        assert!(
            !host_must_ring(e, new, old),
            "I/O {i}: EventIdx {e} asks for a ring from {old} to {new}"
        );
    }
}

#[test]
fn test_nvme_cq_eventidx_asks_for_every_head_update_with_intx() {
    let mut d = Driver::new();
    d.enable_pci();
    d.enable();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 0);
    let (old, new) = read_with_shadow_head(&mut d, 0);
    let e = read_u32(&d, EVENTIDX + 12);
    assert!(host_must_ring(e, new, old), "INTx follows the head: {e}");
}

#[test]
fn test_nvme_shadow_cq_head_out_of_range_is_ignored() {
    let mut d = Driver::new();
    d.bring_up();
    assert!(dbbc(&mut d, SHADOW, EVENTIDX).ok());
    d.admin(set_features(0x07, 0));
    d.create_queue_pair(1, 16, 1);
    // A head past the queue, then one ahead of the tail: neither is taken,
    // and commands keep completing in order.
    for (i, bad) in [500u32, 9].into_iter().enumerate() {
        d.dma.write(SHADOW + 12, &bad.to_le_bytes()).unwrap();
        d.push(1, rw(false, 1, i as u64, 1, (DATA, 0)));
        let tail = d.queues[1].unwrap().tail;
        d.dma.write(SHADOW + 8, &tail.to_le_bytes()).unwrap();
        d.nvme.poll();
        assert!(d.pop(1).expect("completion posted").ok());
        let e = read_u32(&d, EVENTIDX + 12);
        assert!(e < 16 || e == 0xffff, "EventIdx {e} follows the real head");
    }
}
