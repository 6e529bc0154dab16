//! Admitting a job: a request to the admission ledger (`crate::ledger`), which dedupes, applies
//! the per-user limit and records the job with its queue message (its outbox, drained to the queue
//! moments later), all before the sender is answered.
//! The gateway writes nothing else: the consumer alone writes `job:{id}`,
//! and until it does, `GET /v1/jobs/{id}` shows the ledger's `queued` record.
//!
//! One ledger request per admission, by Workers RPC with the request's fields as its arguments
//! (nothing is parsed on the ledger's side). A group commit in the gateway (admissions of one
//! isolate sharing ledger requests) was measured and removed: it cost more CPU than it saved, since
//! each waiting admission had to be woken in its own request (docs/benchmarks.md).
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
        .map_err(|e| GatewayError::Unavailable(format!("admission request: {e}")))?;
    let outcome = ledger::admit(env, &request).await?;
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
