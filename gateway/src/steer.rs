//! Stop, Retry and Continue: the gateway hands a verified ask to the consumer, whose job state
//! decides and which stops a run itself; a resumed job comes back to be put on the queue here.

use crate::config;
use crate::error::GatewayError;
use bugbot_shared::github::GithubThread;
use bugbot_shared::ids::JobId;
use bugbot_shared::steer::{Ask, Plan};
use worker::Env;

/// Asks the consumer about `job` (or the latest fix of `thread`), and enqueues a resumed job.
pub async fn steer(
    env: &Env,
    job: Option<&JobId>,
    thread: Option<(&GithubThread, Option<u64>)>,
    ask: &Ask,
) -> Result<Plan, GatewayError> {
    let body = serde_json::json!({
        "job": job,
        "thread": thread.map(|(t, _)| t),
        "installation_id": thread.and_then(|(_, i)| i),
        "ask": ask,
    });
    let mut answer = crate::admin::consumer(env, "/internal/steer", Some(body.to_string())).await?;
    if answer.status_code() != 200 {
        let text = answer.text().await.unwrap_or_default();
        return Err(GatewayError::Unavailable(format!(
            "the consumer could not steer the job: {text}"
        )));
    }
    let plan: Plan = answer
        .json()
        .await
        .map_err(|e| GatewayError::Unavailable(format!("the consumer's answer: {e}")))?;
    if let Plan::Enqueue { message } = &plan {
        env.queue(config::QUEUE_BINDING)?
            .send(message.as_ref())
            .await?;
        crate::log::info(
            "job resumed",
            &[
                ("job", message.id.as_str()),
                ("action", ask.action.as_str()),
            ],
        );
    }
    Ok(plan)
}
