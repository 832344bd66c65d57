//! NVM command set (NVMe 1.4 §6): Read, Write, Flush, Write Zeroes and
//! Dataset Management (deallocate), turned into backend requests.
//!
//! With the Volatile Write Cache disabled (Set Features 06h) every command
//! that changes the medium is durable when it completes: writes go with
//! `RWF_DSYNC`, Write Zeroes and the deallocations of Dataset Management
//! are followed by a sync in the backend. Force Unit Access (CDW12 bit 30
//! of Write and Write Zeroes) asks the same of one command with the cache
//! on.
//!
//! Checks, in order: the namespace exists (Invalid Namespace or Format),
//! it is writable for commands that modify it (Namespace is Write
//! Protected), the LBA range lies inside it (LBA Out of Range), the
//! transfer fits MDTS (Invalid Field in Command), the PRPs are valid and in
//! guest memory (PRP Offset Invalid, Data Transfer Error).

use backend::{Op, Request};
use dma::{Direction, GuestBuffers};

use super::command::{parse_io, IoCommand, Sqe};
use super::controller::{Controller, InFlight, IoKind, Origin, Outcome};
use super::identify::NSID_ALL;
use super::status::Status;

/// Size of one Dataset Management range.
const DSM_RANGE: usize = 16;

/// Starts one I/O command from SQ `sqid`.
pub fn submit(c: &mut Controller, sqid: u16, sqe: &Sqe) -> Outcome {
    match start(c, sqid, sqe) {
        Ok(outcome) => outcome,
        Err(s) => {
            let block = &c.limits.counters.block;
            if s == Status::DATA_TRANSFER_ERROR || s == Status::PRP_OFFSET_INVALID {
                block.errors_dma.inc();
            } else {
                block.errors_invalid.inc();
            }
            Outcome::err(s)
        }
    }
}

fn ns_index(c: &Controller, nsid: u32) -> Result<usize, Status> {
    c.namespace_index(nsid).ok_or(Status::INVALID_NAMESPACE)
}

fn start(c: &mut Controller, sqid: u16, sqe: &Sqe) -> Result<Outcome, Status> {
    let cmd = parse_io(sqe)?;
    let origin = Origin::Guest {
        sqid,
        cid: sqe.cid(),
    };
    let inflight = |remaining, kind, nsid| InFlight {
        origin,
        remaining,
        status: Status::SUCCESS,
        kind,
        nsid,
    };
    match cmd {
        IoCommand::Flush { nsid } => {
            let targets: Vec<usize> = if nsid == NSID_ALL {
                (0..c.namespaces.len()).collect()
            } else {
                vec![ns_index(c, nsid)?]
            };
            if targets.is_empty() {
                return Ok(Outcome::ok(0));
            }
            let tag = c.alloc_tag(inflight(targets.len() as u32, IoKind::Flush, nsid));
            for i in targets {
                c.namespaces[i].engine.push(Request { tag, op: Op::Flush });
            }
        }
        IoCommand::ReadWrite {
            write,
            nsid,
            slba,
            blocks,
            fua,
            prp,
        } => {
            let i = ns_index(c, nsid)?;
            let ns = &c.namespaces[i];
            if write && ns.readonly {
                return Err(Status::NAMESPACE_WRITE_PROTECTED);
            }
            let (offset, len) = ns
                .byte_range(slba, u64::from(blocks))
                .ok_or(Status::LBA_OUT_OF_RANGE)?;
            if len > c.limits.max_transfer {
                return Err(Status::INVALID_FIELD);
            }
            let segs = c.prp_segments(prp, len)?;
            let dir = if write {
                Direction::ToDevice
            } else {
                Direction::FromDevice
            };
            let buffers = GuestBuffers::new(c.dma().clone(), &segs, dir)
                .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
            let (op, kind) = if write {
                let dsync = fua || !c.st.features.write_cache;
                (
                    Op::Write {
                        offset,
                        buffers,
                        dsync,
                    },
                    IoKind::Write(len),
                )
            } else {
                (Op::Read { offset, buffers }, IoKind::Read(len))
            };
            let tag = c.alloc_tag(inflight(1, kind, nsid));
            c.namespaces[i].engine.push(Request { tag, op });
        }
        IoCommand::WriteZeroes {
            nsid,
            slba,
            blocks,
            fua,
        } => {
            let i = ns_index(c, nsid)?;
            let ns = &c.namespaces[i];
            if ns.readonly {
                return Err(Status::NAMESPACE_WRITE_PROTECTED);
            }
            let (offset, len) = ns
                .byte_range(slba, u64::from(blocks))
                .ok_or(Status::LBA_OUT_OF_RANGE)?;
            let dsync = fua || !c.st.features.write_cache;
            let tag = c.alloc_tag(inflight(1, IoKind::Discard, nsid));
            c.namespaces[i].engine.push(Request {
                tag,
                op: Op::WriteZeroes { offset, len, dsync },
            });
        }
        IoCommand::DatasetManagement {
            nsid,
            ranges,
            deallocate,
            prp,
        } => {
            let i = ns_index(c, nsid)?;
            if !deallocate {
                // Integral read/write hints only: nothing to do.
                return Ok(Outcome::ok(0));
            }
            if c.namespaces[i].readonly {
                return Err(Status::NAMESPACE_WRITE_PROTECTED);
            }
            let data = c.read_data(prp, ranges as usize * DSM_RANGE)?;
            let mut discards = Vec::new();
            for r in data.chunks_exact(DSM_RANGE) {
                let mut nlb = [0u8; 4];
                nlb.copy_from_slice(&r[4..8]);
                let mut slba = [0u8; 8];
                slba.copy_from_slice(&r[8..16]);
                let (nlb, slba) = (u32::from_le_bytes(nlb), u64::from_le_bytes(slba));
                if nlb == 0 {
                    continue;
                }
                let range = c.namespaces[i]
                    .byte_range(slba, u64::from(nlb))
                    .ok_or(Status::LBA_OUT_OF_RANGE)?;
                discards.push(range);
            }
            if discards.is_empty() {
                return Ok(Outcome::ok(0));
            }
            let dsync = !c.st.features.write_cache;
            let tag = c.alloc_tag(inflight(discards.len() as u32, IoKind::Discard, nsid));
            for (offset, len) in discards {
                c.namespaces[i].engine.push(Request {
                    tag,
                    op: Op::Discard { offset, len, dsync },
                });
            }
        }
    }
    Ok(Outcome::Later)
}
