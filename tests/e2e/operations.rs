//! Operator tools against the local stack: Discord command registration and the dead-letter queue.

use crate::context::E2e;
use crate::contextualize::{killed_by_a_linear_outage, wait_status};
use crate::ensure_eq;
use anyhow::{Result, ensure};
use bugbot_tests::stack::workspace_binary;
use serde_json::json;
use std::sync::Arc;

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
    wait_status(&ctx, &job, "succeeded", 30).await?;
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
