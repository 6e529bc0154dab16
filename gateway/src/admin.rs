//! Operator endpoints, behind `Authorization: Bearer $ADMIN_TOKEN`.

use crate::admission::Admission;
use crate::config::{self, KV_BINDING};
use crate::error::{GatewayError, json_response};
use bugbot_shared::ids::JobId;
use bugbot_shared::job::{
    Command, JOB_MESSAGE_VERSION, JobMessage, JobRecord, Report, Requester, Source,
};
use bugbot_shared::kv;
use bugbot_shared::references::References;
use bugbot_shared::signature::bearer_matches;
use worker::{Context, Env, Request, Response};

fn authorize(req: &Request, env: &Env) -> Result<(), GatewayError> {
    let expected = config::string(env, "ADMIN_TOKEN")?;
    let given = req.headers().get("authorization")?;
    if bearer_matches(given.as_deref(), &expected) {
        Ok(())
    } else {
        Err(GatewayError::Unauthorized)
    }
}

/// `GET /v1/jobs/{id}`: a job's status and timeline.
pub async fn get_job(req: &Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let id = JobId::parse(id).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    // The consumer's progress if it has started, else what the gateway recorded on accepting it.
    let store = env.kv(KV_BINDING)?;
    let (progress, accepted) = futures_util::future::join(
        store.get(&kv::job(&id)).json::<JobRecord>(),
        store.get(&kv::accepted(&id)).json::<JobRecord>(),
    )
    .await;
    match progress?.or(accepted?) {
        Some(record) => Ok(json_response(
            200,
            &serde_json::to_value(record).unwrap_or_default(),
        )?),
        None => Err(GatewayError::NotFound),
    }
}

/// `POST /v1/selftest`: puts a self-test job on the queue and returns its id. The consumer marks
/// it succeeded without touching any outside service, which proves gateway → queue → consumer → KV.
pub async fn selftest(req: &Request, env: &Env, ctx: &Context) -> Result<Response, GatewayError> {
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
    };
    let policy = config::policy(env)?;
    match crate::admission::admit(env, ctx, &job, &policy, "admin").await? {
        Admission::Enqueued | Admission::Duplicate => {
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
