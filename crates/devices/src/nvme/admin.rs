//! Admin command set (NVMe 1.4 §5): queue creation and deletion, Identify,
//! features, log pages, Asynchronous Event Request, Abort and Doorbell
//! Buffer Config. Identify data, features and logs live in their own
//! modules; this one dispatches and manages queues.

use super::command::{parse_admin, AdminCommand, Sqe};
use super::controller::{Controller, Outcome, AER_LIMIT, PAGE_SIZE};
use super::queue::{CompletionQueue, SubmissionQueue};
use super::state::Shadow;
use super::status::Status;
use super::{features, identify, log};

/// Executes one admin command.
pub fn execute(c: &mut Controller, sqe: &Sqe) -> Outcome {
    let cmd = match parse_admin(sqe) {
        Ok(cmd) => cmd,
        Err(s) => return Outcome::err(s),
    };
    match cmd {
        AdminCommand::CreateIoCq {
            qid,
            entries,
            contiguous,
            ien,
            iv,
            base,
        } => create_cq(c, qid, entries, contiguous, ien, iv, base).into(),
        AdminCommand::CreateIoSq {
            qid,
            entries,
            contiguous,
            cqid,
            base,
        } => create_sq(c, qid, entries, contiguous, cqid, base).into(),
        AdminCommand::DeleteIoSq { qid } => delete_sq(c, qid, sqe.cid()),
        AdminCommand::DeleteIoCq { qid } => delete_cq(c, qid).into(),
        AdminCommand::Identify {
            cns,
            csi,
            nsid,
            prp,
        } => identify::execute(c, cns, csi, nsid)
            .and_then(|data| c.write_data(prp, &data))
            .map(|()| 0)
            .into(),
        AdminCommand::GetFeatures {
            fid,
            sel,
            nsid,
            arg,
        } => features::get(c, fid, sel, nsid, arg).into(),
        AdminCommand::SetFeatures {
            fid,
            save,
            nsid,
            value,
        } => features::set(c, fid, save, nsid, value).into(),
        AdminCommand::GetLogPage {
            lid,
            rae,
            len,
            offset,
            nsid,
            prp,
        } => log::get(c, lid, rae, len, offset, nsid, prp).into(),
        AdminCommand::AsyncEventRequest => {
            if c.st.events.outstanding.len() >= AER_LIMIT {
                return Outcome::err(Status::AER_LIMIT_EXCEEDED);
            }
            c.st.events.outstanding.push_back(sqe.cid());
            c.deliver_events();
            Outcome::Later
        }
        AdminCommand::Abort { .. } => {
            // Commands run as soon as they are fetched; one still in the
            // backend cannot be recalled. DW0 bit 0 = 1: not aborted.
            Outcome::ok(1)
        }
        AdminCommand::DoorbellBufferConfig { shadow, eventidx } => {
            let mask = PAGE_SIZE - 1;
            if shadow & mask != 0 || eventidx & mask != 0 || shadow == eventidx {
                return Outcome::err(Status::INVALID_FIELD);
            }
            let ok = |a| c.dma().read(a, &mut [0u8; PAGE_SIZE as usize]).is_ok();
            if !ok(shadow) || !ok(eventidx) {
                return Outcome::err(Status::INVALID_FIELD);
            }
            c.set_shadow(Shadow {
                doorbells: shadow,
                event_idx: eventidx,
            });
            Outcome::ok(0)
        }
    }
}

/// Highest I/O SQ and CQ identifiers allowed by Number of Queues.
fn queue_limits(c: &Controller) -> (u16, u16) {
    let max = c.limits.max_io_queues;
    match c.st.features.queues {
        Some((nsqa, ncqa)) => (
            nsqa.saturating_add(1).min(max),
            ncqa.saturating_add(1).min(max),
        ),
        None => (max, max),
    }
}

/// Checks common to both queue kinds: size and the contiguous bit
/// (CAP.CQR = 1), base alignment and that the ring is in guest memory.
fn check_ring(
    c: &Controller,
    entries: u32,
    contiguous: bool,
    base: u64,
    entry_size: u64,
) -> Result<(), Status> {
    if entries < 2 || entries > c.limits.max_queue_entries {
        return Err(Status::INVALID_QUEUE_SIZE);
    }
    if !contiguous {
        return Err(Status::INVALID_FIELD);
    }
    if base & (PAGE_SIZE - 1) != 0 {
        return Err(Status::PRP_OFFSET_INVALID);
    }
    let len = u64::from(entries) * entry_size;
    let mut ranges = Vec::new();
    c.dma()
        .host_ranges(base, len, dma::Direction::FromDevice, &mut ranges)
        .map_err(|_| Status::INVALID_FIELD)
}

fn create_cq(
    c: &mut Controller,
    qid: u16,
    entries: u32,
    contiguous: bool,
    ien: bool,
    iv: u16,
    base: u64,
) -> Result<u32, Status> {
    let (_, max_cq) = queue_limits(c);
    if qid == 0 || qid > max_cq || c.st.cqs.get(usize::from(qid)).is_none_or(Option::is_some) {
        return Err(Status::INVALID_QUEUE_ID);
    }
    check_ring(c, entries, contiguous, base, 16)?;
    if (c.st.regs.cc() >> 20) & 0xf != 4 {
        return Err(Status::INVALID_FIELD);
    }
    if ien && iv >= c.usable_vectors() {
        return Err(Status::INVALID_INTERRUPT_VECTOR);
    }
    c.st.cqs[usize::from(qid)] = Some(CompletionQueue::new(base, entries, ien, iv));
    Ok(0)
}

fn create_sq(
    c: &mut Controller,
    qid: u16,
    entries: u32,
    contiguous: bool,
    cqid: u16,
    base: u64,
) -> Result<u32, Status> {
    let (max_sq, _) = queue_limits(c);
    if qid == 0 || qid > max_sq || c.st.sqs.get(usize::from(qid)).is_none_or(Option::is_some) {
        return Err(Status::INVALID_QUEUE_ID);
    }
    if cqid == 0 || c.st.cqs.get(usize::from(cqid)).is_none_or(Option::is_none) {
        return Err(Status::COMPLETION_QUEUE_INVALID);
    }
    check_ring(c, entries, contiguous, base, 64)?;
    if (c.st.regs.cc() >> 16) & 0xf != 6 {
        return Err(Status::INVALID_FIELD);
    }
    if let Some(cq) = c.st.cqs[usize::from(cqid)].as_mut() {
        cq.sq_refs += 1;
    }
    c.st.sqs[usize::from(qid)] = Some(SubmissionQueue::new(base, entries, cqid));
    Ok(0)
}

fn delete_sq(c: &mut Controller, qid: u16, cid: u16) -> Outcome {
    let Some(sq) = (qid != 0)
        .then(|| c.st.sqs.get_mut(usize::from(qid)))
        .flatten()
        .and_then(Option::as_mut)
    else {
        return Outcome::err(Status::INVALID_QUEUE_ID);
    };
    if sq.deleting.is_some() {
        return Outcome::err(Status::INVALID_QUEUE_ID);
    }
    if sq.in_flight > 0 {
        // Its commands finish (and post) first; then the deletion completes.
        sq.deleting = Some(cid);
        return Outcome::Later;
    }
    remove_sq(c, qid);
    Outcome::ok(0)
}

fn remove_sq(c: &mut Controller, qid: u16) {
    if let Some(sq) = c.st.sqs.get_mut(usize::from(qid)).and_then(Option::take) {
        if let Some(cq) =
            c.st.cqs
                .get_mut(usize::from(sq.cqid))
                .and_then(Option::as_mut)
        {
            cq.sq_refs = cq.sq_refs.saturating_sub(1);
        }
    }
}

/// Completes a Delete I/O SQ that waited for the queue's commands.
pub fn finish_sq_deletion(c: &mut Controller, qid: u16, cid: u16) {
    remove_sq(c, qid);
    c.complete(0, cid, Status::SUCCESS, 0, 0);
}

fn delete_cq(c: &mut Controller, qid: u16) -> Result<u32, Status> {
    let Some(cq) = (qid != 0)
        .then(|| c.st.cqs.get(usize::from(qid)))
        .flatten()
        .and_then(Option::as_ref)
    else {
        return Err(Status::INVALID_QUEUE_ID);
    };
    if cq.sq_refs > 0 {
        return Err(Status::INVALID_QUEUE_DELETION);
    }
    c.st.cqs[usize::from(qid)] = None;
    c.update_intx();
    Ok(0)
}
