//! The gateway: Discord interactions and GitHub webhooks become verified, authorized, deduplicated
//! jobs on the queue; bad input gets a clear 4xx.

use crate::context::E2e;
use crate::ensure_eq;
use anyhow::{Context, Result, ensure};
use bugbot_tests::fixtures::github_webhook_examples;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A unique snowflake-like id for each interaction a case sends.
pub(crate) fn fresh_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_000_000)
        .unwrap_or_default();
    format!(
        "13{:012}{:04}",
        nanos,
        N.fetch_add(1, Ordering::Relaxed) % 10_000
    )
}

/// An issue number no other case of this run uses (a number used twice would find the earlier
/// case's Linear issue and its packet).
pub(crate) fn fresh_issue_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(7001);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn slash(ctx: &E2e, sub: &str, user: &str, roles: &[String], details: &str) -> Value {
    json!({
        "id": fresh_id(),
        "application_id": ctx.env.get("DISCORD_APPLICATION_ID"),
        "type": 2,
        "token": format!("interaction-token-{}", fresh_id()),
        "version": 1,
        "guild_id": ctx.env.get("DISCORD_TEST_GUILD_ID"),
        "channel_id": ctx.env.get("DISCORD_TEST_CHANNEL_ID"),
        "channel": {"id": ctx.env.get("DISCORD_TEST_CHANNEL_ID"), "type": 11, "parent_id": "1100000000000000099"},
        "member": {"user": {"id": user, "username": "jane", "global_name": "Jane"}, "roles": roles},
        "data": {"id": "1100000000000000050", "name": "bugbot", "type": 1,
                 "options": [{"name": sub, "type": 1, "options": [{"name": "details", "type": 3, "value": details}]}]}
    })
}

/// The id of the job a slash command interaction asks for (`dc-` and the interaction's id).
fn job_of(interaction: &Value) -> String {
    format!("dc-{}", interaction["id"].as_str().unwrap_or_default())
}

/// Waits until the consumer has received the job, then a little more (a duplicate would be on the
/// queue right behind it), and counts how often it received it.
async fn deliveries(ctx: &E2e, job: &str) -> Result<usize> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ctx.consumer_receipts(job) == 0 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the consumer never received {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(ctx.consumer_receipts(job))
}

pub async fn discord_slash_fix_gets_a_deferred_answer_and_one_job(ctx: Arc<E2e>) -> Result<()> {
    let roles = vec![ctx.env.get("DISCORD_TEST_FIX_ROLE_ID")];
    let interaction = slash(
        &ctx,
        "fix",
        "1300000000000000001",
        &roles,
        "Checkout total is wrong, ENG-12",
    );
    let a = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(a.status, 200, "{}", a.text);
    ensure_eq!(a.json["type"], 5);

    let job = job_of(&interaction);
    let record = ctx.admin_get(&format!("/v1/jobs/{job}")).await?;
    ensure_eq!(
        record.status,
        200,
        "the record exists as soon as the answer did: {}",
        record.text
    );
    ensure_eq!(record.json["command"], "fix");
    ensure!(
        !record.text.contains("interaction-token"),
        "the record leaks the interaction token"
    );

    // Discord retries: the same interaction again gets the same answer and no second job.
    let again = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(again.json["type"], 5);
    ensure_eq!(deliveries(&ctx, &job).await?, 1);
    Ok(())
}

pub async fn discord_fix_without_the_role_is_refused_politely(ctx: Arc<E2e>) -> Result<()> {
    let interaction = slash(
        &ctx,
        "fix",
        "1300000000000000002",
        &["1100000000000000777".into()],
        "",
    );
    let a = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(a.status, 200);
    ensure_eq!(a.json["type"], 4);
    ensure_eq!(a.json["data"]["flags"], 64, "refusals are ephemeral");
    let text = a.json["data"]["content"].as_str().unwrap_or_default();
    ensure!(
        text.contains("role") && text.contains("fix"),
        "unclear refusal: {text}"
    );
    let job = job_of(&interaction);
    ensure_eq!(
        ctx.admin_get(&format!("/v1/jobs/{job}")).await?.status,
        404,
        "nothing enqueued"
    );

    // The same member may contextualize: that is open to everyone in the server.
    let ok = slash(&ctx, "contextualize", "1300000000000000002", &[], "");
    ensure_eq!(ctx.discord_interaction(&ok).await?.json["type"], 5);
    Ok(())
}

/// A slash command that cannot be admitted (the ledger down) is answered with what happened (not an
/// error status, which Discord shows as "This interaction failed" and never sends again); nothing
/// is recorded, and asking again once the ledger is back is admitted.
pub async fn discord_command_during_a_ledger_outage_is_answered_and_can_be_asked_again(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let back = ctx.ledger_outage(4).await?;
    let user = "1300000000000000004";
    let first = slash(&ctx, "contextualize", user, &[], "The cart total is wrong");
    let a = ctx.discord_interaction(&first).await?;
    ensure_eq!(a.status, 200, "{}", a.text);
    ensure_eq!(a.json["type"], 4, "{}", a.text);
    ensure_eq!(a.json["data"]["flags"], 64, "the answer is ephemeral");
    let text = a.json["data"]["content"].as_str().unwrap_or_default();
    ensure!(
        text.contains("could not confirm") && text.contains("ask again"),
        "the requester is told what to do: {text}"
    );
    ensure!(
        !text.contains("ledger is down") && !text.contains("dev/"),
        "no internal detail reaches Discord: {text}"
    );
    let job = job_of(&first);
    ensure_eq!(
        ctx.admin_get(&format!("/v1/jobs/{job}")).await?.status,
        404,
        "nothing was recorded"
    );

    tokio::time::sleep_until(back.into()).await;
    let again = slash(&ctx, "contextualize", user, &[], "The cart total is wrong");
    let b = ctx.discord_interaction(&again).await?;
    ensure_eq!(b.json["type"], 5, "asked again, it is taken: {}", b.text);
    let job = job_of(&again);
    ensure_eq!(ctx.admin_get(&format!("/v1/jobs/{job}")).await?.status, 200);
    Ok(())
}

pub async fn discord_unknown_command_gets_an_ephemeral_answer(ctx: Arc<E2e>) -> Result<()> {
    let mut interaction = slash(&ctx, "fix", "1300000000000000003", &[], "");
    interaction["data"]["name"] = "weather".into();
    let a = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(a.status, 200);
    ensure_eq!(a.json["type"], 4);
    ensure_eq!(a.json["data"]["flags"], 64);
    let mut component = slash(&ctx, "fix", "1300000000000000003", &[], "");
    component["type"] = 3.into();
    ensure_eq!(ctx.discord_interaction(&component).await?.json["type"], 4);
    Ok(())
}

pub async fn github_every_published_example_gets_a_2xx(ctx: Arc<E2e>) -> Result<()> {
    let examples = github_webhook_examples()?;
    ensure!(examples.len() > 300, "only {} examples", examples.len());
    let mut failures = Vec::new();
    for (i, (event, payload)) in examples.iter().enumerate() {
        let body = serde_json::to_vec(payload)?;
        let delivery = format!("e2e-example-{i}-{}", fresh_id());
        let a = ctx.github_delivery(event, &delivery, &body).await?;
        if !(200..300).contains(&a.status) {
            failures.push(format!("{event} #{i}: {} {}", a.status, a.text));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} examples failed:\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n")
    );
    Ok(())
}

pub async fn github_tampered_byte_is_401(ctx: Arc<E2e>) -> Result<()> {
    let (event, payload) = github_webhook_examples()?
        .into_iter()
        .find(|(e, _)| e == "issue_comment")
        .unwrap_or_default();
    let body = serde_json::to_vec(&payload)?;
    let sig = bugbot_tests::signing::github_signature(&ctx.env.get("GITHUB_WEBHOOK_SECRET"), &body);
    let mut tampered = body.clone();
    tampered[10] ^= 0x01;
    let a = ctx
        .github_raw(Some(&event), Some("e2e-tampered"), Some(&sig), tampered)
        .await?;
    ensure_eq!(a.status, 401, "{}", a.text);
    let wrong = bugbot_tests::signing::github_signature("not-the-secret", &body);
    ensure_eq!(
        ctx.github_raw(Some(&event), Some("e2e-t2"), Some(&wrong), body.clone())
            .await?
            .status,
        401
    );
    ensure_eq!(
        ctx.github_raw(Some(&event), Some("e2e-t3"), None, body.clone())
            .await?
            .status,
        401
    );
    ensure_eq!(
        ctx.github_raw(Some(&event), Some("e2e-t4"), Some(&sig), body)
            .await?
            .status
            / 100,
        2
    );
    Ok(())
}

fn member_comment(ctx: &E2e, association: &str) -> Result<Vec<u8>> {
    let (_, mut payload) = github_webhook_examples()?
        .into_iter()
        .find(|(e, p)| e == "issue_comment" && p["action"] == "created")
        .unwrap_or_default();
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    payload["repository"]["full_name"] = repo.clone().into();
    payload["comment"]["body"] = "Reproduced on staging. @bugbot fix".into();
    payload["comment"]["author_association"] = association.into();
    payload["issue"]["html_url"] = format!("https://github.com/{repo}/issues/1").into();
    Ok(serde_json::to_vec(&payload)?)
}

pub async fn github_member_comment_delivered_three_times_is_one_job(ctx: Arc<E2e>) -> Result<()> {
    let body = member_comment(&ctx, "MEMBER")?;
    let delivery = format!("8e1f0a2c-{}", fresh_id());
    for _ in 0..3 {
        let a = ctx
            .github_delivery("issue_comment", &delivery, &body)
            .await?;
        ensure_eq!(a.status, 202, "{}", a.text);
        ensure_eq!(a.json["job_id"], format!("gh-{delivery}"));
    }
    ensure_eq!(deliveries(&ctx, &format!("gh-{delivery}")).await?, 1);
    Ok(())
}

/// Webhooks arriving together: each gets its own answer, redeliveries racing each other still make
/// one job (the ledger decides one admission at a time), and nothing answers 5xx. Redeliveries
/// make the crowd (most answers are duplicates), so the consumer has only a few jobs to run.
pub async fn webhooks_arriving_together_are_each_answered_and_each_one_job(
    ctx: Arc<E2e>,
) -> Result<()> {
    const TRIGGERS: u64 = 6;
    const COPIES: usize = 12;
    let mut sends = tokio::task::JoinSet::new();
    let mut jobs = Vec::new();
    for n in 0..TRIGGERS {
        // A contextualize comment by its own member, delivered many times at once.
        let mut comment: Value = serde_json::from_slice(&member_comment(&ctx, "MEMBER")?)?;
        comment["comment"]["body"] = "Seen again today. @bugbot contextualize".into();
        comment["comment"]["user"]["id"] = (9_100_000 + n).into();
        comment["comment"]["user"]["login"] = format!("member{n}").into();
        let body = serde_json::to_vec(&comment)?;
        let delivery = format!("8e1f0a2e-{}", fresh_id());
        jobs.push(format!("gh-{delivery}"));
        for _ in 0..COPIES {
            let (ctx, body, delivery) = (Arc::clone(&ctx), body.clone(), delivery.clone());
            sends.spawn(async move {
                let a = ctx
                    .github_delivery("issue_comment", &delivery, &body)
                    .await?;
                anyhow::Ok((format!("gh-{delivery}"), a.status, a.json))
            });
        }
        // A /bugbot contextualize by its own member, sent many times at once.
        let interaction = slash(
            &ctx,
            "contextualize",
            &format!("13000000000000001{n:02}"),
            &[],
            "The export button does nothing",
        );
        let job = job_of(&interaction);
        jobs.push(job.clone());
        for _ in 0..COPIES {
            let (ctx, interaction, job) = (Arc::clone(&ctx), interaction.clone(), job.clone());
            sends.spawn(async move {
                let a = ctx.discord_interaction(&interaction).await?;
                anyhow::Ok((job, a.status, a.json))
            });
        }
    }
    let mut admitted = std::collections::HashMap::<String, usize>::new();
    while let Some(sent) = sends.join_next().await {
        let (job, status, json) = sent??;
        if job.starts_with("gh-") {
            ensure_eq!(status, 202, "{job}: {json}");
            ensure_eq!(json["job_id"], job.as_str());
            if json["duplicate"] != true {
                *admitted.entry(job).or_default() += 1;
            }
        } else {
            ensure_eq!(status, 200, "{job}: {json}");
            ensure_eq!(json["type"], 5, "{job}: {json}");
        }
    }
    // Every job reaches the consumer, then (a duplicate would be right behind it) exactly once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while jobs.iter().any(|job| ctx.consumer_receipts(job) == 0) {
        ensure!(
            std::time::Instant::now() < deadline,
            "jobs never received: {:?}",
            jobs.iter()
                .filter(|job| ctx.consumer_receipts(job) == 0)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for job in &jobs {
        if job.starts_with("gh-") {
            ensure_eq!(admitted.get(job).copied(), Some(1), "{job}: admitted once");
        }
        ensure_eq!(ctx.consumer_receipts(job), 1, "{job}: on the queue once");
    }
    Ok(())
}

/// Whether someone outside the trusted associations may ask is GitHub's to say: a private
/// organization member (CONTRIBUTOR, with write access) is served; a visitor (NONE, read access)
/// is told once per issue, politely, and nothing is done; GitHub's answer is cached.
pub async fn github_permission_decides_for_untrusted_associations_and_refusals_are_said_once(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let n = fresh_id();
    let (member, visitor) = (format!("private-member-{n}"), format!("visitor-{n}"));
    ctx.sandbox_post(
        "/_sandbox/github/permissions",
        &json!({ member.clone(): "write", visitor.clone(): "read" }),
    )
    .await?;
    let lookups = |state: &Value| state["github"]["permission_lookups"].as_u64().unwrap_or(0);
    let before = lookups(&ctx.sandbox_state().await?);

    let (number, delivery, mut payload) = member_comment_on_a_new_issue(
        &ctx,
        "Cart total wrong",
        "Three items cost $31.",
        "@bugbot contextualize",
    )
    .await?;
    let send_as = |payload: &mut Value, login: &str, association: &str, body: &str| {
        payload["comment"]["user"]["login"] = login.into();
        payload["comment"]["user"]["id"] = (9_000_000 + login.len() as u64).into();
        payload["comment"]["author_association"] = association.into();
        payload["comment"]["body"] = body.into();
    };
    send_as(
        &mut payload,
        &member,
        "CONTRIBUTOR",
        "@bugbot contextualize",
    );
    let a = ctx
        .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    crate::contextualize::wait_status(&ctx, &format!("gh-{delivery}"), "succeeded", 60).await?;

    let mut refused = Vec::new();
    for attempt in 0..2 {
        let delivery = format!("7b2e0a1d-{}", fresh_id());
        send_as(
            &mut payload,
            &visitor,
            "NONE",
            &format!("@bugbot fix please ({attempt})"),
        );
        let a = ctx
            .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
            .await?;
        ensure_eq!(a.status, 202, "{}", a.text);
        let job = format!("gh-{delivery}");
        crate::contextualize::wait_status(&ctx, &job, "refused", 60).await?;
        refused.push(job);
    }
    let state = ctx.sandbox_state().await?;
    crate::context::no_violations(&state)?;
    let told: Vec<&Value> = state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["number"] == number)
        .filter(|c| {
            c["body"]
                .as_str()
                .is_some_and(|b| b.contains(&format!("@{visitor}")))
        })
        .collect();
    ensure_eq!(told.len(), 1, "told once: {told:?}");
    ensure!(
        told[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("write access") && b.contains("`read`")),
        "a polite refusal that says why: {}",
        told[0]
    );
    ensure_eq!(
        lookups(&state) - before,
        2,
        "GitHub was asked once per person (the second refusal used the cached answer)"
    );
    ensure!(
        pulls_for(&state, &refused).is_empty(),
        "nothing was done for the visitor"
    );
    Ok(())
}

fn pulls_for(state: &Value, jobs: &[String]) -> Vec<Value> {
    jobs.iter()
        .flat_map(|j| crate::fix::pulls_of(state, j))
        .collect()
}

pub async fn bad_input_gets_clear_4xx_answers(ctx: Arc<E2e>) -> Result<()> {
    // Over 1 MiB: 413, before any signature work.
    let big = vec![b' '; 1024 * 1024 + 1];
    ensure_eq!(
        ctx.discord_raw(big.clone(), Some("00"), Some("1"))
            .await?
            .status,
        413
    );
    ensure_eq!(
        ctx.github_raw(Some("ping"), Some("x"), Some("sha256=00"), big)
            .await?
            .status,
        413
    );

    // Over 1 MiB without a Content-Length (chunked): 413 as well, and a chunked body within the
    // limit is read whole (a signed ping).
    let a = ctx
        .github_chunked(
            "ping",
            "sha256=00",
            &vec![b' '; 1024 * 1024 + 64 * 1024],
            64 * 1024,
        )
        .await?;
    ensure_eq!(a.status, 413, "{}", a.text);
    ensure!(a.json["error"].is_string(), "a 413 says why: {}", a.text);
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let sig = bugbot_tests::signing::github_signature(&ctx.env.get("GITHUB_WEBHOOK_SECRET"), ping);
    let a = ctx.github_chunked("ping", &sig, ping, 7).await?;
    ensure_eq!(a.status, 200, "{}", a.text);

    // Signed, but not JSON: 400.
    let not_json = b"{not json".to_vec();
    let ts = bugbot_tests::signing::unix_timestamp();
    let (sig, _) = bugbot_tests::signing::discord_headers(
        &ctx.env.get("DISCORD_TEST_SIGNING_SEED"),
        &ts,
        &not_json,
    );
    let a = ctx
        .discord_raw(not_json.clone(), Some(&sig), Some(&ts))
        .await?;
    ensure_eq!(a.status, 400, "{}", a.text);
    ensure!(a.json["error"].is_string(), "a 400 says why: {}", a.text);
    ensure_eq!(
        ctx.github_delivery("issue_comment", "bad-json", &not_json)
            .await?
            .status,
        400
    );

    // Signed JSON missing fields: 400.
    let a = ctx.discord_interaction(&json!({"type": 2})).await?;
    ensure_eq!(a.status, 400, "{}", a.text);
    ensure_eq!(
        ctx.github_delivery(
            "issue_comment",
            "missing-fields",
            b"{\"action\":\"created\"}"
        )
        .await?
        .status,
        400
    );

    // Signed, but no event header: 400.
    let body = b"{}".to_vec();
    let sig = bugbot_tests::signing::github_signature(&ctx.env.get("GITHUB_WEBHOOK_SECRET"), &body);
    ensure_eq!(
        ctx.github_raw(None, Some("d"), Some(&sig), body)
            .await?
            .status,
        400
    );

    // Unknown events are ignored with a 2xx.
    let a = ctx
        .github_delivery("sponsorship", "unknown-event", b"{\"action\":\"created\"}")
        .await?;
    ensure_eq!(a.status, 202);
    ensure!(a.json["ignored"].is_string());

    // Wrong method: 405 with Allow; unknown path: 404.
    let r = ctx.http.get(ctx.gateway("/github/webhook")).send().await?;
    ensure_eq!(r.status().as_u16(), 405);
    ensure_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    ensure_eq!(
        ctx.http
            .get(ctx.gateway("/nope"))
            .send()
            .await?
            .status()
            .as_u16(),
        404
    );
    ensure_eq!(
        ctx.http
            .delete(ctx.gateway("/health"))
            .send()
            .await?
            .status()
            .as_u16(),
        405
    );
    ensure_eq!(ctx.admin_get("/v1/jobs/not%20an%20id").await?.status, 400);
    Ok(())
}

pub async fn per_user_limit_stops_floods(ctx: Arc<E2e>) -> Result<()> {
    let limit: usize = ctx.env.get("JOBS_PER_USER_PER_HOUR").parse()?;
    let user = format!("14{}", &fresh_id()[2..]);
    for n in 0..limit {
        let a = ctx
            .discord_interaction(&slash(&ctx, "contextualize", &user, &[], ""))
            .await?;
        ensure_eq!(a.json["type"], 5, "job {n} of {limit}: {}", a.text);
    }
    let a = ctx
        .discord_interaction(&slash(&ctx, "contextualize", &user, &[], ""))
        .await?;
    ensure_eq!(a.json["type"], 4, "over the limit: {}", a.text);
    ensure_eq!(a.json["data"]["flags"], 64);
    ensure!(
        a.json["data"]["content"]
            .as_str()
            .unwrap_or("")
            .contains("last hour")
    );
    // Another user is not affected.
    let other = format!("15{}", &fresh_id()[2..]);
    ensure_eq!(
        ctx.discord_interaction(&slash(&ctx, "contextualize", &other, &[], ""))
            .await?
            .json["type"],
        5
    );
    Ok(())
}

/// An issue on the served repository (seeded in the sandbox's GitHub) and a MEMBER's comment on it,
/// delivered as GitHub delivers `issue_comment` from the App's installation. Returns the issue's
/// number and the job id.
pub(crate) async fn member_comments_on_a_new_issue(
    ctx: &E2e,
    title: &str,
    body: &str,
    comment: &str,
) -> Result<(u64, String)> {
    let (number, delivery, payload) =
        member_comment_on_a_new_issue(ctx, title, body, comment).await?;
    let a = ctx
        .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    Ok((number, format!("gh-{delivery}")))
}

/// A new issue on the sandbox and a member's comment on it, as GitHub would deliver it (not sent):
/// the issue number, the delivery id and the payload.
pub(crate) async fn member_comment_on_a_new_issue(
    ctx: &E2e,
    title: &str,
    body: &str,
    comment: &str,
) -> Result<(u64, String, Value)> {
    issue_with_a_member_comment(
        ctx,
        json!({"title": title, "body": body, "user": "octocat"}),
        comment,
    )
    .await
}

/// The web URL of issue `number` of the served repository.
pub(crate) fn issue_url(ctx: &E2e, number: u64) -> String {
    format!(
        "https://github.com/{}/issues/{number}",
        ctx.env.get("GITHUB_TEST_REPO")
    )
}

/// Seeds a new issue (its fields in `issue`: title, body, user, comments) and returns a member's
/// comment on it as GitHub would deliver it (not sent): the issue number, delivery id, payload.
pub(crate) async fn issue_with_a_member_comment(
    ctx: &E2e,
    issue: Value,
    comment: &str,
) -> Result<(u64, String, Value)> {
    let number = fresh_issue_number();
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    let title = issue["title"].as_str().unwrap_or_default().to_owned();
    let mut seeded = issue;
    seeded["repo"] = repo.clone().into();
    seeded["number"] = number.into();
    ctx.sandbox_post("/_sandbox/github/issues", &json!([seeded]))
        .await?;
    let (_, mut payload) = github_webhook_examples()?
        .into_iter()
        .find(|(e, p)| e == "issue_comment" && p["action"] == "created")
        .unwrap_or_default();
    payload["repository"]["full_name"] = repo.clone().into();
    payload["issue"]["number"] = number.into();
    payload["issue"]["title"] = title.into();
    payload["issue"]["html_url"] = issue_url(ctx, number).into();
    payload["comment"]["body"] = comment.into();
    payload["comment"]["author_association"] = "MEMBER".into();
    payload["installation"] =
        json!({"id": ctx.env.get("GITHUB_TEST_INSTALLATION_ID").parse::<u64>()?});
    let delivery = format!("9a1f0a2c-{}", fresh_id());
    Ok((number, delivery, payload))
}

/// A `bugbot:contextualize` label on a pull request works as on an issue (GitHub's published
/// `pull_request.labeled` delivery, sent by someone GitHub shows with write access).
pub async fn a_label_on_a_pull_request_asks_like_a_label_on_an_issue(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let (number, _, _) = member_comment_on_a_new_issue(
        &ctx,
        "Checkout rounds totals down",
        "A PR that shows the bug.",
        "",
    )
    .await?;
    let (_, mut payload) = github_webhook_examples()?
        .into_iter()
        .find(|(e, p)| e == "pull_request" && p["action"] == "labeled")
        .context("GitHub publishes a pull_request.labeled example")?;
    let labeler = format!("maintainer-{}", fresh_id());
    ctx.sandbox_post(
        "/_sandbox/github/permissions",
        &json!({ labeler.clone(): "maintain" }),
    )
    .await?;
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    payload["repository"]["full_name"] = repo.clone().into();
    payload["pull_request"]["number"] = number.into();
    payload["pull_request"]["html_url"] = format!("https://github.com/{repo}/pull/{number}").into();
    payload["label"]["name"] = "bugbot:contextualize".into();
    payload["sender"]["login"] = labeler.into();
    payload["sender"]["type"] = "User".into();
    payload["installation"] =
        json!({"id": ctx.env.get("GITHUB_TEST_INSTALLATION_ID").parse::<u64>()?});
    let delivery = format!("5c3e0a1d-{}", fresh_id());
    let a = ctx
        .github_delivery("pull_request", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    ensure!(a.json["job_id"].is_string(), "a job: {}", a.text);
    crate::contextualize::wait_status(&ctx, &format!("gh-{delivery}"), "succeeded", 60).await?;
    let state = ctx.sandbox_state().await?;
    crate::context::no_violations(&state)?;
    let answered = state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["number"] == number && c["body"].as_str().is_some_and(|b| b.contains("linear.app"))
        });
    ensure!(answered, "bugbot answered on the pull request");
    Ok(())
}
