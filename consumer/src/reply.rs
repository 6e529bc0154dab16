//! Answers where the job was asked: the deferred Discord answer (or, once its 15-minute token has
//! expired, a message in the channel), or bugbot's status comment on the GitHub issue.

use crate::config;
use crate::http::call;
use crate::log;
use crate::run::Run;
use bugbot_shared::discord_api::{self, is_expired_interaction};
use bugbot_shared::github_api;
use bugbot_shared::http::ApiError;
use bugbot_shared::job::{JobMessage, JobRecord, Source};
use bugbot_shared::steer::{self, Action};
use worker::Env;

/// Shows progress. Progress is a courtesy: a failure is logged, never fails the job.
pub async fn progress(run: &mut Run<'_>, text: &str) {
    progress_with(run, text, &[]).await;
}

/// Shows progress with these buttons (Discord) or their hint (GitHub).
pub async fn progress_with(run: &mut Run<'_>, text: &str, buttons: &[Action]) {
    let before = message_ids(&run.record);
    if let Err(e) = say_with(
        run.env,
        run.job,
        &mut run.record,
        text,
        buttons,
        Urgency::Progress,
    )
    .await
    {
        log::info(
            "progress not shown",
            &[("job", run.job.id.as_str()), ("error", &e.to_string())],
        );
    }
    if message_ids(&run.record) != before {
        // A status comment or reply was just created: keep its id at once, so that a retry edits it
        // instead of posting a second one.
        if let Err(e) = run.save().await {
            log::info(
                "status message id not saved",
                &[("job", run.job.id.as_str()), ("error", &e.to_string())],
            );
        }
    }
}

/// The ids of the messages bugbot edits in place.
fn message_ids(record: &JobRecord) -> (Option<u64>, Option<String>) {
    (
        record.checkpoints.github_status_comment,
        record.checkpoints.discord_reply.clone(),
    )
}

/// Gives the final answer (once: a redelivery after it was given says nothing more).
pub async fn finish(run: &mut Run<'_>, text: &str) -> Result<(), ApiError> {
    finish_with(run, text, &[]).await
}

/// Gives the final answer with these buttons (Discord) or their hint (GitHub).
pub async fn finish_with(
    run: &mut Run<'_>,
    text: &str,
    buttons: &[Action],
) -> Result<(), ApiError> {
    if run.record.checkpoints.answered {
        return Ok(());
    }
    say_with(
        run.env,
        run.job,
        &mut run.record,
        text,
        buttons,
        Urgency::Outcome,
    )
    .await?;
    run.record.checkpoints.answered = true;
    run.step("answered", "the requester was told").await
}

/// Whether a message must reach the requester even when the interaction token has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A step on the way: only where it can replace the previous answer.
    Progress,
    /// How the job ended: posted to the channel if the deferred answer can no longer be edited.
    Outcome,
}

/// Says `text` where the job was asked, keeping the GitHub status comment's id on the record. A
/// Discord message loses its buttons.
pub async fn say(
    env: &Env,
    job: &JobMessage,
    record: &mut JobRecord,
    text: &str,
    urgency: Urgency,
) -> Result<(), ApiError> {
    say_with(env, job, record, text, &[], urgency).await
}

/// Says `text` with these buttons: on the Discord message (they replace its earlier ones), as a
/// hint on GitHub.
pub async fn say_with(
    env: &Env,
    job: &JobMessage,
    record: &mut JobRecord,
    text: &str,
    buttons: &[Action],
    urgency: Urgency,
) -> Result<(), ApiError> {
    let components = steer::components(&job.id, buttons);
    let components = Some(&components);
    match &job.source {
        Source::Discord {
            channel_id,
            interaction_token,
            application_id,
            ..
        } => {
            let api = config::discord(env)?;
            match call(
                api.edit_original(application_id, interaction_token, text, components),
                discord_api::parse_ok,
            )
            .await
            {
                Err(e) if is_expired_interaction(&e) && urgency == Urgency::Outcome => {
                    let nonce = discord_api::nonce(job.id.as_str(), "outcome");
                    call(
                        api.create_message(channel_id, text, components, &nonce),
                        discord_api::parse_ok,
                    )
                    .await
                }
                other => other,
            }
        }
        Source::DiscordMention {
            channel_id,
            message_id,
            ..
        } => {
            // One reply to the mention, edited as the job goes on.
            let api = config::discord(env)?;
            match &record.checkpoints.discord_reply {
                Some(reply) => {
                    call(
                        api.edit_message(channel_id, reply, text, components),
                        discord_api::parse_ok,
                    )
                    .await
                }
                None => {
                    let id = call(
                        api.create_reply(
                            channel_id,
                            message_id,
                            text,
                            components,
                            &discord_api::nonce(job.id.as_str(), "reply"),
                        ),
                        discord_api::parse_created_id,
                    )
                    .await?;
                    record.checkpoints.discord_reply = Some(id);
                    Ok(())
                }
            }
        }
        Source::Github {
            repo,
            number,
            installation_id,
            ..
        } => {
            let (api, _) = crate::github::client(env, repo, *installation_id).await?;
            let marker = github_api::status_marker(job.id.as_str());
            let hint = steer::github_hint(buttons, &config::github_mention(env));
            let body = if hint.is_empty() {
                format!("{text}\n\n{marker}")
            } else {
                format!("{text}\n\n{hint}\n\n{marker}")
            };
            if record.checkpoints.github_status_comment.is_none() {
                // A create whose answer was lost left a comment behind: find it by its marker.
                let since = github_api::iso_seconds(job.enqueued_at_ms.saturating_sub(60_000));
                let earlier = call(
                    api.comments_since(repo, *number, &since),
                    github_api::parse_comments,
                )
                .await?;
                record.checkpoints.github_status_comment = earlier
                    .iter()
                    .find(|c| c.body.as_deref().is_some_and(|b| b.contains(&marker)))
                    .map(|c| c.id);
            }
            if let Some(id) = record.checkpoints.github_status_comment {
                call(
                    api.update_comment(repo, id, &body),
                    github_api::parse_comment,
                )
                .await?;
            } else {
                let c = call(
                    api.create_comment(repo, *number, &body),
                    github_api::parse_comment,
                )
                .await?;
                record.checkpoints.github_status_comment = Some(c.id);
            }
            Ok(())
        }
        Source::Admin => Ok(()),
    }
}
