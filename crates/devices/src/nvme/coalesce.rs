//! When a completion queue's interrupt is due: at once, later, or not at
//! all. A light form of the aggregation that Interrupt Coalescing (NVMe 1.4
//! §5.21.1.8) lets a controller do, decided from what the host has consumed.
//!
//! After an interrupt, the host's handler consumes entries until it finds
//! none with the current phase, then writes the new head (to the shadow
//! doorbell, or the MMIO one). Entries posted while the host has not yet
//! consumed everything the last interrupt announced are found by that same
//! handler: another message for them only costs the guest an interrupt
//! whose handler finds nothing, or very little. So with the host behind, the
//! message waits, for at most the controller's deferral time: if the
//! handler then moved past them, nothing is sent; if it stopped short of
//! them, the message goes out then. A queue whose host has caught up gets
//! its message at once, so a lone request (queue depth 1) never waits.

use super::queue::CompletionQueue;

/// What one vector's queues ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// No entry waits to be announced: the host consumed them already.
    Nothing,
    /// Send the message now.
    Now,
    /// Every queue with new entries has a host still working through the
    /// last interrupt's: wait.
    Later,
}

/// The decision for the queues `cqs` of one vector (each with its queue
/// ID); `coalesce` is false where deferring is not allowed (the admin
/// queue, a vector with Coalescing Disable set, INTx).
pub fn vector_due<'a>(
    cqs: impl IntoIterator<Item = (u16, &'a CompletionQueue)>,
    coalesce: bool,
) -> Due {
    let mut due = Due::Nothing;
    for (qid, cq) in cqs {
        if cq.unannounced() == 0 {
            continue;
        }
        if !coalesce || qid == 0 || !cq.host_behind() {
            return Due::Now;
        }
        due = Due::Later;
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-entry queue at `head` and `tail`, with `posted` entries posted
    /// since its last message.
    fn cq(posted: u32, head: u32, tail: u32) -> CompletionQueue {
        let mut q = CompletionQueue::new(0x1000, 16, true, 1);
        (q.posted_since_message, q.head, q.tail) = (posted, head, tail);
        q
    }

    #[test]
    fn test_new_entries_with_the_host_caught_up_are_due_now() {
        // Two entries since the message at 4; the host is at 4.
        assert_eq!(vector_due([(1, &cq(2, 4, 6))], true), Due::Now);
    }

    #[test]
    fn test_new_entries_while_the_host_is_behind_wait() {
        // The message announced up to 4; the host is at 2: its handler is
        // still running.
        assert_eq!(vector_due([(1, &cq(2, 2, 6))], true), Due::Later);
        // Across the wrap: head 14, tail 3, two new.
        assert_eq!(vector_due([(1, &cq(2, 14, 3))], true), Due::Later);
    }

    #[test]
    fn test_entries_the_host_consumed_already_need_no_message() {
        // The handler ran past the announced entries and took the new ones.
        assert_eq!(vector_due([(1, &cq(2, 6, 6))], true), Due::Nothing);
        // Or took some: the rest is new and the host has caught up.
        assert_eq!(vector_due([(1, &cq(2, 5, 6))], true), Due::Now);
        assert_eq!(vector_due([(1, &cq(0, 2, 6))], true), Due::Nothing);
    }

    #[test]
    fn test_more_than_a_lap_since_the_message_is_still_new() {
        // The host consumed a whole lap and more without a message; three
        // entries it has not seen wait at the same slot as the last message.
        let q = cq(19, 15, 2);
        assert_eq!(q.unannounced(), 3);
        assert_eq!(vector_due([(1, &q)], true), Due::Now);
    }

    #[test]
    fn test_admin_queue_and_disabled_coalescing_never_wait() {
        assert_eq!(vector_due([(0, &cq(2, 2, 6))], true), Due::Now);
        assert_eq!(vector_due([(1, &cq(2, 2, 6))], false), Due::Now);
    }

    #[test]
    fn test_one_caught_up_queue_on_a_shared_vector_sends_it() {
        let behind = cq(2, 2, 6);
        let caught_up = cq(1, 4, 5);
        assert_eq!(vector_due([(1, &behind), (2, &caught_up)], true), Due::Now);
        assert_eq!(
            vector_due([(1, &behind), (2, &cq(0, 4, 4))], true),
            Due::Later
        );
    }
}
