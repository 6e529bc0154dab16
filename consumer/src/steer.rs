//! `POST /internal/steer`: a Stop, Retry or Continue from the gateway (a Discord button press or
//! an `@bugbot stop|retry|continue` comment). The job's state object decides
//! (`bugbot_shared::steer::plan`, atomically); a stop is carried to the executor here, and a
//! resumed job's message goes back to the gateway, which puts it on the queue.

use crate::{executor, github, job_state};
use bugbot_shared::github::GithubThread;
use bugbot_shared::github_api;
use bugbot_shared::http::ApiError;
use bugbot_shared::ids::JobId;
use bugbot_shared::steer::{Ask, Plan};
use serde::Deserialize;
use worker::Env;

/// The gateway's request: the job (a button names it) or the GitHub conversation whose latest fix
/// is meant (a comment), and the ask.
#[derive(Debug, Deserialize)]
pub struct SteerRequest {
    /// The job, when known.
    #[serde(default)]
    pub job: Option<JobId>,
    /// The GitHub issue or pull request, when the job is its latest fix.
    #[serde(default)]
    pub thread: Option<GithubThread>,
    /// The GitHub App installation that delivered the comment.
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// The ask.
    pub ask: Ask,
}

/// Decides and carries out an ask; answers the plan (a refusal's text is for the asker).
pub async fn handle(env: &Env, request: &SteerRequest) -> Result<Plan, ApiError> {
    let job = match (&request.job, &request.thread) {
        (Some(job), _) => Some(job.clone()),
        (None, Some(thread)) => job_state::latest(env, thread).await?,
        (None, None) => None,
    };
    let plan = match &job {
        Some(job) => job_state::steer(env, job, &request.ask).await?,
        None => Plan::Refuse {
            text: format!("bugbot has no fix here to {}.", request.ask.action.as_str()),
        },
    };
    crate::log::info(
        "steer asked",
        &[
            ("job", job.as_ref().map_or("", JobId::as_str)),
            ("action", request.ask.action.as_str()),
            ("plan", plan_name(&plan)),
        ],
    );
    match (&plan, &job) {
        (Plan::Stop { run_id, reason }, Some(job)) => {
            executor::stop(env, job.as_str(), run_id, reason).await?;
        }
        (Plan::Refuse { text }, _) => {
            if let Some(thread) = &request.thread {
                // No ephemeral answers on GitHub: the refusal is a reply to the comment.
                let (api, _) = github::client(env, &thread.repo, request.installation_id).await?;
                let body = format!("@{} {text}", request.ask.by.name);
                crate::http::call(
                    api.create_comment(&thread.repo, thread.number, &body),
                    github_api::parse_comment,
                )
                .await?;
            }
        }
        _ => {}
    }
    Ok(plan)
}

fn plan_name(plan: &Plan) -> &'static str {
    match plan {
        Plan::Stop { .. } => "stop",
        Plan::Enqueue { .. } => "enqueue",
        Plan::Refuse { .. } => "refuse",
    }
}
