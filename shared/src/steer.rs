//! Steering a fix: **Stop** while it runs, **Retry** once it failed or was stopped, **Continue**
//! once it hit its turn, budget or time limit. Asked with a button on the job's Discord message
//! or an `@bugbot stop|retry|continue` comment on GitHub.
//!
//! Pure: the gateway reads the ask ([`Ask`]), the job's state object decides with [`plan`]
//! (atomically, so two presses cannot both resume a job), and the consumer carries the plan out:
//! it asks the executor to stop the run, or the gateway puts the resumed job on the queue.

use crate::executor::Outcome;
use crate::ids::{JobId, Snowflake};
use crate::job::{
    Command, JobMessage, JobRecord, JobStatus, Requester, Resume, ResumeKind, Source,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What someone asks of a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Kill the running fix: nothing is pushed, the workspace is removed.
    Stop,
    /// Run a failed or stopped fix again.
    Retry,
    /// Carry on from the work a fix left at a limit, with a fresh budget.
    Continue,
}

impl Action {
    /// The word users type (and the button's id part).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Retry => "retry",
            Self::Continue => "continue",
        }
    }

    /// Reads the word.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "stop" => Some(Self::Stop),
            "retry" => Some(Self::Retry),
            "continue" => Some(Self::Continue),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Stop => "Stop",
            Self::Retry => "Retry",
            Self::Continue => "Continue",
        }
    }

    /// Discord button style: danger for Stop, primary for the others.
    fn style(self) -> u8 {
        match self {
            Self::Stop => 4,
            Self::Retry | Self::Continue => 1,
        }
    }
}

const CUSTOM_ID_PREFIX: &str = "bugbot";

/// A button's `custom_id`: `bugbot:{action}:{job id}` (Discord allows 100 characters; a job id
/// has at most 64).
pub fn custom_id(action: Action, job: &JobId) -> String {
    format!("{CUSTOM_ID_PREFIX}:{}:{job}", action.as_str())
}

/// Reads a button's `custom_id`.
pub fn parse_custom_id(id: &str) -> Option<(Action, JobId)> {
    let mut parts = id.splitn(3, ':');
    if parts.next()? != CUSTOM_ID_PREFIX {
        return None;
    }
    let action = Action::parse(parts.next()?)?;
    let job = JobId::parse(parts.next()?).ok()?;
    Some((action, job))
}

/// A message's `components`: one row with a button per action. No actions: no row (an edit with
/// an empty list removes the buttons).
pub fn components(job: &JobId, actions: &[Action]) -> Value {
    if actions.is_empty() {
        return json!([]);
    }
    let buttons: Vec<Value> = actions
        .iter()
        .map(|a| json!({"type": 2, "style": a.style(), "label": a.label(), "custom_id": custom_id(*a, job)}))
        .collect();
    json!([{ "type": 1, "components": buttons }])
}

/// The buttons a fix's message shows once it ended this way.
pub fn buttons_after(status: JobStatus, outcome: Option<Outcome>) -> Vec<Action> {
    match (status, outcome) {
        (_, Some(o)) if o.hit_limit() => vec![Action::Continue],
        (JobStatus::Failed | JobStatus::Stopped | JobStatus::Dead, _) => vec![Action::Retry],
        _ => Vec::new(),
    }
}

/// On GitHub, where there are no buttons: how to ask for the same (`mention` is `@bugbot`).
pub fn github_hint(actions: &[Action], mention: &str) -> String {
    let asks: Vec<String> = actions
        .iter()
        .map(|a| {
            let what = match a {
                Action::Stop => "stop this fix",
                Action::Retry => "try again",
                Action::Continue => "carry on with a fresh budget",
            };
            format!("`{mention} {}` to {what}", a.as_str())
        })
        .collect();
    if asks.is_empty() {
        String::new()
    } else {
        format!("_Comment {}._", asks.join(", or "))
    }
}

/// The executor's run id of a job's current attempt generation: a redelivery follows the same run.
pub fn run_id(job: &JobMessage) -> String {
    format!("{}-r{}", job.id, job.replay)
}

/// A Discord interaction that carries the answer of a resumed job (its token is fresh for 15
/// minutes, the original's may have expired).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    /// Interaction id.
    pub id: Snowflake,
    /// Its token. Never logged.
    pub token: String,
}

impl std::fmt::Debug for Interaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interaction")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// Someone's ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// What.
    pub action: Action,
    /// Who (their platform id and name).
    pub by: Requester,
    /// They may run fixes themselves (a fix role on Discord, a trusted association on GitHub), so
    /// they may steer anyone's.
    pub may_fix: bool,
    /// The button press's interaction (Discord), whose message the resumed job edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<Interaction>,
}

/// What the job's state decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum Plan {
    /// Stop the executor's run `run_id`; its result says `reason`.
    Stop {
        /// The run.
        run_id: String,
        /// "stopped by …".
        reason: String,
    },
    /// Put this message on the queue (the job runs again).
    Enqueue {
        /// The resumed job.
        message: Box<JobMessage>,
    },
    /// Do nothing; tell the asker this.
    Refuse {
        /// For the asker.
        text: String,
    },
}

fn refuse(text: impl Into<String>) -> Plan {
    Plan::Refuse { text: text.into() }
}

/// Decides an ask about a job from its latest message and record (`None` before the consumer
/// first took the job).
pub fn plan(ask: &Ask, message: Option<&JobMessage>, record: Option<&JobRecord>) -> Plan {
    let (Some(message), Some(record)) = (message, record) else {
        return refuse("This job has not started yet; try again in a moment.");
    };
    if !matches!(message.command, Command::Fix | Command::Review) {
        return refuse("Only a fix can be stopped, retried or continued.");
    }
    if ask.by.id != message.requester.id && !ask.may_fix {
        return refuse(format!(
            "Only {} (who asked for this fix) or someone who may run fixes can {} it.",
            message.requester.name,
            ask.action.as_str()
        ));
    }
    let outcome = record.checkpoints.fix_result.as_ref().map(|r| r.outcome);
    match ask.action {
        Action::Stop => match record.status {
            JobStatus::Queued | JobStatus::Running | JobStatus::Retrying => Plan::Stop {
                run_id: run_id(message),
                reason: format!("stopped by {}", ask.by.name),
            },
            _ => refuse("This fix is not running any more."),
        },
        Action::Retry => match record.status {
            JobStatus::Failed | JobStatus::Stopped | JobStatus::Dead => {
                resumed(message, ask, ResumeKind::Retry)
            }
            JobStatus::Queued | JobStatus::Running | JobStatus::Retrying => {
                refuse("This fix is still running.")
            }
            _ => refuse("Only a fix that failed or was stopped can be retried."),
        },
        Action::Continue => match (record.status, outcome) {
            (JobStatus::Succeeded, Some(o)) if o.hit_limit() => {
                resumed(message, ask, ResumeKind::Continue)
            }
            _ => refuse(
                "Only a fix that stopped at its turn, budget or time limit can be continued.",
            ),
        },
    }
}

/// The job's message, set to run again (the next replay generation), answering where it was
/// asked — through the button press's fresh interaction on Discord.
fn resumed(message: &JobMessage, ask: &Ask, kind: ResumeKind) -> Plan {
    let mut next = message.clone();
    next.replay += 1;
    next.resume = Some(Resume {
        kind,
        by: ask.by.name.clone(),
    });
    if let (
        Source::Discord {
            interaction_id,
            interaction_token,
            ..
        },
        Some(fresh),
    ) = (&mut next.source, &ask.interaction)
    {
        interaction_id.clone_from(&fresh.id);
        interaction_token.clone_from(&fresh.token);
    }
    Plan::Enqueue {
        message: Box::new(next),
    }
}

/// What a resumed job says first.
pub fn resuming_text(resume: &Resume) -> String {
    match resume.kind {
        ResumeKind::Retry => format!("🔁 Retrying the fix (asked by {})…", resume.by),
        ResumeKind::Continue => format!(
            "▶️ Continuing the fix from where it stopped, with a fresh budget (asked by {})…",
            resume.by
        ),
    }
}

/// The follow-up text for a run that continues an earlier one.
pub fn continue_follow_up(previous_summary: &str, changed: &[String]) -> String {
    let mut text = String::from(
        "An earlier run on this branch stopped at its limit before it finished. Its work is already \
         committed on this branch (the files you see include it). Finish the fix: check what was \
         done, complete what is left, and end with a short summary of the whole fix.\n",
    );
    if !changed.is_empty() {
        text.push_str(&format!(
            "\nFiles the earlier run changed: {}\n",
            changed.join(", ")
        ));
    }
    let summary = previous_summary.trim();
    if !summary.is_empty() {
        text.push_str("\nThe earlier run's last words:\n\n");
        text.push_str(&crate::job::truncate(summary, 4000).0);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::FixResult;
    use crate::job::{JOB_MESSAGE_VERSION, Report};
    use crate::references::References;

    fn job() -> JobMessage {
        JobMessage {
            v: JOB_MESSAGE_VERSION,
            id: JobId::parse("dc-100").unwrap(),
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
                interaction_id: Snowflake::parse("100").unwrap(),
                interaction_token: "old-token".into(),
                application_id: Snowflake::parse("3").unwrap(),
            },
            report: Report::new(None, "cart total is wrong"),
            references: References::default(),
            enqueued_at_ms: 1,
            replay: 0,
            resume: None,
        }
    }

    fn record(status: JobStatus, outcome: Option<Outcome>) -> JobRecord {
        let mut r = JobRecord::queued(&job());
        r.status = status;
        r.checkpoints.fix_result = outcome.map(FixResult::empty);
        r
    }

    fn ask(action: Action, by: &str, may_fix: bool) -> Ask {
        Ask {
            action,
            by: Requester {
                id: by.into(),
                name: format!("user{by}"),
            },
            may_fix,
            interaction: Some(Interaction {
                id: Snowflake::parse("555").unwrap(),
                token: "fresh-token".into(),
            }),
        }
    }

    #[test]
    fn custom_ids_round_trip_and_reject_others() {
        let id = JobId::parse("gh-0a1b2c3d-aaaa-bbbb-cccc-123456789012").unwrap();
        for a in [Action::Stop, Action::Retry, Action::Continue] {
            let c = custom_id(a, &id);
            assert!(c.len() <= 100);
            assert_eq!(parse_custom_id(&c), Some((a, id.clone())));
        }
        assert_eq!(parse_custom_id("bugbot:explode:dc-1"), None);
        assert_eq!(parse_custom_id("other:stop:dc-1"), None);
        assert_eq!(parse_custom_id("bugbot:stop:not a job"), None);
        let row = components(&id, &[Action::Stop]);
        assert_eq!(
            row[0]["components"][0]["custom_id"],
            custom_id(Action::Stop, &id)
        );
        assert_eq!(components(&id, &[]), json!([]));
    }

    #[test]
    fn only_the_requester_or_a_fixer_may_steer() {
        let running = record(JobStatus::Running, None);
        let stranger = plan(&ask(Action::Stop, "7", false), Some(&job()), Some(&running));
        assert!(matches!(&stranger, Plan::Refuse { text } if text.contains("Only jane")));
        assert!(matches!(
            plan(&ask(Action::Stop, "42", false), Some(&job()), Some(&running)),
            Plan::Stop { run_id, reason } if run_id == "dc-100-r0" && reason == "stopped by user42"
        ));
        assert!(matches!(
            plan(&ask(Action::Stop, "7", true), Some(&job()), Some(&running)),
            Plan::Stop { .. }
        ));
        assert!(matches!(
            plan(&ask(Action::Stop, "42", false), None, None),
            Plan::Refuse { .. }
        ));
    }

    #[test]
    fn each_action_fits_its_moment() {
        let me = |a| ask(a, "42", false);
        let done = record(JobStatus::Succeeded, Some(Outcome::Pushed));
        for a in [Action::Stop, Action::Retry, Action::Continue] {
            assert!(
                matches!(plan(&me(a), Some(&job()), Some(&done)), Plan::Refuse { .. }),
                "{a:?}"
            );
        }
        let stopped = record(JobStatus::Stopped, Some(Outcome::Stopped));
        let Plan::Enqueue { message } = plan(&me(Action::Retry), Some(&job()), Some(&stopped))
        else {
            panic!("a stopped fix is retried")
        };
        assert_eq!(message.replay, 1);
        assert_eq!(message.resume.as_ref().unwrap().kind, ResumeKind::Retry);
        let Source::Discord {
            interaction_token,
            interaction_id,
            ..
        } = &message.source
        else {
            panic!()
        };
        assert_eq!(
            (interaction_token.as_str(), interaction_id.as_str()),
            ("fresh-token", "555")
        );
        assert_eq!(message.id, job().id, "the same job, its history kept");

        let limited = record(JobStatus::Succeeded, Some(Outcome::MaxTurns));
        assert!(matches!(
            plan(&me(Action::Continue), Some(&job()), Some(&limited)),
            Plan::Enqueue { message } if message.resume.as_ref().unwrap().kind == ResumeKind::Continue
        ));
        assert!(matches!(
            plan(&me(Action::Retry), Some(&job()), Some(&limited)),
            Plan::Refuse { .. }
        ));
        let failed = record(JobStatus::Failed, None);
        assert!(matches!(
            plan(&me(Action::Continue), Some(&job()), Some(&failed)),
            Plan::Refuse { .. }
        ));
    }

    #[test]
    fn buttons_follow_the_ending() {
        assert_eq!(
            buttons_after(JobStatus::Succeeded, Some(Outcome::MaxTurns)),
            vec![Action::Continue]
        );
        assert_eq!(
            buttons_after(JobStatus::Stopped, Some(Outcome::Stopped)),
            vec![Action::Retry]
        );
        assert_eq!(buttons_after(JobStatus::Failed, None), vec![Action::Retry]);
        assert!(buttons_after(JobStatus::Succeeded, Some(Outcome::Pushed)).is_empty());
    }

    #[test]
    fn the_interaction_token_is_never_shown() {
        let a = ask(Action::Retry, "42", false);
        assert!(!format!("{a:?}").contains("fresh-token"));
    }
}
