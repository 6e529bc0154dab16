//! The executor's API: the fix request the consumer sends, the progress events the executor streams
//! back (newline-delimited JSON), and the structured result that ends the stream.

use crate::path_policy::{DEFAULT_ALLOWED, Violation};
use serde::{Deserialize, Serialize};

/// Most wall time a request may ask for.
pub const MAX_WALL_TIME_SECS: u64 = 3600;

/// What Claude Code is asked to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Linear issue identifier (`ENG-123`), named in the commit message.
    pub issue_id: String,
    /// Issue title.
    pub title: String,
    /// The context packet (Markdown).
    #[serde(default)]
    pub context: String,
    /// Files that are likely relevant (hints for Claude Code).
    #[serde(default)]
    pub file_hints: Vec<String>,
    /// The repository's own instructions (`.github/bugbot.toml`, `CLAUDE.md`, `AGENTS.md`), as
    /// text for the prompt: they never become Claude Code's settings, and bugbot's rules still hold.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instructions: String,
    /// What this run follows up on: the previous run's summary (a `continue`), or a reviewer's
    /// instruction and comments (a review). Empty for a first run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub follow_up: String,
}

/// Resource limits of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall time for the whole request, clone to push.
    #[serde(default = "default_wall_time")]
    pub wall_time_secs: u64,
    /// Claude Code's `--max-turns`.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// Claude Code's `--max-budget-usd`.
    #[serde(default = "default_budget")]
    pub max_budget_usd: f64,
}

fn default_wall_time() -> u64 {
    600
}
fn default_max_turns() -> u32 {
    30
}
fn default_budget() -> f64 {
    2.0
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_time_secs: default_wall_time(),
            max_turns: default_max_turns(),
            max_budget_usd: default_budget(),
        }
    }
}

fn default_allowed() -> Vec<String> {
    DEFAULT_ALLOWED.iter().map(|s| (*s).to_owned()).collect()
}

/// `POST /v1/fix` body.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixRequest {
    /// HTTPS clone URL, without credentials (`http://` and `file:///` in local development).
    pub repo_url: String,
    /// Branch to start from.
    pub base_branch: String,
    /// Branch to create and push.
    pub branch: String,
    /// What to fix.
    pub task: Task,
    /// Path prefixes Claude Code may change.
    #[serde(default = "default_allowed")]
    pub allowed_paths: Vec<String>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Token for clone and push (an installation token). Given to git only, never to Claude Code.
    #[serde(default)]
    pub github_token: Option<String>,
    /// The run's id (the job's): a second request with the same id follows the run already going
    /// (or collects its result) instead of starting another. Absent: a run of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run carries on the work already on `branch` (a `continue`, a review): it starts from
    /// `branch` instead of `base_branch` and pushes its commit on top. False: `branch` is new.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_branch: bool,
}

impl FixRequest {
    /// The branch the run clones and builds on.
    pub fn start_branch(&self) -> &str {
        if self.on_branch {
            &self.branch
        } else {
            &self.base_branch
        }
    }
}

impl std::fmt::Debug for FixRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixRequest")
            .field("repo_url", &self.repo_url)
            .field("base_branch", &self.base_branch)
            .field("branch", &self.branch)
            .field("task", &self.task.issue_id)
            .field("allowed_paths", &self.allowed_paths)
            .field("limits", &self.limits)
            .field("on_branch", &self.on_branch)
            .field(
                "github_token",
                &self.github_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// A request that cannot be run as given (answered with 400 and this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

/// Whether `name` is a safe branch name (a subset of `git check-ref-format`).
pub fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'))
}

/// Which repository URLs an executor accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remotes {
    /// `https://` only: a production executor with the internet open.
    HttpsOnly,
    /// Also `http://host/…` on port 80: the executor's Container, whose plain HTTP the runtime
    /// hands to the consumer Worker, which sends it on over HTTPS with the token attached
    /// ([`crate::egress`]).
    Intercepted,
    /// Also any `http://` and `file:///` URL: local development and tests.
    Local,
}

impl FixRequest {
    /// Checks everything that can be checked before any work starts.
    pub fn validate(&mut self, remotes: Remotes) -> Result<(), InvalidRequest> {
        let bad = |m: String| Err(InvalidRequest(m));
        let url = self.repo_url.as_str();
        let accepted = match remotes {
            Remotes::HttpsOnly => url.starts_with("https://"),
            Remotes::Intercepted => {
                url.starts_with("https://")
                    || url.strip_prefix("http://").is_some_and(|rest| {
                        !rest.split('/').next().unwrap_or_default().contains(':')
                    })
            }
            Remotes::Local => {
                url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with("file:///")
            }
        };
        if !accepted {
            return bad(match remotes {
                Remotes::HttpsOnly => "repo_url must be an https:// URL".into(),
                Remotes::Intercepted => {
                    "repo_url must be an https:// URL or an http:// URL without a port".into()
                }
                Remotes::Local => "repo_url must be an https://, http:// or file:/// URL".into(),
            });
        }
        if url.contains('@') || url.chars().any(char::is_whitespace) {
            return bad(
                "repo_url must not contain credentials or spaces; send the token as github_token"
                    .into(),
            );
        }
        for (field, value) in [("base_branch", &self.base_branch), ("branch", &self.branch)] {
            if !valid_branch(value) {
                return bad(format!("{field} {value:?} is not a valid branch name"));
            }
        }
        if let Some(id) = &self.run_id
            && (id.is_empty()
                || id.len() > 100
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            return bad("run_id must be 1 to 100 letters, digits, '-', '_' or '.'".into());
        }
        if self.branch == self.base_branch {
            return bad("branch must differ from base_branch".into());
        }
        if self.task.issue_id.trim().is_empty() || self.task.title.trim().is_empty() {
            return bad("task.issue_id and task.title are required".into());
        }
        if self.allowed_paths.is_empty() {
            return bad("allowed_paths must name at least one path".into());
        }
        self.allowed_paths =
            crate::path_policy::normalize_allowed(&self.allowed_paths).map_err(InvalidRequest)?;
        let l = &self.limits;
        if l.wall_time_secs == 0 || l.wall_time_secs > MAX_WALL_TIME_SECS {
            return bad(format!(
                "limits.wall_time_secs must be 1..={MAX_WALL_TIME_SECS}"
            ));
        }
        if l.max_turns == 0 || l.max_turns > 200 {
            return bad("limits.max_turns must be 1..=200".into());
        }
        if !(l.max_budget_usd > 0.0 && l.max_budget_usd <= 100.0) {
            return bad("limits.max_budget_usd must be more than 0 and at most 100".into());
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A branch was pushed.
    Pushed,
    /// Claude Code changed paths it may not; nothing was pushed.
    Rejected,
    /// Claude Code changed nothing; nothing was pushed.
    NoChanges,
    /// Claude Code hit `--max-turns`; its checked partial work, if any, was pushed (`branch`).
    MaxTurns,
    /// Claude Code hit `--max-budget-usd`; its checked partial work, if any, was pushed.
    BudgetExceeded,
    /// Claude Code's share of the wall time ran out; its checked partial work, if any, was pushed.
    TimedOut,
    /// Someone stopped the run (`error` says who): everything was killed, nothing was pushed.
    Stopped,
    /// Something failed (clone, Claude Code, push); see `error`.
    Failed,
}

impl Outcome {
    /// True when the run ended at a limit: what it did is kept, and it may be continued.
    pub fn hit_limit(self) -> bool {
        matches!(self, Self::MaxTurns | Self::BudgetExceeded | Self::TimedOut)
    }
}

/// A changed file of a pushed fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// Path.
    pub path: String,
    /// Lines added.
    pub added: u64,
    /// Lines removed.
    pub removed: u64,
}

/// The result that ends the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The pushed branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The pushed commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    /// Changed files (pushed fixes).
    #[serde(default)]
    pub changed_files: Vec<ChangedFile>,
    /// Refused paths (rejected fixes).
    #[serde(default)]
    pub rejected_paths: Vec<Violation>,
    /// Claude Code's own summary.
    #[serde(default)]
    pub summary: String,
    /// Turns Claude Code took.
    #[serde(default)]
    pub turns: u32,
    /// Cost reported by Claude Code; when it ended before reporting one (cut off at the time
    /// limit, stopped, or gone without a result) after the model was asked, the run's budget
    /// limit, the most it could have cost, and [`FixResult::cost_unreported`] says so (0 when the
    /// model was never asked).
    #[serde(default)]
    pub cost_usd: f64,
    /// `cost_usd` is the budget limit, charged because Claude Code reported no cost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cost_unreported: bool,
    /// Wall time of the request.
    pub duration_ms: u64,
    /// What went wrong (`failed`), secret-free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FixResult {
    /// A result with this outcome and nothing else yet.
    pub fn empty(outcome: Outcome) -> Self {
        Self {
            outcome,
            branch: None,
            commit_sha: None,
            changed_files: Vec::new(),
            rejected_paths: Vec::new(),
            summary: String::new(),
            turns: 0,
            cost_usd: 0.0,
            cost_unreported: false,
            duration_ms: 0,
            error: None,
        }
    }

    /// The same result with the run's budget limit counted as its cost: Claude Code ran but ended
    /// before it reported what it spent (the limit is the most it may spend: `--max-budget-usd`).
    pub fn with_unreported_cost(self, limit_usd: f64) -> Self {
        Self {
            cost_usd: limit_usd,
            cost_unreported: true,
            ..self
        }
    }

    /// The model cost as shown to people: `$0.42`, or `up to $2.00 (the run ended before …)`.
    pub fn cost_text(&self) -> String {
        if self.cost_unreported {
            format!(
                "up to ${:.2} (the run ended before Claude Code reported its cost; the whole limit is counted)",
                self.cost_usd
            )
        } else {
            format!("${:.2}", self.cost_usd)
        }
    }

    /// The result of a run stopped on request (`reason` says by whom).
    pub fn stopped(reason: &str) -> Self {
        Self {
            error: Some(reason.to_owned()),
            ..Self::empty(Outcome::Stopped)
        }
    }
}

/// The stream line that ends a run with `result`.
pub fn done_line(result: FixResult) -> String {
    let done = Event::Done { result };
    format!(
        "{}\n",
        serde_json::to_string(&done).unwrap_or_else(|e| unreachable!("an event serializes: {e}"))
    )
}

/// One line of the response stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Cloning the base branch.
    Cloning {
        /// Branch.
        base_branch: String,
    },
    /// Claude Code started.
    Running,
    /// One Claude Code turn, summarised.
    Turn {
        /// Turn number.
        n: u32,
        /// What it did (tool uses, or the start of its text).
        summary: String,
    },
    /// Checking the changed paths.
    CheckingPaths,
    /// Committing and pushing.
    Pushing {
        /// Branch.
        branch: String,
    },
    /// The run is alive (every [`HEARTBEAT_SECS`] seconds, whatever it is doing): the caller
    /// renews its hold on the job, and a stream silent for much longer is taken for broken.
    Heartbeat,
    /// The end: the result.
    Done {
        /// Result.
        result: FixResult,
    },
}

/// How often a running fix says it is alive.
pub const HEARTBEAT_SECS: u64 = 15;

/// A stream silent for this long is broken (several missed heartbeats).
pub const STREAM_IDLE_SECS: u64 = 60;

/// What the Durable Object that holds a job's executor container does when its alarm runs. The
/// object is named after the job and keeps a few keys (the run's model key, its stop time, the
/// hosts its egress refused, a stop for a run not started yet); once the job's last run is over
/// nothing of it is kept, since a Durable Object's storage otherwise stays, and is billed, for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAlarm {
    /// The container runs and its stop time is ahead: stay awake this long (an object with nothing
    /// in progress is evicted, and its container with it), then run again.
    KeepAwake(std::time::Duration),
    /// No container runs but the stop time is ahead (a stop waiting for the fix request it
    /// answers, or a container that ended early): run again in this long.
    WaitFor(std::time::Duration),
    /// The stop time has passed, or none is known: stop the container if it runs, and clear the
    /// object's storage.
    Retire,
}

/// The alarm's step, from whether the container runs, the time and the stored stop time (all ms).
pub fn container_alarm(
    running: bool,
    now_ms: u64,
    stop_at_ms: Option<u64>,
    keep_awake: std::time::Duration,
) -> ContainerAlarm {
    let left = match stop_at_ms {
        Some(stop_at) if stop_at > now_ms => std::time::Duration::from_millis(stop_at - now_ms),
        _ => return ContainerAlarm::Retire,
    };
    if running {
        ContainerAlarm::KeepAwake(keep_awake.min(left))
    } else {
        ContainerAlarm::WaitFor(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> FixRequest {
        serde_json::from_value(serde_json::json!({
            "repo_url": "https://github.com/acme/web-app.git",
            "base_branch": "main",
            "branch": "bugbot/eng-12",
            "task": {"issue_id": "ENG-12", "title": "Cart total"},
            "github_token": "ghs_secret"
        }))
        .unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let mut r = request();
        assert_eq!(
            r.allowed_paths,
            vec!["src/", "app/", "components/", "pages/"]
        );
        assert_eq!(r.limits, Limits::default());
        assert!(r.validate(Remotes::HttpsOnly).is_ok());
        assert!(!format!("{r:?}").contains("ghs_secret"));

        let mut bad = request();
        bad.repo_url = "https://x-access-token:abc@github.com/a/b".into();
        assert!(
            bad.validate(Remotes::Local)
                .unwrap_err()
                .0
                .contains("credentials")
        );
        let mut bad = request();
        bad.branch = "main".into();
        assert!(bad.validate(Remotes::Local).is_err());
        let mut bad = request();
        bad.branch = "-x".into();
        assert!(bad.validate(Remotes::Local).is_err());
        let mut bad = request();
        bad.limits.wall_time_secs = 0;
        assert!(bad.validate(Remotes::Local).is_err());
        let mut bad = request();
        bad.allowed_paths = vec!["../".into()];
        assert!(bad.validate(Remotes::Local).is_err());
        assert!(serde_json::from_value::<FixRequest>(serde_json::json!({"repo_url": 1})).is_err());
    }

    #[test]
    fn only_https_remotes_outside_local_development() {
        for url in ["http://git.example/a/b.git", "file:///srv/a.git"] {
            let mut r = request();
            r.repo_url = url.into();
            assert_eq!(
                r.clone().validate(Remotes::HttpsOnly).unwrap_err().0,
                "repo_url must be an https:// URL"
            );
            assert!(r.validate(Remotes::Local).is_ok(), "{url}");
        }
        let mut r = request();
        r.repo_url = "ssh://git@github.com/a/b".into();
        assert!(r.validate(Remotes::Local).is_err());
        // Behind the egress interception: plain HTTP on port 80, nothing else.
        let mut r = request();
        r.repo_url = "http://github.com/a/b.git".into();
        assert!(r.clone().validate(Remotes::Intercepted).is_ok());
        r.repo_url = "http://github.com:8080/a/b.git".into();
        assert!(r.clone().validate(Remotes::Intercepted).is_err());
        r.repo_url = "file:///srv/a.git".into();
        assert!(r.validate(Remotes::Intercepted).is_err());
    }

    #[test]
    fn branch_names() {
        for ok in ["bugbot/eng-12", "fix_1", "a.b"] {
            assert!(valid_branch(ok), "{ok}");
        }
        for bad in [
            "", "a..b", "a b", "a~1", "x.lock", "/a", "a/", "a@{1}", "-f",
        ] {
            assert!(!valid_branch(bad), "{bad}");
        }
    }

    #[test]
    fn events_are_tagged_lines() {
        let e = Event::Turn {
            n: 2,
            summary: "Edit src/cart.js".into(),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"event":"turn","n":2,"summary":"Edit src/cart.js"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
    }

    #[test]
    fn a_container_object_stays_awake_while_its_container_runs_and_is_cleared_after_its_stop_time()
    {
        use std::time::Duration;
        let minute = Duration::from_secs(60);
        // Running, an hour left: awake a minute at a time.
        assert_eq!(
            container_alarm(true, 1_000, Some(3_601_000), minute),
            ContainerAlarm::KeepAwake(minute)
        );
        // Running, less than the keep-awake period left: only until the stop time.
        assert_eq!(
            container_alarm(true, 1_000, Some(21_000), minute),
            ContainerAlarm::KeepAwake(Duration::from_secs(20))
        );
        // A stop recorded before its run started: kept until the stop time, then cleared.
        assert_eq!(
            container_alarm(false, 1_000, Some(3_601_000), minute),
            ContainerAlarm::WaitFor(Duration::from_secs(3_600))
        );
        for running in [true, false] {
            assert_eq!(
                container_alarm(running, 5_000, Some(5_000), minute),
                ContainerAlarm::Retire
            );
            assert_eq!(
                container_alarm(running, 5_000, Some(1_000), minute),
                ContainerAlarm::Retire
            );
            // No stop time (an object from before it was kept): nothing to wait for.
            assert_eq!(
                container_alarm(running, 5_000, None, minute),
                ContainerAlarm::Retire
            );
        }
    }
}
