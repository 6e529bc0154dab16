//! `POST /discord/interactions`: Discord's HTTP interactions endpoint.

use crate::admission::{Admission, admit};
use crate::config;
use crate::error::{GatewayError, json_answer};
use bugbot_shared::discord::{self, Decision};
use bugbot_shared::signature::prepare_discord;
use bugbot_shared::steer::{self, Plan};
use worker::{Env, web_sys};

/// Verifies the signature before anything else, then decides and acts.
pub async fn handle(req: &web_sys::Request, env: &Env) -> Result<web_sys::Response, GatewayError> {
    let body = crate::read_body(req).await?;
    let keys = config::discord_keys(env)?;
    let signature = crate::header(req, "x-signature-ed25519");
    let timestamp = crate::header(req, "x-signature-timestamp");
    let signed = prepare_discord(signature.as_deref(), timestamp.as_deref(), &body)
        .map_err(|_| GatewayError::Unauthorized)?;
    if !crate::ed25519::verify_any(&keys, &signed).await? {
        return Err(GatewayError::Unauthorized);
    }

    let interaction = discord::parse(&body).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let policy = config::policy(env)?;
    let answer = match discord::decide(&interaction, &policy, crate::now_ms()) {
        Decision::Pong => discord::pong(),
        Decision::NoChoices => discord::no_choices(),
        Decision::Reply(text) => discord::ephemeral(&text),
        Decision::Steer { job, ask } => {
            match crate::steer::steer(env, Some(&job), None, &ask).await {
                // The pressed message says what happens at once; the job edits it from then on.
                Ok(Plan::Stop { .. }) => discord::update_message(
                    &format!("⏹️ Stopping the fix (asked by {})…", ask.by.name),
                    &steer::components(&job, &[]),
                ),
                Ok(Plan::Enqueue { message }) => discord::update_message(
                    &message
                        .resume
                        .as_ref()
                        .map(steer::resuming_text)
                        .unwrap_or_default(),
                    &steer::components(&job, &[]),
                ),
                Ok(Plan::Refuse { text }) => discord::ephemeral(&text),
                Err(e) => {
                    crate::log::error(
                        "steer failed",
                        &[("job", job.as_str()), ("error", &e.detail())],
                    );
                    discord::ephemeral(
                        "bugbot could not reach this job just now; please try again.",
                    )
                }
            }
        }
        Decision::Enqueue(job) => match admit(env, &job, &policy, "discord").await {
            // A redelivered interaction gets the same answer; its job is already on the queue.
            Ok(Admission::Admitted | Admission::Duplicate) => discord::deferred(),
            Ok(Admission::Refused(refusal)) => discord::ephemeral(&refusal.to_string()),
            // Discord does not resend an interaction: an error status would only show "This
            // interaction failed". The requester is told instead.
            Err(e) => {
                crate::log::error(
                    "admission failed",
                    &[("job", job.id.as_str()), ("error", &e.detail())],
                );
                discord::ephemeral(&bugbot_shared::replies::command_not_taken())
            }
        },
    };
    json_answer(200, &answer)
}
