//! One fix request: clone, write the base tree for the agent, run Claude Code as the agent, kill
//! whatever the agent left running, check the changes (paths and secrets), commit them on the base
//! commit in the executor's own git directory, and push that commit.
//!
//! Every event goes through `emit`, which masks secrets. The run ends when it is done, when its
//! wall time runs out, or when nobody has followed it for a grace period; in each case every
//! process of the agent is killed and the workspace removed (see [`Job`]'s `Drop`).

use crate::agent::{Agent, AgentPool};
use crate::forwarder::{Forwarder, GrantGuard};
use crate::runs::Hub;
use crate::workspace::{Checked, Workspace};
use bugbot_shared::executor::{Event, FixRequest, FixResult, Outcome};
use bugbot_shared::mask::Masker;
use bugbot_shared::path_policy::Violation;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The executor's configuration (see `main.rs` for the variables).
#[derive(Clone)]
pub struct Config {
    /// Bearer token callers must present.
    pub token: String,
    /// The Claude Code CLI (a copy the agent's user can run, when it needed one).
    pub claude_bin: PathBuf,
    /// Model override.
    pub model: Option<String>,
    /// Where workspaces are created.
    pub work_root: PathBuf,
    /// Masks configured secrets in everything that leaves, and finds them in what would be pushed.
    pub masker: Masker,
    /// The agents' users.
    pub pool: AgentPool,
    /// The model API forwarder (holds the Anthropic key).
    pub forwarder: Forwarder,
    /// Local development: `http://` and `file://` remotes are allowed.
    pub dev: bool,
    /// Which repository URLs are accepted.
    pub remotes: bugbot_shared::executor::Remotes,
    /// How long a run nobody follows waits for a caller to come back before it is stopped.
    pub detached_grace: std::time::Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("claude_bin", &self.claude_bin)
            .field("work_root", &self.work_root)
            .field("isolation", &self.pool.isolation())
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

/// Sends masked events to the run's hub (and so to every caller following the run).
#[derive(Clone)]
pub struct Emitter {
    hub: Arc<Hub>,
    masker: Masker,
    /// Claude Code's turns so far (a run cut off before its result still says how far it got).
    turns: Arc<std::sync::atomic::AtomicU32>,
}

impl Emitter {
    /// An emitter masking with `masker`.
    pub fn new(hub: Arc<Hub>, masker: Masker) -> Self {
        Self {
            hub,
            masker,
            turns: Arc::default(),
        }
    }

    /// Claude Code's turns so far (from the `turn` events sent).
    pub fn turns(&self) -> u32 {
        self.turns.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one event as a JSON line.
    pub async fn emit(&self, event: &Event) {
        if let Event::Turn { n, .. } = event {
            self.turns
                .fetch_max(*n, std::sync::atomic::Ordering::Relaxed);
        }
        let mut value = serde_json::to_value(event).unwrap_or_default();
        self.masker.mask_json(&mut value);
        tracing::info!(event = %value, "progress");
        self.hub.push(format!("{value}\n"));
    }
}

/// A failure that ends the run with `failed` (already free of secrets after masking).
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// One run's workspace and agent. Dropping it kills every process of the agent before the
/// workspace is removed, so nothing the agent runs can write into a folder being deleted.
struct Job {
    workspace: Workspace,
    agent: Agent,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.agent.kill_all();
        // Then the fields drop: the workspace (removed), then the agent (cleaned, slot freed).
    }
}

/// Runs the request within its wall time; ends with a `done` event. A run nobody follows for
/// `config.detached_grace` (its caller went away and no redelivery came back for it) is stopped:
/// its agent killed, its workspace removed, and the run forgotten so a later request starts anew.
pub async fn run(
    config: Config,
    request: FixRequest,
    agent: Agent,
    out: Emitter,
    runs: crate::runs::Runs,
    run_id: String,
) {
    let started = Instant::now();
    let mut masker = config.masker.clone();
    if let Some(t) = &request.github_token {
        masker.add(t);
    }
    let grant = config.forwarder.grant(
        request
            .limits
            .max_turns
            .saturating_mul(4)
            .saturating_add(20),
    );
    masker.add(grant.key());
    let out = Emitter::new(out.hub, masker);
    // Heartbeats, so the caller can tell a quiet run (a long model turn) from a broken stream.
    let beats = out.hub.clone();
    let heartbeat = tokio::spawn(async move {
        let every = std::time::Duration::from_secs(bugbot_shared::executor::HEARTBEAT_SECS);
        loop {
            tokio::time::sleep(every).await;
            beats.push("{\"event\":\"heartbeat\"}\n".to_owned());
        }
    });
    let wall = std::time::Duration::from_secs(request.limits.wall_time_secs);
    let work = tokio::time::timeout(wall, attempt(&config, &request, agent, &grant, &out));
    let result = tokio::select! {
        finished = work => match finished {
            Ok(Ok(result)) => result,
            Ok(Err(Failure(error))) => FixResult {
                error: Some(error),
                ..FixResult::empty(Outcome::Failed)
            },
            // The attempt's future was dropped: its agent is killed and its workspace removed.
            Err(_) => cut_off(&grant, &out, &request, FixResult {
                error: Some(format!("the wall time of {}s ran out", wall.as_secs())),
                ..FixResult::empty(Outcome::TimedOut)
            }),
        },
        // Stopped: the attempt's future is dropped, so its agent is killed and its workspace
        // removed before the result goes out.
        reason = out.hub.stopped() => {
            tracing::info!(branch = %request.branch, %reason, "run stopped: its agent was killed and its workspace removed");
            cut_off(&grant, &out, &request, FixResult::stopped(&reason))
        },
        () = out.hub.abandoned(config.detached_grace) => {
            heartbeat.abort();
            runs.forget(&run_id);
            tracing::warn!(branch = %request.branch, "nobody followed the run: it was stopped and its workspace removed");
            return;
        }
    };
    heartbeat.abort();
    drop(grant);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    out.emit(&Event::Done {
        result: FixResult {
            duration_ms,
            ..result
        },
    })
    .await;
    out.hub.finish();
}

/// A run cut off from outside: it says how many turns Claude Code had taken, and, if the model
/// had been asked, Claude Code reported no cost, so the run's budget limit is counted (the
/// budgets must not take a cut-off run for a free one).
fn cut_off(
    grant: &GrantGuard,
    out: &Emitter,
    request: &FixRequest,
    result: FixResult,
) -> FixResult {
    let result = FixResult {
        turns: out.turns(),
        ..result
    };
    unreported_cost(grant, request, result)
}

/// A run whose cost Claude Code did not report: free if the model was never asked, otherwise
/// counted at the run's budget limit, the most it may have spent.
fn unreported_cost(grant: &GrantGuard, request: &FixRequest, result: FixResult) -> FixResult {
    if grant.model_asked() {
        result.with_unreported_cost(request.limits.max_budget_usd)
    } else {
        result
    }
}

/// The `done` line of a run stopped before it started.
pub fn stopped_line(reason: &str) -> String {
    bugbot_shared::executor::done_line(FixResult::stopped(reason))
}

/// The part of the wall time Claude Code gets: the rest is kept for checking and pushing its work.
fn agent_time(wall: std::time::Duration) -> std::time::Duration {
    let reserve = (wall / 4).min(std::time::Duration::from_secs(120));
    wall.saturating_sub(reserve)
}

async fn attempt(
    config: &Config,
    req: &FixRequest,
    agent: Agent,
    grant: &GrantGuard,
    out: &Emitter,
) -> Result<FixResult, Failure> {
    let token = req.github_token.as_deref();
    let mut job = Job {
        workspace: Workspace::create(&config.work_root, config.dev)?,
        agent,
    };
    out.emit(&Event::Cloning {
        base_branch: req.start_branch().to_owned(),
    })
    .await;
    job.workspace
        .clone(&req.repo_url, req.start_branch(), token)
        .await?;
    let ws = &job.workspace;
    ws.write_tree(job.agent.ids).await?;

    out.emit(&Event::Running).await;
    let (tree, home) = (ws.tree(), ws.home());
    let agent_env = crate::claude::AgentEnv {
        tree: &tree,
        home: &home,
        ids: job.agent.ids,
        model_url: config.forwarder.url(),
        model_key: grant.key(),
    };
    let allowed_time = agent_time(std::time::Duration::from_secs(req.limits.wall_time_secs));
    let claude = tokio::time::timeout(
        allowed_time,
        crate::claude::run(config, req, &agent_env, out),
    )
    .await;
    // Nothing the agent started may run while git reads and commits its work.
    job.agent.kill_all();
    let claude = match claude {
        Ok(claude) => claude?,
        // Its share of the wall time ran out: what it wrote so far is checked and kept.
        Err(_) => crate::claude::ClaudeRun {
            outcome: Outcome::TimedOut,
            summary: String::new(),
            turns: out.turns(),
            cost_usd: None,
            error: None,
            denied: Vec::new(),
        },
    };

    let mut result = FixResult {
        summary: claude.summary.clone(),
        turns: claude.turns,
        cost_usd: claude.cost_usd.unwrap_or_default(),
        ..FixResult::empty(claude.outcome)
    };
    if claude.cost_usd.is_none() {
        result = unreported_cost(grant, req, result);
    }
    if claude.outcome != Outcome::Pushed && !claude.outcome.hit_limit() {
        // Claude Code failed: whatever it left is not pushed.
        result.error = claude.error;
        return Ok(result);
    }
    // Finished, or stopped at a limit: the checked work is pushed either way (at a limit, for a
    // draft pull request that a `continue` carries on).
    let finished = claude.outcome == Outcome::Pushed;

    out.emit(&Event::CheckingPaths).await;
    if !claude.denied.is_empty() {
        // It tried to change a path it may not: the whole fix is rejected, whatever else it did.
        result.outcome = Outcome::Rejected;
        result.rejected_paths = claude.denied;
        return Ok(result);
    }
    let set = match ws.check(&req.allowed_paths).await? {
        Checked::NoChanges => {
            if finished {
                result.outcome = Outcome::NoChanges;
            }
            return Ok(result);
        }
        Checked::Rejected(violations) => {
            result.outcome = Outcome::Rejected;
            result.rejected_paths = violations;
            return Ok(result);
        }
        Checked::Allowed(set) => set,
    };

    let message = format!(
        "{}({}): {}\n\n{}\n\nMade by bugbot with Claude Code.",
        if finished { "fix" } else { "wip" },
        req.task.issue_id,
        req.task.title,
        if finished {
            bugbot_shared::job::truncate(&claude.summary, 2000).0
        } else {
            format!(
                "Partial work: Claude Code {} before it finished.",
                bugbot_shared::fix::limit_reached(&result)
            )
        }
    );
    // Nothing secret leaves: a configured secret (in any form) or a token in the added text or
    // the commit message rejects the fix, and the finding names the kind, never the value.
    let secrets = secret_findings(&out.masker, &set.added_text, &message);
    if !secrets.is_empty() {
        result.outcome = Outcome::Rejected;
        result.rejected_paths = secrets;
        return Ok(result);
    }
    result.changed_files = set.files.clone();

    let sha = ws.commit(&set, &out.masker.mask(&message)).await?;
    // From here the run pushes and is no longer stopped; stopped just before, it pushes nothing.
    if !out.hub.commit() {
        return Err(Failure("stopped before the push".into()));
    }
    out.emit(&Event::Pushing {
        branch: req.branch.clone(),
    })
    .await;
    ws.push(&req.repo_url, &sha, &req.branch, token).await?;
    if finished {
        result.outcome = Outcome::Pushed;
    }
    result.branch = Some(req.branch.clone());
    result.commit_sha = Some(sha);
    Ok(result)
}

/// Secrets in what would be pushed, one finding per place.
fn secret_findings(masker: &Masker, added: &[(String, String)], message: &str) -> Vec<Violation> {
    let places = added
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .chain(std::iter::once(("(commit message)", message)));
    let mut found = Vec::new();
    for (place, text) in places {
        for finding in masker.scan(text) {
            found.push(Violation {
                path: place.to_owned(),
                reason: format!("holds {finding}; nothing secret may be pushed"),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_per_place_and_never_repeated() {
        let masker = Masker::new(["the-executor-token-value"]);
        let added = vec![
            ("src/a.js".to_owned(), "const x = 1;\n".to_owned()),
            (
                "src/b.js".to_owned(),
                "const t = 'the-executor-token-value';\n".to_owned(),
            ),
        ];
        let found = secret_findings(
            &masker,
            &added,
            "fix: use sk-ant-api03-abcdefghijklmnopqrstu",
        );
        let places: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(places, vec!["src/b.js", "(commit message)"]);
        assert!(
            found
                .iter()
                .all(|v| !v.reason.contains("the-executor-token-value"))
        );
        assert!(found.iter().all(|v| !v.reason.contains("sk-ant-api03")));
    }
}
