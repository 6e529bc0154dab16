//! Admitting a job: a request to the admission ledger (`crate::ledger`), which dedupes, applies
//! the per-user limit and records the job with its queue message (its outbox, drained to the queue
//! moments later), all before the sender is answered.
//! The gateway writes nothing else: the consumer alone writes `job:{id}`,
//! and until it does, `GET /v1/jobs/{id}` shows the ledger's `queued` record.
//!
//! # Group commit
//!
//! The webhook handlers' admissions share ledger requests ([`admit_then_answer`]). An admission
//! that finds no ledger request in flight starts one at once, so a lone request waits for nobody;
//! admissions arriving meanwhile wait and go together in the next one. Under load one ledger
//! request carries many admissions, so its cost (a Durable Object request and a storage commit) is
//! paid once per batch rather than once per job, and every sender is still answered only once its
//! own job is recorded.
//!
//! Requests of one isolate may share plain data but not I/O: a request's response must be made in
//! that request. So:
//! - The batches are sent by one task at a time (`send_batches`), kept alive with `waitUntil` by
//!   the request that started it, so it finishes even if that sender hangs up. It sends batch after
//!   batch while admissions wait (at most [`LEAD_AT_MOST_MS`]; then the next admission to arrive
//!   starts a new task).
//! - A waiting admission sleeps on a promise made in its own request, and its answer is made in a
//!   reaction to that promise, which the runtime runs in the request that made the promise. (Not in
//!   a Rust task: this isolate's Rust tasks share one queue, and tasks woken together by another
//!   request run together, in whichever request woke first.)
//! - A timer in its own request bounds its wait ([`WAIT_LIMIT_MS`]) and shows the runtime that the
//!   request waits for something: a request waiting only on a promise that another request will
//!   resolve is taken for hung and cancelled.

use crate::error::GatewayError;
use crate::{ledger, log};
use bugbot_shared::admission::{AdmitOutcome, AdmitRequest};
use bugbot_shared::authz::{AccessPolicy, Refusal};
use bugbot_shared::job::JobMessage;
use std::cell::RefCell;
use worker::js_sys::{self, Function, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue, closure::Closure};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Context, Env, Response, web_sys};

/// What became of a job the decision wanted enqueued.
pub enum Admission {
    /// Recorded; on the queue moments later.
    Admitted,
    /// The same trigger was already admitted (a redelivery); nothing was done.
    Duplicate,
    /// Not allowed now (the per-user limit).
    Refused(Refusal),
}

/// At most this many admissions go in one ledger request (the rest go in the next one).
const MAX_BATCH: usize = 100;
/// An admission waits this long for its batch, then is answered 503 (the sender may retry; a
/// retry of a job that was recorded after all is a duplicate). Under Discord's 3-second deadline.
const WAIT_LIMIT_MS: i32 = 2_500;
/// One task sends batches for at most this long, so that it stays well within the runtime's
/// `waitUntil` allowance; admissions still waiting then are sent by the next arrival's task.
const LEAD_AT_MOST_MS: u64 = 5_000;
/// A batch in flight longer than this is taken for lost (the runtime ended the task that sent it),
/// so that it cannot stop every later admission of this isolate: the next admission starts anew.
const BATCH_LOST_AFTER_MS: u64 = 10_000;

/// What a waiting admission's promise is resolved with, besides an outcome's JSON.
const TIMED_OUT: &str = "timed-out";
const FAILED: &str = "failed:";

/// Asks the ledger to admit `job` on its own (the admin API, the Discord gateway's Durable
/// Object). The job id derives from the trigger's own id (interaction id, `X-GitHub-Delivery`,
/// message id), so a known id means a redelivery.
pub async fn admit(
    env: &Env,
    job: &JobMessage,
    policy: &AccessPolicy,
    platform: &str,
) -> Result<Admission, GatewayError> {
    let request = admit_request(job, policy, platform)?;
    let outcome = ledger::admit(env, &[request.as_str()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| GatewayError::Unavailable("the admission ledger answered nothing".into()))?;
    Ok(admission(outcome, job.id.as_str(), platform))
}

/// Admits `job` in the group commit and answers the request with `answer(admission)`, made in
/// this request once the job's batch is recorded (see the module doc).
pub async fn admit_then_answer(
    env: &Env,
    ctx: &Context,
    job: &JobMessage,
    policy: &AccessPolicy,
    platform: &'static str,
    answer: impl FnOnce(Admission) -> Result<Response, GatewayError> + 'static,
) -> Result<web_sys::Response, GatewayError> {
    let request = admit_request(job, policy, platform)?;
    let mut settle = None;
    let settled = Promise::new(&mut |resolve, _reject| settle = Some(resolve));
    let settle =
        settle.ok_or_else(|| GatewayError::Unavailable("promise without resolve".into()))?;

    let timer = set_timeout(&settle, WAIT_LIMIT_MS)?;
    let ticket = BATCHES.with_borrow_mut(|b| {
        b.tickets += 1;
        b.waiting.push(Waiting {
            ticket: b.tickets,
            request,
            settle,
        });
        b.tickets
    });
    if start_sending() {
        ctx.wait_until(send_batches(env.clone()));
    }

    let id = job.id.to_string();
    let reaction = Closure::once_into_js(move |settled: JsValue| -> JsValue {
        clear_timeout(timer);
        let settled = settled.as_string().unwrap_or_default();
        let answered = match settled.as_str() {
            TIMED_OUT => {
                BATCHES.with_borrow_mut(|b| b.waiting.retain(|w| w.ticket != ticket));
                Err(GatewayError::Unavailable(
                    "no answer from the admission ledger in time".into(),
                ))
            }
            failed if failed.starts_with(FAILED) => {
                Err(GatewayError::Unavailable(failed[FAILED.len()..].to_owned()))
            }
            outcome => serde_json::from_str::<AdmitOutcome>(outcome)
                .map_err(|e| GatewayError::Unavailable(format!("admission outcome: {e}")))
                .and_then(|outcome| answer(admission(outcome, &id, platform))),
        };
        raw_response(answered).into()
    });
    let then: Function = Reflect::get(&settled, &JsValue::from_str("then"))
        .map_err(js_error)?
        .unchecked_into();
    let answered = then.call1(&settled, &reaction).map_err(js_error)?;
    let response = JsFuture::from(Promise::from(answered))
        .await
        .map_err(js_error)?;
    Ok(response.unchecked_into())
}

fn admit_request(
    job: &JobMessage,
    policy: &AccessPolicy,
    platform: &str,
) -> Result<String, GatewayError> {
    AdmitRequest::new(job, platform, policy)
        .and_then(|r| serde_json::to_string(&r))
        .map_err(|e| GatewayError::Unavailable(format!("admission request: {e}")))
}

fn admission(outcome: AdmitOutcome, id: &str, platform: &str) -> Admission {
    match outcome {
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
    }
}

/// The answer as the runtime takes it; a failure becomes its HTTP answer (503 with no detail).
pub fn raw_response(answered: Result<Response, GatewayError>) -> web_sys::Response {
    let response = answered.or_else(GatewayError::into_response);
    match response {
        Ok(response) => response.into(),
        // Only if building the error answer itself failed (no Response can be built at all);
        // the runtime then answers 500.
        Err(e) => JsValue::from(e).unchecked_into(),
    }
}

fn js_error(e: JsValue) -> GatewayError {
    GatewayError::Unavailable(format!("admission: {e:?}"))
}

fn set_timeout(settle: &Function, ms: i32) -> Result<i32, GatewayError> {
    // `settle` bound to TIMED_OUT: no Rust closure to free if the timer never fires.
    let on_timeout: Function = settle
        .bind1(&JsValue::NULL, &JsValue::from_str(TIMED_OUT))
        .unchecked_into();
    global()
        .set_timeout_with_callback_and_timeout_and_arguments_0(&on_timeout, ms)
        .map_err(js_error)
}

fn clear_timeout(id: i32) {
    global().clear_timeout_with_handle(id);
}

fn global() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// One admission waiting for a batch.
struct Waiting {
    ticket: u64,
    /// The [`AdmitRequest`] as JSON.
    request: String,
    /// Resolves the promise the admission sleeps on (made in its own request).
    settle: Function,
}

/// This isolate's admissions waiting for a batch, and when the batch in flight started.
#[derive(Default)]
struct Batches {
    waiting: Vec<Waiting>,
    tickets: u64,
    batch_started_ms: Option<u64>,
}

thread_local! {
    static BATCHES: RefCell<Batches> = RefCell::default();
}

/// Whether the caller should start sending: no batch is in flight (or the one in flight is lost).
fn start_sending() -> bool {
    BATCHES.with_borrow_mut(|b| {
        let now = crate::now_ms();
        match b.batch_started_ms {
            Some(since) if now.saturating_sub(since) < BATCH_LOST_AFTER_MS => false,
            _ => {
                b.batch_started_ms = Some(now);
                true
            }
        }
    })
}

/// Sends the waiting admissions in batches of up to [`MAX_BATCH`], one ledger request at a time,
/// and settles each admission's promise with its outcome, until none waits (or for at most
/// [`LEAD_AT_MOST_MS`]).
async fn send_batches(env: Env) {
    let started = crate::now_ms();
    loop {
        let batch: Vec<Waiting> = BATCHES.with_borrow_mut(|b| {
            let now = crate::now_ms();
            if b.waiting.is_empty() || now.saturating_sub(started) > LEAD_AT_MOST_MS {
                b.batch_started_ms = None;
                return Vec::new();
            }
            b.batch_started_ms = Some(now);
            let n = b.waiting.len().min(MAX_BATCH);
            b.waiting.drain(..n).collect()
        });
        if batch.is_empty() {
            return;
        }
        let requests: Vec<&str> = batch.iter().map(|w| w.request.as_str()).collect();
        let settled: Vec<String> = match ledger::admit(&env, &requests).await {
            Ok(outcomes) if outcomes.len() == batch.len() => outcomes
                .iter()
                .map(|o| serde_json::to_string(o).unwrap_or_default())
                .collect(),
            Ok(outcomes) => vec![
                format!(
                    "{FAILED}the admission ledger answered {} outcomes for {} admissions",
                    outcomes.len(),
                    batch.len()
                );
                batch.len()
            ],
            Err(e) => vec![format!("{FAILED}{e:?}"); batch.len()],
        };
        for (waiting, settled) in batch.iter().zip(settled) {
            // The waiting request may be gone (its sender hung up); then nobody waits.
            let _ = waiting
                .settle
                .call1(&JsValue::UNDEFINED, &JsValue::from_str(&settled));
        }
    }
}
