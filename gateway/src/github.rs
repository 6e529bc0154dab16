//! `POST /github/webhook`: the GitHub App's webhook deliveries.

use crate::admission::{Admission, admit};
use crate::config;
use crate::error::{GatewayError, json_answer};
use bugbot_shared::github::{self, Decision};
use bugbot_shared::signature::verify_github;
use bugbot_shared::steer::Plan;
use serde_json::json;
use worker::{Env, web_sys};

/// Verifies the signature before anything else, then decides and acts.
pub async fn handle(req: &web_sys::Request, env: &Env) -> Result<web_sys::Response, GatewayError> {
    let body = crate::read_body(req).await?;
    let secrets = config::github_secrets(env)?;
    let signature = crate::header(req, "x-hub-signature-256");
    verify_github(&secrets, signature.as_deref(), &body).map_err(|_| GatewayError::Unauthorized)?;

    let event = crate::header(req, "x-github-event");
    let delivery = crate::header(req, "x-github-delivery");
    let policy = config::policy(env)?;
    let mention = config::github_mention(env);
    let decision = github::decide(
        event.as_deref(),
        delivery.as_deref(),
        &body,
        &policy,
        &mention,
        crate::now_ms(),
    )
    .map_err(|e| GatewayError::BadRequest(e.to_string()))?;

    let (status, answer) = match decision {
        Decision::Pong => (200, json!({ "ok": true, "message": "pong" })),
        Decision::Ignored(reason) => (202, json!({ "ignored": reason })),
        Decision::Steer {
            thread,
            installation_id,
            ask,
        } => {
            let plan =
                crate::steer::steer(env, None, Some((&thread, installation_id)), &ask).await?;
            let answer = match plan {
                Plan::Stop { .. } => json!({ "steer": "stopping" }),
                Plan::Enqueue { message } => json!({ "steer": "queued", "job_id": message.id }),
                // The refusal was answered on the issue.
                Plan::Refuse { text } => json!({ "steer": "refused", "reason": text }),
            };
            (202, answer)
        }
        Decision::Enqueue(job) => match admit(env, &job, &policy, "github").await? {
            Admission::Admitted => (202, json!({ "job_id": job.id })),
            Admission::Duplicate => (202, json!({ "job_id": job.id, "duplicate": true })),
            Admission::Refused(refusal) => (202, json!({ "refused": refusal.to_string() })),
        },
    };
    json_answer(status, &answer)
}
