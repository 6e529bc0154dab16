//! The gateway's group commit, as a pure type: the admissions of one isolate wait in a queue, one
//! ledger request at a time carries up to [`MAX_BATCH`] of them, and each sender takes its own
//! outcome. The gateway (`gateway/src/admission.rs`) holds one per isolate and does the waiting
//! and the sending; every decision is here.
//!
//! Why it exists: measured with `scripts/bench --only gateway`, a ledger request per admission
//! costs about 0.15 ms more CPU per signed command and 13 % of the throughput (docs/benchmarks.md).

use std::collections::HashMap;

/// At most this many admissions go in one ledger request.
pub const MAX_BATCH: usize = 100;
/// A ledger request in flight longer than this is taken for lost (the runtime ended the task that
/// sent it), so that it cannot stop every later admission of the isolate.
pub const BATCH_LOST_AFTER_MS: u64 = 10_000;
/// A leader sends batches for at most this long, then admissions still waiting lead in turn.
pub const LEAD_AT_MOST_MS: u64 = 5_000;
/// Outcomes nobody took (their request ended) are forgotten after this long.
pub const OUTCOME_KEPT_MS: u64 = 10_000;

/// A waiting admission looks for its outcome after 1 ms, then waits twice as long each time up
/// to this (see [`poll_after_ms`]).
pub const POLL_AT_MOST_MS: u64 = 8;

/// How long a waiting admission sleeps before its next look, after `looks` looks without its
/// outcome: 1, 2, 4, then [`POLL_AT_MOST_MS`] ms. Each look is a timer and a call into the
/// isolate; when a burst of requests waits at once, looking every millisecond would take the
/// CPU the ledger's batch needs.
pub fn poll_after_ms(looks: u32) -> u64 {
    (1u64 << looks.min(16)).min(POLL_AT_MOST_MS)
}

/// One admission's place in the queue.
pub type Ticket = u64;

/// The isolate's admissions: those waiting to be sent, the outcomes not yet taken, and when the
/// ledger request in flight was sent. `T` is an admission, `O` its outcome.
#[derive(Debug)]
pub struct GroupCommit<T, O> {
    waiting: Vec<(Ticket, T)>,
    outcomes: HashMap<Ticket, (O, u64)>,
    in_flight_since_ms: Option<u64>,
    tickets: Ticket,
}

impl<T, O> Default for GroupCommit<T, O> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            outcomes: HashMap::new(),
            in_flight_since_ms: None,
            tickets: 0,
        }
    }
}

impl<T, O> GroupCommit<T, O> {
    /// Queues an admission; its ticket identifies its outcome.
    pub fn enqueue(&mut self, admission: T) -> Ticket {
        self.tickets += 1;
        self.waiting.push((self.tickets, admission));
        self.tickets
    }

    /// The admission's outcome, once filed (taken: a second call finds nothing).
    pub fn take(&mut self, ticket: Ticket) -> Option<O> {
        self.outcomes.remove(&ticket).map(|(outcome, _)| outcome)
    }

    /// Gives up on an admission that waited too long: it will not be sent.
    pub fn abandon(&mut self, ticket: Ticket) {
        self.waiting.retain(|(t, _)| *t != ticket);
    }

    /// Whether the caller should lead (send batches): true when no ledger request is in flight, or
    /// the one in flight is lost. Leading marks a request in flight.
    pub fn lead(&mut self, now_ms: u64) -> bool {
        match self.in_flight_since_ms {
            Some(since) if now_ms.saturating_sub(since) < BATCH_LOST_AFTER_MS => false,
            _ => {
                self.in_flight_since_ms = Some(now_ms);
                true
            }
        }
    }

    /// The leader's next batch (up to [`MAX_BATCH`], oldest first). Empty when none waits or the
    /// leader has led for [`LEAD_AT_MOST_MS`] since `led_since_ms`: then nothing is in flight any
    /// more and a waiting admission leads in turn. Forgets outcomes nobody took.
    pub fn next_batch(&mut self, now_ms: u64, led_since_ms: u64) -> Vec<(Ticket, T)> {
        if self.waiting.is_empty() || now_ms.saturating_sub(led_since_ms) > LEAD_AT_MOST_MS {
            self.in_flight_since_ms = None;
            return Vec::new();
        }
        self.in_flight_since_ms = Some(now_ms);
        self.outcomes
            .retain(|_, (_, filed)| now_ms.saturating_sub(*filed) < OUTCOME_KEPT_MS);
        let n = self.waiting.len().min(MAX_BATCH);
        self.waiting.drain(..n).collect()
    }

    /// Files the outcomes of a batch sent, in its order.
    pub fn file(&mut self, now_ms: u64, outcomes: impl IntoIterator<Item = (Ticket, O)>) {
        for (ticket, outcome) in outcomes {
            self.outcomes.insert(ticket, (outcome, now_ms));
        }
    }

    /// How many admissions wait to be sent.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_sends_everyone_waiting_and_each_takes_its_own_outcome() {
        let mut g: GroupCommit<&str, String> = GroupCommit::default();
        let a = g.enqueue("a");
        let b = g.enqueue("b");
        assert!(g.lead(0), "nothing in flight: the first leads");
        assert!(!g.lead(1), "one ledger request at a time");
        let batch = g.next_batch(1, 0);
        assert_eq!(
            batch.iter().map(|(_, x)| *x).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let c = g.enqueue("c");
        g.file(
            2,
            batch.into_iter().map(|(t, x)| (t, format!("{x} admitted"))),
        );
        assert_eq!(g.take(b).as_deref(), Some("b admitted"));
        assert_eq!(g.take(b), None, "taken once");
        // What arrived meanwhile goes in the leader's next batch.
        assert_eq!(g.next_batch(3, 0), vec![(c, "c")]);
        assert!(
            g.next_batch(4, 0).is_empty(),
            "none waits: the leader stops"
        );
        assert!(g.lead(5), "and the next admission leads");
        assert_eq!(g.take(a).as_deref(), Some("a admitted"));
    }

    #[test]
    fn batches_are_bounded_and_lost_or_long_leads_hand_over() {
        let mut g: GroupCommit<u32, ()> = GroupCommit::default();
        for i in 0..250 {
            g.enqueue(i);
        }
        assert!(g.lead(0));
        assert_eq!(g.next_batch(0, 0).len(), MAX_BATCH);
        assert_eq!(g.waiting(), 150);
        // A leader that has led too long stops; another leads.
        assert!(g.next_batch(LEAD_AT_MOST_MS + 1, 0).is_empty());
        assert!(g.lead(LEAD_AT_MOST_MS + 2));
        // A ledger request lost in flight does not block the isolate for ever.
        assert!(!g.lead(LEAD_AT_MOST_MS + 3));
        assert!(g.lead(LEAD_AT_MOST_MS + 2 + BATCH_LOST_AFTER_MS));
    }

    #[test]
    fn waiting_admissions_look_less_often_the_longer_they_wait() {
        let waits: Vec<u64> = (0..6).map(poll_after_ms).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert_eq!(poll_after_ms(u32::MAX), POLL_AT_MOST_MS);
    }

    #[test]
    fn abandoned_admissions_are_not_sent_and_old_outcomes_are_forgotten() {
        let mut g: GroupCommit<u32, u32> = GroupCommit::default();
        let t = g.enqueue(1);
        let kept = g.enqueue(2);
        g.abandon(t);
        g.lead(0);
        let batch = g.next_batch(0, 0);
        assert_eq!(batch, vec![(kept, 2)]);
        g.file(0, [(kept, 20)]);
        g.enqueue(3);
        g.next_batch(OUTCOME_KEPT_MS, OUTCOME_KEPT_MS);
        assert_eq!(g.take(kept), None, "nobody took it in time");
    }
}
