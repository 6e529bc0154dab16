//! Admitting a job: one request to the admission ledger (`crate::ledger`), which dedupes, applies
//! the per-user limit and records the job with its queue message (its outbox, drained to the queue
//! moments later), all before the sender is answered.
//! The gateway writes nothing else: the consumer alone writes `job:{id}`,
//! and until it does, `GET /v1/jobs/{id}` shows the ledger's `queued` record.
//!
//! One ledger request per admission, on purpose. Sharing ledger requests between webhooks
//! arriving together (a group commit across the requests of an isolate) was tried: it carried
//! ≈ 5 admissions per ledger request under load and raised a signed command's throughput by about
//! a tenth, but under sustained load (10 s at 64 connections, after a first such run) most answers
//! became 500 "Cannot perform I/O on behalf of a different request": resolving one request's
//! promise from another makes this isolate's Rust tasks (which share one queue) run in the wrong
//! request. See the README's "Benchmarks".

use crate::error::GatewayError;
use crate::{ledger, log};
use bugbot_shared::admission::{AdmitOutcome, AdmitRequest};
use bugbot_shared::authz::{AccessPolicy, Refusal};
use bugbot_shared::job::JobMessage;
use worker::Env;

/// What became of a job the decision wanted enqueued.
pub enum Admission {
    /// Recorded; on the queue moments later.
    Admitted,
    /// The same trigger was already admitted (a redelivery); nothing was done.
    Duplicate,
    /// Not allowed now (the per-user limit).
    Refused(Refusal),
}

/// Asks the ledger to admit `job`. The job id derives from the trigger's own id (interaction id,
/// `X-GitHub-Delivery`, message id), so a known id means a redelivery.
pub async fn admit(
    env: &Env,
    job: &JobMessage,
    policy: &AccessPolicy,
    platform: &str,
) -> Result<Admission, GatewayError> {
    let request = AdmitRequest::new(job, platform, policy)
        .and_then(|r| serde_json::to_string(&r))
        .map_err(|e| GatewayError::Unavailable(format!("admission request: {e}")))?;
    let outcome = ledger::admit(env, &[request.as_str()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| GatewayError::Unavailable("the admission ledger answered nothing".into()))?;
    let id = job.id.as_str();
    Ok(match outcome {
        // Admitted jobs are logged by the ledger when they reach the queue, one line per batch.
        AdmitOutcome::Admitted => Admission::Admitted,
        AdmitOutcome::Duplicate => {
            log::info("duplicate delivery", &[("job", id)]);
            Admission::Duplicate
        }
        AdmitOutcome::Limited { limit } => {
            log::info("rate limited", &[("job", id), ("platform", platform)]);
            Admission::Refused(Refusal::RateLimited(limit))
        }
    })
}
