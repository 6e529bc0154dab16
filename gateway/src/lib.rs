//! bugbot's gateway Worker: the only door from the internet.
//!
//! It verifies each request's signature before anything else, turns Discord interactions and GitHub
//! webhooks into job messages (the decisions live in `bugbot_shared`), puts them on the queue and
//! answers at once. It makes no calls to outside services on the request path.

mod admin;
mod config;
mod discord;
mod error;
mod github;
mod log;

use error::{GatewayError, json_response};
use worker::{Context, Env, Method, Request, Response, event};

/// Bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match route(&mut req, &env).await {
        Ok(response) => Ok(response),
        Err(e) => e.into_response(),
    }
}

async fn route(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (segments.as_slice(), method) {
        (["health"], Method::Get | Method::Head) => {
            Ok(json_response(200, &serde_json::json!({ "status": "ok" }))?)
        }
        (["health"], _) => Err(GatewayError::MethodNotAllowed("GET, HEAD")),

        (["discord", "interactions"], Method::Post) => discord::handle(req, env).await,
        (["discord", "interactions"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        (["github", "webhook"], Method::Post) => github::handle(req, env).await,
        (["github", "webhook"], _) => Err(GatewayError::MethodNotAllowed("POST")),

        (["v1", "selftest"], Method::Post) => admin::selftest(req, env).await,
        (["v1", "selftest"], _) => Err(GatewayError::MethodNotAllowed("POST")),
        (["v1", "jobs", id], Method::Get) => admin::get_job(req, env, id).await,
        (["v1", "jobs", _], _) => Err(GatewayError::MethodNotAllowed("GET")),

        _ => Err(GatewayError::NotFound),
    }
}

/// Reads the body, refusing anything over [`MAX_BODY_BYTES`] (by `Content-Length` first, so a
/// large upload is not buffered, then by what actually arrived).
pub(crate) async fn read_body(req: &mut Request) -> Result<Vec<u8>, GatewayError> {
    if let Some(len) = req.headers().get("content-length")? {
        match len.trim().parse::<u64>() {
            Ok(n) if n > MAX_BODY_BYTES as u64 => return Err(GatewayError::PayloadTooLarge),
            Ok(_) => {}
            Err(_) => return Err(GatewayError::BadRequest("invalid Content-Length".into())),
        }
    }
    let body = req
        .bytes()
        .await
        .map_err(|_| GatewayError::BadRequest("could not read the request body".into()))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(body)
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub(crate) fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// What became of a job the decision wanted enqueued.
pub(crate) enum Admission {
    /// Recorded and on the queue.
    Enqueued,
    /// The same trigger was already enqueued (a redelivery); nothing was done.
    Duplicate,
    /// Not allowed now (the per-user limit).
    Refused(bugbot_shared::authz::Refusal),
}

/// Dedupe, rate limit, record, enqueue. The job id derives from the trigger's own id
/// (interaction id, `X-GitHub-Delivery`), so an existing record means this is a redelivery.
pub(crate) async fn admit(
    env: &Env,
    job: &bugbot_shared::job::JobMessage,
    policy: &bugbot_shared::authz::AccessPolicy,
    platform: &str,
) -> Result<Admission, GatewayError> {
    use bugbot_shared::{authz, kv};
    let store = env.kv(config::KV_BINDING)?;
    if store.get(&kv::job(&job.id)).text().await?.is_some() {
        log::info("duplicate delivery", &[("job", job.id.as_str())]);
        return Ok(Admission::Duplicate);
    }
    let bucket = authz::rate_bucket(platform, &job.requester.id, job.enqueued_at_ms);
    let already: u32 = store
        .get(&bucket)
        .text()
        .await?
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if let Err(refusal) = authz::within_rate_limit(policy, already) {
        log::info(
            "rate limited",
            &[("job", job.id.as_str()), ("platform", platform)],
        );
        return Ok(Admission::Refused(refusal));
    }
    // KV has no atomic increment; under a burst the count may lag, which only softens the limit.
    store
        .put(&bucket, (already + 1).to_string())?
        .expiration_ttl(2 * 3600)
        .execute()
        .await?;
    enqueue(env, job).await?;
    Ok(Admission::Enqueued)
}

/// Records the job as queued, then puts it on the queue. The record comes first so that
/// `GET /v1/jobs/{id}` shows the job from the moment the sender got its answer.
pub(crate) async fn enqueue(
    env: &Env,
    job: &bugbot_shared::job::JobMessage,
) -> Result<(), GatewayError> {
    use bugbot_shared::{job::JobRecord, kv};
    let record = JobRecord::queued(job);
    env.kv(config::KV_BINDING)?
        .put(&kv::job(&job.id), &record)?
        .expiration_ttl(kv::JOB_TTL_SECONDS)
        .execute()
        .await?;
    env.queue(config::QUEUE_BINDING)?.send(job).await?;
    log::info(
        "job queued",
        &[("job", job.id.as_str()), ("command", job.command.as_str())],
    );
    Ok(())
}
