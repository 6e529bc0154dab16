//! Steering a fix end to end: Stop and Retry with Discord's buttons (signed as Discord signs
//! them), a press by someone else refused; a run at its turn limit keeps its work in a draft pull
//! request, and `@bugbot continue` on GitHub finishes it on the same branch and marks it ready.

use crate::context::{E2e, answers_for, no_violations};
use crate::ensure_eq;
use crate::fix::{pulls_of, seed};
use crate::gateway::{fresh_id, member_comment_on_a_new_issue};
use anyhow::{Context, Result, ensure};
use bugbot_tests::fixtures::{CART_FIX, read_then_edit, web_app_files};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The edits of one interaction's answer that carried buttons: (content, custom ids).
fn buttons_of(state: &Value, interaction: &str) -> Vec<(String, Vec<String>)> {
    state["discord"]["answer_edits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["interaction"] == interaction)
        .map(|e| {
            let ids = e["components"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
                .filter_map(|b| b["custom_id"].as_str().map(str::to_owned))
                .collect();
            (e["content"].as_str().unwrap_or_default().to_owned(), ids)
        })
        .collect()
}

/// Waits until an edit of `interaction`'s answer shows the button `custom_id`.
async fn wait_for_button(ctx: &E2e, interaction: &str, custom_id: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let state = ctx.sandbox_state().await?;
        if buttons_of(&state, interaction)
            .iter()
            .any(|(_, ids)| ids.iter().any(|i| i == custom_id))
        {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no {custom_id} button appeared: {:?}",
            buttons_of(&state, interaction)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the model has been asked more than `before` times.
async fn wait_for_model(ctx: &E2e, before: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let asked = model_requests(&ctx.sandbox_state().await?);
        if asked > before {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the model was not asked within 60 s ({asked} requests)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A signed button press on the job's message by `user` (with or without the fix role); returns
/// the press's interaction id and Discord's answer.
async fn press(
    ctx: &E2e,
    thread: &str,
    custom_id: &str,
    (user, name): (&str, &str),
    fix_role: bool,
) -> Result<(String, Value)> {
    let id = fresh_id();
    let token = format!("press-token-{}", fresh_id());
    ctx.sandbox_post(
        "/_sandbox/discord/interactions",
        &json!({"token": token, "interaction_id": id}),
    )
    .await?;
    let roles = if fix_role {
        vec![ctx.env.get("DISCORD_TEST_FIX_ROLE_ID")]
    } else {
        vec![]
    };
    let interaction = json!({
        "id": id,
        "application_id": ctx.env.get("DISCORD_APPLICATION_ID"),
        "type": 3,
        "token": token,
        "version": 1,
        "guild_id": ctx.env.get("DISCORD_TEST_GUILD_ID"),
        "channel_id": thread,
        "channel": {"id": thread, "type": 11, "parent_id": ctx.env.get("DISCORD_TEST_CHANNEL_ID")},
        "member": {"user": {"id": user, "username": name}, "roles": roles},
        "message": {"id": fresh_id(), "channel_id": thread, "content": "working"},
        "data": {"custom_id": custom_id, "component_type": 2}
    });
    let a = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(a.status, 200, "{}", a.text);
    Ok((id, a.json))
}

/// The steps of a job's record, in order.
fn steps_of(record: &Value) -> Vec<&str> {
    record["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["step"].as_str())
        .collect()
}

/// A fix asked on Discord by `requester`, once its message shows Stop: the job, the interaction,
/// the thread, and how many model requests there were before it.
async fn fix_showing_stop(ctx: &E2e, requester: &str) -> Result<(String, String, String, usize)> {
    let models_before = model_requests(&ctx.sandbox_state().await?);
    let (job, interaction, asked) = crate::fix::discord_fix_by(ctx, requester).await?;
    let thread = asked["channel_id"].as_str().unwrap_or_default().to_owned();
    wait_for_button(ctx, &interaction, &format!("bugbot:stop:{job}")).await?;
    Ok((job, interaction, thread, models_before))
}

/// The requester (jane) presses the job's Stop: the pressed message says it is stopping, and the
/// job ends `stopped`.
async fn stop_as_jane(ctx: &E2e, thread: &str, job: &str, requester: &str) -> Result<()> {
    let stop = format!("bugbot:stop:{job}");
    let (_, answer) = press(ctx, thread, &stop, (requester, "jane"), false).await?;
    ensure_eq!(
        answer["type"],
        7,
        "the pressed message is updated: {answer}"
    );
    ensure!(
        answer["data"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Stopping")),
        "{answer}"
    );
    let record = ctx
        .wait_for_job(job, Duration::from_secs(60), |r| {
            r["status"] != "running" && r["status"] != "queued"
        })
        .await?;
    ensure_eq!(record["status"], "stopped", "{record}");
    Ok(())
}

/// The running executor's workspaces (the local executor process's work folder).
fn workspaces(ctx: &E2e) -> Vec<String> {
    std::fs::read_dir(ctx.state_dir.join("executor"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("bugbot-fix-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Stop from a fix's first message, while bugbot still gathers the report's context (Linear
/// answers late): the job ends stopped before Claude Code asks the model anything, the message
/// offers Retry and counts no cost, and the requester's budget is untouched.
pub async fn a_fix_stopped_before_it_reaches_the_model_costs_nothing(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "linear", "count": 1, "delay_ms": 8000}),
    )
    .await?;
    let requester = "1200000000000000003";
    let (job, interaction, thread, models_before) = fix_showing_stop(&ctx, requester).await?;
    let record = ctx.admin_get(&format!("/v1/jobs/{job}")).await?;
    let steps = steps_of(&record.json);
    ensure!(
        !steps.iter().any(|s| s.starts_with("executor")),
        "the Stop button shows before the run reaches the executor: {steps:?}"
    );

    stop_as_jane(&ctx, &thread, &job, requester).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(
        model_requests(&state),
        models_before,
        "the model was asked nothing"
    );
    ensure_eq!(pulls_of(&state, &job).len(), 0, "nothing was opened");
    let (said, ids) = buttons_of(&state, &interaction)
        .last()
        .cloned()
        .context("the message was edited")?;
    ensure!(
        said.contains("was stopped by jane") && !said.contains("up to $"),
        "the message says who stopped it and counts no cost: {said}"
    );
    ensure_eq!(ids, vec![format!("bugbot:retry:{job}")], "it offers Retry");
    let spend = ctx.admin_get("/v1/spend").await?;
    ensure_eq!(spend.status, 200, "{}", spend.text);
    let spent = spend.json["users"][format!("discord:{requester}")]
        .as_f64()
        .unwrap_or(0.0);
    ensure!(spent == 0.0, "nothing is counted: {}", spend.text);
    Ok(())
}

/// Stop mid-run from Discord: someone without the fix role is refused (only they see it); the
/// requester's press kills the run — nothing is pushed, the model is asked nothing more, the
/// message says who stopped it and offers Retry; Retry runs the job again (same job, same
/// history) and opens the pull request.
pub async fn a_fix_is_stopped_and_retried_with_discords_buttons(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    // A model that never finishes: it reads the same file again and again.
    seed(
        &ctx,
        json!({"repeat_last": true, "steps": [
            {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}}
        ]}),
    )
    .await?;
    let requester = "1200000000000000001";
    let (job, interaction, thread, models_before) = fix_showing_stop(&ctx, requester).await?;
    let stop = format!("bugbot:stop:{job}");
    // Stop shows from the fix's first message; a stop before Claude Code asks the model would
    // rightly cost nothing, and this case is about a running agent.
    wait_for_model(&ctx, models_before).await?;

    // Someone else, without the fix role: an ephemeral refusal, nothing happens.
    let (_, answer) = press(&ctx, &thread, &stop, ("1200000000000000077", "bob"), false).await?;
    ensure_eq!(answer["type"], 4, "{answer}");
    ensure_eq!(
        answer["data"]["flags"],
        64,
        "only the presser sees it: {answer}"
    );
    let text = answer["data"]["content"].as_str().unwrap_or_default();
    ensure!(
        text.contains("Only jane"),
        "the refusal says who may: {text}"
    );
    let record = ctx.admin_get(&format!("/v1/jobs/{job}")).await?;
    ensure_eq!(record.json["status"], "running", "{}", record.text);

    // The requester stops it.
    stop_as_jane(&ctx, &thread, &job, requester).await?;
    let models_at_stop = model_requests(&ctx.sandbox_state().await?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(
        model_requests(&state),
        models_at_stop,
        "the run is dead: the model is asked nothing more"
    );
    ensure_eq!(pulls_of(&state, &job).len(), 0, "nothing was opened");
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    let pushed: Vec<&String> = state["git"]["branches"][&repo]
        .as_object()
        .map(|b| b.keys().filter(|k| k.ends_with(&job)).collect())
        .unwrap_or_default();
    ensure!(pushed.is_empty(), "nothing was pushed: {pushed:?}");
    if std::env::var("BUGBOT_CONTAINERS").as_deref() != Ok("1") {
        ensure!(
            workspaces(&ctx).is_empty(),
            "the workspace is removed: {:?}",
            workspaces(&ctx)
        );
    }
    let (said, ids) = buttons_of(&state, &interaction)
        .last()
        .cloned()
        .context("the message was edited")?;
    ensure!(
        said.contains("was stopped by jane") && said.contains("Nothing was pushed"),
        "the message says who stopped it: {said}"
    );
    // Claude Code was running and reported no cost: the whole limit is counted, and said.
    ensure!(
        said.contains("model cost up to $"),
        "the message says the cost counted: {said}"
    );
    let retry = format!("bugbot:retry:{job}");
    ensure_eq!(ids, vec![retry.clone()], "it offers Retry");

    // In its Container, the stopped run's container is stopped a little later; a Retry pressed
    // after that starts it again (the runtime counts a container as running until told it exited).
    if bugbot_tests::stack::containers_wanted() {
        crate::container::job_container_gone(&job).await?;
    }

    // Retry: the same job runs again, and this time the model fixes the bug.
    ctx.sandbox_post(
        "/_sandbox/anthropic/scenario",
        &read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1),
    )
    .await?;
    let (pressed, answer) = press(&ctx, &thread, &retry, (requester, "jane"), false).await?;
    ensure_eq!(answer["type"], 7, "{answer}");
    let record = crate::contextualize::wait_status(&ctx, &job, "succeeded", 120).await?;
    let steps = steps_of(&record);
    ensure!(
        steps.contains(&"stopped") && steps.contains(&"retry"),
        "one history: {steps:?}"
    );
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(
        pulls_of(&state, &job).len(),
        1,
        "the retry opened the pull request"
    );
    let answers = answers_for(&state, &pressed);
    ensure!(
        answers.iter().any(|a| a.contains("Pull request opened")),
        "the retry answers on the same message, through the press: {answers:?}"
    );
    Ok(())
}

/// At its turn limit a run keeps its checked work: a draft pull request with the partial change
/// says what is left; `@bugbot continue` (by the requester) carries on on the same branch with
/// the previous run's summary, adds a commit, and marks the same pull request ready.
pub async fn a_fix_at_its_turn_limit_opens_a_draft_that_continue_finishes(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    let mut files = web_app_files();
    files.insert(
        ".github/bugbot.toml".into(),
        "[limits]\nmax_turns = 3\n".into(),
    );
    ctx.sandbox_post(
        "/_sandbox/git/repos",
        &json!({"repo": repo, "files": files}),
    )
    .await?;
    // Fixes the cart, then keeps reading: the turn limit stops it before it says it is done.
    ctx.sandbox_post(
        "/_sandbox/anthropic/scenario",
        &json!({"repeat_last": true, "steps": [
            {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}},
            {"tool_use": {"name": "Edit", "input": {"file_path": "src/cart.js", "old_string": CART_FIX.0, "new_string": CART_FIX.1}}},
            {"tool_use": {"name": "Read", "input": {"file_path": "src/checkout.js"}}}
        ]}),
    )
    .await?;
    let (number, delivery, mut payload) = member_comment_on_a_new_issue(
        &ctx,
        "Cart total is one too high",
        "Three $10 items cost $31 in the cart.",
        "@bugbot fix",
    )
    .await?;
    let a = ctx
        .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    let job = format!("gh-{delivery}");
    crate::contextualize::wait_status(&ctx, &job, "succeeded", 120).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let pulls = pulls_of(&state, &job);
    ensure_eq!(pulls.len(), 1, "{pulls:?}");
    let pr = &pulls[0];
    ensure_eq!(pr["draft"], true, "partial work is a draft: {pr}");
    let diff = pr["diff"].as_str().unwrap_or_default();
    ensure!(
        diff.contains(&format!(
            "+  return items.reduce((sum, item) => sum + {}",
            CART_FIX.1
        )),
        "the draft holds the partial change: {diff}"
    );
    ensure!(
        pr["body"]
            .as_str()
            .is_some_and(|b| b.contains("### What is left")),
        "the draft says what is left: {pr}"
    );
    let status = status_comment(&state, number)?;
    ensure!(
        status.contains("Draft pull request") && status.contains("`@bugbot continue`"),
        "the answer offers to continue: {status}"
    );
    let branch = pr["head"].as_str().unwrap_or_default().to_owned();

    // Continue: a fresh budget, on the same branch; this time it adds a test and finishes.
    ctx.sandbox_post(
        "/_sandbox/anthropic/scenario",
        &json!({"steps": [
            {"tool_use": {"name": "Write", "input": {"file_path": "src/cart.test.js", "content": "import { total } from './cart.js';\n"}}},
            {"text": "Added a test for the cart total; the fix is complete."}
        ]}),
    )
    .await?;
    let models_before = model_requests(&state);
    payload["comment"]["body"] = "@bugbot continue".into();
    payload["comment"]["id"] = (payload["comment"]["id"].as_u64().unwrap_or(1) + 1).into();
    let delivery = format!("9a1f0a2c-{}", fresh_id());
    let a = ctx
        .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    ensure_eq!(a.json["steer"], "queued", "{}", a.text);
    let record = ctx
        .wait_for_job(&job, Duration::from_secs(120), |r| {
            r["status"] == "failed"
                || r["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["step"] == "github.ready_for_review"))
                    && r["status"] == "succeeded"
        })
        .await?;
    ensure_eq!(record["status"], "succeeded", "{record}");
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let pulls = pulls_of(&state, &job);
    ensure_eq!(pulls.len(), 1, "the same pull request: {pulls:?}");
    ensure_eq!(pulls[0]["draft"], false, "now ready for review");
    ensure!(
        pulls[0]["body"]
            .as_str()
            .is_some_and(|b| !b.contains("### What is left") && b.contains("src/cart.test.js")),
        "the body describes the whole fix: {}",
        pulls[0]["body"]
    );
    let shown = ctx
        .sandbox_post("/_sandbox/git/show", &json!({"repo": repo, "rev": branch}))
        .await?;
    let subjects = shown.json["subjects"].to_string();
    ensure!(
        shown.json["subjects"].as_array().map_or(0, Vec::len) == 3
            && subjects.contains("wip(")
            && subjects.contains("fix("),
        "a new commit on the same branch: {}",
        shown.text
    );
    ensure!(
        shown.json["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "src/cart.test.js")),
        "{}",
        shown.text
    );
    let asked = follow_up_request(&state, models_before).context("the continued run was asked")?;
    ensure!(
        asked.contains("stopped at its limit") && asked.contains("src/cart.js"),
        "the continued run knows what the earlier one did"
    );
    let status = status_comment(&state, number)?;
    ensure!(
        status.contains("Pull request opened"),
        "the answer is updated: {status}"
    );
    Ok(())
}

/// How many requests the model stand-in has answered.
fn model_requests(state: &Value) -> usize {
    state["anthropic"]["requests"]
        .as_array()
        .map_or(0, Vec::len)
}

/// The first model request after the first `before` that asks a follow-up (a continue's or a
/// review's "What is asked now"), as JSON text.
fn follow_up_request(state: &Value, before: usize) -> Option<String> {
    state["anthropic"]["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(before)
        .map(Value::to_string)
        .find(|r| r.contains("What is asked now"))
}

/// bugbot's status comment on issue `number`.
fn status_comment(state: &Value, number: u64) -> Result<String> {
    state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["number"] == number)
        .filter_map(|c| c["body"].as_str())
        .find(|b| b.contains("<sub>bugbot · job `"))
        .map(str::to_owned)
        .context("bugbot's status comment")
}

/// A reviewer's `@bugbot <instruction>` on the pull request bugbot opened runs a fix on its
/// branch with the instruction and the review's comments, pushes a new commit to the same pull
/// request, and answers there; a bot's comment there triggers nothing.
pub async fn a_review_comment_on_bugbots_pull_request_adds_a_commit_to_it(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    let (_, fix_job) = crate::fix::github_cart_fix(&ctx, "@bugbot fix").await?;
    crate::contextualize::wait_status(&ctx, &fix_job, "succeeded", 120).await?;
    let state = ctx.sandbox_state().await?;
    let pr = pulls_of(&state, &fix_job)
        .first()
        .cloned()
        .context("the fix opened a pull request")?;
    let number = pr["number"].as_u64().context("a number")?;
    let branch = pr["head"].as_str().unwrap_or_default().to_owned();
    ctx.sandbox_post(
        "/_sandbox/github/reviews",
        &json!({"repo": repo, "number": number,
                "reviews": [{"body": "Looks right, but cover an empty cart.", "state": "CHANGES_REQUESTED", "user": {"login": "lead"}}],
                "comments": [{"path": "src/cart.js", "line": 2, "body": "Add a test next to this file.", "user": {"login": "lead"}}]}),
    )
    .await?;
    ctx.sandbox_post(
        "/_sandbox/anthropic/scenario",
        &json!({"steps": [
            {"tool_use": {"name": "Write", "input": {"file_path": "src/cart.test.js", "content": "import { total } from './cart.js';\nconsole.assert(total([]) === 0);\n"}}},
            {"text": "Added a test for an empty cart next to src/cart.js."}
        ]}),
    )
    .await?;
    let models_before = model_requests(&state);

    // The reviewer's comment on the pull request (GitHub delivers it as an issue comment).
    let (_, _, mut payload) = member_comment_on_a_new_issue(&ctx, "unused", "unused", "").await?;
    payload["issue"]["number"] = number.into();
    payload["issue"]["title"] = pr["title"].clone();
    payload["issue"]["html_url"] = pr["html_url"].clone();
    payload["issue"]["pull_request"] =
        json!({"url": format!("https://api.github.com/repos/{repo}/pulls/{number}")});
    payload["issue"]["user"] =
        json!({"login": ctx.env.get("GITHUB_BOT_LOGIN"), "id": 41898282, "type": "Bot"});
    payload["comment"]["body"] = "@bugbot please add a test for an empty cart".into();
    let delivery = format!("9a1f0a2c-{}", fresh_id());
    let a = ctx
        .github_delivery("issue_comment", &delivery, &serde_json::to_vec(&payload)?)
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    let job = format!("gh-{delivery}");
    ensure_eq!(a.json["job_id"], job.as_str(), "{}", a.text);
    crate::contextualize::wait_status(&ctx, &job, "succeeded", 120).await?;

    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(pulls_of(&state, &fix_job).len(), 1, "the same pull request");
    let shown = ctx
        .sandbox_post("/_sandbox/git/show", &json!({"repo": repo, "rev": branch}))
        .await?;
    ensure!(
        shown.json["subjects"].as_array().map_or(0, Vec::len) == 3
            && shown.json["files"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "src/cart.test.js")),
        "a new commit on the pull request's branch: {}",
        shown.text
    );
    let asked = follow_up_request(&state, models_before).context("the review's run was asked")?;
    ensure!(
        asked.contains("please add a test for an empty cart")
            && asked.contains("cover an empty cart")
            && asked.contains("src/cart.js:2"),
        "the model got the instruction and the review's comments"
    );
    let answered = state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["number"] == number)
        .filter_map(|c| c["body"].as_str())
        .any(|b| b.contains("✅ Pushed") && b.contains(&job));
    ensure!(answered, "the answer is on the pull request");

    // A bot's comment on the same pull request triggers nothing.
    payload["comment"]["user"] = json!({"login": "ci-helper[bot]", "id": 7, "type": "Bot"});
    let a = ctx
        .github_delivery(
            "issue_comment",
            &format!("9a1f0a2c-{}", fresh_id()),
            &serde_json::to_vec(&payload)?,
        )
        .await?;
    ensure_eq!(a.status, 202, "{}", a.text);
    ensure!(a.json.get("ignored").is_some(), "{}", a.text);
    Ok(())
}
