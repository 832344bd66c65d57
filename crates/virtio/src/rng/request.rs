//! One entropy request (virtio 1.2 §5.4.6): the device-writable buffers
//! of a chain, cut to the per-request bound.
//!
//! The driver MUST NOT place device-readable buffers in the queue
//! (§5.4.6.1); such descriptors are counted and skipped, the rest of the
//! chain is still served.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemory;

use crate::runtime::{collect_chain, ChainError, Segment};

/// The buffers to fill.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RngRequest {
    /// Device-writable buffers (bus address, length), in order, cut so
    /// their total is at most the bound.
    pub buffers: Vec<(u64, u64)>,
    /// Device-readable descriptors that were skipped.
    pub readable: usize,
}

impl RngRequest {
    /// Total bytes to fill.
    pub fn len(&self) -> u64 {
        self.buffers.iter().map(|b| b.1).sum()
    }

    /// Whether there is nothing to fill.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses `chain`: at most `max_descriptors` descriptors, at most
/// `max_bytes` to fill.
pub fn parse<M>(
    chain: DescriptorChain<M>,
    max_descriptors: usize,
    max_bytes: u64,
) -> Result<RngRequest, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    Ok(parse_segments(
        &collect_chain(chain, max_descriptors)?,
        max_bytes,
    ))
}

/// Parses a request from its descriptors (see [`parse`]).
pub fn parse_segments(segments: &[Segment], max_bytes: u64) -> RngRequest {
    let mut req = RngRequest::default();
    let mut room = max_bytes;
    for s in segments {
        if !s.writable {
            req.readable += 1;
            continue;
        }
        let take = u64::from(s.len).min(room);
        if take > 0 {
            req.buffers.push((s.addr, take));
        }
        room -= take;
    }
    req
}
