//! contextualize end to end: a signed request becomes one Linear issue with the thread attached, one
//! context packet comment and an answer where it was asked — also when Linear fails on the way, and
//! through the dead-letter queue and a replay.

use crate::context::{E2e, answers_for, no_violations};
use crate::ensure_eq;
use crate::gateway::{fresh_id, member_comments_on_a_new_issue};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A Discord thread with a conversation, seeded in the sandbox.
pub(crate) struct Thread {
    pub(crate) channel: String,
    pub(crate) url: String,
    session: String,
}

pub(crate) async fn thread_with_report(ctx: &E2e) -> Result<Thread> {
    let channel = fresh_id();
    let session = format!("0193-sess-{channel}");
    let email = format!("jane-{channel}@acme.io");
    ctx.sandbox_post(
        &format!("/_sandbox/discord/channels/{channel}/messages"),
        &json!([
            {"author_id": "1200000000000000001", "username": "jane", "global_name": "Jane Doe",
             "content": format!("Checkout total is wrong with 3+ items. I'm {email}")},
            {"author_id": "1200000000000000002", "username": "sam",
             "content": format!("Here is her session: https://us.posthog.com/project/4242/replay/{session}")},
        ]),
    )
    .await?;
    ctx.sandbox_post(
        "/_sandbox/posthog/seed",
        &json!({
            "persons": [{"email": email, "distinct_id": format!("d-{channel}")}],
            "recordings": [{"id": session, "distinct_id": format!("d-{channel}"),
                            "start_time": "2026-11-20T09:50:00Z", "duration": 185.0,
                            "console_errors": 3, "clicks": 17, "start_url": "https://shop.acme.io/cart"}]
        }),
    )
    .await?;
    Ok(Thread {
        url: format!(
            "https://discord.com/channels/{}/{channel}",
            ctx.env.get("DISCORD_TEST_GUILD_ID")
        ),
        channel,
        session,
    })
}

/// Sends `/bugbot contextualize` in the thread, signed as Discord signs it; returns the job id.
pub(crate) async fn contextualize(ctx: &E2e, thread: &Thread) -> Result<(String, String)> {
    contextualize_with(ctx, thread, false).await
}

/// As [`contextualize`]; `expired` makes the sandbox refuse the interaction token as Discord does
/// after 15 minutes.
pub(crate) async fn contextualize_with(
    ctx: &E2e,
    thread: &Thread,
    expired: bool,
) -> Result<(String, String)> {
    let id = fresh_id();
    let token = format!("interaction-token-{}", fresh_id());
    ctx.sandbox_post(
        "/_sandbox/discord/interactions",
        &json!({"token": token, "interaction_id": id, "expired": expired}),
    )
    .await?;
    let interaction = json!({
        "id": id,
        "application_id": ctx.env.get("DISCORD_APPLICATION_ID"),
        "type": 2,
        "token": token,
        "version": 1,
        "guild_id": ctx.env.get("DISCORD_TEST_GUILD_ID"),
        "channel_id": thread.channel,
        "channel": {"id": thread.channel, "type": 11, "parent_id": ctx.env.get("DISCORD_TEST_CHANNEL_ID")},
        "member": {"user": {"id": "1200000000000000001", "username": "jane", "global_name": "Jane Doe"}, "roles": []},
        "data": {"id": "1100000000000000050", "name": "bugbot", "type": 1,
                 "options": [{"name": "contextualize", "type": 1,
                              "options": [{"name": "details", "type": 3, "value": "Cart total is wrong for 3 or more items"}]}]}
    });
    let a = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(a.status, 200, "{}", a.text);
    ensure_eq!(a.json["type"], 5, "a deferred answer");
    Ok((format!("dc-{id}"), id))
}

pub(crate) async fn wait_status(ctx: &E2e, job: &str, status: &str, secs: u64) -> Result<Value> {
    ctx.wait_for_job(job, Duration::from_secs(secs), |r| {
        r["status"] == status || (r["status"] == "failed" && status != "failed")
    })
    .await
    .and_then(|r| {
        ensure!(
            r["status"] == status,
            "job {job} ended {}: {r}",
            r["status"]
        );
        Ok(r)
    })
}

/// What bugbot posted with its bot token in a channel or thread.
pub(crate) fn posted_in<'a>(state: &'a Value, channel: &str) -> Vec<&'a Value> {
    state["discord"]["posted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["channel_id"] == channel)
        .collect()
}

/// The Linear issues a thread URL is attached to, and the comments on them.
pub(crate) fn linear_for(state: &Value, url: &str) -> (Vec<Value>, Vec<Value>) {
    let issue_ids: Vec<&str> = state["linear"]["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["url"] == url)
        .filter_map(|a| a["issue_id"].as_str())
        .collect();
    let issues: Vec<Value> = state["linear"]["issues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            issue_ids.contains(&i["id"].as_str().unwrap_or_default())
                || i["description"].as_str().is_some_and(|d| d.contains(url))
        })
        .cloned()
        .collect();
    let ids: Vec<&str> = issues.iter().filter_map(|i| i["id"].as_str()).collect();
    let comments = state["linear"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| ids.contains(&c["issue_id"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    (issues, comments)
}

pub async fn contextualize_in_a_thread_makes_one_issue_one_packet_and_answers(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    let (job, interaction) = contextualize(&ctx, &thread).await?;
    let record = wait_status(&ctx, &job, "succeeded", 60).await?;

    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (issues, comments) = linear_for(&state, &thread.url);
    ensure_eq!(
        issues.len(),
        1,
        "one Linear issue for the thread: {issues:?}"
    );
    ensure_eq!(comments.len(), 1, "one context packet");
    let packet = comments[0]["body"].as_str().unwrap_or_default();
    for needle in [
        thread.session.as_str(),
        "Jane Doe",
        "3m 05s",
        "Conversation",
        "sam",
    ] {
        ensure!(
            packet.contains(needle),
            "the packet lacks {needle:?}:\n{packet}"
        );
    }
    let identifier = issues[0]["identifier"].as_str().unwrap_or_default();
    let answers = answers_for(&state, &interaction);
    ensure!(
        answers
            .first()
            .is_some_and(|a| a.contains("Gathering context")),
        "progress first: {answers:?}"
    );
    ensure!(
        answers
            .last()
            .is_some_and(|a| a.contains(identifier) && a.contains("linear.app")),
        "the answer links the issue: {answers:?}"
    );
    ensure!(
        record["links"].to_string().contains(identifier),
        "the job record links the issue: {record}"
    );

    // The same thread asks again: the same issue, a second packet, no second issue.
    let (job2, _) = contextualize(&ctx, &thread).await?;
    wait_status(&ctx, &job2, "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    let (issues, comments) = linear_for(&state, &thread.url);
    ensure_eq!(issues.len(), 1, "still one issue: {issues:?}");
    ensure_eq!(comments.len(), 2);
    ensure_eq!(
        ctx.consumer_receipts(&job),
        1,
        "one delivery of the first job"
    );
    Ok(())
}

pub async fn an_expired_interaction_token_answers_in_the_channel(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    let (job, interaction) = contextualize_with(&ctx, &thread, true).await?;
    wait_status(&ctx, &job, "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (issues, _) = linear_for(&state, &thread.url);
    let identifier = issues
        .first()
        .and_then(|i| i["identifier"].as_str())
        .unwrap_or("?");
    ensure!(
        answers_for(&state, &interaction).is_empty(),
        "the expired token was refused"
    );
    let posted = posted_in(&state, &thread.channel);
    ensure_eq!(
        posted.len(),
        1,
        "one message in the thread instead: {posted:?}"
    );
    ensure!(
        posted[0]["content"]
            .as_str()
            .is_some_and(|c| c.contains(identifier)),
        "it links the issue: {}",
        posted[0]
    );
    Ok(())
}

pub async fn linear_failing_twice_still_makes_one_issue_and_one_comment(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "linear", "count": 2, "status": 500}),
    )
    .await?;
    let (job, _) = contextualize(&ctx, &thread).await?;
    let record = wait_status(&ctx, &job, "succeeded", 40).await?;
    ensure!(
        record["attempts"].as_u64().unwrap_or(0) >= 2,
        "the job was retried: {record}"
    );
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (issues, comments) = linear_for(&state, &thread.url);
    ensure_eq!(issues.len(), 1);
    ensure_eq!(comments.len(), 1);
    Ok(())
}

pub async fn linear_429_retry_waits_for_retry_after(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "linear", "count": 1, "status": 429, "retry_after": 2}),
    )
    .await?;
    let (job, _) = contextualize(&ctx, &thread).await?;
    wait_status(&ctx, &job, "succeeded", 40).await?;
    let state = ctx.sandbox_state().await?;
    let linear = state["requests"]["linear"]
        .as_array()
        .context("linear requests")?;
    let limited = linear
        .iter()
        .rposition(|r| r["status"] == 429 && r["faulted"] == true)
        .context("the 429 was answered")?;
    let next = linear.get(limited + 1).context("Linear was called again")?;
    let waited =
        next["at_ms"].as_u64().unwrap_or(0) - linear[limited]["at_ms"].as_u64().unwrap_or(0);
    ensure!(
        waited >= 2000,
        "the retry came {waited} ms after a 429 with Retry-After: 2"
    );
    Ok(())
}

/// A contextualize job that Linear, down for good (503 on every call), drives into the dead-letter
/// queue; the outage is over when this returns. Returns the thread, the job, the interaction id and
/// the job's record.
pub(crate) async fn killed_by_a_linear_outage(
    ctx: &E2e,
) -> Result<(Thread, String, String, Value)> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(ctx).await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "linear", "count": 1000, "status": 503}),
    )
    .await?;
    let (job, interaction) = contextualize(ctx, &thread).await?;
    let outcome = wait_status(ctx, &job, "dead", 90).await;
    ctx.clear_faults().await?;
    Ok((thread, job, interaction, outcome?))
}

pub async fn linear_down_for_good_ends_in_the_dlq_and_replay_completes_once(
    ctx: Arc<E2e>,
) -> Result<()> {
    let (thread, job, interaction, record) = killed_by_a_linear_outage(&ctx).await?;
    ensure!(
        record["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("linear")),
        "the record says what failed: {record}"
    );

    let dlq = ctx.admin_get("/v1/dlq").await?;
    ensure_eq!(dlq.status, 200, "{}", dlq.text);
    let entry = dlq.json["dead"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["id"] == job.as_str())
        .cloned()
        .with_context(|| format!("{job} is not listed: {}", dlq.text))?;
    ensure_eq!(entry["replayable"], true);
    ensure!(entry["attempts"].as_u64().unwrap_or(0) >= 2, "{entry}");
    ensure!(
        !dlq.text.contains("interaction-token"),
        "the listing leaks a token"
    );

    let state = ctx.sandbox_state().await?;
    let told = answers_for(&state, &interaction);
    ensure!(
        told.last()
            .is_some_and(|t| t.contains("gave up") && t.contains(&job)),
        "the requester is told, with the job id: {told:?}"
    );

    // Linear is back: the replay completes the job, once.
    let replay = ctx.admin_post(&format!("/v1/dlq/{job}/replay")).await?;
    ensure_eq!(replay.status, 202, "{}", replay.text);
    wait_status(&ctx, &job, "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (issues, comments) = linear_for(&state, &thread.url);
    ensure_eq!(issues.len(), 1);
    ensure_eq!(comments.len(), 1);
    let dlq = ctx.admin_get("/v1/dlq").await?;
    ensure!(
        !dlq.text.contains(&job),
        "replayed jobs leave the DLQ: {}",
        dlq.text
    );
    ensure_eq!(
        ctx.admin_post(&format!("/v1/dlq/{job}/replay"))
            .await?
            .status,
        404,
        "a second replay finds nothing"
    );
    Ok(())
}

pub async fn github_contextualize_comments_on_the_issue(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let (number, job) = member_comments_on_a_new_issue(
        &ctx,
        "Cart total wrong",
        "Three items cost $40 instead of $30. Reporter: sam@acme.io",
        "@bugbot contextualize",
    )
    .await?;
    wait_status(&ctx, &job, "succeeded", 60).await?;

    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (issues, comments) = linear_for(&state, &crate::gateway::issue_url(&ctx, number));
    ensure_eq!(issues.len(), 1);
    ensure_eq!(comments.len(), 1);
    let packet = comments[0]["body"].as_str().unwrap_or_default();
    ensure!(
        packet.contains("Three items cost $40"),
        "the issue body is in the packet:\n{packet}"
    );
    let status: Vec<&Value> = state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["number"] == number)
        .collect();
    ensure_eq!(
        status.len(),
        1,
        "one status comment, edited in place: {status:?}"
    );
    let identifier = issues[0]["identifier"].as_str().unwrap_or_default();
    ensure!(
        status[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains(identifier)),
        "the status comment links the Linear issue: {}",
        status[0]
    );
    Ok(())
}

pub async fn malformed_queue_messages_are_acked_and_recorded(ctx: Arc<E2e>) -> Result<()> {
    let before = ctx.admin_get("/v1/dlq?limit=100").await?;
    let count = |a: &crate::context::Answer| {
        a.json["dead"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|x| x["replayable"] == false).count())
    };
    let n0 = count(&before);
    for body in [json!({"hello": "world"}), json!({"v": 99, "id": "dc-1"})] {
        ctx.enqueue_raw(&body).await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = ctx.admin_get("/v1/dlq?limit=100").await?;
        if count(&now) >= n0 + 2 {
            ensure!(
                now.text.contains("unsupported job message version 99"),
                "{}",
                now.text
            );
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "not recorded: {}",
            now.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Acked, not retried: each was seen once, and stays seen once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(ctx.log_dir.join("workers.log")).unwrap_or_default();
    let seen = log.matches("malformed queue message").count();
    ensure_eq!(seen, 2, "each malformed message was handled once");
    Ok(())
}

pub async fn admin_lists_jobs_newest_first(ctx: Arc<E2e>) -> Result<()> {
    let first = ctx.admin_post("/v1/selftest").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = ctx.admin_post("/v1/selftest").await?;
    let (a, b) = (first.json["job_id"].clone(), second.json["job_id"].clone());
    ctx.wait_for_job(
        b.as_str().unwrap_or_default(),
        Duration::from_secs(20),
        |r| r["status"] == "succeeded",
    )
    .await?;
    let list = ctx.admin_get("/v1/jobs?limit=100").await?;
    ensure_eq!(list.status, 200);
    let ids: Vec<&Value> = list.json["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| &j["id"])
        .collect();
    let pa = ids.iter().position(|i| **i == a).context("first listed")?;
    let pb = ids.iter().position(|i| **i == b).context("second listed")?;
    ensure!(pb < pa, "newest first: {ids:?}");
    let unauthorized = ctx.http.get(ctx.gateway("/v1/jobs")).send().await?;
    ensure_eq!(unauthorized.status().as_u16(), 401);

    // The command-line tool prints the same for humans.
    let b = b.as_str().unwrap_or_default();
    for args in [vec!["list"], vec!["show", b]] {
        let out = std::process::Command::new(bugbot_tests::stack::workspace_binary("jobs")?)
            .args([
                "--url",
                &ctx.env.get("GATEWAY_URL"),
                "--token",
                &ctx.env.get("ADMIN_TOKEN"),
            ])
            .args(&args)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "jobs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            text.contains(b) && text.contains("succeeded"),
            "jobs {args:?}:\n{text}"
        );
    }
    Ok(())
}

pub async fn mention_jobs_reply_to_the_mention_and_edit_that_reply(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    let mention = ctx
        .sandbox_post(
            &format!("/_sandbox/discord/channels/{}/messages", thread.channel),
            &json!([{"author_id": "1200000000000000002", "username": "sam",
                     "content": format!("<@{}> contextualize", ctx.env.get("DISCORD_APPLICATION_ID"))}]),
        )
        .await?;
    let message_id = mention.json[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let job = format!("dm-{message_id}");
    // The job the Gateway connection makes of that mention (shared::discord::decide_mention).
    let message = json!({
        "v": 1, "id": job, "command": "contextualize",
        "requester": {"id": "1200000000000000002", "name": "sam"},
        "source": {"kind": "discord_mention", "guild_id": ctx.env.get("DISCORD_TEST_GUILD_ID"),
                   "channel_id": thread.channel, "message_id": message_id},
        "report": {"text": ""}, "references": {}, "enqueued_at_ms": 1
    });
    ctx.enqueue_raw(&message).await?;
    wait_status(&ctx, &job, "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let replies: Vec<&Value> = state["discord"]["posted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["channel_id"] == thread.channel.as_str())
        .collect();
    ensure_eq!(replies.len(), 1, "one reply, edited in place: {replies:?}");
    ensure_eq!(
        replies[0]["message_reference"]["message_id"],
        message_id.as_str()
    );
    ensure!(
        replies[0]["edits"].as_u64().unwrap_or(0) >= 1,
        "{}",
        replies[0]
    );
    let (issues, comments) = linear_for(&state, &thread.url);
    ensure_eq!(issues.len(), 1);
    ensure_eq!(comments.len(), 1);
    let identifier = issues[0]["identifier"].as_str().unwrap_or("?");
    ensure!(
        replies[0]["content"]
            .as_str()
            .is_some_and(|c| c.contains(identifier)),
        "the reply ends with the link: {}",
        replies[0]
    );
    Ok(())
}

/// Seeds a new issue (`issue`: title, body, user, comments), asks `@bugbot contextualize` on it as
/// a member, and answers the context packet the job posted on Linear.
async fn packet_for_a_new_issue(ctx: &E2e, issue: Value) -> Result<String> {
    ctx.wait_idle().await?;
    let (number, delivery, payload) =
        crate::gateway::issue_with_a_member_comment(ctx, issue, "@bugbot contextualize").await?;
    let a = ctx
        .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    wait_status(ctx, &format!("gh-{delivery}"), "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (_, comments) = linear_for(&state, &crate::gateway::issue_url(ctx, number));
    Ok(comments
        .first()
        .and_then(|c| c["body"].as_str())
        .unwrap_or_default()
        .to_owned())
}

/// GitHub answers a deleted account's user as `null`: such an issue and its comments still make
/// the conversation, their author shown as GitHub shows it, "ghost".
pub async fn deleted_users_are_shown_as_ghost(ctx: Arc<E2e>) -> Result<()> {
    let packet = packet_for_a_new_issue(
        &ctx,
        json!({"title": "Totals are off", "body": "Three items cost $40.", "user": null,
               "comments": [{"user": null, "body": "Same here with four items."},
                            {"user": "sam", "body": "Confirmed on mobile."}]}),
    )
    .await?;
    for text in [
        "Three items cost $40.",
        "Same here with four items.",
        "Confirmed on mobile.",
        "ghost",
    ] {
        ensure!(packet.contains(text), "the packet has {text:?}:\n{packet}");
    }
    Ok(())
}

/// A long issue's packet holds its latest comments (GitHub lists them oldest first).
pub async fn a_long_issue_keeps_its_latest_comments(ctx: Arc<E2e>) -> Result<()> {
    let comments: Vec<Value> = (1..=60)
        .map(|n| json!({"user": "sam", "body": format!("note #{n:03}")}))
        .collect();
    let packet = packet_for_a_new_issue(
        &ctx,
        json!({"title": "Totals drift", "body": "Totals drift over time.", "user": "octocat",
               "comments": comments}),
    )
    .await?;
    ensure!(
        packet.contains("note #060"),
        "the latest comment is in:\n{packet}"
    );
    // The packet quotes 50 messages: the issue itself and its 49 latest comments.
    ensure!(
        packet.contains("Totals drift over time.") && packet.contains("note #012"),
        "the issue and the latest comments are in:\n{packet}"
    );
    ensure!(
        !packet.contains("note #010"),
        "older ones are not:\n{packet}"
    );
    Ok(())
}

/// PostHog matches e-mail exactly and lists only a date window (three days unless told): the
/// reporter written `Jane.…@Acme.io` is found as written, a colleague stored in lowercase is found
/// after the lowercase retry, a session ten days before the report is listed and one forty days
/// before is not.
pub async fn posthog_finds_reporters_as_written_within_the_reports_window(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let channel = fresh_id();
    let as_written = format!("Jane.{channel}@Acme.io");
    let colleague = format!("Sam.{channel}@Acme.io");
    ctx.sandbox_post(
        &format!("/_sandbox/discord/channels/{channel}/messages"),
        &json!([{"author_id": "1200000000000000001", "username": "jane",
                 "content": format!("Checkout is broken for me ({as_written}) and for {colleague}.")}]),
    )
    .await?;
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let days_ago = |d: u64| bugbot_shared::github_api::iso_seconds(now_ms - d * 24 * 3600 * 1000);
    let (recent, old, colleagues) = (
        format!("0193-recent-{channel}"),
        format!("0193-old-{channel}"),
        format!("0193-colleague-{channel}"),
    );
    ctx.sandbox_post(
        "/_sandbox/posthog/seed",
        &json!({
            "persons": [{"email": as_written, "distinct_id": format!("j-{channel}")},
                        {"email": colleague.to_lowercase(), "distinct_id": format!("s-{channel}")}],
            "recordings": [
                {"id": recent, "distinct_id": format!("j-{channel}"), "start_time": days_ago(10), "duration": 61.0},
                {"id": old, "distinct_id": format!("j-{channel}"), "start_time": days_ago(40), "duration": 62.0},
                {"id": colleagues, "distinct_id": format!("s-{channel}"), "start_time": days_ago(1), "duration": 63.0}
            ]
        }),
    )
    .await?;
    let thread = Thread {
        url: format!(
            "https://discord.com/channels/{}/{channel}",
            ctx.env.get("DISCORD_TEST_GUILD_ID")
        ),
        channel,
        session: String::new(),
    };
    let (job, _) = contextualize(&ctx, &thread).await?;
    wait_status(&ctx, &job, "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let (_, comments) = linear_for(&state, &thread.url);
    ensure_eq!(comments.len(), 1, "one context packet");
    let packet = comments[0]["body"].as_str().unwrap_or_default();
    for found in [&recent, &colleagues] {
        ensure!(
            packet.contains(found.as_str()),
            "{found} is in the packet:\n{packet}"
        );
    }
    ensure!(
        !packet.contains(old.as_str()),
        "a session older than the 30-day window is left out:\n{packet}"
    );
    let lookups: Vec<&str> = state["requests"]["posthog"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["path"].as_str())
        .filter(|q| q.contains("email="))
        .collect();
    ensure!(
        lookups.iter().any(|q| q.contains("Jane.")),
        "the address was looked up as written: {lookups:?}"
    );
    Ok(())
}

/// Without the Message Content intent Discord hands the bot messages with empty text; the packet
/// says so (and how to fix it) instead of quoting an empty conversation.
pub async fn without_the_message_content_intent_the_packet_says_so(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let thread = thread_with_report(&ctx).await?;
    crate::mentions::message_content_intent(&ctx, false).await?;
    let outcome = async {
        let (job, _) = contextualize(&ctx, &thread).await?;
        wait_status(&ctx, &job, "succeeded", 60).await
    }
    .await;
    crate::mentions::message_content_intent(&ctx, true).await?;
    outcome?;
    let state = ctx.sandbox_state().await?;
    let (_, comments) = linear_for(&state, &thread.url);
    ensure_eq!(comments.len(), 1, "one context packet");
    let packet = comments[0]["body"].as_str().unwrap_or_default();
    ensure!(
        packet.contains("Message Content intent is not enabled"),
        "the packet names the missing intent:\n{packet}"
    );
    Ok(())
}
