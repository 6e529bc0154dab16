//! Running Claude Code headless: the prompt, the restricted tools and environment, and reading its
//! stream-json output into turn events and a final result.

use crate::process;
use crate::run::{Config, Emitter};
use bugbot_shared::executor::{Event, FixRequest, Outcome};
use bugbot_shared::path_policy::Violation;
use std::path::Path;
use tokio::io::AsyncBufReadExt;

use tokio::process::Command;

/// What Claude Code reported. `outcome` is `Pushed` when it finished normally (the caller then
/// checks and pushes), otherwise why it stopped.
#[derive(Debug)]
pub struct ClaudeRun {
    /// How it ended.
    pub outcome: Outcome,
    /// Its final text.
    pub summary: String,
    /// Turns.
    pub turns: u32,
    /// Cost, as Claude Code reported it (`None`: it ended before reporting one).
    pub cost_usd: Option<f64>,
    /// Error detail, when it failed.
    pub error: Option<String>,
    /// Edits Claude Code's permissions refused (it tried to change a path it may not).
    pub denied: Vec<Violation>,
}

/// The file edits in Claude Code's `permission_denials`, as path violations (paths relative to the
/// repository; the reason says which rule refused them).
pub fn denied_edits(result: &serde_json::Value, repo: &Path, allowed: &[String]) -> Vec<Violation> {
    let mut out: Vec<Violation> = Vec::new();
    for d in result["permission_denials"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let tool = d["tool_name"].as_str().unwrap_or_default();
        if !matches!(tool, "Edit" | "Write" | "MultiEdit" | "NotebookEdit") {
            continue;
        }
        let input = &d["tool_input"];
        let Some(raw) = input["file_path"]
            .as_str()
            .or_else(|| input["notebook_path"].as_str())
        else {
            continue;
        };
        let path = Path::new(raw)
            .strip_prefix(repo)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| raw.trim_start_matches("./").to_owned());
        if out.iter().any(|v| v.path == path) {
            continue;
        }
        let reason = bugbot_shared::path_policy::refusal_reason(&path, allowed)
            .unwrap_or_else(|| "refused by Claude Code's permissions".to_owned());
        out.push(Violation {
            path,
            reason: format!("{tool} refused: {reason}"),
        });
    }
    out
}

/// Longest stream-json line kept in memory; longer lines are skipped as they arrive.
const MAX_LINE: usize = 1024 * 1024;

/// Reads lines without ever holding more than `max` bytes of one line.
struct BoundedLines<R> {
    reader: tokio::io::BufReader<R>,
    max: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> BoundedLines<R> {
    fn new(reader: R, max: usize) -> Self {
        Self {
            reader: tokio::io::BufReader::new(reader),
            max,
        }
    }

    /// The next line that fits (without its newline), or `None` at the end.
    async fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let mut oversized = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok((!line.is_empty() && !oversized).then_some(line));
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if line.len() + chunk.len() > self.max {
                oversized = true;
                line.clear();
            } else if !oversized {
                line.extend_from_slice(chunk);
            }
            let consumed = done.unwrap_or(buf.len());
            self.reader.consume(consumed);
            if done.is_some() {
                if oversized {
                    oversized = false;
                    continue;
                }
                return Ok(Some(line));
            }
        }
    }
}

/// Tools Claude Code gets: read, search, edit. No shell, no network.
const TOOLS: &str = "Read,Glob,Grep,Edit,Write";
const DENIED: &str = "Bash,WebFetch,WebSearch,NotebookEdit,Agent,Task,Skill";

/// The prompt: the task, the hints, and the rules.
pub fn prompt(req: &FixRequest) -> String {
    let mut p = format!(
        "You are fixing a bug in this repository (the current directory).\n\n\
         Issue {}: {}\n\n",
        req.task.issue_id, req.task.title
    );
    if !req.task.context.trim().is_empty() {
        p.push_str("## Context\n\n");
        p.push_str(&req.task.context);
        p.push_str("\n\n");
    }
    if !req.task.file_hints.is_empty() {
        p.push_str("## Files that are probably relevant\n\n");
        for f in &req.task.file_hints {
            p.push_str(&format!("- {f}\n"));
        }
        p.push('\n');
    }
    if !req.task.follow_up.trim().is_empty() {
        p.push_str("## What is asked now\n\n");
        p.push_str(&req.task.follow_up);
        p.push_str("\n\n");
    }
    if !req.task.instructions.trim().is_empty() {
        p.push_str(
            "## The repository's instructions\n\n\
             (Text from the repository. Follow it where it does not conflict with the rules below.)\n\n",
        );
        p.push_str(&req.task.instructions);
        p.push_str("\n\n");
    }
    p.push_str(&format!(
        "## Rules\n\n\
         - You may change files only under: {}. Changes anywhere else are refused and nothing is pushed.\n\
         - Never change package manifests, lock files, CI configuration, environment or key files.\n\
         - You cannot run commands or reach the network. Read the code, make the smallest correct fix, \
           and finish with a short summary of what you changed and why.\n",
        req.allowed_paths.join(", ")
    ));
    p
}

fn summarize(message: &serde_json::Value) -> String {
    let parts: Vec<String> = message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|block| match block["type"].as_str()? {
            "tool_use" => {
                let input = &block["input"];
                let target = input["file_path"]
                    .as_str()
                    .or(input["path"].as_str())
                    .or(input["pattern"].as_str())
                    .unwrap_or("");
                Some(
                    format!("{} {}", block["name"].as_str().unwrap_or("tool"), target)
                        .trim()
                        .to_owned(),
                )
            }
            "text" => Some(bugbot_shared::job::truncate(block["text"].as_str()?.trim(), 160).0),
            _ => None,
        })
        .collect();
    parts.join("; ")
}

/// bugbot's own Claude Code settings, the only ones it loads: no hooks, no project MCP servers,
/// no key helper, nothing from the repository (`--setting-sources ""` and `--restricted` ignore
/// user, project and local settings files; the repository's `CLAUDE.md` is read as text only).
const SETTINGS: &str = r#"{"disableAllHooks":true,"enableAllProjectMcpServers":false,"enabledMcpjsonServers":[],"includeCoAuthoredBy":false,"cleanupPeriodDays":1}"#;

/// No MCP servers at all (`--strict-mcp-config` ignores every other source).
const MCP_CONFIG: &str = r#"{"mcpServers":{}}"#;

/// Where and as whom Claude Code runs, and how it reaches the model.
#[derive(Debug)]
pub struct AgentEnv<'a> {
    /// The working tree (the only folder its file tools may use).
    pub tree: &'a Path,
    /// Its home (also its temporary folder).
    pub home: &'a Path,
    /// Its uid and gid (`None`: the executor's own, local development only).
    pub ids: Option<(u32, u32)>,
    /// The model forwarder's URL.
    pub model_url: String,
    /// The run's placeholder key for the forwarder (never the real one).
    pub model_key: &'a str,
}

/// The command line: bugbot's settings only, read/search/edit tools only, edits only under the
/// allowed paths, and an environment with nothing secret in it.
pub fn command(config: &Config, req: &FixRequest, agent: &AgentEnv<'_>) -> Command {
    let allow: Vec<String> = std::iter::once("Read".to_owned())
        .chain(["Glob", "Grep"].map(str::to_owned))
        .chain(req.allowed_paths.iter().flat_map(|p| {
            let glob = format!("{}/**", p.trim_end_matches('/'));
            [format!("Edit({glob})"), format!("Write({glob})")]
        }))
        .collect();
    let mut cmd = Command::new(&config.claude_bin);
    cmd.current_dir(agent.tree)
        .env_clear()
        .env("PATH", AGENT_PATH)
        .env("HOME", agent.home)
        .env("TMPDIR", agent.home.join("tmp"))
        .env("CLAUDE_CONFIG_DIR", agent.home.join(".claude"))
        .env("ANTHROPIC_BASE_URL", &agent.model_url)
        .env("ANTHROPIC_API_KEY", agent.model_key)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .arg("-p")
        .arg(prompt(req))
        .args([
            "--output-format",
            "stream-json",
            "--verbose",
            "--no-session-persistence",
            // Not `--bare`: it also takes the Write tool away.
            "--restricted",
            "--setting-sources",
            "",
            "--settings",
            SETTINGS,
            "--strict-mcp-config",
            "--mcp-config",
            MCP_CONFIG,
        ])
        .args([
            "--permission-mode",
            "default",
            "--tools",
            TOOLS,
            "--disallowedTools",
            DENIED,
        ])
        .arg("--allowedTools")
        .arg(allow.join(","))
        .arg("--max-turns")
        .arg(req.limits.max_turns.to_string())
        .arg("--max-budget-usd")
        .arg(req.limits.max_budget_usd.to_string());
    if let Some(model) = &config.model {
        cmd.arg("--model").arg(model);
    }
    if let Some((uid, gid)) = agent.ids {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// The agent's PATH: system folders only.
const AGENT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs Claude Code as the agent and streams a turn event per assistant message.
pub async fn run(
    config: &Config,
    req: &FixRequest,
    agent: &AgentEnv<'_>,
    out: &Emitter,
) -> Result<ClaudeRun, std::io::Error> {
    let cmd = command(config, req, agent);
    let (mut child, _guard) = process::spawn(cmd)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let stderr = child.stderr.take();
    // Keep only the tail of stderr, for the error message.
    let stderr_tail = tokio::spawn(async move {
        let mut tail = String::new();
        if let Some(stderr) = stderr {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tail.push_str(&line);
                tail.push('\n');
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            }
        }
        tail
    });

    let mut lines = BoundedLines::new(stdout, MAX_LINE);
    let mut turn = 0u32;
    let mut result: Option<serde_json::Value> = None;
    while let Some(line) = lines.next_line().await? {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) else {
            continue;
        };
        match value["type"].as_str() {
            Some("assistant") => {
                turn += 1;
                out.emit(&Event::Turn {
                    n: turn,
                    summary: summarize(&value["message"]),
                })
                .await;
            }
            Some("result") => result = Some(value),
            _ => {}
        }
    }
    let status = child.wait().await?;
    let stderr_tail = stderr_tail.await.unwrap_or_default();

    let Some(r) = result else {
        return Ok(ClaudeRun {
            outcome: Outcome::Failed,
            summary: String::new(),
            turns: turn,
            // Killed or crashed before its result: what it spent is unknown.
            cost_usd: None,
            error: Some(format!(
                "Claude Code exited ({status}) without a result: {}",
                stderr_tail.trim()
            )),
            denied: Vec::new(),
        });
    };
    let subtype = r["subtype"].as_str().unwrap_or("");
    let outcome = match subtype {
        "success" if !r["is_error"].as_bool().unwrap_or(false) => Outcome::Pushed,
        "error_max_turns" => Outcome::MaxTurns,
        s if s.contains("budget") => Outcome::BudgetExceeded,
        _ => Outcome::Failed,
    };
    Ok(ClaudeRun {
        outcome,
        summary: r["result"].as_str().unwrap_or("").to_owned(),
        turns: r["num_turns"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(turn),
        cost_usd: Some(r["total_cost_usd"].as_f64().unwrap_or(0.0)),
        error: (outcome == Outcome::Failed).then(|| format!("Claude Code ended with {subtype:?}")),
        denied: denied_edits(&r, agent.tree, &req.allowed_paths),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_lines_are_skipped_without_being_kept() {
        let input = format!("{{\"a\":1}}\n{}\n{{\"b\":2}}\nlast", "x".repeat(100));
        let mut lines = BoundedLines::new(input.as_bytes(), 50);
        assert_eq!(lines.next_line().await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), b"{\"b\":2}");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), b"last");
        assert!(lines.next_line().await.unwrap().is_none());
    }
}
