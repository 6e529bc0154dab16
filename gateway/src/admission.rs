//! Admitting a job: a request to the admission ledger (`crate::ledger`), which dedupes, applies
//! the per-user limit and records the job with its queue message (its outbox, drained to the queue
//! moments later), all before the sender is answered.
//! The gateway writes nothing else: the consumer alone writes `job:{id}`,
//! and until it does, `GET /v1/jobs/{id}` shows the ledger's `queued` record.
//!
//! # Group commit
//!
//! The webhooks' admissions share ledger requests: an admission that finds no ledger request in
//! flight leads — it sends the waiting admissions (itself included) in one ledger request, then
//! the ones that arrived meanwhile, and so on while any wait — and the others wait for their
//! outcome. Under load one ledger request carries several admissions, so its cost (a Durable
//! Object request and a storage commit) is shared, and every sender is still answered only once
//! its own job is recorded.
//!
//! No request resolves another request's promise: this isolate's Rust tasks share one queue, tasks
//! woken together by another request run in the wrong one, and under sustained load most answers
//! would become 500 "Cannot perform I/O on behalf of a different request".
//! Requests share plain data only; every wake comes from the waiting request's own events:
//! - the leader sends from a task kept alive with its own `waitUntil` (so the batches finish even
//!   if its sender hangs up), and that task wakes the leader, in the leader's request;
//! - the others look for their outcome on a timer of their own, less often the longer they wait
//!   ([`group_commit::poll_after_ms`]); one that finds no ledger request in flight and itself not
//!   yet sent leads in turn.

use crate::error::GatewayError;
use crate::{ledger, log};
use bugbot_shared::admission::{AdmitOutcome, AdmitRequest};
use bugbot_shared::authz::{AccessPolicy, Refusal};
use bugbot_shared::group_commit::{self, GroupCommit, Ticket};
use bugbot_shared::job::JobMessage;
use futures_util::future::select;
use std::cell::RefCell;
use std::time::Duration;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Context, Delay, Env, js_sys};

/// What became of a job the decision wanted enqueued.
pub enum Admission {
    /// Recorded; on the queue moments later.
    Admitted,
    /// The same trigger was already admitted (a redelivery); nothing was done.
    Duplicate,
    /// Not allowed now (the per-user limit).
    Refused(Refusal),
}

/// An admission waits this long at most, then is answered 503 (the sender may retry; a retry of
/// a job that was recorded after all is a duplicate). Under Discord's 3-second deadline.
const WAIT_LIMIT_MS: u64 = 2_500;

/// Asks the ledger to admit `job`. The job id derives from the trigger's own id (interaction id,
/// `X-GitHub-Delivery`, message id), so a known id means a redelivery.
///
/// With a request's `ctx` the admission joins the group commit (see the module doc); without one
/// (the admin API, the Discord gateway's Durable Object) it is a ledger request of its own.
pub async fn admit(
    env: &Env,
    ctx: Option<&Context>,
    job: &JobMessage,
    policy: &AccessPolicy,
    platform: &str,
) -> Result<Admission, GatewayError> {
    let request = AdmitRequest::new(job, platform, policy)
        .and_then(|r| serde_json::to_string(&r))
        .map_err(|e| GatewayError::Unavailable(format!("admission request: {e}")))?;
    let outcome = match ctx {
        Some(ctx) => admit_in_batch(env, ctx, request).await?,
        None => ledger::admit(env, &[request.as_str()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                GatewayError::Unavailable("the admission ledger answered nothing".into())
            })?,
    };
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

thread_local! {
    /// This isolate's group commit (its decisions: `bugbot_shared::group_commit`).
    static BATCHES: RefCell<GroupCommit<String, Result<AdmitOutcome, String>>> =
        RefCell::default();
}

async fn admit_in_batch(
    env: &Env,
    ctx: &Context,
    request: String,
) -> Result<AdmitOutcome, GatewayError> {
    let ticket = BATCHES.with_borrow_mut(|b| b.enqueue(request));
    let deadline = crate::now_ms() + WAIT_LIMIT_MS;
    let mut looks = 0;
    loop {
        if let Some(outcome) = BATCHES.with_borrow_mut(|b| b.take(ticket)) {
            return outcome.map_err(GatewayError::Unavailable);
        }
        let now = crate::now_ms();
        if now >= deadline {
            BATCHES.with_borrow_mut(|b| b.abandon(ticket));
            return Err(GatewayError::Unavailable(
                "no answer from the admission ledger in time".into(),
            ));
        }
        if BATCHES.with_borrow_mut(|b| b.lead(now)) {
            // Lead: the task sends in this request and wakes it once this admission's batch is
            // recorded (or the wait limit passes).
            let mut wake = None;
            let woken = js_sys::Promise::new(&mut |resolve, _reject| wake = Some(resolve));
            let wake = wake.ok_or_else(|| {
                GatewayError::Unavailable("a promise without its resolve function".into())
            })?;
            ctx.wait_until(send_batches(env.clone(), ticket, wake));
            let limit = Duration::from_millis(deadline.saturating_sub(now));
            let _ = select(JsFuture::from(woken), Delay::from(limit)).await;
        } else {
            Delay::from(Duration::from_millis(group_commit::poll_after_ms(looks))).await;
            looks += 1;
        }
    }
}

/// Sends the waiting admissions in batches, one ledger request at a time, and files each outcome
/// for its admission, until none waits (or the lead has lasted long enough; see
/// `bugbot_shared::group_commit`). Wakes the leader (`wake`) once its own outcome is filed.
async fn send_batches(env: Env, leader: Ticket, wake: js_sys::Function) {
    let started = crate::now_ms();
    let mut leader_waiting = true;
    loop {
        let batch = BATCHES.with_borrow_mut(|b| b.next_batch(crate::now_ms(), started));
        if batch.is_empty() {
            break;
        }
        let requests: Vec<&str> = batch.iter().map(|(_, r)| r.as_str()).collect();
        let outcomes: Vec<Result<AdmitOutcome, String>> = match ledger::admit(&env, &requests).await
        {
            Ok(outcomes) if outcomes.len() == batch.len() => outcomes.into_iter().map(Ok).collect(),
            Ok(outcomes) => vec![
                Err(format!(
                    "the admission ledger answered {} outcomes for {} admissions",
                    outcomes.len(),
                    batch.len()
                ));
                batch.len()
            ],
            Err(e) => vec![Err(e.detail()); batch.len()],
        };
        BATCHES.with_borrow_mut(|b| {
            b.file(
                crate::now_ms(),
                batch.iter().map(|(ticket, _)| *ticket).zip(outcomes),
            );
        });
        if leader_waiting && batch.iter().any(|(t, _)| *t == leader) {
            leader_waiting = false;
            // Same request as this task: the leader resumes in its own request.
            let _ = wake.call0(&JsValue::UNDEFINED);
        }
    }
    if leader_waiting {
        let _ = wake.call0(&JsValue::UNDEFINED);
    }
}
