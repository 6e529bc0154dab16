//! Operator endpoints, behind `Authorization: Bearer $ADMIN_TOKEN`.

use crate::admission::Admission;
use crate::config::{self, KV_BINDING};
use crate::error::{GatewayError, json_response};
use bugbot_shared::ids::JobId;
use bugbot_shared::job::{
    Command, DeadJob, JOB_MESSAGE_VERSION, JobMessage, JobRecord, Report, Requester, Source,
};
use bugbot_shared::kv;
use bugbot_shared::references::References;
use bugbot_shared::signature::bearer_matches;
use worker::{Env, Request, Response};

fn authorize(req: &Request, env: &Env) -> Result<(), GatewayError> {
    let expected = config::string(env, "ADMIN_TOKEN")?;
    let given = req.headers().get("authorization")?;
    if bearer_matches(given.as_deref(), &expected) {
        Ok(())
    } else {
        Err(GatewayError::Unauthorized)
    }
}

/// The binding of the consumer's internal routes (job records live in its `JobState` objects).
const CONSUMER: &str = "CONSUMER";

/// Asks the consumer (service binding) for `path`, with an optional JSON body.
pub(crate) async fn consumer(
    env: &Env,
    path: &str,
    body: Option<String>,
) -> Result<Response, GatewayError> {
    let mut init = worker::RequestInit::new();
    init.with_method(if body.is_some() {
        worker::Method::Post
    } else {
        worker::Method::Get
    });
    if let Some(body) = body {
        let headers = worker::Headers::new();
        headers.set("content-type", "application/json")?;
        init.with_headers(headers).with_body(Some(body.into()));
    }
    let req = Request::new_with_init(&format!("http://consumer{path}"), &init)?;
    env.service(CONSUMER)?
        .fetch_request(req)
        .await
        .map_err(|e| GatewayError::Unavailable(format!("the consumer: {e}")))
}

/// `GET /v1/jobs/{id}`: a job's status and timeline.
pub async fn get_job(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let id = JobId::parse(id).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    // The consumer's record once it has started the job, else the ledger's record of admitting it.
    let (progress, admitted) = futures_util::future::join(
        consumer(env, &format!("/internal/jobs/{id}"), None),
        crate::ledger::job(env, id.as_str()),
    )
    .await;
    let mut progress = progress?;
    let progress: Option<JobRecord> = match progress.status_code() {
        200 => Some(progress.json().await?),
        404 => None,
        status => {
            return Err(GatewayError::Unavailable(format!(
                "the consumer answered {status}"
            )));
        }
    };
    let admitted = admitted?
        .map(|record| serde_json::from_str::<JobRecord>(&record))
        .transpose()
        .map_err(|e| GatewayError::Unavailable(format!("the admission ledger's record: {e}")))?;
    match progress.or(admitted) {
        Some(record) => Ok(json_response(
            200,
            &serde_json::to_value(record).unwrap_or_default(),
        )?),
        None => Err(GatewayError::NotFound),
    }
}

/// Jobs listed at most.
const LIST_LIMIT: usize = 100;

/// Keys read per prefix when listing the dead-letter list (newest are picked from these).
const LIST_SCAN: u64 = 1000;

/// `GET /v1/jobs`: recent jobs, newest first (`?limit=`, at most 100). The admission ledger is the
/// index (it records every admitted job, strongly consistent); each job's status comes from its
/// record in the consumer.
pub async fn list_jobs(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let limit = query_limit(req)?;
    let admitted: Vec<JobRecord> = crate::ledger::recent_jobs(env, limit).await?;
    let ids: Vec<String> = admitted.iter().map(|r| r.id.to_string()).collect();
    let mut answer = consumer(
        env,
        "/internal/jobs",
        Some(serde_json::json!({ "ids": ids }).to_string()),
    )
    .await?;
    #[derive(serde::Deserialize)]
    struct Listed {
        jobs: Vec<kv::ListedJob>,
    }
    let progress: Listed = answer.json().await?;
    let admitted = admitted.iter().map(kv::ListedJob::of).collect();
    let jobs = kv::newest_first(admitted, progress.jobs, limit);
    Ok(json_response(200, &serde_json::json!({ "jobs": jobs }))?)
}

/// `POST /v1/dev/deliver`: hands a job message to the consumer directly, as a queue delivery would
/// (dev-only, like `enqueue-raw`): the local queue delivers one message at a time, so this is how
/// tests deliver one job twice at the same moment. Answers how the delivery settled.
pub async fn dev_deliver(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    dev_to_consumer(req, env, "/internal/dev/deliver").await
}

/// A dev-only route whose JSON body goes to the consumer's matching `path`, answered as it answers.
async fn dev_to_consumer(req: &Request, env: &Env, path: &str) -> Result<Response, GatewayError> {
    dev_only(req, env)?;
    let body = crate::read_body(req.inner()).await?;
    let text = String::from_utf8(body)
        .map_err(|_| GatewayError::BadRequest("the body must be JSON".into()))?;
    consumer(env, path, Some(text)).await
}

/// `GET /v1/spend`: today's model spend (UTC), settled and reserved, per user.
pub async fn get_spend(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    consumer(env, "/internal/spend", None).await
}

/// `POST /v1/dev/spend` `{"user": "...", "usd": 1.5}`: adds spend to today (dev only: tests of the
/// daily budgets).
pub async fn dev_spend(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    dev_to_consumer(req, env, "/internal/dev/spend").await
}

fn query_limit(req: &Request) -> Result<usize, GatewayError> {
    // The raw URL, not `req.url()`: parsing a `Url` links IDNA tables that double the wasm size.
    let url = req.inner().url();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let limit = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "limit")
        .map(|(_, v)| v.parse::<usize>())
        .transpose()
        .map_err(|_| GatewayError::BadRequest("limit must be a number".into()))?
        .unwrap_or(20);
    Ok(limit.clamp(1, LIST_LIMIT))
}

/// `GET /v1/dlq`: dead jobs (message summary, last error, attempts), newest first.
pub async fn list_dlq(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let limit = query_limit(req)?;
    let page = env
        .kv(KV_BINDING)?
        .list()
        .prefix(kv::DEAD_PREFIX.to_owned())
        .limit(LIST_SCAN)
        .execute()
        .await?;
    let mut dead: Vec<serde_json::Value> =
        page.keys.into_iter().filter_map(|k| k.metadata).collect();
    // Messages the admission ledger set aside because the queue kept refusing them: listed with
    // the dead jobs, not replayable (they would be refused again).
    for stuck in crate::ledger::set_aside(env, limit).await? {
        dead.push(serde_json::json!({
            "id": stuck["id"],
            "error": format!("never reached the queue: {}", stuck["error"].as_str().unwrap_or("refused")),
            "attempts": 0,
            "died_at_ms": stuck["at_ms"],
            "replayable": false,
        }));
    }
    dead.sort_by_key(|d| std::cmp::Reverse(d["died_at_ms"].as_u64().unwrap_or(0)));
    dead.truncate(limit);
    Ok(json_response(200, &serde_json::json!({ "dead": dead }))?)
}

/// `GET /v1/dlq/{id}`: one dead job (no interaction token: the summary only).
pub async fn get_dead(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    match env
        .kv(KV_BINDING)?
        .get(&kv::dead(id))
        .json::<DeadJob>()
        .await?
    {
        Some(dead) => Ok(json_response(200, &dead.summary())?),
        None => Err(GatewayError::NotFound),
    }
}

/// `DELETE /v1/dlq/{id}`: forgets a dead job (it is not run).
pub async fn purge_dead(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let store = env.kv(KV_BINDING)?;
    let key = kv::dead(id);
    if store.get(&key).text().await?.is_none() {
        return Err(GatewayError::NotFound);
    }
    store.delete(&key).await?;
    crate::log::info("dead job purged", &[("job", id)]);
    Ok(json_response(200, &serde_json::json!({ "purged": id }))?)
}

/// `POST /v1/dlq/{id}/replay`: puts a dead job back on the queue (its replay count raised, so the
/// consumer runs it again, keeping what it already did) and removes it from the dead list.
pub async fn replay(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let store = env.kv(KV_BINDING)?;
    let key = kv::dead(id);
    let Some(dead) = store.get(&key).json::<DeadJob>().await? else {
        return Err(GatewayError::NotFound);
    };
    let Some(mut message) = dead.message else {
        return Ok(json_response(
            409,
            &serde_json::json!({ "error": "this entry is not a readable job message and cannot be replayed" }),
        )?);
    };
    message.replay += 1;
    env.queue(config::QUEUE_BINDING)?.send(&message).await?;
    store.delete(&key).await?;
    crate::log::info("dead job replayed", &[("job", message.id.as_str())]);
    Ok(json_response(
        202,
        &serde_json::json!({ "job_id": message.id, "replay": message.replay }),
    )?)
}

/// `POST /v1/dev/enqueue-raw`: puts the request body on the queue as it is — a local testing
/// hook (how else would a test show what the consumer does with a malformed message?). It exists
/// only where `BUGBOT_DEV_ENDPOINTS=true` (dev/local.env); everywhere else it is 404.
pub async fn enqueue_raw(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    dev_only(req, env)?;
    let body = crate::read_body(req.inner()).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| GatewayError::BadRequest("the body must be JSON".into()))?;
    enqueue_json_text(env, text).await?;
    Ok(json_response(202, &serde_json::json!({ "queued": true }))?)
}

/// Puts JSON text on the queue as the JSON says: parsed by the runtime, not serialized by serde
/// (which would send objects as JS Maps).
async fn enqueue_json_text(env: &Env, text: &str) -> Result<(), GatewayError> {
    let value = worker::js_sys::JSON::parse(text)
        .map_err(|_| GatewayError::BadRequest("the body must be JSON".into()))?;
    env.queue(config::QUEUE_BINDING)?
        .send_raw(
            worker::RawMessageBuilder::new(value)
                .build_with_content_type(worker::QueueContentType::Json),
        )
        .await?;
    Ok(())
}

/// `POST /v1/dev/panic`: panics inside the gateway, or with `?worker=consumer` puts a message on
/// the queue that makes the consumer panic — so a test can show that a panic's message reaches the
/// structured logs. Like `enqueue-raw`, it exists only where `BUGBOT_DEV_ENDPOINTS=true`.
pub async fn dev_panic(req: &mut Request, env: &Env) -> Result<Response, GatewayError> {
    dev_only(req, env)?;
    // The raw URL, not `req.url()` (see `query_limit`).
    let url = req.inner().url();
    let query = |wanted: &str| {
        url.split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|pair| pair == wanted))
    };
    if query("after=await") {
        // After an await, so the panic comes in a poll from a promise's reaction (`task`).
        let _ = crate::read_body(req.inner()).await;
        panic!("a panic asked for by POST /v1/dev/panic, after an await");
    }
    if !query("worker=consumer") {
        panic!("a panic asked for by POST /v1/dev/panic");
    }
    let text = serde_json::json!({ (bugbot_shared::job::DEV_PANIC_FIELD): true }).to_string();
    enqueue_json_text(env, &text).await?;
    Ok(json_response(202, &serde_json::json!({ "queued": true }))?)
}

/// A number in the query (`name=N`), at most `max`.
fn query_number(req: &Request, name: &str, max: u32) -> Result<u32, GatewayError> {
    let url = req.inner().url();
    url.split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        })
        .and_then(|v| v.parse().ok())
        .filter(|n| *n <= max)
        .ok_or_else(|| GatewayError::BadRequest(format!("{name}=N (at most {max}) is required")))
}

/// What a dev outage takes down.
#[derive(Debug, Clone, Copy)]
pub enum Outage {
    /// The admission ledger's queue sends (`POST /v1/dev/queue-outage`): an outage delays jobs and
    /// loses none.
    Queue,
    /// Admissions themselves (`POST /v1/dev/ledger-outage`): what a sender is told when bugbot
    /// cannot take their request.
    Ledger,
}

/// `POST /v1/dev/queue-outage?seconds=N` and `POST /v1/dev/ledger-outage?seconds=N` (dev-only, like
/// `enqueue-raw`): that part fails for N seconds.
pub async fn dev_outage(
    req: &Request,
    env: &Env,
    outage: Outage,
) -> Result<Response, GatewayError> {
    dev_only(req, env)?;
    let seconds = query_number(req, "seconds", 600)?;
    match outage {
        Outage::Queue => crate::ledger::dev_queue_outage(env, seconds * 1000).await?,
        Outage::Ledger => crate::ledger::dev_ledger_outage(env, seconds * 1000).await?,
    }
    Ok(json_response(
        202,
        &serde_json::json!({ "outage_seconds": seconds }),
    )?)
}

/// `POST /v1/dev/discord-gateway-storage-faults?count=N`: the Discord Gateway object's next N
/// keep-alive storage reads fail (dev-only), so a test can show the keep-alive survives them.
pub async fn dev_gateway_storage_faults(
    req: &Request,
    env: &Env,
) -> Result<Response, GatewayError> {
    dev_only(req, env)?;
    let count = query_number(req, "count", 100)?;
    discord_gateway_action(env, &format!("/dev/storage-faults?count={count}"), false).await
}

/// `POST /v1/dev/poison-outbox`: puts a message the queue refuses (over its size limit) in the
/// admission ledger's outbox (dev-only), so a test can show it does not hold up later jobs.
pub async fn dev_poison(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    dev_only(req, env)?;
    let id = format!("st-poison-{:08x}", rand_u32());
    crate::ledger::dev_poison(env, &id).await?;
    Ok(json_response(202, &serde_json::json!({ "job_id": id }))?)
}

/// The dev-only routes exist where `BUGBOT_DEV_ENDPOINTS=true` and answer the admin token.
fn dev_only(req: &Request, env: &Env) -> Result<(), GatewayError> {
    if config::optional(env, "BUGBOT_DEV_ENDPOINTS").as_deref() != Some("true") {
        return Err(GatewayError::NotFound);
    }
    authorize(req, env)
}

/// `GET /v1/discord/gateway` (state) and `POST /v1/discord/gateway/start` (connect, idempotent):
/// the Discord Gateway connection that receives @mentions (one Durable Object, one connection).
pub async fn discord_gateway(
    req: &Request,
    env: &Env,
    action: &str,
) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    discord_gateway_action(env, action, action == "/start").await
}

async fn discord_gateway_action(
    env: &Env,
    action: &str,
    post: bool,
) -> Result<Response, GatewayError> {
    let stub = env
        .durable_object("DISCORD_GATEWAY")?
        .id_from_name("discord-gateway")?
        .get_stub()?;
    let mut init = worker::RequestInit::new();
    init.with_method(if post {
        worker::Method::Post
    } else {
        worker::Method::Get
    });
    let inner = Request::new_with_init(&format!("http://discord-gateway{action}"), &init)?;
    let mut answer = stub.fetch_with_request(inner).await?;
    let status: serde_json::Value = answer.json().await?;
    Ok(json_response(200, &status)?)
}

/// `POST /v1/selftest`: puts a self-test job on the queue and returns its id. The consumer marks
/// it succeeded without touching any outside service, which proves gateway → queue → consumer → KV.
pub async fn selftest(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let now = crate::now_ms();
    let id = JobId::parse(&format!("st-{now}-{:08x}", rand_u32()))
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    let job = JobMessage {
        v: JOB_MESSAGE_VERSION,
        id: id.clone(),
        command: Command::Selftest,
        requester: Requester {
            id: "admin".into(),
            name: "operator".into(),
        },
        source: Source::Admin,
        report: Report::new(None, "self-test"),
        references: References::default(),
        enqueued_at_ms: now,
        replay: 0,
        resume: None,
    };
    let policy = config::policy(env)?;
    match crate::admission::admit(env, &job, &policy, "admin").await? {
        Admission::Admitted | Admission::Duplicate => {
            Ok(json_response(202, &serde_json::json!({ "job_id": id }))?)
        }
        Admission::Refused(refusal) => Ok(json_response(
            429,
            &serde_json::json!({ "error": refusal.to_string() }),
        )?),
    }
}

fn rand_u32() -> u32 {
    let mut buf = [0u8; 4];
    // A failing RNG would only make ids less unique; the timestamp still distinguishes them.
    let _ = getrandom::getrandom(&mut buf);
    u32::from_le_bytes(buf)
}
