//! Admitting a job: what the gateway asks of its admission ledger (a Durable Object) and what the
//! ledger answers.
//!
//! The ledger is the one place that decides, atomically: has this trigger been seen (dedupe), is the
//! requester under the per-user limit; if so it puts the job on the queue and records it, before the
//! sender is answered. This module holds the shapes and the decision; `gateway/src/ledger.rs`
//! performs them.

use crate::authz::{self, AccessPolicy};
use crate::job::{JobMessage, JobRecord};
use serde::{Deserialize, Serialize};

/// Admitted jobs are remembered this long (dedupe of late redeliveries, the admin API's `queued`
/// record) — as long as the consumer's job records live in KV.
pub const RETENTION_MS: u64 = crate::kv::JOB_TTL_SECONDS * 1000;

/// What the gateway sends the ledger for one job. Everything is rendered here, on the request's
/// side, so the ledger stores strings and parses nothing but this envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The ledger's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AdmitOutcome {
    /// On the queue and recorded.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
