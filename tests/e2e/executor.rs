//! The executor with real git and the real Claude Code CLI; only the model is scripted (the
//! sandbox's Anthropic stand-in). Every case asserts on what actually reached the git remote.

use crate::context::E2e;
use crate::ensure_eq;
use anyhow::{Context, Result, ensure};
use bugbot_tests::fixtures::{BUGGY_CART_JS, CART_FIX, git, read_then_edit};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

pub const GITHUB_TOKEN: &str = "ghs_e2eTestOnlyToken0123456789abcdefXYZ";

/// A bare remote holding a small web app with a real bug in `src/cart.js`.
pub struct Remote {
    _dir: tempfile::TempDir,
    /// The bare repository.
    pub bare: PathBuf,
}

impl Remote {
    pub fn new() -> Result<Self> {
        Self::with_files(&[])
    }

    /// The web app plus `extra` files (path, content).
    pub fn with_files(extra: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("src"))?;
        std::fs::write(work.join("src/cart.js"), BUGGY_CART_JS)?;
        std::fs::write(work.join("package.json"), "{\n  \"name\": \"web-app\"\n}\n")?;
        std::fs::write(work.join("README.md"), "# web-app\n")?;
        for (path, content) in extra {
            let path = work.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
        }
        git(&work, &["init", "-q"])?;
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-q", "-m", "initial"])?;
        let bare = dir.path().join("web-app.git");
        git(
            dir.path(),
            &["clone", "-q", "--bare", "work", "web-app.git"],
        )?;
        Ok(Self { _dir: dir, bare })
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn branches(&self) -> Result<Vec<String>> {
        Ok(git(
            &self.bare,
            &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
        )?
        .lines()
        .map(str::to_owned)
        .collect())
    }
}

pub async fn scenario(ctx: &E2e, steps: Value) -> Result<()> {
    let r = ctx
        .http
        .post(format!(
            "{}/_sandbox/anthropic/scenario",
            ctx.env.get("SANDBOX_URL")
        ))
        .json(&steps)
        .send()
        .await?;
    ensure_eq!(r.status().as_u16(), 204);
    Ok(())
}

pub fn request(remote: &Remote, branch: &str) -> Value {
    json!({
        "repo_url": remote.url(),
        "base_branch": "main",
        "branch": branch,
        "task": {"issue_id": "ENG-12", "title": "Cart total is one too high",
                 "context": "Reported in Discord: totals are off by one.", "file_hints": ["src/cart.js"]},
        "limits": {"wall_time_secs": 120, "max_turns": 6, "max_budget_usd": 1.0},
        "github_token": GITHUB_TOKEN
    })
}

/// Posts a fix request; returns the status, the events and the raw text.
pub async fn fix(ctx: &E2e, body: &Value, token: &str) -> Result<(u16, Vec<Value>, String)> {
    fix_at(ctx, &ctx.env.get("EXECUTOR_URL"), body, token).await
}

/// Posts a fix request to the executor at `url`.
pub async fn fix_at(
    ctx: &E2e,
    url: &str,
    body: &Value,
    token: &str,
) -> Result<(u16, Vec<Value>, String)> {
    let r = ctx
        .http
        .post(format!("{url}/v1/fix"))
        .bearer_auth(token)
        .json(body)
        .timeout(std::time::Duration::from_secs(180))
        .send()
        .await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    let events = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok((status, events, text))
}

pub fn result(events: &[Value]) -> Result<&Value> {
    let last = events.last().context("no events")?;
    ensure_eq!(last["event"], "done");
    Ok(&last["result"])
}

pub async fn executor_pushes_a_correct_fix(ctx: Arc<E2e>) -> Result<()> {
    let remote = Remote::new()?;
    scenario(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    let (status, events, text) = fix(
        &ctx,
        &request(&remote, "bugbot/eng-12"),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    ensure_eq!(status, 200, "{text}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for k in [
        "cloning",
        "running",
        "turn",
        "checking_paths",
        "pushing",
        "done",
    ] {
        ensure!(kinds.contains(&k), "no {k} event in {kinds:?}");
    }
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "pushed", "{r}");
    ensure_eq!(
        r["changed_files"],
        json!([{"path": "src/cart.js", "added": 1, "removed": 1}])
    );
    ensure_eq!(r["summary"], "Started the sum at 0 instead of 1.");

    // What reached the remote: the branch, with exactly that diff, authored by bugbot.
    let sha = git(&remote.bare, &["rev-parse", "refs/heads/bugbot/eng-12"])?;
    ensure_eq!(sha.trim(), r["commit_sha"].as_str().unwrap_or_default());
    let diff = git(&remote.bare, &["diff", "main", "bugbot/eng-12"])?;
    ensure!(
        diff.contains("-  return items.reduce((sum, item) => sum + item.price, 1);"),
        "{diff}"
    );
    ensure!(
        diff.contains("+  return items.reduce((sum, item) => sum + item.price, 0);"),
        "{diff}"
    );
    ensure_eq!(
        git(
            &remote.bare,
            &["diff", "--name-only", "main", "bugbot/eng-12"]
        )?
        .trim(),
        "src/cart.js"
    );
    let log = git(
        &remote.bare,
        &["log", "-1", "--format=%an|%s", "bugbot/eng-12"],
    )?;
    ensure_eq!(log.trim(), "bugbot|fix(ENG-12): Cart total is one too high");

    // The token never appears in anything the executor returned, nor reached the model.
    ensure!(
        !text.contains(GITHUB_TOKEN),
        "the token leaked into the stream"
    );
    let state = ctx.sandbox_state().await?;
    ensure!(
        !state["anthropic"].to_string().contains(GITHUB_TOKEN),
        "the token reached the model"
    );
    Ok(())
}

pub async fn executor_rejects_forbidden_paths_and_pushes_nothing(ctx: Arc<E2e>) -> Result<()> {
    let remote = Remote::new()?;
    // Allowed by Claude Code's own permissions (under src/), refused by the executor's git check.
    scenario(&ctx, json!({"steps": [
        {"tool_use": {"name": "Write", "input": {"file_path": "src/package.json", "content": "{\"evil\": true}\n"}}},
        {"text": "Added a manifest."}
    ]}))
    .await?;
    let (status, events, _) = fix(
        &ctx,
        &request(&remote, "bugbot/reject"),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    ensure_eq!(status, 200);
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "rejected", "{r}");
    ensure_eq!(r["rejected_paths"][0]["path"], "src/package.json");
    ensure_eq!(
        remote.branches()?,
        vec!["main".to_owned()],
        "nothing was pushed"
    );

    // Outside the allowed paths, Claude Code's permissions refuse the write itself; the executor
    // reports the refused path and rejects the fix.
    scenario(&ctx, json!({"steps": [
        {"tool_use": {"name": "Write", "input": {"file_path": "package.json", "content": "{}\n"}}},
        {"text": "Changed the manifest."}
    ]}))
    .await?;
    let (_, events, _) = fix(
        &ctx,
        &request(&remote, "bugbot/reject2"),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "rejected", "{r}");
    ensure_eq!(r["rejected_paths"][0]["path"], "package.json", "{r}");
    ensure!(
        r["rejected_paths"][0]["reason"]
            .as_str()
            .is_some_and(|why| why.contains("package manifests")),
        "{r}"
    );
    ensure_eq!(
        remote.branches()?,
        vec!["main".to_owned()],
        "nothing was pushed"
    );
    Ok(())
}

pub async fn executor_without_edits_is_no_changes(ctx: Arc<E2e>) -> Result<()> {
    let remote = Remote::new()?;
    scenario(
        &ctx,
        json!({"steps": [
            {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}},
            {"text": "I could not find the bug."}
        ]}),
    )
    .await?;
    let (_, events, _) = fix(
        &ctx,
        &request(&remote, "bugbot/none"),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "no_changes", "{r}");
    ensure_eq!(remote.branches()?, vec!["main".to_owned()]);
    Ok(())
}

pub async fn executor_stops_a_model_that_never_stops(ctx: Arc<E2e>) -> Result<()> {
    let remote = Remote::new()?;
    scenario(
        &ctx,
        json!({"repeat_last": true, "steps": [
            {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}}
        ]}),
    )
    .await?;
    let mut body = request(&remote, "bugbot/loop");
    body["limits"]["max_turns"] = 3.into();
    let (_, events, _) = fix(&ctx, &body, &ctx.env.get("EXECUTOR_TOKEN")).await?;
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "max_turns", "{r}");
    ensure!(r.get("cost_unreported").is_none(), "a reported cost: {r}");
    ensure_eq!(remote.branches()?, vec!["main".to_owned()]);

    // The wall time: everything is killed and the result says so.
    body["limits"] = json!({"wall_time_secs": 4, "max_turns": 200, "max_budget_usd": 1.0});
    body["branch"] = "bugbot/loop2".into();
    let started = std::time::Instant::now();
    let (_, events, _) = fix(&ctx, &body, &ctx.env.get("EXECUTOR_TOKEN")).await?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "not stopped in time"
    );
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "timed_out", "{r}");
    // The result says how far Claude Code got before it was cut off.
    let turns = events.iter().filter(|e| e["event"] == "turn").count();
    ensure!(turns > 0, "no turn in the loop's time: {events:?}");
    ensure_eq!(r["turns"], turns, "{r}");
    // It had asked the model and was cut off before it reported a cost: the whole limit counts.
    ensure!(
        r["cost_unreported"] == true && r["cost_usd"] == 1.0,
        "a cut-off run counts its limit: {r}"
    );
    ensure_eq!(remote.branches()?, vec!["main".to_owned()]);
    // Workspaces are removed, whatever happened.
    let work = ctx.state_dir.join("executor");
    // (The executor may keep a copy of Claude Code there, `.bugbot-bin`, for the agents' users.)
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("bugbot-fix-"))
                .collect()
        })
        .unwrap_or_default();
    ensure!(left.is_empty(), "workspaces left behind: {left:?}");
    Ok(())
}

pub async fn executor_refuses_bad_requests(ctx: Arc<E2e>) -> Result<()> {
    let remote = Remote::new()?;
    let (status, _, text) = fix(&ctx, &request(&remote, "bugbot/x"), "wrong-token").await?;
    ensure_eq!(status, 401, "{text}");
    let (status, _, text) = fix(
        &ctx,
        &json!({"repo_url": remote.url()}),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    ensure_eq!(status, 400);
    ensure!(text.contains("invalid fix request"), "{text}");
    let mut body = request(&remote, "main");
    let (status, _, text) = fix(&ctx, &body, &ctx.env.get("EXECUTOR_TOKEN")).await?;
    ensure_eq!(status, 400);
    ensure!(text.contains("branch"), "{text}");
    body["branch"] = "ok-branch".into();
    body["repo_url"] = format!("https://x-access-token:{GITHUB_TOKEN}@github.com/a/b").into();
    let (status, _, text) = fix(&ctx, &body, &ctx.env.get("EXECUTOR_TOKEN")).await?;
    ensure_eq!(status, 400);
    ensure!(
        !text.contains(GITHUB_TOKEN),
        "the token leaked into an error: {text}"
    );
    Ok(())
}

/// Over HTTP, like GitHub: the remote wants the token as a Basic password, which only the askpass
/// script gives git. A wrong token fails the clone, and the error names no token.
pub async fn executor_uses_the_token_only_through_git(ctx: Arc<E2e>) -> Result<()> {
    let sandbox = ctx.env.get("SANDBOX_URL");
    let r = ctx
        .http
        .post(format!("{sandbox}/_sandbox/git/repos"))
        .json(&json!({
            "repo": "acme/http-app",
            "token": GITHUB_TOKEN,
            "files": {"src/cart.js": BUGGY_CART_JS}
        }))
        .send()
        .await?;
    ensure_eq!(r.status().as_u16(), 201, "{}", r.text().await?);
    scenario(&ctx, read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1)).await?;
    let url = format!("{sandbox}/git/acme/http-app.git");
    let body = |token: &str, branch: &str| {
        json!({
            "repo_url": url, "base_branch": "main", "branch": branch,
            "task": {"issue_id": "ENG-13", "title": "Cart total"},
            "github_token": token
        })
    };
    let (_, events, text) = fix(
        &ctx,
        &body(GITHUB_TOKEN, "bugbot/http"),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "pushed", "{r}");
    ensure!(
        !text.contains(GITHUB_TOKEN),
        "the token leaked into the stream"
    );
    let state = ctx.sandbox_state().await?;
    ensure_eq!(
        state["git"]["branches"]["acme/http-app"]["bugbot/http"],
        r["commit_sha"],
        "the pushed branch is on the remote"
    );

    let wrong = "ghs_wrongTokenWrongToken0123456789abcd";
    let (_, events, text) = fix(
        &ctx,
        &body(wrong, "bugbot/http2"),
        &ctx.env.get("EXECUTOR_TOKEN"),
    )
    .await?;
    let r = result(&events)?;
    ensure_eq!(r["outcome"], "failed", "{r}");
    ensure!(r["error"].as_str().unwrap_or("").contains("clone"), "{r}");
    ensure!(!text.contains(wrong), "the wrong token leaked: {text}");
    Ok(())
}
