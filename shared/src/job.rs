//! The job message the gateway puts on the queue, and the job record kept in KV.

use crate::ids::{JobId, RepoFullName, Snowflake};
use crate::references::References;
use serde::{Deserialize, Serialize};

/// The job message format version this code writes and reads.
pub const JOB_MESSAGE_VERSION: u32 = 1;

/// A queue message `{"bugbot_dev_panic": true}` makes the consumer panic where the dev-only
/// routes are enabled (`POST /v1/dev/panic?worker=consumer`), so tests can see a panic logged.
pub const DEV_PANIC_FIELD: &str = "bugbot_dev_panic";

/// Whether a queue message is the dev-only panic request.
pub fn is_dev_panic(message: &serde_json::Value) -> bool {
    message.get(DEV_PANIC_FIELD) == Some(&serde_json::Value::Bool(true))
}

/// Report text is cut at this many bytes, so a message stays far under the queue's 128 KB limit.
pub const MAX_REPORT_BYTES: usize = 32 * 1024;

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Gather context into a Linear comment.
    Contextualize,
    /// Contextualize, then run the executor and open a pull request.
    Fix,
    /// Apply a reviewer's instruction (and the review so far) to a pull request bugbot opened:
    /// run the executor on its branch and push new commits to it.
    Review,
    /// An operator's check that the queue reaches the consumer; touches no outside service.
    Selftest,
}

impl Command {
    /// The name users type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contextualize => "contextualize",
            Self::Fix => "fix",
            Self::Review => "review",
            Self::Selftest => "selftest",
        }
    }
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// Platform user id (Discord snowflake or GitHub login's numeric id).
    pub id: String,
    /// Display name for messages.
    pub name: String,
}

/// Where the request came from, and so where answers go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A Discord interaction (slash command or message command).
    Discord {
        /// Server.
        guild_id: Snowflake,
        /// Channel or thread the command was used in.
        channel_id: Snowflake,
        /// Parent channel when `channel_id` is a thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_channel_id: Option<Snowflake>,
        /// The message the command targets (message commands), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<Snowflake>,
        /// The interaction, for editing the deferred answer.
        interaction_id: Snowflake,
        /// Interaction token (valid 15 minutes). Never logged.
        interaction_token: String,
        /// The application the interaction belongs to.
        application_id: Snowflake,
    },
    /// A message in a Discord channel or thread that mentions bugbot (over the Gateway).
    DiscordMention {
        /// Server.
        guild_id: Snowflake,
        /// Channel or thread of the message.
        channel_id: Snowflake,
        /// The mentioning message (bugbot's replies reference it).
        message_id: Snowflake,
    },
    /// A GitHub issue or pull request comment, or a label.
    Github {
        /// Repository.
        repo: RepoFullName,
        /// Issue or pull request number.
        number: u64,
        /// True when `number` is a pull request.
        #[serde(default)]
        is_pull_request: bool,
        /// The triggering comment, when a comment triggered the job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment_id: Option<u64>,
        /// The GitHub App installation that delivered the webhook.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        installation_id: Option<u64>,
        /// Web URL of the issue, for links.
        html_url: String,
        /// The requester's permission on the repository must be asked of GitHub before anything
        /// is done (their `author_association` did not already show them trusted).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        verify_permission: bool,
    },
    /// An operator through the admin API.
    Admin,
}

impl Source {
    /// A short, secret-free description for logs and job listings.
    pub fn describe(&self) -> String {
        match self {
            Self::Discord {
                guild_id,
                channel_id,
                ..
            }
            | Self::DiscordMention {
                guild_id,
                channel_id,
                ..
            } => format!("discord guild {guild_id} channel {channel_id}"),
            Self::Github { repo, number, .. } => format!("github {repo}#{number}"),
            Self::Admin => "admin".to_owned(),
        }
    }
}

/// The text of the report, possibly truncated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Title, when the source has one (a GitHub issue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The report's text (at most [`MAX_REPORT_BYTES`]).
    pub text: String,
    /// True when `text` was cut to fit.
    #[serde(default)]
    pub truncated: bool,
}

impl Report {
    /// Builds a report, cutting the text at a character boundary if it is too long.
    pub fn new(title: Option<String>, text: &str) -> Self {
        let (text, truncated) = truncate(text, MAX_REPORT_BYTES);
        Self {
            title: title.map(|t| truncate(&t, 512).0),
            text,
            truncated,
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary; says whether it cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// The message on the queue: everything the consumer needs, and nothing it must look up again
/// from the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Format version, [`JOB_MESSAGE_VERSION`].
    pub v: u32,
    /// Job id, stable across redeliveries of the same trigger.
    pub id: JobId,
    /// What to do.
    pub command: Command,
    /// Who asked.
    pub requester: Requester,
    /// Where it came from.
    pub source: Source,
    /// What was reported.
    pub report: Report,
    /// What the report points at.
    pub references: References,
    /// When the gateway accepted it (ms since the Unix epoch).
    pub enqueued_at_ms: u64,
    /// How many times an operator replayed this job from the dead-letter queue (0 for a new job).
    /// A replayed message may run a job whose record says `dead`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replay: u32,
    /// Set when someone asked to run an ended job again (`retry`, `continue`): the message's
    /// `replay` is then one more than the job's, so the consumer runs it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// Why an ended job runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Retry or continue.
    pub kind: ResumeKind,
    /// Who asked (display name).
    pub by: String,
}

/// How an ended job runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeKind {
    /// A new attempt of a failed or stopped job (what it did before is kept where it is sound).
    Retry,
    /// Carry on from the work a run left at its turn, budget or time limit, with a fresh budget.
    Continue,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A queue message the consumer cannot use. Permanent: it is recorded and acked, never retried.
#[derive(Debug, thiserror::Error)]
pub enum JobDecodeError {
    /// Not a JSON job message of a known shape.
    #[error("not a job message: {0}")]
    Malformed(String),
    /// Written by a newer or older format.
    #[error("unsupported job message version {0}")]
    UnsupportedVersion(u64),
}

impl JobMessage {
    /// Serializes for the queue.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("job message serializes: {e}"))
    }

    /// Parses a queue message body, checking the version first so the error says what is wrong.
    pub fn from_json_value(value: serde_json::Value) -> Result<Self, JobDecodeError> {
        match value.get("v").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(JOB_MESSAGE_VERSION) => {}
            Some(v) => return Err(JobDecodeError::UnsupportedVersion(v)),
            None => return Err(JobDecodeError::Malformed("no version field `v`".into())),
        }
        serde_json::from_value(value).map_err(|e| JobDecodeError::Malformed(e.to_string()))
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted by the gateway, waiting on the queue.
    Queued,
    /// A consumer is working on it.
    Running,
    /// A transient failure; it will be retried.
    Retrying,
    /// Finished.
    Succeeded,
    /// Ended by a permanent failure; the requester was told.
    Failed,
    /// Retries ran out; the message is in the dead-letter queue.
    Dead,
    /// The requester may not ask for this (told once, nothing done).
    Refused,
    /// Someone stopped it (nothing was pushed); it may be retried.
    Stopped,
}

impl JobStatus {
    /// True once nothing more will happen without an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Dead | Self::Refused | Self::Stopped
        )
    }
}

/// One entry of a job's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// Step name (`queued`, `linear.resolve`, ...).
    pub step: String,
    /// What happened, for humans. Never holds a secret.
    pub detail: String,
}

/// The job's run history, kept in KV under `job:{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: JobId,
    /// Command.
    pub command: Command,
    /// Current status.
    pub status: JobStatus,
    /// Requester's display name.
    pub requester: String,
    /// Where it came from (secret-free description).
    pub source: String,
    /// Created (ms).
    pub created_at_ms: u64,
    /// Last change (ms).
    pub updated_at_ms: u64,
    /// Deliveries seen by the consumer.
    #[serde(default)]
    pub attempts: u32,
    /// The last error, if any (already free of secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the job first failed transiently (ms): retries give up by time since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure_at_ms: Option<u64>,
    /// Links to what the job produced (Linear issue, comment, pull request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Timeline, oldest first (bounded by [`MAX_EVENTS`]).
    #[serde(default)]
    pub events: Vec<JobEvent>,
    /// Side effects already done, so a redelivery or retry does not do them twice.
    #[serde(default)]
    pub checkpoints: Checkpoints,
    /// The replay generation this record belongs to (see [`JobMessage::replay`]).
    #[serde(default)]
    pub replay: u32,
}

/// What a job has already done in the outside world.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// The Linear issue the job works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_issue: Option<crate::linear::Issue>,
    /// The source (thread, GitHub issue) is attached to the Linear issue.
    #[serde(default)]
    pub source_attached: bool,
    /// The context packet comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_comment: Option<crate::linear::Comment>,
    /// One-line summary of the report (for replies and the pull request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// bugbot's reply to a Discord mention, edited in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord_reply: Option<String>,
    /// bugbot's status comment on the GitHub issue, edited in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_status_comment: Option<u64>,
    /// The executor's result (a retry after it does not run Claude Code again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_result: Option<crate::executor::FixResult>,
    /// The pull request opened (or found open) for the fix's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<crate::github_api::PullRequest>,
    /// The pull request is attached to the Linear issue and announced there.
    #[serde(default)]
    pub pull_request_linked: bool,
    /// The final answer reached the requester.
    #[serde(default)]
    pub answered: bool,
    /// The result of the run a `continue` carries on from (its summary goes to the next run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<crate::executor::FixResult>,
}

impl Checkpoints {
    /// Prepares an ended job's checkpoints for running it again: what it did in the world (the
    /// Linear issue, its comment, the status message, the pull request) is kept, so nothing is
    /// done twice; the run's result is cleared, so the executor runs again. A retry keeps a
    /// result that was pushed (what failed came after it); a continue remembers the result it
    /// carries on from.
    pub fn resume(&mut self, kind: ResumeKind) {
        self.answered = false;
        match kind {
            ResumeKind::Retry => {
                if self
                    .fix_result
                    .as_ref()
                    .is_some_and(|r| r.outcome != crate::executor::Outcome::Pushed)
                {
                    self.fix_result = None;
                }
            }
            ResumeKind::Continue => {
                if let Some(result) = self.fix_result.take() {
                    self.continued_from = Some(result);
                }
            }
        }
    }
}

/// A job that ran out of retries (or a message that could not be read), kept under `dead:{id}`
/// so that operators can list and replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    /// The job id, or `malformed-{message id}` for an unreadable message.
    pub id: String,
    /// The message as it was on the queue (secrets inside stay in KV; never printed by tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<JobMessage>,
    /// The unreadable message's text (cut), when it could not be read as a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The last error (already free of secrets).
    pub error: String,
    /// Deliveries the consumer saw.
    pub attempts: u32,
    /// When it was recorded (ms).
    pub died_at_ms: u64,
    /// When an operator last replayed it (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at_ms: Option<u64>,
}

impl DeadJob {
    /// True when replaying can work (a readable job message).
    pub fn replayable(&self) -> bool {
        self.message.is_some()
    }

    /// What the admin API shows: no interaction tokens.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "command": self.message.as_ref().map(|m| m.command.as_str()),
            "source": self.message.as_ref().map(|m| m.source.describe()),
            "requester": self.message.as_ref().map(|m| m.requester.name.clone()),
            "error": self.error,
            "attempts": self.attempts,
            "died_at_ms": self.died_at_ms,
            "replayed_at_ms": self.replayed_at_ms,
            "replayable": self.replayable(),
        })
    }
}

/// A job record keeps at most this many timeline events (the oldest are dropped, the first kept).
pub const MAX_EVENTS: usize = 100;

impl JobRecord {
    /// The record written when the gateway enqueues a job.
    pub fn queued(job: &JobMessage) -> Self {
        Self {
            id: job.id.clone(),
            command: job.command,
            status: JobStatus::Queued,
            requester: job.requester.name.clone(),
            source: job.source.describe(),
            created_at_ms: job.enqueued_at_ms,
            updated_at_ms: job.enqueued_at_ms,
            attempts: 0,
            last_error: None,
            first_failure_at_ms: None,
            links: Vec::new(),
            events: vec![JobEvent {
                at_ms: job.enqueued_at_ms,
                step: "queued".into(),
                detail: format!(
                    "{} requested by {}",
                    job.command.as_str(),
                    job.requester.name
                ),
            }],
            checkpoints: Checkpoints::default(),
            replay: job.replay,
        }
    }

    /// Appends a timeline event and moves the status.
    pub fn record(
        &mut self,
        now_ms: u64,
        status: JobStatus,
        step: &str,
        detail: impl Into<String>,
    ) {
        self.status = status;
        self.updated_at_ms = now_ms;
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(1);
        }
        self.events.push(JobEvent {
            at_ms: now_ms,
            step: step.to_owned(),
            detail: detail.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_dev_panic_message_is_one() {
        assert!(super::is_dev_panic(
            &serde_json::json!({ "bugbot_dev_panic": true })
        ));
        assert!(!super::is_dev_panic(
            &serde_json::json!({ "bugbot_dev_panic": "true" })
        ));
        assert!(!super::is_dev_panic(&serde_json::json!({ "v": 1 })));
    }

    use super::*;

    fn sample() -> JobMessage {
        JobMessage {
            v: JOB_MESSAGE_VERSION,
            id: JobId::parse("dc-123456").unwrap(),
            command: Command::Fix,
            requester: Requester {
                id: "42".into(),
                name: "jane".into(),
            },
            source: Source::Discord {
                guild_id: Snowflake::parse("1").unwrap(),
                channel_id: Snowflake::parse("2").unwrap(),
                parent_channel_id: None,
                message_id: None,
                interaction_id: Snowflake::parse("123456").unwrap(),
                interaction_token: "tok".into(),
                application_id: Snowflake::parse("3").unwrap(),
            },
            report: Report::new(None, "it broke"),
            references: References::default(),
            enqueued_at_ms: 1_700_000_000_000,
            replay: 0,
            resume: None,
        }
    }

    #[test]
    fn round_trips_and_checks_version() {
        let job = sample();
        let value: serde_json::Value = serde_json::from_str(&job.to_json()).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["source"]["kind"], "discord");
        assert_eq!(JobMessage::from_json_value(value.clone()).unwrap(), job);

        let mut v2 = value.clone();
        v2["v"] = 2.into();
        assert!(matches!(
            JobMessage::from_json_value(v2),
            Err(JobDecodeError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            JobMessage::from_json_value(serde_json::json!({"hello": 1})),
            Err(JobDecodeError::Malformed(_))
        ));
        let mut bad_id = value;
        bad_id["id"] = "no spaces allowed".into();
        assert!(JobMessage::from_json_value(bad_id).is_err());
    }

    #[test]
    fn long_reports_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_REPORT_BYTES);
        let r = Report::new(None, &long);
        assert!(r.truncated);
        assert!(r.text.len() <= MAX_REPORT_BYTES);
        let mut job = sample();
        job.report = r;
        assert!(job.to_json().len() < 64 * 1024);
    }

    #[test]
    fn record_timeline_is_bounded() {
        let mut rec = JobRecord::queued(&sample());
        assert_eq!(rec.status, JobStatus::Queued);
        for i in 0..(MAX_EVENTS as u64 * 2) {
            rec.record(i, JobStatus::Running, "step", "x");
        }
        assert_eq!(rec.events.len(), MAX_EVENTS);
        assert_eq!(rec.events[0].step, "queued");
        assert!(!serde_json::to_string(&rec).unwrap().contains("tok"));
    }
}
