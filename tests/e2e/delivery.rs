//! Cloudflare's real delivery semantics, through the real workerd: the same job delivered twice at
//! the same moment (the local queue never does that, so the dev-only `POST /v1/dev/deliver` hands
//! the message to the consumer directly), calls that succeeded but lost their answer, GitHub's
//! rate limits, and outages longer than a short retry budget. Each ends with exactly one of every
//! side effect.

use crate::context::{E2e, no_violations};
use crate::contextualize::{
    contextualize_with, linear_for, posted_in, thread_with_report, wait_status,
};
use crate::ensure_eq;
use crate::fix::{pulls_of, seed};
use crate::gateway::{issue_url, member_comment_on_a_new_issue, member_comments_on_a_new_issue};
use anyhow::{Context, Result, ensure};
use bugbot_shared::authz::{AccessPolicy, PolicySettings};
use bugbot_shared::github::{DEFAULT_MENTION, Decision};
use bugbot_tests::fixtures::{CART_FIX, read_then_edit};
use serde_json::{Value, json};
use std::sync::Arc;

/// The job message the gateway would enqueue for a GitHub delivery (decided by the same code).
fn job_message(ctx: &E2e, delivery: &str, payload: &Value) -> Result<Value> {
    let repos = ctx.env.get("GITHUB_REPOS");
    let bot = ctx.env.get("GITHUB_BOT_LOGIN");
    let policy = AccessPolicy::from_settings(&PolicySettings {
        github_repos: Some(&repos),
        github_bot_login: Some(&bot),
        ..PolicySettings::default()
    })?;
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    match bugbot_shared::github::decide(
        Some("issue_comment"),
        Some(delivery),
        &serde_json::to_vec(payload)?,
        &policy,
        DEFAULT_MENTION,
        now,
    )? {
        Decision::Enqueue(job) => Ok(serde_json::to_value(*job)?),
        other => anyhow::bail!("the delivery would not be a job: {other:?}"),
    }
}

/// Hands a job message to the consumer, as a queue delivery would; answers how it settled.
async fn deliver(ctx: &E2e, message: &Value) -> Result<Value> {
    let r = ctx
        .http
        .post(ctx.gateway("/v1/dev/deliver"))
        .bearer_auth(ctx.env.get("ADMIN_TOKEN"))
        .json(message)
        .timeout(std::time::Duration::from_secs(300))
        .send()
        .await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    ensure_eq!(status, 200, "{text}");
    Ok(serde_json::from_str(&text)?)
}

/// bugbot's comments on a GitHub issue.
fn status_comments(state: &Value, number: u64) -> Vec<Value> {
    state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["number"] == number)
        .cloned()
        .collect()
}

/// How many times the executor started a fix on `branch_part`'s branch.
fn executor_runs(ctx: &E2e, branch_part: &str) -> usize {
    ctx.executor_log()
        .lines()
        .filter(|l| l.contains("fix requested") && l.contains(branch_part))
        .count()
}

/// A GitHub fix job did each of its side effects once: one agent run, one pull request, one
/// status comment, one Linear issue with two comments (the packet, the pull request's announcement).
fn one_of_each(ctx: &E2e, state: &Value, job: &str, number: u64) -> Result<()> {
    ensure_eq!(executor_runs(ctx, job), 1, "one agent run");
    ensure_eq!(pulls_of(state, job).len(), 1, "one pull request");
    ensure_eq!(
        status_comments(state, number).len(),
        1,
        "one status comment"
    );
    let url = issue_url(ctx, number);
    let (issues, comments) = linear_for(state, &url);
    ensure_eq!(issues.len(), 1, "one Linear issue");
    ensure_eq!(
        comments.len(),
        2,
        "one packet, one announcement: {comments:?}"
    );
    Ok(())
}

/// The same fix job delivered twice at the same moment runs once: one agent run, one Linear issue,
/// one context comment, one status comment, one pull request. The later delivery waits for the
/// lease; once the job is done, a further delivery only acknowledges.
pub async fn one_job_delivered_twice_at_once_runs_once(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    seed(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    let (number, delivery, payload) = member_comment_on_a_new_issue(
        &ctx,
        "Cart total is one too high",
        "Three $10 items cost $31.",
        "@bugbot fix",
    )
    .await?;
    let message = job_message(&ctx, &delivery, &payload)?;
    let job = message["id"].as_str().context("job id")?.to_owned();

    let (first, second) = tokio::join!(deliver(&ctx, &message), deliver(&ctx, &message));
    let mut settled = [first?, second?];
    settled.sort_by_key(|s| s["settled"].to_string());
    ensure_eq!(settled[0]["settled"], "done", "{settled:?}");
    ensure_eq!(
        settled[1]["settled"],
        "retry",
        "the other delivery waits: {settled:?}"
    );

    let record = wait_status(&ctx, &job, "succeeded", 5).await?;
    ensure_eq!(record["attempts"], 1, "one delivery ran it: {record}");
    let again = deliver(&ctx, &message).await?;
    ensure_eq!(again["settled"], "done");

    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    one_of_each(&ctx, &state, &job, number)
}

/// Every side-effecting call of a fix, performed by the service whose answer is then lost (a 502
/// after the fact): the job retries and each side effect still happens exactly once.
pub async fn calls_that_succeeded_but_lost_their_answer_are_not_repeated(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    seed(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    for fault in [
        json!({"service": "github", "method": "POST", "path_suffix": "/comments"}),
        json!({"service": "github", "method": "POST", "path_suffix": "/pulls"}),
        json!({"service": "linear", "body_contains": "issueCreate"}),
        json!({"service": "linear", "body_contains": "commentCreate"}),
        json!({"service": "linear", "body_contains": "attachmentCreate"}),
    ] {
        let mut fault = fault;
        fault["status"] = 502.into();
        fault["lose_answer"] = true.into();
        fault["count"] = 1.into();
        ctx.sandbox_post("/_sandbox/faults", &fault).await?;
    }
    let (number, job) = member_comments_on_a_new_issue(
        &ctx,
        "Cart total is one too high",
        "Three $10 items cost $31.",
        "@bugbot fix",
    )
    .await?;
    let record = wait_status(&ctx, &job, "succeeded", 90).await?;
    ensure!(
        record["attempts"].as_u64() >= Some(2),
        "the lost answers made it retry: {record}"
    );
    let state = ctx.sandbox_state().await?;
    ensure_eq!(
        state["faults"].as_array().map_or(0, Vec::len),
        0,
        "every fault fired: {}",
        state["faults"]
    );
    no_violations(&state)?;
    one_of_each(&ctx, &state, &job, number)?;
    let url = issue_url(&ctx, number);
    let attachments = state["linear"]["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["url"] == url.as_str())
        .count();
    ensure_eq!(attachments, 1, "the issue attached once");
    Ok(())
}

/// A channel post whose answer was lost (the interaction token expired, so bugbot posts in the
/// thread) is sent again with the same nonce: Discord returns the first message, no second one.
pub async fn a_lost_discord_post_is_not_posted_twice(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "discord", "method": "POST", "path_suffix": "/messages",
                "status": 502, "lose_answer": true}),
    )
    .await?;
    let (job, _) = contextualize_with(&ctx, &thread, true).await?;
    wait_status(&ctx, &job, "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(
        posted_in(&state, &thread.channel).len(),
        1,
        "one message in the thread"
    );
    Ok(())
}

/// GitHub's secondary rate limit (a 403, not a 429) is waited out, and the job finishes.
pub async fn githubs_secondary_rate_limit_is_waited_out(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "github", "count": 2, "status": 403, "retry_after": 1,
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
    )
    .await?;
    let (_, job) = member_comments_on_a_new_issue(
        &ctx,
        "Cart total wrong",
        "Three items cost $40 instead of $30.",
        "@bugbot contextualize",
    )
    .await?;
    let record = wait_status(&ctx, &job, "succeeded", 60).await?;
    let waited = record["events"].as_array().into_iter().flatten().any(|e| {
        e["step"] == "retrying"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("rate limited"))
    });
    ensure!(waited, "the timeline shows the wait: {record}");
    Ok(())
}

/// An outage longer than a five-delivery budget (five failed calls in a row) is outlived: the job
/// keeps retrying within its give-up time and finishes.
pub async fn an_outage_longer_than_a_few_retries_is_outlived(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "linear", "count": 5, "status": 503}),
    )
    .await?;
    let (job, _) = contextualize_with(&ctx, &thread, false).await?;
    let record = wait_status(&ctx, &job, "succeeded", 60).await?;
    ensure!(
        record["attempts"].as_u64() >= Some(6),
        "it took more than five deliveries: {record}"
    );
    let told = record["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["step"] == "retrying")
        .count();
    ensure!(told >= 5, "{record}");
    let state = ctx.sandbox_state().await?;
    let waiting: Vec<&str> = state["discord"]["answer_edits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"].as_str())
        .filter(|c| c.contains("Linear is unavailable") && c.contains("try again"))
        .collect();
    ensure!(
        !waiting.is_empty(),
        "the requester was told what bugbot waits for"
    );
    let (issues, comments) = linear_for(&state, &thread.url);
    ensure_eq!((issues.len(), comments.len()), (1, 1));
    Ok(())
}

/// The queue is down for a while: jobs admitted meanwhile wait in the admission ledger's outbox,
/// none is lost, and all run once it is back.
pub async fn a_queue_outage_delays_jobs_and_loses_none(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    // The ledger counts the outage from when it handles the call, so it lasts at least until
    // six seconds after the call is sent; the jobs are looked at well inside that.
    let sent = tokio::time::Instant::now();
    let a = ctx.admin_post("/v1/dev/queue-outage?seconds=6").await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let a = ctx.admin_post("/v1/selftest").await?;
        ensure_eq!(a.status, 202, "admitted during the outage: {}", a.text);
        jobs.push(a.json["job_id"].as_str().unwrap_or_default().to_owned());
    }
    tokio::time::sleep_until(sent + std::time::Duration::from_secs(3)).await;
    for job in &jobs {
        let r = ctx.admin_get(&format!("/v1/jobs/{job}")).await?;
        ensure_eq!(
            r.json["status"],
            "queued",
            "still waiting during the outage: {}",
            r.text
        );
    }
    for job in &jobs {
        wait_status(&ctx, job, "succeeded", 40).await?;
    }
    Ok(())
}

/// A message the queue refuses (over its size limit) is set aside after a few tries — listed with
/// the dead jobs, not replayable — and the jobs admitted after it still run.
pub async fn a_poison_outbox_message_does_not_hold_up_later_jobs(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let a = ctx.admin_post("/v1/dev/poison-outbox").await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    let poison = a.json["job_id"].as_str().unwrap_or_default().to_owned();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        // One at a time, so the poison shares a batch with a good message each round.
        let a = ctx.admin_post("/v1/selftest").await?;
        ensure_eq!(a.status, 202, "{}", a.text);
        let job = a.json["job_id"].as_str().unwrap_or_default().to_owned();
        wait_status(&ctx, &job, "succeeded", 40).await?;
        jobs.push(job);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let dlq = ctx.admin_get("/v1/dlq").await?;
        if let Some(entry) = dlq.json["dead"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["id"] == poison.as_str())
        {
            ensure_eq!(entry["replayable"], false, "{entry}");
            ensure!(
                entry["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("never reached the queue")),
                "{entry}"
            );
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the poison message was never set aside: {}",
            dlq.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Later jobs keep flowing.
    let a = ctx.admin_post("/v1/selftest").await?;
    let job = a.json["job_id"].as_str().unwrap_or_default().to_owned();
    wait_status(&ctx, &job, "succeeded", 20).await?;
    Ok(())
}
