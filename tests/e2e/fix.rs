//! fix end to end: a signed `/bugbot fix` (or a GitHub comment) becomes one pull request whose diff
//! is the scripted model's fix, linked on Linear, with progress and the link where it was asked.

use crate::context::{E2e, answers_for, no_violations};
use crate::ensure_eq;
use crate::gateway::{fresh_id, member_comments_on_a_new_issue};
use anyhow::{Context, Result, ensure};
use bugbot_tests::fixtures::{CART_FIX, read_then_edit, web_app_files};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Creates (or resets) the served repository on the sandbox's git remote, and scripts the model.
pub(crate) async fn seed(ctx: &E2e, model: Value) -> Result<String> {
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    ctx.sandbox_post(
        "/_sandbox/git/repos",
        &json!({"repo": repo, "files": web_app_files()}),
    )
    .await?;
    ctx.sandbox_post("/_sandbox/anthropic/scenario", &model)
        .await?;
    Ok(repo)
}

/// The served repository and the scripted cart fix seeded, a member's `comment` on a new GitHub
/// issue reporting the wrong cart total; returns the issue number and the job id.
pub(crate) async fn github_cart_fix(ctx: &E2e, comment: &str) -> Result<(u64, String)> {
    seed(ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    member_comments_on_a_new_issue(
        ctx,
        "Cart total is one too high",
        "Three $10 items cost $31 in the cart.",
        comment,
    )
    .await
}

/// A thread under the configured channel, with a report, and a signed `/bugbot fix` in it.
/// Returns (job id, interaction id, the interaction JSON).
async fn discord_fix(ctx: &E2e) -> Result<(String, String, Value)> {
    discord_fix_by(ctx, "1200000000000000001").await
}

/// [`discord_fix`] asked by the member with this user id.
pub(crate) async fn discord_fix_by(ctx: &E2e, user: &str) -> Result<(String, String, Value)> {
    let thread = fresh_id();
    ctx.sandbox_post(
        &format!("/_sandbox/discord/channels/{thread}/messages"),
        &json!([{"author_id": "1200000000000000001", "username": "jane",
                 "content": "The cart total is one too high: three $10 items cost $31."}]),
    )
    .await?;
    let id = fresh_id();
    let token = format!("interaction-token-{}", fresh_id());
    ctx.sandbox_post(
        "/_sandbox/discord/interactions",
        &json!({"token": token, "interaction_id": id}),
    )
    .await?;
    let interaction = json!({
        "id": id,
        "application_id": ctx.env.get("DISCORD_APPLICATION_ID"),
        "type": 2,
        "token": token,
        "version": 1,
        "guild_id": ctx.env.get("DISCORD_TEST_GUILD_ID"),
        "channel_id": thread,
        "channel": {"id": thread, "type": 11, "parent_id": ctx.env.get("DISCORD_TEST_CHANNEL_ID")},
        "member": {"user": {"id": user, "username": "jane"},
                   "roles": [ctx.env.get("DISCORD_TEST_FIX_ROLE_ID")]},
        "data": {"id": "1100000000000000050", "name": "bugbot", "type": 1,
                 "options": [{"name": "fix", "type": 1,
                              "options": [{"name": "details", "type": 3, "value": "Cart total is one too high"}]}]}
    });
    let a = ctx.discord_interaction(&interaction).await?;
    ensure_eq!(a.status, 200, "{}", a.text);
    ensure_eq!(a.json["type"], 5);
    Ok((format!("dc-{id}"), id, interaction))
}

async fn finished(ctx: &E2e, job: &str) -> Result<Value> {
    let r = ctx
        .wait_for_job(job, Duration::from_secs(120), |r| {
            matches!(r["status"].as_str(), Some("succeeded" | "failed" | "dead"))
        })
        .await?;
    ensure!(
        r["status"] == "succeeded",
        "job {job} ended {}: {r}",
        r["status"]
    );
    Ok(r)
}

/// The pull requests whose branch belongs to `job`.
pub(crate) fn pulls_of(state: &Value, job: &str) -> Vec<Value> {
    state["github"]["pulls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["head"].as_str().is_some_and(|h| h.ends_with(job)))
        .cloned()
        .collect()
}

fn is_the_scripted_fix(diff: &str) -> bool {
    diff.contains(&format!(
        "-  return items.reduce((sum, item) => sum + {}",
        CART_FIX.0
    )) && diff.contains(&format!(
        "+  return items.reduce((sum, item) => sum + {}",
        CART_FIX.1
    )) && diff.matches("diff --git").count() == 1
}

pub async fn discord_fix_opens_one_pull_request_linked_on_linear(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let repo = seed(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    let (job, interaction, _) = discord_fix(&ctx).await?;
    let record = finished(&ctx, &job).await?;

    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let pulls = pulls_of(&state, &job);
    ensure_eq!(pulls.len(), 1, "one pull request: {pulls:?}");
    let pr = &pulls[0];
    ensure_eq!(pr["repo"], repo.as_str());
    ensure_eq!(pr["base"], "main");
    let diff = pr["diff"].as_str().unwrap_or_default();
    ensure!(
        is_the_scripted_fix(diff),
        "the diff is the scripted fix:\n{diff}"
    );
    let body = pr["body"].as_str().unwrap_or_default();
    ensure!(
        body.starts_with("Fixes BUG-"),
        "the body links Linear: {body}"
    );
    let url = pr["html_url"].as_str().unwrap_or_default();

    // Linked on Linear: attached and announced.
    let attached = state["linear"]["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["url"] == url);
    ensure!(attached, "the pull request is attached on Linear");
    let announced = state["linear"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["body"].as_str().is_some_and(|b| b.contains(url)));
    ensure!(announced, "and announced in a comment");

    // Progress, then the link.
    let answers = answers_for(&state, &interaction);
    for step in ["Gathering context", "Cloning", "Claude Code", "Pushing"] {
        ensure!(
            answers.iter().any(|a| a.contains(step)),
            "progress {step:?} shown: {answers:?}"
        );
    }
    ensure!(
        answers.last().is_some_and(|a| a.contains(url)),
        "the answer ends with the pull request: {answers:?}"
    );
    ensure!(record["links"].to_string().contains(url), "{record}");

    // The same job delivered again (at-least-once): still one pull request, nothing run twice.
    let message = json!({
        "v": 1, "id": job, "command": "fix",
        "requester": {"id": "1200000000000000001", "name": "jane"},
        "source": {"kind": "discord", "guild_id": ctx.env.get("DISCORD_TEST_GUILD_ID"),
                   "channel_id": record["source"].as_str().and_then(|s| s.rsplit(' ').next()).unwrap_or_default(),
                   "interaction_id": interaction, "interaction_token": "interaction-token-redelivered",
                   "application_id": ctx.env.get("DISCORD_APPLICATION_ID")},
        "report": {"text": "Cart total is one too high"}, "references": {}, "enqueued_at_ms": 1
    });
    ctx.enqueue_raw(&message).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ctx.consumer_receipts(&job) < 2 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the redelivery never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctx.wait_idle().await?;
    let state = ctx.sandbox_state().await?;
    ensure_eq!(pulls_of(&state, &job).len(), 1, "still one pull request");
    Ok(())
}

pub async fn a_fix_touching_package_json_opens_nothing_and_says_why(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    seed(
        &ctx,
        json!({"steps": [
            {"tool_use": {"name": "Write", "input": {"file_path": "package.json", "content": "{\"name\": \"pwned\"}\n"}}},
            {"text": "Changed the manifest."}
        ]}),
    )
    .await?;
    let before = ctx.sandbox_state().await?["git"]["branches"].clone();
    let (job, interaction, _) = discord_fix(&ctx).await?;
    finished(&ctx, &job).await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure!(pulls_of(&state, &job).is_empty(), "no pull request");
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    ensure_eq!(
        state["git"]["branches"][&repo],
        before[&repo],
        "nothing was pushed"
    );
    let answers = answers_for(&state, &interaction);
    let last = answers.last().cloned().unwrap_or_default();
    ensure!(
        last.contains("package.json") && last.contains("No pull request"),
        "the answer names the refused path: {last}"
    );
    Ok(())
}

pub async fn github_member_fix_comment_opens_a_pull_request(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    let (number, job) = github_cart_fix(&ctx, "Confirmed. @bugbot fix").await?;
    finished(&ctx, &job).await?;

    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let pulls = pulls_of(&state, &job);
    ensure_eq!(pulls.len(), 1);
    let url = pulls[0]["html_url"].as_str().unwrap_or_default();
    let status: Vec<&Value> = state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["number"] == number)
        .collect();
    ensure_eq!(status.len(), 1, "one status comment: {status:?}");
    ensure!(
        status[0]["body"].as_str().is_some_and(|b| b.contains(url)),
        "the status comment links the pull request: {}",
        status[0]
    );
    ensure!(
        status[0]["edits"].as_u64().unwrap_or(0) >= 2,
        "and was edited in place as the fix went on: {}",
        status[0]
    );
    Ok(())
}

pub async fn github_502_on_pull_request_creation_still_opens_one(ctx: Arc<E2e>) -> Result<()> {
    ctx.wait_idle().await?;
    seed(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    ctx.sandbox_post(
        "/_sandbox/faults",
        &json!({"service": "github", "status": 502, "method": "POST", "path_suffix": "/pulls"}),
    )
    .await?;
    let (job, _, _) = discord_fix(&ctx).await?;
    let record = finished(&ctx, &job).await?;
    ensure!(
        record["attempts"].as_u64().unwrap_or(0) >= 2,
        "retried: {record}"
    );
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(pulls_of(&state, &job).len(), 1, "one pull request");
    let turns: usize = state["anthropic"]["requests"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(turns > 0, "the model was called");
    let faulted = state["requests"]["github"]
        .as_array()
        .context("github requests")?
        .iter()
        .filter(|r| r["faulted"] == true)
        .count();
    ensure_eq!(faulted, 1, "the 502 was served");
    ensure!(
        record["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["step"] == "executor.start")
            .count()
            == 1,
        "Claude Code ran once: {record}"
    );
    Ok(())
}

/// GitHub cuts recursive tree listings of very large repositories (`truncated: true`). A repository
/// whose listing is cut before `src/` still gets its hints: the allowed directories are listed one
/// by one.
pub async fn a_cut_tree_listing_is_narrowed_to_the_allowed_directories(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let repo = ctx.env.get("GITHUB_TEST_REPO");
    let mut files = web_app_files();
    for n in 0..30 {
        files.insert(format!("assets/icon-{n:02}.svg"), "<svg/>\n".into());
    }
    ctx.sandbox_post(
        "/_sandbox/git/repos",
        &json!({"repo": repo, "files": files}),
    )
    .await?;
    ctx.sandbox_post(
        "/_sandbox/anthropic/scenario",
        &read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1),
    )
    .await?;
    // A listing of 20 entries ends inside assets/, before src/.
    ctx.sandbox_post("/_sandbox/github/config", &json!({"tree_limit": 20}))
        .await?;
    let outcome = async {
        let (_, job) = member_comments_on_a_new_issue(
            &ctx,
            "Cart total is one too high",
            "Three $10 items cost $31 in the cart.",
            "@bugbot fix",
        )
        .await?;
        finished(&ctx, &job).await
    }
    .await;
    ctx.sandbox_post("/_sandbox/github/config", &json!({}))
        .await?;
    let record = outcome?;
    let start = record["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["step"] == "executor.start")
        .and_then(|e| e["detail"].as_str())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        start.contains("src/cart.js") && start.contains("listed by directory"),
        "the hints come from the narrower listing: {start}"
    );
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    Ok(())
}

/// The served repository with these extra files on its base branch, and the scripted cart fix.
async fn seed_with(ctx: &E2e, extra: &[(&str, &str)]) -> Result<()> {
    let mut files = web_app_files();
    for (path, text) in extra {
        files.insert((*path).to_owned(), (*text).to_owned());
    }
    ctx.sandbox_post(
        "/_sandbox/git/repos",
        &json!({"repo": ctx.env.get("GITHUB_TEST_REPO"), "files": files}),
    )
    .await?;
    ctx.sandbox_post(
        "/_sandbox/anthropic/scenario",
        &read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1),
    )
    .await?;
    Ok(())
}

/// [`github_cart_fix`] asked with `@bugbot fix`, the repository's base branch holding these extra
/// files; returns the job id.
async fn github_cart_fix_with(ctx: &E2e, extra: &[(&str, &str)]) -> Result<String> {
    seed_with(ctx, extra).await?;
    let (_, job) = member_comments_on_a_new_issue(
        ctx,
        "Cart total is one too high",
        "Three $10 items cost $31 in the cart.",
        "@bugbot fix",
    )
    .await?;
    Ok(job)
}

/// A repository's `.github/bugbot.toml` narrows the allowed paths (the cart fix, outside them, is
/// refused and nothing is pushed) and adds instructions, which reach the model as text with the
/// repository's `CLAUDE.md`; a settings file that widens the paths fails the job naming its line.
pub async fn repository_settings_narrow_the_paths_and_a_bad_file_fails_naming_its_line(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    let job = github_cart_fix_with(
        &ctx,
        &[
            (
                ".github/bugbot.toml",
                "# bugbot may only touch checkout here\nallowed_paths = [\"src/checkout.js\"]\ninstructions = \"Prices are integers of cents.\"\n\n[limits]\nmax_turns = 8\n",
            ),
            ("CLAUDE.md", "Keep functions small and use two-space indents.\n"),
        ],
    )
    .await?;
    let record = crate::contextualize::wait_status(&ctx, &job, "succeeded", 120).await?;
    let text = record.to_string();
    ensure!(
        text.contains("allowed paths narrowed to src/checkout.js")
            && text.contains("max turns 8")
            && text.contains("instructions from CLAUDE.md"),
        "the job's record says what the settings changed: {record}"
    );
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(
        pulls_of(&state, &job).len(),
        0,
        "nothing outside the narrowed paths is pushed"
    );
    let prompt = state["anthropic"]["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .find(|r| r.contains("src/checkout.js") && r.contains("Prices are integers of cents."))
        .context("the model was asked with the repository's instructions and narrowed paths")?;
    ensure!(
        prompt.contains("two-space indents"),
        "CLAUDE.md reaches the model as text"
    );
    let answered = state["github"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["body"].as_str())
        .any(|b| b.contains("No pull request") && b.contains("src/cart.js"));
    ensure!(answered, "the answer names the refused path");

    // A file that widens the paths: the job fails, and says where.
    let job = github_cart_fix_with(
        &ctx,
        &[(
            ".github/bugbot.toml",
            "allowed_paths = [\n  \"src/\",\n  \"scripts/\",\n]\n",
        )],
    )
    .await?;
    let record = crate::contextualize::wait_status(&ctx, &job, "failed", 120).await?;
    let error = record["last_error"].as_str().unwrap_or_default();
    ensure!(
        error.contains(".github/bugbot.toml, line 3") && error.contains("scripts/"),
        "the failure names the file and the line: {record}"
    );
    let state = ctx.sandbox_state().await?;
    ensure_eq!(pulls_of(&state, &job).len(), 0);
    Ok(())
}

/// A requester whose day's model spend leaves no room for a fix's budget is refused, told what is
/// spent and when it resets, and nothing runs; today's totals show the spend. A repository whose
/// settings lower a run's budget below what is left gets its fix.
pub async fn a_fix_past_the_requesters_daily_budget_is_refused_politely(
    ctx: Arc<E2e>,
) -> Result<()> {
    ctx.wait_idle().await?;
    seed(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    // A user of this case's own (a budget spent stays spent all day), with $39.50 of $40 spent.
    let user = fresh_id();
    let r = ctx
        .http
        .post(ctx.gateway("/v1/dev/spend"))
        .bearer_auth(ctx.env.get("ADMIN_TOKEN"))
        .json(&json!({"user": format!("discord:{user}"), "usd": 39.5}))
        .send()
        .await?;
    ensure_eq!(r.status().as_u16(), 200, "{}", r.text().await?);
    let models_before = ctx.sandbox_state().await?["anthropic"]["requests"]
        .as_array()
        .map_or(0, Vec::len);
    let (job, interaction, _) = discord_fix_by(&ctx, &user).await?;
    let record = ctx
        .wait_for_job(&job, Duration::from_secs(60), |r| r["status"] == "refused")
        .await?;
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    let answers = answers_for(&state, &interaction);
    ensure!(
        answers.iter().any(|a| a.contains("No fix")
            && a.contains("$39.50 of $40.00")
            && a.contains("00:00 UTC")),
        "the requester is told why and until when: {answers:?} {record}"
    );
    ensure_eq!(pulls_of(&state, &job).len(), 0);
    ensure_eq!(
        state["anthropic"]["requests"]
            .as_array()
            .map_or(0, Vec::len),
        models_before,
        "the model was not asked"
    );
    let spend = ctx.admin_get("/v1/spend").await?;
    ensure_eq!(spend.status, 200, "{}", spend.text);
    let mine = spend.json["users"][format!("discord:{user}")].as_f64();
    ensure!(
        mine == Some(39.5),
        "today's totals show the user's spend: {}",
        spend.text
    );

    // A repository whose settings lower a run's budget to $0.50: the fix reserves that, fits in
    // the $0.50 left, and runs.
    seed_with(
        &ctx,
        &[(".github/bugbot.toml", "[limits]\nmax_budget_usd = 0.5\n")],
    )
    .await?;
    let (job, _, _) = discord_fix_by(&ctx, &user).await?;
    let record = crate::contextualize::wait_status(&ctx, &job, "succeeded", 120).await?;
    ensure!(
        record.to_string().contains("budget $0.50"),
        "the job's record says the settings lowered the budget: {record}"
    );
    let state = ctx.sandbox_state().await?;
    no_violations(&state)?;
    ensure_eq!(
        pulls_of(&state, &job).len(),
        1,
        "the fix opened its pull request"
    );
    let spend = ctx.admin_get("/v1/spend").await?;
    let mine = spend.json["users"][format!("discord:{user}")]
        .as_f64()
        .unwrap_or_default();
    ensure!(
        mine > 39.5 && mine <= 40.0,
        "the run's cost is added to the day's spend, within the budget: {}",
        spend.text
    );
    Ok(())
}
