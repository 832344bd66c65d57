//! The buffers of one console chain (virtio 1.2 §5.3.6): a transmitq
//! chain carries device-readable bytes for the host, a receiveq chain
//! device-writable room for the guest's input. Descriptors in the other
//! direction are counted and skipped.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemory;

use crate::runtime::{collect_chain, ChainError, Segment};

/// Which way a chain moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// receiveq: host → guest, device-writable buffers.
    Receive,
    /// transmitq: guest → host, device-readable buffers.
    Transmit,
}

/// The buffers of one chain in the direction its queue uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleBuffers {
    /// Bus address and length of each buffer, in order.
    pub buffers: Vec<(u64, u64)>,
    /// Descriptors in the wrong direction, skipped.
    pub skipped: usize,
}

impl ConsoleBuffers {
    /// Total bytes of the buffers.
    pub fn len(&self) -> u64 {
        self.buffers.iter().map(|b| b.1).sum()
    }

    /// Whether there is no room or no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a chain of `port`'s queue, at most `max_descriptors` long.
pub fn parse<M>(
    chain: DescriptorChain<M>,
    port: Port,
    max_descriptors: usize,
) -> Result<ConsoleBuffers, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    Ok(parse_segments(
        &collect_chain(chain, max_descriptors)?,
        port,
    ))
}

/// Parses a chain from its descriptors (see [`parse`]).
pub fn parse_segments(segments: &[Segment], port: Port) -> ConsoleBuffers {
    let want_writable = port == Port::Receive;
    let mut out = ConsoleBuffers::default();
    for s in segments {
        if s.writable != want_writable {
            out.skipped += 1;
        } else if s.len > 0 {
            out.buffers.push((s.addr, u64::from(s.len)));
        }
    }
    out
}
