//! The unit's translation caches (VT-d 4.1 §6.2): a context cache keyed by
//! requester ID (§6.2.1) and an IOTLB keyed by domain and 4 KiB page
//! (§6.2.2). Only present, valid entries are cached, so a guest that makes
//! an entry present needs no invalidation (CAP.CM = 0); one that changes or
//! removes a present entry must invalidate it, and the matching context-
//! cache or IOTLB invalidation (register-based or queued) drops exactly
//! what it covers (§6.5: global, domain, device with function mask, pages
//! with address mask). A superpage's translation is cached per 4 KiB page
//! used. The caches are bounded: full, they start over.
//!
//! A walk runs without the cache's lock, so an invalidation may land
//! between the walk's reads and its insertion: every invalidation bumps a
//! generation, and an entry is inserted only if the generation it was
//! looked up under is still current, so a stale translation never
//! survives the invalidation that the guest waits on.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use dma::{Direction, RequesterId};

use crate::regs::{ContextInvalidation, IotlbScope};
use crate::remapper::Piece;
use crate::tables::ContextEntry;

/// Most entries each cache holds before it is emptied.
pub const CAPACITY: usize = 4096;

/// One cached 4 KiB translation: the guest-physical page and the access
/// rights of the walk that found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedPage {
    /// Guest-physical page frame (address >> 12).
    pub frame: u64,
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
}

/// A hasher for the caches' small integer keys (requester IDs, domain and
/// page numbers): a multiply-xorshift mix, much cheaper than SipHash on
/// the per-access path. The keys come from the guest, but a guest that
/// makes them collide only slows its own DMA (the map stays bounded).
#[derive(Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// The context cache and the IOTLB.
#[derive(Debug, Default)]
pub struct Caches {
    contexts: Map<RequesterId, ContextEntry>,
    pages: Map<(u16, u64), CachedPage>,
    generation: u64,
}

impl Caches {
    /// The generation an entry looked up now must be inserted under.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The cached context entry of `requester`.
    pub fn context(&self, requester: RequesterId) -> Option<ContextEntry> {
        self.contexts.get(&requester).copied()
    }

    /// Caches `requester`'s context entry, read under `generation`.
    pub fn put_context(&mut self, generation: u64, requester: RequesterId, entry: ContextEntry) {
        if generation != self.generation {
            return;
        }
        if self.contexts.len() >= CAPACITY {
            self.contexts.clear();
        }
        self.contexts.insert(requester, entry);
    }

    /// The cached translation of the page holding `iova` in domain `did`.
    pub fn page(&self, did: u16, iova: u64) -> Option<CachedPage> {
        self.pages.get(&(did, iova >> 12)).copied()
    }

    /// The cached piece for an access in direction `dir` at `iova` in
    /// domain `did`: to the end of its 4 KiB page, if the cached rights
    /// allow the access.
    pub fn piece(&self, did: u16, iova: u64, dir: Direction) -> Option<Piece> {
        let p = self.page(did, iova)?;
        let allowed = match dir {
            Direction::ToDevice => p.read,
            Direction::FromDevice => p.write,
        };
        let offset = iova & 0xfff;
        allowed.then_some(Piece {
            gpa: p.frame << 12 | offset,
            len: 0x1000 - offset,
        })
    }

    /// Caches the translation of the page holding `iova` in domain `did`,
    /// walked under `generation`.
    pub fn put_page(&mut self, generation: u64, did: u16, iova: u64, page: CachedPage) {
        if generation != self.generation {
            return;
        }
        if self.pages.len() >= CAPACITY {
            self.pages.clear();
        }
        self.pages.insert((did, iova >> 12), page);
    }

    /// Drops everything (the root table or translation enable changed).
    pub fn clear(&mut self) {
        self.generation += 1;
        self.contexts.clear();
        self.pages.clear();
    }

    /// A context-cache invalidation (§6.5.1.1, §6.5.2.1).
    pub fn invalidate_contexts(&mut self, scope: &ContextInvalidation) {
        self.generation += 1;
        match *scope {
            ContextInvalidation::Global => self.contexts.clear(),
            ContextInvalidation::Domain { did } => self.contexts.retain(|_, c| c.domain != did),
            ContextInvalidation::Device {
                did,
                source,
                function_mask,
            } => {
                let ignore = [0u16, 0b100, 0b110, 0b111][usize::from(function_mask & 3)];
                self.contexts
                    .retain(|rid, c| c.domain != did || rid.0 & !ignore != source.0 & !ignore);
            }
        }
    }

    /// An IOTLB invalidation (§6.5.1.2, §6.5.2.3).
    pub fn invalidate_pages(&mut self, scope: &IotlbScope) {
        self.generation += 1;
        match *scope {
            IotlbScope::Global => self.pages.clear(),
            IotlbScope::Domain { did } => self.pages.retain(|&(d, _), _| d != did),
            IotlbScope::Pages {
                did, addr, mask, ..
            } => {
                let first = addr >> 12 >> mask;
                self.pages
                    .retain(|&(d, frame), _| d != did || frame >> mask != first);
            }
        }
    }

    /// Entries held: contexts, pages.
    pub fn len(&self) -> (usize, usize) {
        (self.contexts.len(), self.pages.len())
    }
}

#[cfg(test)]
mod tests;
