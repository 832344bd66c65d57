//! Mirroring what one function's DMA reaches through the emulated unit
//! into a host IOMMU (VT-d 4.1 §6.1, Caching Mode): the way an assigned
//! host device, whose DMA the emulated unit never sees, still gets exactly
//! the translations the guest programmed.
//!
//! With CAP.CM set, software must invalidate every change to its tables,
//! not-present to present included (§6.1), so each invalidation is the
//! moment to read the tables again and bring the host's mappings in line:
//! a page-selective IOTLB invalidation mirrors its range, anything wider
//! the whole address space. The host maps input address → guest page at
//! the granularity of the guest's leaves (a 4 KiB page, a 2 MiB or 1 GiB
//! superpage), so that every later unmap covers whole host mappings.
//!
//! ```text
//!  guest invalidation ─▶ Mirror::sync(scope) ─▶ Remapper::view(requester)
//!                         translation off / pass-through ─▶ all guest RAM at IOVA = GPA
//!                         blocked (no valid context)     ─▶ nothing
//!                         a domain ─▶ leaves() of its table ─▶ diff ─▶ HostMapper::map/unmap
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::Range;

use dma::RequesterId;

use crate::leaves::{leaves, Leaf};
use crate::regs::{ContextInvalidation, Effect, IotlbScope};
use crate::remapper::{Remapper, View};

/// The most leaves one sync lists: far beyond what a driver maps at once,
/// small enough that a hostile table costs a bounded time.
pub const LEAF_LIMIT: usize = 1 << 18;

/// The host IOMMU a function's DMA really goes through (VFIO's container).
pub trait HostMapper: Send + Sync + Debug {
    /// Maps input addresses `iova..iova + len` to guest RAM at `gpa`
    /// with the given rights.
    fn map(&self, iova: u64, gpa: u64, len: u64, read: bool, write: bool) -> io::Result<()>;
    /// Removes the mapping made at `iova` of `len` bytes.
    fn unmap(&self, iova: u64, len: u64) -> io::Result<()>;
    /// Maps all guest RAM at IOVA = guest-physical address, read-write.
    fn map_identity(&self) -> io::Result<()>;
    /// Removes what [`HostMapper::map_identity`] mapped.
    fn unmap_identity(&self) -> io::Result<()>;
}

/// What one invalidation asks a mirror to look at again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncScope {
    /// Everything the function reaches.
    All,
    /// These input addresses, in this domain (a page-selective IOTLB
    /// invalidation; other domains are not touched).
    Range {
        /// The domain the guest named.
        did: u16,
        /// The input addresses.
        range: Range<u64>,
    },
}

impl SyncScope {
    /// What `effect` asks of the mirror of the function `requester`, if
    /// anything.
    pub fn of(effect: &Effect, requester: RequesterId, mirrored_did: Option<u16>) -> Option<Self> {
        match *effect {
            Effect::SetRootTable(_) | Effect::Translation(_) => Some(Self::All),
            Effect::InvalidateContext(ContextInvalidation::Device {
                source,
                function_mask,
                ..
            }) => {
                let ignore = [0u16, 0b100, 0b110, 0b111][usize::from(function_mask & 3)];
                (requester.0 & !ignore == source.0 & !ignore).then_some(Self::All)
            }
            Effect::InvalidateContext(_) => Some(Self::All),
            Effect::InvalidateIotlb(i) => match i.scope {
                IotlbScope::Global => Some(Self::All),
                IotlbScope::Domain { did } => (mirrored_did == Some(did)).then_some(Self::All),
                IotlbScope::Pages {
                    did, addr, mask, ..
                } => {
                    // An address mask of 52 or more covers the whole space.
                    let range = match 1u64.checked_shl(12 + u32::from(mask)) {
                        Some(size) if mask < 52 => {
                            let start = addr & !(size - 1);
                            start..start.saturating_add(size)
                        }
                        _ => 0..u64::MAX,
                    };
                    Some(Self::Range { did, range })
                }
            },
            _ => None,
        }
    }
}

/// What the host maps now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mirrored {
    /// Nothing: the function's DMA is blocked.
    Nothing,
    /// All guest RAM at IOVA = GPA.
    Identity,
    /// The leaves of domain `did`'s table, by input address.
    Domain {
        did: u16,
        leaves: BTreeMap<u64, Leaf>,
    },
}

/// One function's mirror: what the host maps for it, kept equal to what
/// the emulated unit would translate.
#[derive(Debug)]
pub struct Mirror {
    host: std::sync::Arc<dyn HostMapper>,
    state: Mirrored,
    /// Host mapping failures, for a rate-limited log.
    failures: u64,
}

impl Mirror {
    /// A mirror into `host` that maps nothing yet ([`Mirror::sync`] with
    /// [`SyncScope::All`] brings it in line).
    pub fn new(host: std::sync::Arc<dyn HostMapper>) -> Self {
        Self {
            host,
            state: Mirrored::Nothing,
            failures: 0,
        }
    }

    /// The domain mirrored now, if the function is translated.
    pub fn domain(&self) -> Option<u16> {
        match self.state {
            Mirrored::Domain { did, .. } => Some(did),
            _ => None,
        }
    }

    /// How many leaves the host maps (0 for identity or nothing).
    pub fn leaves(&self) -> usize {
        match &self.state {
            Mirrored::Domain { leaves, .. } => leaves.len(),
            _ => 0,
        }
    }

    /// Whether the host maps all guest RAM at IOVA = GPA.
    pub fn is_identity(&self) -> bool {
        self.state == Mirrored::Identity
    }

    fn failed(&mut self, what: &str, e: io::Error) {
        self.failures += 1;
        if self.failures.is_power_of_two() {
            tracing::warn!(
                "VT-d mirror: {what}: {e} ({} host mapping failures so far)",
                self.failures
            );
        }
    }

    /// Brings the host's mappings for `requester` in line with what
    /// `remapper` translates, over `scope`.
    pub fn sync(&mut self, remapper: &Remapper, requester: RequesterId, scope: &SyncScope) {
        match remapper.view(requester) {
            View::Untranslated => {
                if self.state != Mirrored::Identity {
                    self.clear();
                    match self.host.map_identity() {
                        Ok(()) => self.state = Mirrored::Identity,
                        Err(e) => self.failed("mapping guest RAM", e),
                    }
                }
            }
            View::Blocked => self.clear(),
            View::Domain { did, table, levels } => {
                let same = self.domain() == Some(did);
                let range = match scope {
                    SyncScope::Range { did: d, range } if same && *d == did => range.clone(),
                    SyncScope::Range { .. } if same => return,
                    _ => 0..u64::MAX,
                };
                if !same {
                    self.clear();
                    self.state = Mirrored::Domain {
                        did,
                        leaves: BTreeMap::new(),
                    };
                }
                let range = self.widen(range);
                let mut wanted = BTreeMap::new();
                let listed = leaves(
                    remapper.ram().as_ref(),
                    table,
                    levels,
                    range.clone(),
                    remapper.capabilities(),
                    LEAF_LIMIT,
                    &mut |l| {
                        wanted.insert(l.iova, l);
                    },
                );
                if let Err(e) = listed {
                    tracing::warn!(
                        "VT-d mirror: {requester}, domain {did}: {e}; the rest is not mapped"
                    );
                }
                self.apply(range, wanted);
            }
        }
    }

    /// `range` grown to whole host mappings at its ends, so that a
    /// mapping the sync removes is listed again in full.
    fn widen(&self, range: Range<u64>) -> Range<u64> {
        let Mirrored::Domain { leaves, .. } = &self.state else {
            return range;
        };
        let mut r = range;
        if let Some((_, l)) = leaves.range(..=r.start).next_back() {
            if l.iova + l.len > r.start {
                r.start = l.iova;
            }
        }
        if r.end > 0 {
            if let Some((_, l)) = leaves.range(..r.end).next_back() {
                r.end = r.end.max(l.iova.saturating_add(l.len));
            }
        }
        r
    }

    /// Replaces the mapped leaves that lie in `range` by `wanted`, touching
    /// only those that differ.
    fn apply(&mut self, range: Range<u64>, wanted: BTreeMap<u64, Leaf>) {
        let Mirrored::Domain { leaves, .. } = &mut self.state else {
            return;
        };
        let stale: Vec<Leaf> = leaves
            .range(range.clone())
            .map(|(_, l)| *l)
            .filter(|l| wanted.get(&l.iova) != Some(l))
            .collect();
        let mut errors = Vec::new();
        for l in stale {
            leaves.remove(&l.iova);
            if let Err(e) = self.host.unmap(l.iova, l.len) {
                errors.push(("unmapping", e));
            }
        }
        for (iova, l) in wanted {
            if leaves.contains_key(&iova) {
                continue;
            }
            match self.host.map(l.iova, l.gpa, l.len, l.read, l.write) {
                Ok(()) => {
                    leaves.insert(iova, l);
                }
                Err(e) => errors.push(("mapping", e)),
            }
        }
        for (what, e) in errors {
            self.failed(what, e);
        }
    }

    /// Removes every host mapping: the function reaches nothing.
    pub fn clear(&mut self) {
        match std::mem::replace(&mut self.state, Mirrored::Nothing) {
            Mirrored::Nothing => {}
            Mirrored::Identity => {
                if let Err(e) = self.host.unmap_identity() {
                    self.failed("unmapping guest RAM", e);
                }
            }
            Mirrored::Domain { leaves, .. } => {
                for l in leaves.into_values() {
                    if let Err(e) = self.host.unmap(l.iova, l.len) {
                        self.failed("unmapping", e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
