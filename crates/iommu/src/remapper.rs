//! The remapping unit's state and its translation of one request (VT-d 4.1
//! §3.4: legacy mode, root table → context entry → second-level walk).
//!
//! The state is what the registers will program: the root-table address
//! latched by Set Root Table Pointer (RTADDR, §11.4.6, and GCMD.SRTP,
//! §11.4.4) and Translation Enable (GCMD.TE, §11.4.4). Faults go to a
//! bounded [`FaultLog`] (§7.1) unless the context entry disables fault
//! processing.
//!
//! Present context entries and present translations are cached
//! ([`crate::cache`], §6.2) and dropped by the matching invalidations
//! ([`Remapper::invalidate`], §6.5); a request that misses reads the root
//! entry, the context entry and the page tables from guest RAM.

use std::sync::{Arc, Mutex, PoisonError};

use dma::{Direction, Dma, RequesterId};

use crate::cache::{CachedPage, Caches};
use crate::caps::Capabilities;
use crate::fault::{FaultLog, FaultReason, FaultRecord};
use crate::regs::Effect;
use crate::tables::{read_context_entry, read_root_entry, Translation};
use crate::walk::{walk, Levels};

/// Part of a translated range (§3.6): `len` bytes at guest-physical `gpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What a function's DMA reaches now, read from the tables themselves
/// (not the caches): for mirroring into a host IOMMU ([`crate::mirror`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Translation is off, or the context entry passes requests through:
    /// all of guest RAM at IOVA = guest-physical address.
    Untranslated,
    /// No valid context entry: every request faults.
    Blocked,
    /// Requests go through domain `did`'s second-level table.
    Domain {
        /// The context entry's DID.
        did: u16,
        /// The table's guest-physical address.
        table: u64,
        /// Its depth.
        levels: Levels,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct Programmed {
    root_table: u64,
    enabled: bool,
}

/// One DMA-remapping hardware unit (a DRHD, VT-d 4.1 §8.3) in legacy mode:
/// translates requests of any requester, reading its tables from guest RAM.
#[derive(Debug)]
pub struct Remapper {
    ram: Arc<dyn Dma>,
    caps: Capabilities,
    state: Mutex<Programmed>,
    faults: Mutex<FaultLog>,
    caches: Mutex<Caches>,
}

impl Remapper {
    /// A unit with translation off and no root table (the reset state:
    /// GSTS is 0, §11.4.5), reading tables and data through `ram` (guest
    /// RAM, untranslated), keeping at most `fault_records` faults (CAP.NFR
    /// + 1, §11.4.2).
    pub fn new(ram: Arc<dyn Dma>, caps: Capabilities, fault_records: usize) -> Self {
        Self {
            ram,
            caps,
            state: Mutex::new(Programmed::default()),
            faults: Mutex::new(FaultLog::new(fault_records)),
            caches: Mutex::new(Caches::default()),
        }
    }

    /// What the unit supports.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Guest RAM, as the unit reaches it (untranslated).
    pub fn ram(&self) -> &Arc<dyn Dma> {
        &self.ram
    }

    fn state(&self) -> Programmed {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Latches the root-table address, as Set Root Table Pointer does with
    /// RTADDR (§11.4.4, §11.4.6; bits 11:0 are ignored).
    pub fn set_root_table(&self, addr: u64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .root_table = addr & !0xfff;
        self.caches().clear();
    }

    /// The root-table address in use.
    pub fn root_table(&self) -> u64 {
        self.state().root_table
    }

    /// Turns DMA remapping on or off (GCMD.TE, §11.4.4). While it is off,
    /// requests reach guest RAM untranslated.
    pub fn set_enabled(&self, on: bool) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .enabled = on;
        self.caches().clear();
    }

    /// Whether DMA remapping is on (GSTS.TES).
    pub fn enabled(&self) -> bool {
        self.state().enabled
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out a context-cache or IOTLB invalidation (§6.5), from the
    /// registers or the queue; other effects are not its business.
    pub fn invalidate(&self, effect: &Effect) {
        match effect {
            Effect::InvalidateContext(scope) => self.caches().invalidate_contexts(scope),
            Effect::InvalidateIotlb(i) => self.caches().invalidate_pages(&i.scope),
            _ => {}
        }
    }

    /// What `requester`'s DMA reaches now, from the tables in guest RAM.
    pub fn view(&self, requester: RequesterId) -> View {
        let state = self.state();
        if !state.enabled {
            return View::Untranslated;
        }
        let ram = self.ram.as_ref();
        let context =
            read_root_entry(ram, state.root_table, requester.bus(), &self.caps).and_then(|root| {
                read_context_entry(ram, root.context_table, requester.devfn(), &self.caps)
            });
        match context {
            Ok(c) => match c.translation {
                Translation::PassThrough => View::Untranslated,
                Translation::Translated { table, levels } => View::Domain {
                    did: c.domain,
                    table,
                    levels,
                },
            },
            Err(_) => View::Blocked,
        }
    }

    /// Cached context entries and pages (for tests and measurements).
    pub fn cached(&self) -> (usize, usize) {
        self.caches().len()
    }

    /// A copy of the fault log.
    pub fn faults(&self) -> FaultLog {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The fault log, emptied in the same step (for the fault recording
    /// registers: a fault recorded meanwhile is in one or the other).
    pub fn take_faults(&self) -> FaultLog {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Logs a fault another part of the unit found (interrupt remapping,
    /// §5.1.4.1), to be recorded with the DMA faults.
    pub fn log_fault(&self, fault: FaultRecord) {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(fault);
    }

    /// Empties the fault log (software cleared the records and PFO).
    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Translates the address `iova` of a request from `requester` in
    /// direction `dir` (§3.4): the piece runs from the translated address
    /// to the end of its page (for an untranslated request, to the end of
    /// the address space). A fault is recorded (unless the context entry
    /// has FPD set) and returned.
    pub fn translate(
        &self,
        requester: RequesterId,
        iova: u64,
        dir: Direction,
    ) -> Result<Piece, FaultRecord> {
        let state = self.state();
        let identity = Piece {
            gpa: iova,
            len: (!iova).saturating_add(1),
        };
        if !state.enabled {
            return Ok(identity);
        }
        let mut fpd = false;
        let result = self.lookup(state.root_table, requester, iova, dir, &mut fpd);
        result.map(|p| p.unwrap_or(identity)).map_err(|reason| {
            let record = FaultRecord {
                requester,
                addr: iova,
                reason,
                write: dir == Direction::FromDevice,
            };
            tracing::debug!(
                "DMA remapping fault {:#x} ({reason}) for {requester} at {iova:#x}{}",
                reason.code(),
                if fpd { ", not recorded (FPD)" } else { "" }
            );
            if !fpd {
                self.faults
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(record);
            }
            record
        })
    }

    /// The root → context → page walk; `None` for a pass-through context.
    /// Sets `fpd` once a valid context entry is found (§9.3: FPD covers
    /// the faults found after it).
    fn lookup(
        &self,
        root_table: u64,
        requester: RequesterId,
        iova: u64,
        dir: Direction,
        fpd: &mut bool,
    ) -> Result<Option<Piece>, FaultReason> {
        let ram = self.ram.as_ref();
        let (cached, generation) = {
            let caches = self.caches();
            let context = caches.context(requester);
            if let Some(c) = context {
                *fpd = c.fault_processing_disabled;
                match c.translation {
                    Translation::PassThrough => return Ok(None),
                    Translation::Translated { .. } => {
                        if let Some(piece) = caches.piece(c.domain, iova, dir) {
                            return Ok(Some(piece));
                        }
                    }
                }
            }
            (context, caches.generation())
        };
        let context = match cached {
            Some(c) => c,
            None => {
                let root = read_root_entry(ram, root_table, requester.bus(), &self.caps)?;
                let c = read_context_entry(ram, root.context_table, requester.devfn(), &self.caps)?;
                self.caches().put_context(generation, requester, c);
                c
            }
        };
        *fpd = context.fault_processing_disabled;
        let Translation::Translated { table, levels } = context.translation else {
            return Ok(None);
        };
        let m = walk(ram, table, levels, iova, dir, &self.caps)?;
        self.caches().put_page(
            generation,
            context.domain,
            iova,
            CachedPage {
                frame: m.gpa >> 12,
                read: m.read,
                write: m.write,
            },
        );
        Ok(Some(Piece {
            gpa: m.gpa,
            len: m.len,
        }))
    }

    /// Translates `len` bytes from `iova` page by page (a range spanning
    /// pages is split; adjacent pieces that are contiguous in guest RAM are
    /// merged). All or nothing: the first fault is returned and no piece.
    /// A range that would wrap around 2^64 is cut at its end.
    pub fn translate_range(
        &self,
        requester: RequesterId,
        iova: u64,
        len: u64,
        dir: Direction,
    ) -> Result<Vec<Piece>, FaultRecord> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut cur = iova;
        let mut left = len.min((!iova).saturating_add(1));
        while left > 0 {
            let piece = self.translate(requester, cur, dir)?;
            let take = piece.len.min(left);
            match pieces.last_mut() {
                Some(last) if last.gpa.checked_add(last.len) == Some(piece.gpa) => {
                    last.len += take;
                }
                _ => pieces.push(Piece {
                    gpa: piece.gpa,
                    len: take,
                }),
            }
            left -= take;
            cur = cur.wrapping_add(take);
        }
        Ok(pieces)
    }
}
