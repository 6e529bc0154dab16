//! Admitting a job: what the gateway asks of its admission ledger (a Durable Object), what the
//! ledger answers, and the ledger's book of what it admitted.
//!
//! The ledger is the one place that decides, atomically: has this trigger been seen (dedupe), is the
//! requester under the per-user limit; if so it records the job durably, with its queue message, in
//! an outbox, before the sender is answered, and drains the outbox to the queue in batches moments
//! later. This module holds the shapes, the decision and the book ([`AdmissionBook`], the ledger's
//! memory of recent admissions and of the outbox); `gateway/src/ledger.rs` stores and sends.

use crate::authz::{self, AccessPolicy};
use crate::job::{JobMessage, JobRecord};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Admitted jobs are remembered this long (dedupe of late redeliveries, the admin API's `queued`
/// record) — as long as the consumer's job records live in KV.
pub const RETENTION_MS: u64 = crate::kv::JOB_TTL_SECONDS * 1000;

/// What the gateway sends the ledger for one job: its [`Candidate`] and the two rendered strings
/// are the ledger's RPC arguments. Everything is rendered here, on the request's side, so the
/// ledger stores strings and parses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitRequest {
    /// The job id (derived from the trigger's own id, so a redelivery has the same one).
    pub id: String,
    /// Whom the per-user limit counts ([`authz::rate_key`]).
    pub rate_key: String,
    /// The limit: jobs per requester in [`authz::RATE_WINDOW_MS`].
    pub jobs_per_hour: u32,
    /// The [`JobMessage`] as JSON: what the queue will carry.
    pub message: String,
    /// The `queued` [`JobRecord`] as JSON: what `GET /v1/jobs/{id}` shows until the consumer starts.
    pub record: String,
}

impl AdmitRequest {
    /// The request for a job, from its platform (`discord`, `github`, `admin`) and the policy.
    pub fn new(
        job: &JobMessage,
        platform: &str,
        policy: &AccessPolicy,
    ) -> serde_json::Result<Self> {
        Ok(Self {
            id: job.id.to_string(),
            rate_key: authz::rate_key(platform, &job.requester.id),
            jobs_per_hour: policy.jobs_per_hour,
            message: serde_json::to_string(job)?,
            record: serde_json::to_string(&JobRecord::queued(job))?,
        })
    }

    /// What the ledger's book needs of it (sent as arguments beside the message and the record).
    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            id: &self.id,
            rate_key: &self.rate_key,
            jobs_per_hour: self.jobs_per_hour,
            message_bytes: self.message.len(),
        }
    }
}

/// What the ledger's book decides on and notes for one job: its id, whom the limit counts, the
/// limit, and the size of its queue message (for batching). The message itself stays in the
/// ledger's storage: the book keeps no copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The job id.
    pub id: &'a str,
    /// Whom the per-user limit counts ([`authz::rate_key`]).
    pub rate_key: &'a str,
    /// The limit: jobs per requester in [`authz::RATE_WINDOW_MS`].
    pub jobs_per_hour: u32,
    /// The queue message's size in bytes (UTF-8).
    pub message_bytes: usize,
}

/// The ledger's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AdmitOutcome {
    /// Recorded, with its queue message in the outbox (on the queue moments later).
    Admitted,
    /// The same trigger was admitted before (a redelivery); nothing was done.
    Duplicate,
    /// The requester has started `limit` jobs in the last hour.
    Limited {
        /// The limit in force.
        limit: u32,
    },
}

/// The decision, from what the ledger found: whether the id is known, and how many jobs the
/// requester started in the window.
pub fn decide(already_admitted: bool, started_in_window: u32, jobs_per_hour: u32) -> AdmitOutcome {
    if already_admitted {
        return AdmitOutcome::Duplicate;
    }
    match authz::within_rate_limit(jobs_per_hour, started_in_window) {
        Ok(()) => AdmitOutcome::Admitted,
        Err(_) => AdmitOutcome::Limited {
            limit: jobs_per_hour,
        },
    }
}

/// How long admitted jobs wait in the outbox before the ledger's alarm sends them: a few
/// milliseconds on a job that runs for minutes, so that jobs admitted together share one send.
pub const FLUSH_DELAY_MS: u64 = 50;
/// The first retry after a failed send, doubling with each further failure up to [`RETRY_MAX_MS`].
pub const RETRY_FIRST_MS: u64 = 1_000;
/// The longest wait between two tries of a failing send.
pub const RETRY_MAX_MS: u64 = 300_000;

/// When the ledger's alarm next drains the outbox, after `failed_sends` consecutive failed sends
/// (0: the outbox's usual [`FLUSH_DELAY_MS`]).
pub fn send_retry_delay_ms(failed_sends: u32) -> u64 {
    match failed_sends {
        0 => FLUSH_DELAY_MS,
        n => RETRY_FIRST_MS
            .saturating_mul(1 << (n - 1).min(16))
            .min(RETRY_MAX_MS),
    }
}

/// The largest message the queue takes (Queues' limit is 128 KB per message). A larger one is set
/// aside before it is sent: sent, it would only be refused.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1000;

/// At most this many messages go to the queue in one batch (the Queues limit for `sendBatch`).
pub const MAX_BATCH_MESSAGES: usize = 100;
/// At most this many bytes of message JSON go in one batch: below the Queues limit of 256 KB per
/// batch, with room for the per-message overhead. A single message (under 128 KB) always fits.
pub const MAX_BATCH_BYTES: usize = 200_000;

/// A message the queue refused this many times, each time while other messages went through, is
/// set aside (listed with the dead jobs) so it cannot hold up the jobs behind it. Refusals while
/// nothing goes through are an outage, not the message's fault, and do not count.
pub const POISON_AFTER: u32 = 3;

/// What becomes of a message the queue refused when sent alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Try again with the rest (an outage, or not refused often enough yet).
    Keep,
    /// Set it aside: it keeps failing while others pass.
    SetAside,
}

/// Judges a refused message: `refusals` counts the earlier rounds in which it was refused while
/// others were sent; `others_sent` says whether any other message went through this round.
pub fn judge_refusal(refusals: u32, others_sent: bool) -> (Refused, u32) {
    if !others_sent {
        return (Refused::Keep, refusals);
    }
    let refusals = refusals.saturating_add(1);
    if refusals >= POISON_AFTER {
        (Refused::SetAside, refusals)
    } else {
        (Refused::Keep, refusals)
    }
}

/// One admission as the ledger stores it (a row).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredAdmission {
    /// Position in admission order; the outbox drains in this order.
    pub seq: i64,
    /// The job id.
    pub id: String,
    /// Whom the per-user limit counts.
    pub rate_key: String,
    /// When it was admitted (ms since the epoch).
    pub admitted_ms: i64,
    /// The queue message's size in bytes, until it is on the queue (then `None`).
    pub message_bytes: Option<i64>,
}

/// A job message waiting in the outbox (the message is in the ledger's storage, under `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The admission's position.
    pub seq: i64,
    /// The job id.
    pub id: String,
    /// The message's size in bytes.
    pub bytes: usize,
}

/// The ledger's memory: the ids admitted within [`RETENTION_MS`] (dedupe), each requester's
/// admissions in the last [`authz::RATE_WINDOW_MS`] (the limit) and the outbox (admitted, not yet on
/// the queue: positions, ids and sizes; the messages stay in storage), rebuilt from storage when
/// the ledger starts ([`AdmissionBook::restore`]). Deciding from memory keeps reads off the
/// request path; storage is written once per admission.
#[derive(Debug, Default)]
pub struct AdmissionBook {
    known: HashMap<String, i64>,
    recent: HashMap<String, VecDeque<i64>>,
    outbox: VecDeque<Outgoing>,
    last_seq: i64,
}

impl AdmissionBook {
    /// Rebuilds the book from stored admissions (any order); rows past the retention only keep
    /// their unsent message.
    pub fn restore(rows: impl IntoIterator<Item = StoredAdmission>, now_ms: i64) -> Self {
        let mut rows: Vec<StoredAdmission> = rows.into_iter().collect();
        rows.sort_by_key(|r| r.seq);
        let mut book = Self::default();
        for row in rows {
            book.last_seq = book.last_seq.max(row.seq);
            if row.admitted_ms > now_ms - RETENTION_MS as i64 {
                book.note(&row.id, &row.rate_key, row.admitted_ms, now_ms);
            }
            if let Some(bytes) = row.message_bytes {
                book.outbox.push_back(Outgoing {
                    seq: row.seq,
                    id: row.id,
                    bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
                });
            }
        }
        book
    }

    /// The decision for `job` at `now_ms`; changes nothing (see [`AdmissionBook::record`]).
    pub fn decide(&self, job: &Candidate<'_>, now_ms: i64) -> AdmitOutcome {
        let known = self.known.contains_key(job.id);
        let cutoff = now_ms - authz::RATE_WINDOW_MS as i64;
        let started = self.recent.get(job.rate_key).map_or(0, |times| {
            times.iter().rev().take_while(|t| **t > cutoff).count()
        });
        decide(
            known,
            u32::try_from(started).unwrap_or(u32::MAX),
            job.jobs_per_hour,
        )
    }

    /// The position the next admission is stored at.
    pub fn next_seq(&self) -> i64 {
        self.last_seq + 1
    }

    /// Notes an admission that has been stored at `seq` (from [`AdmissionBook::next_seq`]), and
    /// puts its message (stored with it) in the outbox.
    pub fn record(&mut self, job: &Candidate<'_>, seq: i64, now_ms: i64) {
        self.last_seq = self.last_seq.max(seq);
        self.note(job.id, job.rate_key, now_ms, now_ms);
        self.outbox.push_back(Outgoing {
            seq,
            id: job.id.to_owned(),
            bytes: job.message_bytes,
        });
    }

    fn note(&mut self, id: &str, rate_key: &str, admitted_ms: i64, now_ms: i64) {
        self.known.insert(id.to_owned(), admitted_ms);
        let times = self.recent.entry(rate_key.to_owned()).or_default();
        times.push_back(admitted_ms);
        let cutoff = now_ms - authz::RATE_WINDOW_MS as i64;
        while times.front().is_some_and(|t| *t <= cutoff) {
            times.pop_front();
        }
    }

    /// The next batch for the queue: the oldest messages of the outbox, at most
    /// [`MAX_BATCH_MESSAGES`] and [`MAX_BATCH_BYTES`] (but always one). Empty when all are sent.
    pub fn next_batch(&self) -> &[Outgoing] {
        let (front, _) = self.outbox.as_slices();
        let mut bytes = 0;
        let mut n = 0;
        for item in front.iter().take(MAX_BATCH_MESSAGES) {
            bytes += item.bytes;
            if n > 0 && bytes > MAX_BATCH_BYTES {
                break;
            }
            n += 1;
        }
        &front[..n]
    }

    /// Whether the outbox holds a full batch: at least [`MAX_BATCH_MESSAGES`], or more than
    /// [`MAX_BATCH_BYTES`] of them. The alarm sends such a backlog at once, batch after batch; a
    /// smaller rest waits for the next alarm ([`FLUSH_DELAY_MS`]), so that admissions arriving
    /// while a batch is sent do not each become a batch of their own.
    pub fn a_full_batch_waits(&self) -> bool {
        let mut bytes = 0;
        for (n, item) in self.outbox.iter().enumerate() {
            bytes += item.bytes;
            if n + 1 >= MAX_BATCH_MESSAGES || (n > 0 && bytes > MAX_BATCH_BYTES) {
                return true;
            }
        }
        false
    }

    /// Takes the messages up to `seq` out of the outbox: they are on the queue.
    pub fn sent_through(&mut self, seq: i64) {
        while self.outbox.front().is_some_and(|o| o.seq <= seq) {
            self.outbox.pop_front();
        }
    }

    /// Takes one message out of the outbox, wherever it is (sent alone, or set aside).
    pub fn take(&mut self, seq: i64) -> Option<Outgoing> {
        let i = self.outbox.iter().position(|o| o.seq == seq)?;
        self.outbox.remove(i)
    }

    /// Messages not yet on the queue.
    pub fn unsent(&self) -> usize {
        self.outbox.len()
    }

    /// Forgets admissions past the retention and requesters with nothing in the window.
    pub fn prune(&mut self, now_ms: i64) {
        let kept_from = now_ms - RETENTION_MS as i64;
        self.known.retain(|_, at| *at > kept_from);
        let cutoff = now_ms - authz::RATE_WINDOW_MS as i64;
        self.recent.retain(|_, times| {
            while times.front().is_some_and(|t| *t <= cutoff) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// Ids remembered for dedupe.
    pub fn remembered(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = authz::RATE_WINDOW_MS as i64;

    #[test]
    fn failed_sends_back_off_from_a_second_doubling_to_five_minutes() {
        let delays: Vec<u64> = (0..=12).map(send_retry_delay_ms).collect();
        assert_eq!(
            delays,
            [
                50, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000, 300_000
            ]
        );
        assert_eq!(send_retry_delay_ms(u32::MAX), 300_000);
    }

    fn request(id: &str, user: &str, limit: u32) -> AdmitRequest {
        AdmitRequest {
            id: id.into(),
            rate_key: user.into(),
            jobs_per_hour: limit,
            message: format!("{{\"id\":\"{id}\"}}"),
            record: "{}".into(),
        }
    }

    fn admit(book: &mut AdmissionBook, req: &AdmitRequest, now: i64) -> AdmitOutcome {
        let outcome = book.decide(&req.candidate(), now);
        if outcome == AdmitOutcome::Admitted {
            let seq = book.next_seq();
            book.record(&req.candidate(), seq, now);
        }
        outcome
    }

    #[test]
    fn a_redelivery_is_a_duplicate_and_queued_once() {
        let mut book = AdmissionBook::default();
        let req = request("job-1", "discord:1", 5);
        assert_eq!(admit(&mut book, &req, 1_000), AdmitOutcome::Admitted);
        assert_eq!(admit(&mut book, &req, 2_000), AdmitOutcome::Duplicate);
        assert_eq!(book.unsent(), 1);
        let queued = &book.next_batch()[0];
        assert_eq!(
            (queued.id.as_str(), queued.bytes),
            ("job-1", req.message.len())
        );
    }

    #[test]
    fn the_limit_slides_with_the_hour() {
        let mut book = AdmissionBook::default();
        let t0 = 10 * HOUR;
        for k in 0..3 {
            let req = request(&format!("job-{k}"), "github:7", 3);
            assert_eq!(admit(&mut book, &req, t0 + k), AdmitOutcome::Admitted);
        }
        let fourth = request("job-3", "github:7", 3);
        assert_eq!(
            admit(&mut book, &fourth, t0 + 10),
            AdmitOutcome::Limited { limit: 3 }
        );
        // Another requester is not affected.
        assert_eq!(
            admit(&mut book, &request("job-4", "github:8", 3), t0 + 10),
            AdmitOutcome::Admitted
        );
        // An hour after the first admission, one slot is free again, and only one.
        assert_eq!(admit(&mut book, &fourth, t0 + HOUR), AdmitOutcome::Admitted);
        assert_eq!(
            admit(&mut book, &request("job-5", "github:7", 3), t0 + HOUR),
            AdmitOutcome::Limited { limit: 3 }
        );
    }

    #[test]
    fn restore_rebuilds_dedupe_the_window_and_the_outbox() {
        let now = 100 * HOUR;
        let rows = vec![
            StoredAdmission {
                seq: 3,
                id: "c".into(),
                rate_key: "u".into(),
                admitted_ms: now - 10,
                message_bytes: Some(30),
            },
            StoredAdmission {
                seq: 1,
                id: "a".into(),
                rate_key: "u".into(),
                admitted_ms: now - 2 * HOUR,
                message_bytes: None,
            },
            StoredAdmission {
                seq: 2,
                id: "b".into(),
                rate_key: "u".into(),
                admitted_ms: now - 20,
                message_bytes: Some(20),
            },
        ];
        let book = AdmissionBook::restore(rows, now);
        assert_eq!(
            book.decide(&request("a", "x", 5).candidate(), now),
            AdmitOutcome::Duplicate
        );
        // Two of u's admissions are in the last hour.
        assert_eq!(
            book.decide(&request("d", "u", 2).candidate(), now),
            AdmitOutcome::Limited { limit: 2 }
        );
        assert_eq!(
            book.decide(&request("d", "u", 3).candidate(), now),
            AdmitOutcome::Admitted
        );
        let batch: Vec<(i64, &str, usize)> = book
            .next_batch()
            .iter()
            .map(|o| (o.seq, o.id.as_str(), o.bytes))
            .collect();
        assert_eq!(batch, [(2, "b", 20), (3, "c", 30)]);
        assert_eq!(book.next_seq(), 4);
    }

    #[test]
    fn batches_respect_count_and_size_and_drain_in_order() {
        let mut book = AdmissionBook::default();
        for k in 0..250 {
            let mut req = request(&format!("job-{k}"), &format!("u{k}"), 5);
            if k >= 200 {
                req.message = "x".repeat(60_000);
            }
            admit(&mut book, &req, 1_000);
        }
        let first = book.next_batch();
        assert_eq!(first.len(), MAX_BATCH_MESSAGES);
        assert_eq!(first[0].seq, 1);
        let last = first[first.len() - 1].seq;
        book.sent_through(last);
        assert_eq!(book.next_batch().len(), MAX_BATCH_MESSAGES);
        book.sent_through(200);
        // 60 KB messages: three fit in 200 KB.
        assert_eq!(book.next_batch().len(), 3);
        book.sent_through(250);
        assert!(book.next_batch().is_empty());
        assert_eq!(book.unsent(), 0);
    }

    #[test]
    fn a_full_batch_goes_at_once_and_a_smaller_rest_waits_for_the_next_alarm() {
        let mut book = AdmissionBook::default();
        assert!(!book.a_full_batch_waits(), "nothing waits");
        for k in 1..MAX_BATCH_MESSAGES {
            admit(&mut book, &request(&format!("job-{k}"), "u", u32::MAX), 1);
        }
        assert!(!book.a_full_batch_waits(), "one short of a full batch");
        admit(&mut book, &request("job-last", "u", u32::MAX), 1);
        assert!(book.a_full_batch_waits(), "a full batch by count");

        let mut book = AdmissionBook::default();
        let mut big = request("big-1", "u", 5);
        big.message = "x".repeat(MAX_BATCH_BYTES / 2 + 1);
        admit(&mut book, &big, 1);
        assert!(!book.a_full_batch_waits(), "one message, however large");
        big.id = "big-2".into();
        admit(&mut book, &big, 1);
        assert!(book.a_full_batch_waits(), "a full batch by size");
    }

    #[test]
    fn a_message_over_the_batch_budget_still_goes_alone() {
        let mut book = AdmissionBook::default();
        let mut req = request("big", "u", 5);
        req.message = "x".repeat(MAX_BATCH_BYTES + 1);
        admit(&mut book, &req, 1);
        admit(&mut book, &request("small", "v", 5), 1);
        assert_eq!(book.next_batch().len(), 1);
    }

    #[test]
    fn prune_forgets_past_the_retention() {
        let mut book = AdmissionBook::default();
        admit(&mut book, &request("old", "u", 5), 1_000);
        let later = 1_000 + RETENTION_MS as i64 + 1;
        admit(&mut book, &request("new", "u", 5), later);
        book.prune(later);
        assert_eq!(book.remembered(), 1);
        assert_eq!(
            book.decide(&request("old", "u", 5).candidate(), later),
            AdmitOutcome::Admitted
        );
    }

    #[test]
    fn a_known_id_is_a_duplicate_whatever_the_count() {
        assert_eq!(decide(true, 0, 5), AdmitOutcome::Duplicate);
        assert_eq!(decide(true, 99, 5), AdmitOutcome::Duplicate);
    }

    #[test]
    fn the_limit_counts_jobs_already_started() {
        assert_eq!(decide(false, 4, 5), AdmitOutcome::Admitted);
        assert_eq!(decide(false, 5, 5), AdmitOutcome::Limited { limit: 5 });
    }

    #[test]
    fn outcome_wire_shape() {
        let json = serde_json::to_value(AdmitOutcome::Limited { limit: 3 }).unwrap();
        assert_eq!(json, serde_json::json!({"outcome": "limited", "limit": 3}));
        let back: AdmitOutcome = serde_json::from_str(r#"{"outcome":"duplicate"}"#).unwrap();
        assert_eq!(back, AdmitOutcome::Duplicate);
    }

    #[test]
    fn a_message_refused_while_others_pass_is_set_aside_an_outage_is_not() {
        assert_eq!(
            judge_refusal(0, false),
            (Refused::Keep, 0),
            "an outage counts nothing"
        );
        assert_eq!(judge_refusal(7, false), (Refused::Keep, 7));
        assert_eq!(judge_refusal(0, true), (Refused::Keep, 1));
        assert_eq!(
            judge_refusal(POISON_AFTER - 1, true),
            (Refused::SetAside, POISON_AFTER)
        );
    }

    #[test]
    fn any_message_can_be_taken_out_of_the_outbox() {
        let mut book = AdmissionBook::default();
        for n in 0..3 {
            let req = request(&format!("j{n}"), "u", 100);
            let seq = book.next_seq();
            book.record(&req.candidate(), seq, 0);
        }
        let middle = book.next_batch()[1].seq;
        assert_eq!(book.take(middle).map(|o| o.id), Some("j1".to_owned()));
        assert_eq!(book.unsent(), 2);
        assert!(book.take(middle).is_none());
    }
}
