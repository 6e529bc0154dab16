//! Operator tools against the local stack: Discord command registration, the dead-letter queue,
//! and what a panic leaves in the logs.

use crate::context::E2e;
use crate::contextualize::{killed_by_a_linear_outage, wait_status};
use crate::ensure_eq;
use anyhow::{Result, ensure};
use bugbot_tests::stack::workspace_binary;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn run(binary: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(workspace_binary(binary)?)
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{binary} {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

pub async fn register_commands_is_idempotent(ctx: Arc<E2e>) -> Result<()> {
    let api = format!("{}/discord/api/v10", ctx.env.get("SANDBOX_URL"));
    let guild = ctx.env.get("DISCORD_TEST_GUILD_ID");
    for scope in [vec![], vec!["--guild", guild.as_str()]] {
        let mut args = vec!["--api-url", api.as_str()];
        args.extend(&scope);
        let first = run("register-commands", &args)?;
        ensure!(first.contains("Registered"), "{first}");
        let second = run("register-commands", &args)?;
        ensure!(second.contains("nothing changed"), "{second}");
    }
    let state = ctx.sandbox_state().await?;
    ensure_eq!(
        state["discord"]["command_registrations"],
        2,
        "one registration per scope"
    );
    let names: Vec<&str> = state["discord"]["commands"]["global"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure_eq!(
        names,
        vec!["bugbot", "Contextualize with bugbot", "Fix with bugbot"]
    );
    ensure!(
        state["violations"].as_array().is_none_or(Vec::is_empty),
        "{}",
        state["violations"]
    );
    Ok(())
}

pub async fn dlq_script_lists_and_replays_a_dead_job(ctx: Arc<E2e>) -> Result<()> {
    let (_, job, _, _) = killed_by_a_linear_outage(&ctx).await?;
    let gateway = ctx.env.get("GATEWAY_URL");
    let token = ctx.env.get("ADMIN_TOKEN");
    let tool = |args: &[&str]| {
        let mut all = vec!["--url", gateway.as_str(), "--token", token.as_str()];
        all.extend(args);
        run("jobs", &all)
    };
    let listed = tool(&["dlq"])?;
    ensure!(
        listed.contains(&job) && listed.contains("linear"),
        "{listed}"
    );
    let shown = tool(&["dlq-show", &job])?;
    ensure!(
        shown.contains("contextualize") && shown.contains("true"),
        "{shown}"
    );
    let replayed = tool(&["replay", &job])?;
    ensure!(replayed.contains("back on the queue"), "{replayed}");
    wait_status(&ctx, &job, "succeeded", 60).await?;
    ensure!(
        !tool(&["dlq"])?.contains(&job),
        "replayed jobs leave the list"
    );

    // Purge: an unreadable message is listed, then gone.
    let malformed = |dead: &serde_json::Value| -> Vec<String> {
        dead["dead"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["replayable"] == false)
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect()
    };
    let before = malformed(&ctx.admin_get("/v1/dlq?limit=100").await?.json);
    ctx.enqueue_raw(&json!({"purge": "me"})).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let id = loop {
        let now = malformed(&ctx.admin_get("/v1/dlq?limit=100").await?.json);
        if let Some(id) = now.into_iter().find(|id| !before.contains(id)) {
            break id;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the malformed message was not listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let purged = tool(&["purge", &id])?;
    ensure!(purged.contains("removed"), "{purged}");
    ensure!(!tool(&["dlq"])?.contains(&id), "purged entries are gone");
    Ok(())
}

/// The structured log lines of one component with `"msg":"panic"` whose message says `text`.
fn panic_lines(ctx: &E2e, component: &str, text: &str) -> usize {
    let log = std::fs::read_to_string(ctx.log_dir.join("workers.log")).unwrap_or_default();
    log.lines()
        // wrangler colours error lines: the JSON object sits between escape codes.
        .filter_map(|l| Some(&l[l.find('{')?..=l.rfind('}')?]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["msg"] == "panic"
                && v["component"] == component
                && v["level"] == "error"
                && v["panic"].as_str().is_some_and(|p| p.contains(text))
        })
        .count()
}

async fn wait_for_panic_line(ctx: &E2e, component: &str, text: &str, secs: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while panic_lines(ctx, component, text) == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no structured panic line from the {component} in workers.log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A panic in either Worker logs its message as a structured line (the panic hook is installed at
/// start), and the Worker serves the next request (the runtime re-creates the instance).
pub async fn a_panic_reaches_the_structured_logs_and_the_workers_recover(
    ctx: Arc<E2e>,
) -> Result<()> {
    const TEXT: &str = "a panic asked for by POST /v1/dev/panic";

    // Without the admin token the route is refused, and nothing panics.
    let r = ctx.http.post(ctx.gateway("/v1/dev/panic")).send().await?;
    ensure_eq!(r.status().as_u16(), 401);
    ensure_eq!(panic_lines(&ctx, "gateway", TEXT), 0);

    // The gateway: the request fails (the runtime answers it), the log says why.
    let a = ctx.admin_post("/v1/dev/panic").await?;
    anyhow::ensure!(a.status >= 500, "a panicking request answered {}", a.status);
    wait_for_panic_line(&ctx, "gateway", TEXT, 10).await?;
    let a = E2e::answer(ctx.http.get(ctx.gateway("/health")).send().await?).await?;
    ensure_eq!(a.status, 200, "the gateway after its panic: {}", a.text);

    // The same when the panic comes after an await, in a poll the gateway's executor runs from a
    // promise's reaction rather than in the request's first call.
    let r = ctx
        .http
        .post(ctx.gateway("/v1/dev/panic?after=await"))
        .bearer_auth(ctx.env.get("ADMIN_TOKEN"))
        .body("a body to await")
        .send()
        .await?;
    let a = E2e::answer(r).await?;
    anyhow::ensure!(a.status >= 500, "a panicking request answered {}", a.status);
    wait_for_panic_line(&ctx, "gateway", "after an await", 10).await?;
    for _ in 0..3 {
        let a = E2e::answer(ctx.http.get(ctx.gateway("/health")).send().await?).await?;
        ensure_eq!(
            a.status,
            200,
            "the gateway after a panic in a reaction: {}",
            a.text
        );
    }

    // The consumer: a queue message that makes it panic.
    let a = ctx.admin_post("/v1/dev/panic?worker=consumer").await?;
    ensure_eq!(a.status, 202, "body: {}", a.text);
    wait_for_panic_line(&ctx, "consumer", TEXT, 20).await?;
    // The consumer still runs jobs afterwards.
    let a = ctx.admin_post("/v1/selftest").await?;
    ensure_eq!(a.status, 202, "body: {}", a.text);
    let id = a.json["job_id"].as_str().unwrap_or_default().to_owned();
    ctx.wait_for_job(&id, Duration::from_secs(20), |r| r["status"] == "succeeded")
        .await?;
    Ok(())
}
