//! Submission and completion queues (NVMe 1.4 §4.1): circular buffers in
//! guest memory, their head/tail pointers, the phase tag, and the
//! validation of doorbell values.
//!
//! A queue of `size` entries is empty when head == tail and full when
//! head == (tail + 1) mod size, so it holds at most size − 1 entries.
//! The device owns the SQ head and the CQ tail; the host moves the SQ tail
//! and the CQ head through doorbells (or shadow doorbells). A value at or
//! past `size`, or a CQ head that moves past entries not yet posted, is an
//! Invalid Doorbell Write Value (§5.2.1, figure 146): the write is dropped
//! and an error asynchronous event is reported.

use std::collections::VecDeque;

/// Size of a completion queue entry.
pub const CQE_SIZE: u64 = 16;
/// Size of a submission queue entry.
pub const SQE_SIZE: u64 = 64;

/// An invalid doorbell write (asynchronous event information, figure 146).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorbellError {
    /// The doorbell belongs to no existing queue (Write to Invalid Doorbell
    /// Register, 00h).
    InvalidRegister,
    /// The value is out of range (Invalid Doorbell Write Value, 01h).
    InvalidValue,
}

impl DoorbellError {
    /// The Asynchronous Event Information code.
    pub fn event_info(self) -> u8 {
        match self {
            Self::InvalidRegister => 0x00,
            Self::InvalidValue => 0x01,
        }
    }
}

/// Which doorbell a BAR offset addresses (DSTRD = 0: 4-byte stride).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doorbell {
    /// Submission Queue `qid` Tail Doorbell.
    SqTail(u16),
    /// Completion Queue `qid` Head Doorbell.
    CqHead(u16),
}

impl Doorbell {
    /// Decodes `offset` relative to the first doorbell (BAR0 + 0x1000).
    pub fn decode(offset: u64) -> Option<Self> {
        if offset & 3 != 0 {
            return None;
        }
        let index = offset / 4;
        let qid = u16::try_from(index / 2).ok()?;
        Some(if index & 1 == 0 {
            Self::SqTail(qid)
        } else {
            Self::CqHead(qid)
        })
    }

    /// Offset of this doorbell relative to the first doorbell; also its
    /// offset in a shadow doorbell or EventIdx buffer.
    pub fn offset(self) -> u64 {
        match self {
            Self::SqTail(q) => 8 * u64::from(q),
            Self::CqHead(q) => 8 * u64::from(q) + 4,
        }
    }
}

/// Checks a new SQ tail.
pub fn validate_sq_tail(size: u32, tail: u32) -> Result<(), DoorbellError> {
    if tail >= size {
        return Err(DoorbellError::InvalidValue);
    }
    Ok(())
}

/// Checks a new CQ head against the entries outstanding (head..tail).
pub fn validate_cq_head(size: u32, head: u32, tail: u32, new: u32) -> Result<(), DoorbellError> {
    if new >= size {
        return Err(DoorbellError::InvalidValue);
    }
    let outstanding = (tail + size - head) % size;
    let advance = (new + size - head) % size;
    if advance > outstanding {
        return Err(DoorbellError::InvalidValue);
    }
    Ok(())
}

/// A submission queue (plain state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmissionQueue {
    /// Base guest address.
    pub base: u64,
    /// Entries (2..=MQES+1).
    pub size: u32,
    /// Next entry the controller fetches.
    pub head: u32,
    /// Last tail the host wrote.
    pub tail: u32,
    /// Completion queue its commands post to.
    pub cqid: u16,
    /// Commands fetched and not yet completed.
    pub in_flight: u32,
    /// A Delete I/O SQ command waiting for `in_flight` to drain (its CID).
    pub deleting: Option<u16>,
}

impl SubmissionQueue {
    /// An empty queue.
    pub fn new(base: u64, size: u32, cqid: u16) -> Self {
        Self {
            base,
            size,
            head: 0,
            tail: 0,
            cqid,
            in_flight: 0,
            deleting: None,
        }
    }

    /// No command waits.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Address of the entry at the head.
    pub fn head_addr(&self) -> u64 {
        self.base.wrapping_add(u64::from(self.head) * SQE_SIZE)
    }

    /// Consumes the head entry.
    pub fn advance_head(&mut self) {
        self.head = (self.head + 1) % self.size;
    }
}

/// A completion queue entry waiting for room in a full CQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingCqe {
    /// Command specific DW0.
    pub dw0: u32,
    /// Submission queue.
    pub sqid: u16,
    /// Command identifier.
    pub cid: u16,
    /// Status field (15 bits).
    pub status: u16,
}

/// A completion queue (plain state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionQueue {
    /// Base guest address.
    pub base: u64,
    /// Entries (2..=MQES+1).
    pub size: u32,
    /// Last head the host wrote.
    pub head: u32,
    /// Next slot the controller fills.
    pub tail: u32,
    /// Phase tag written into the next entry.
    pub phase: bool,
    /// Interrupts enabled.
    pub ien: bool,
    /// Interrupt vector.
    pub vector: u16,
    /// Submission queues posting here.
    pub sq_refs: u32,
    /// Entries that did not fit, oldest first.
    pub backlog: VecDeque<PendingCqe>,
    /// Entries posted since this queue's vector was last sent (a count,
    /// not a slot: the host may consume more than a lap of entries between
    /// two messages).
    pub posted_since_message: u32,
}

impl CompletionQueue {
    /// An empty queue; the first pass writes phase 1.
    pub fn new(base: u64, size: u32, ien: bool, vector: u16) -> Self {
        Self {
            base,
            size,
            head: 0,
            tail: 0,
            phase: true,
            ien,
            vector,
            sq_refs: 0,
            backlog: VecDeque::new(),
            posted_since_message: 0,
        }
    }

    /// Entries posted and not yet consumed by the host.
    pub fn unconsumed(&self) -> u32 {
        (self.tail + self.size - self.head) % self.size
    }

    /// Entries posted since the last interrupt that the host has not
    /// consumed: what a new interrupt would announce.
    pub fn unannounced(&self) -> u32 {
        self.posted_since_message.min(self.unconsumed())
    }

    /// Whether the host still has to consume entries an interrupt already
    /// announced: its handler for that interrupt has not finished, and will
    /// find entries posted meanwhile on its own.
    pub fn host_behind(&self) -> bool {
        self.unconsumed() > self.posted_since_message
    }

    /// No room for another entry.
    pub fn is_full(&self) -> bool {
        (self.tail + 1) % self.size == self.head
    }

    /// Entries posted and not yet consumed by the host.
    pub fn has_unconsumed(&self) -> bool {
        self.head != self.tail
    }

    /// The entry `e` encoded at the tail: (address, bytes). Call
    /// [`CompletionQueue::advance_tail`] once it is written.
    pub fn encode(&self, e: &PendingCqe, sqhd: u32) -> (u64, [u8; 16]) {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&e.dw0.to_le_bytes());
        b[8..10].copy_from_slice(&(sqhd as u16).to_le_bytes());
        b[10..12].copy_from_slice(&e.sqid.to_le_bytes());
        let dw3 = u32::from(e.cid) | u32::from(self.phase) << 16 | u32::from(e.status) << 17;
        b[12..16].copy_from_slice(&dw3.to_le_bytes());
        let addr = self.base.wrapping_add(u64::from(self.tail) * CQE_SIZE);
        (addr, b)
    }

    /// Moves the tail past the entry just written, flipping the phase on
    /// wrap.
    pub fn advance_tail(&mut self) {
        self.posted_since_message = self.posted_since_message.saturating_add(1);
        self.tail += 1;
        if self.tail == self.size {
            self.tail = 0;
            self.phase = !self.phase;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_doorbell_decode_pairs_sq_and_cq() {
        assert_eq!(Doorbell::decode(0), Some(Doorbell::SqTail(0)));
        assert_eq!(Doorbell::decode(4), Some(Doorbell::CqHead(0)));
        assert_eq!(Doorbell::decode(8), Some(Doorbell::SqTail(1)));
        assert_eq!(Doorbell::decode(0x1c), Some(Doorbell::CqHead(3)));
        assert_eq!(Doorbell::decode(2), None);
        assert_eq!(Doorbell::CqHead(3).offset(), 0x1c);
    }

    #[test]
    fn test_sq_tail_at_or_past_size_is_invalid() {
        assert_eq!(validate_sq_tail(16, 15), Ok(()));
        assert_eq!(validate_sq_tail(16, 16), Err(DoorbellError::InvalidValue));
    }

    #[test]
    fn test_cq_head_may_not_pass_the_tail() {
        // head 14, tail 2 on a 16-entry queue: 4 outstanding.
        assert_eq!(validate_cq_head(16, 14, 2, 2), Ok(()));
        assert_eq!(validate_cq_head(16, 14, 2, 0), Ok(()));
        assert_eq!(
            validate_cq_head(16, 14, 2, 3),
            Err(DoorbellError::InvalidValue)
        );
        assert_eq!(validate_cq_head(16, 14, 2, 14), Ok(()), "no movement");
        assert_eq!(
            validate_cq_head(16, 0, 0, 1),
            Err(DoorbellError::InvalidValue)
        );
        assert_eq!(
            validate_cq_head(16, 0, 0, 99),
            Err(DoorbellError::InvalidValue)
        );
    }

    #[test]
    fn test_cq_full_when_tail_is_one_behind_head() {
        let mut cq = CompletionQueue::new(0, 4, true, 0);
        for _ in 0..3 {
            assert!(!cq.is_full());
            cq.advance_tail();
        }
        assert!(cq.is_full(), "size - 1 entries");
    }

    #[test]
    fn test_cq_phase_flips_on_wrap_and_is_encoded() {
        let mut cq = CompletionQueue::new(0x1000, 2, true, 0);
        let e = PendingCqe {
            dw0: 7,
            sqid: 1,
            cid: 0x42,
            status: 0x0002,
        };
        let (addr, b) = cq.encode(&e, 5);
        assert_eq!(addr, 0x1000);
        let dw3 = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        assert_eq!(dw3, 0x42 | 1 << 16 | 2 << 17);
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), 5, "SQ head");
        cq.advance_tail();
        cq.advance_tail();
        assert_eq!(cq.tail, 0);
        assert!(!cq.phase);
    }

    #[test]
    fn test_sq_head_wraps() {
        let mut sq = SubmissionQueue::new(0x2000, 3, 0);
        sq.tail = 1;
        sq.advance_head();
        assert!(sq.is_empty());
        sq.head = 2;
        assert_eq!(sq.head_addr(), 0x2000 + 128);
        sq.advance_head();
        assert_eq!(sq.head, 0);
    }
}
