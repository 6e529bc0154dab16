//! GitHub App webhooks: which deliveries become jobs (pure; the gateway performs the decision).

use crate::authz::AccessPolicy;
use crate::ids::{IdError, JobId, RepoFullName};
use crate::job::{Command, JOB_MESSAGE_VERSION, JobMessage, Report, Requester, Source};
use crate::references;
use serde::Deserialize;

/// The default mention that addresses bugbot in a comment (`GITHUB_MENTION`).
pub const DEFAULT_MENTION: &str = "@bugbot";
/// Label that asks for a fix.
pub const LABEL_FIX: &str = "bugbot:fix";
/// Label that asks for context.
pub const LABEL_CONTEXTUALIZE: &str = "bugbot:contextualize";

/// A GitHub account.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    /// Login.
    pub login: String,
    /// Numeric id.
    pub id: u64,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl Account {
    /// bugbot itself (`GITHUB_BOT_LOGIN`).
    fn is_bugbot(&self, policy: &AccessPolicy) -> bool {
        policy
            .github_bot_login
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case(&self.login))
    }

    fn is_bot(&self, policy: &AccessPolicy) -> bool {
        self.kind.eq_ignore_ascii_case("bot")
            || self.login.ends_with("[bot]")
            || policy
                .github_bot_login
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case(&self.login))
    }
}

/// An issue (or pull request, seen as an issue).
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    /// Number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Web URL.
    pub html_url: String,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
    /// Its author (for a pull request: who opened it).
    #[serde(default)]
    pub user: Option<Account>,
}

/// A comment.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    /// Id.
    pub id: u64,
    /// Text.
    #[serde(default)]
    pub body: String,
    /// Author.
    pub user: Account,
    /// The author's relation to the repository.
    pub author_association: String,
}

/// A repository.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: RepoFullName,
}

/// An App installation reference.
#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    /// Installation id.
    pub id: u64,
}

/// A label.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    /// Name.
    pub name: String,
}

/// `issue_comment` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueCommentEvent {
    /// `created`, `edited`, `deleted`.
    pub action: String,
    /// The issue.
    pub issue: Issue,
    /// The comment.
    pub comment: Comment,
    /// The repository.
    pub repository: Repository,
    /// The installation (absent for repository webhooks).
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// `issues` payload (for `labeled`).
#[derive(Debug, Clone, Deserialize)]
pub struct IssuesEvent {
    /// Action.
    pub action: String,
    /// The issue.
    pub issue: Issue,
    /// The label added (for `labeled`).
    #[serde(default)]
    pub label: Option<Label>,
    /// The repository.
    pub repository: Repository,
    /// Who acted.
    pub sender: Account,
    /// The installation.
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// A pull request, as `pull_request` events carry it (the fields bugbot uses).
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    /// Number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Web URL.
    pub html_url: String,
    /// Who opened it.
    #[serde(default)]
    pub user: Option<Account>,
}

impl PullRequest {
    /// The pull request, seen as the issue it also is.
    fn into_issue(self) -> Issue {
        Issue {
            number: self.number,
            title: self.title,
            body: self.body,
            html_url: self.html_url,
            pull_request: Some(serde_json::Value::Bool(true)),
            user: self.user,
        }
    }
}

/// A review, as `pull_request_review` events carry it.
#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    /// Its summary text.
    #[serde(default)]
    pub body: Option<String>,
    /// `approved`, `changes_requested`, `commented`, ...
    #[serde(default)]
    pub state: String,
    /// Who reviewed.
    pub user: Account,
    /// Their relation to the repository.
    #[serde(default)]
    pub author_association: String,
}

/// `pull_request_review` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestReviewEvent {
    /// `submitted`, `edited`, `dismissed`.
    pub action: String,
    /// The review.
    pub review: Review,
    /// The pull request.
    pub pull_request: PullRequest,
    /// The repository.
    pub repository: Repository,
    /// The installation.
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// `pull_request` payload (for `labeled`).
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    /// Action.
    pub action: String,
    /// The pull request.
    pub pull_request: PullRequest,
    /// The label added (for `labeled`).
    #[serde(default)]
    pub label: Option<Label>,
    /// The repository.
    pub repository: Repository,
    /// Who acted.
    pub sender: Account,
    /// The installation.
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// What to do with a verified delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer the `ping` event.
    Pong,
    /// Enqueue this job (after dedupe and rate limit).
    Enqueue(Box<JobMessage>),
    /// Nothing to do; the reason goes in the 2xx answer.
    Ignored(&'static str),
    /// Steer the latest fix of this issue or pull request.
    Steer {
        /// The conversation whose latest fix is meant.
        thread: GithubThread,
        /// The App installation that delivered the comment (for the answer).
        installation_id: Option<u64>,
        /// The ask.
        ask: crate::steer::Ask,
    },
}

/// A GitHub issue or pull request, as the key of its latest fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct GithubThread {
    /// Repository.
    pub repo: RepoFullName,
    /// Issue or pull request number.
    pub number: u64,
}

impl GithubThread {
    /// The name of its latest-fix record (case-insensitive repository names).
    pub fn key(&self) -> String {
        format!(
            "github:{}#{}",
            self.repo.as_str().to_ascii_lowercase(),
            self.number
        )
    }
}

/// The delivery cannot be read. Answered with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDelivery {
    /// A required header is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `X-GitHub-Delivery` is not usable as an id.
    #[error("invalid X-GitHub-Delivery: {0}")]
    DeliveryId(IdError),
    /// The body is not JSON.
    #[error("body is not valid JSON")]
    NotJson,
    /// The body lacks a field the event must have.
    #[error("invalid {event} payload: {detail}")]
    Payload {
        /// Event name.
        event: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// What a comment asks of bugbot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A new job (`@bugbot fix`, `@bugbot contextualize`).
    Command(Command),
    /// Steer the issue's latest fix (`@bugbot stop|retry|continue`).
    Steer(crate::steer::Action),
    /// bugbot is addressed with words it has no command for (on bugbot's own pull request, an
    /// instruction for a review).
    Instruction,
}

/// Finds `@bugbot fix` / `@bugbot contextualize` in a comment (case-insensitive, the mention at a
/// word start).
pub fn command_in_comment(body: &str, mention: &str) -> Option<Command> {
    match ask_in_comment(body, mention)? {
        Asked::Command(c) => Some(c),
        Asked::Steer(_) | Asked::Instruction => None,
    }
}

/// Finds what a comment asks of bugbot: the first mention followed by a word bugbot knows, else
/// [`Asked::Instruction`] when bugbot is addressed at all.
pub fn ask_in_comment(body: &str, mention: &str) -> Option<Asked> {
    let lower = body.to_ascii_lowercase();
    let mention = mention.to_ascii_lowercase();
    let mut addressed = false;
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&mention) {
        let start = from + pos;
        let end = start + mention.len();
        from = end;
        let at_word_start = lower[..start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '(' || c == '>');
        if !at_word_start {
            continue;
        }
        let rest = lower[end..].trim_start();
        if rest.len() == lower[end..].len() && !rest.is_empty() {
            continue; // `@bugbotx`: another name
        }
        addressed = true;
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        match word.as_str() {
            "fix" => return Some(Asked::Command(Command::Fix)),
            "contextualize" | "contextualise" => {
                return Some(Asked::Command(Command::Contextualize));
            }
            other => {
                if let Some(action) = crate::steer::Action::parse(other) {
                    return Some(Asked::Steer(action));
                }
            }
        }
    }
    addressed.then_some(Asked::Instruction)
}

/// Decides what to do with a delivery whose signature was verified.
pub fn decide(
    event: Option<&str>,
    delivery: Option<&str>,
    body: &[u8],
    policy: &AccessPolicy,
    mention: &str,
    now_ms: u64,
) -> Result<Decision, InvalidDelivery> {
    let event = event.ok_or(InvalidDelivery::MissingHeader("X-GitHub-Event"))?;
    let delivery = delivery.ok_or(InvalidDelivery::MissingHeader("X-GitHub-Delivery"))?;
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| InvalidDelivery::NotJson)?;
    let job_id = || JobId::for_github_delivery(delivery).map_err(InvalidDelivery::DeliveryId);
    match event {
        "ping" => Ok(Decision::Pong),
        "issue_comment" => {
            let e: IssueCommentEvent = payload("issue_comment", value)?;
            if e.action != "created" {
                return Ok(Decision::Ignored("only new comments are read"));
            }
            if e.comment.user.is_bot(policy) {
                return Ok(Decision::Ignored("comments by bots never trigger bugbot"));
            }
            let Some(asked) = ask_in_comment(&e.comment.body, mention) else {
                return Ok(Decision::Ignored(
                    "the comment does not ask bugbot for anything",
                ));
            };
            if !policy.serves_repo(&e.repository.full_name) {
                return Ok(Decision::Ignored("this repository is not served by bugbot"));
            }
            // On bugbot's own pull request, anything but stop/retry/continue is an instruction.
            let on_bugbots_pull = e.issue.pull_request.is_some()
                && e.issue.user.as_ref().is_some_and(|u| u.is_bugbot(policy));
            let command = match asked {
                Asked::Command(_) | Asked::Instruction if on_bugbots_pull => Command::Review,
                Asked::Instruction => {
                    return Ok(Decision::Ignored(
                        "the comment does not ask bugbot for anything it does",
                    ));
                }
                Asked::Command(command) => command,
                Asked::Steer(action) => {
                    return Ok(Decision::Steer {
                        thread: GithubThread {
                            repo: e.repository.full_name.clone(),
                            number: e.issue.number,
                        },
                        installation_id: e.installation.as_ref().map(|i| i.id),
                        ask: crate::steer::Ask {
                            action,
                            by: Requester {
                                id: e.comment.user.id.to_string(),
                                name: e.comment.user.login.clone(),
                            },
                            may_fix: policy
                                .github_association_allowed(&e.comment.author_association),
                            interaction: None,
                        },
                    });
                }
            };
            // A trusted association acts at once. Anyone else may still have write access (members
            // of an organization whose membership is private arrive as CONTRIBUTOR or NONE): the
            // consumer asks GitHub before doing anything, and answers a refusal once.
            let verify = !policy.github_association_allowed(&e.comment.author_association);
            let text = format!(
                "{}\n\n{} commented:\n{}",
                e.issue.body.as_deref().unwrap_or(""),
                e.comment.user.login,
                e.comment.body
            );
            Ok(Decision::Enqueue(Box::new(job(
                job_id()?,
                command,
                Trigger {
                    requester: &e.comment.user,
                    repository: &e.repository,
                    issue: &e.issue,
                    comment_id: Some(e.comment.id),
                    installation: e.installation.as_ref(),
                    verify_permission: verify,
                },
                &text,
                now_ms,
            ))))
        }
        "issues" => {
            let e: IssuesEvent = payload("issues", value)?;
            if e.action != "labeled" {
                return Ok(Decision::Ignored(
                    "only labels ask bugbot for work on issues",
                ));
            }
            let Some(command) = label_command(e.label.as_ref()) else {
                return Ok(Decision::Ignored("the label is not a bugbot label"));
            };
            let trigger =
                Trigger::label(&e.sender, &e.repository, &e.issue, e.installation.as_ref());
            labeled(policy, command, trigger, job_id, now_ms)
        }
        "pull_request" => {
            let e: PullRequestEvent = payload("pull_request", value)?;
            if e.action != "labeled" {
                return Ok(Decision::Ignored(
                    "only labels ask bugbot for work on pull requests",
                ));
            }
            let Some(command) = label_command(e.label.as_ref()) else {
                return Ok(Decision::Ignored("the label is not a bugbot label"));
            };
            let issue = e.pull_request.into_issue();
            let trigger = Trigger::label(&e.sender, &e.repository, &issue, e.installation.as_ref());
            labeled(policy, command, trigger, job_id, now_ms)
        }
        "pull_request_review" => {
            let e: PullRequestReviewEvent = payload("pull_request_review", value)?;
            if e.action != "submitted" || !e.review.state.eq_ignore_ascii_case("changes_requested")
            {
                return Ok(Decision::Ignored(
                    "only reviews requesting changes ask bugbot for work",
                ));
            }
            if e.review.user.is_bot(policy) {
                return Ok(Decision::Ignored("reviews by bots never trigger bugbot"));
            }
            if !e
                .pull_request
                .user
                .as_ref()
                .is_some_and(|u| u.is_bugbot(policy))
            {
                return Ok(Decision::Ignored(
                    "bugbot works only on the pull requests it opened",
                ));
            }
            if !policy.serves_repo(&e.repository.full_name) {
                return Ok(Decision::Ignored("this repository is not served by bugbot"));
            }
            let issue = e.pull_request.into_issue();
            let verify = !policy.github_association_allowed(&e.review.author_association);
            let text = e.review.body.unwrap_or_default();
            Ok(Decision::Enqueue(Box::new(job(
                job_id()?,
                Command::Review,
                Trigger {
                    requester: &e.review.user,
                    repository: &e.repository,
                    issue: &issue,
                    comment_id: None,
                    installation: e.installation.as_ref(),
                    verify_permission: verify,
                },
                &text,
                now_ms,
            ))))
        }
        _ => Ok(Decision::Ignored("bugbot does not act on this event")),
    }
}

/// The command a bugbot label asks for.
fn label_command(label: Option<&Label>) -> Option<Command> {
    match label.map(|l| l.name.to_ascii_lowercase()) {
        Some(l) if l == LABEL_FIX => Some(Command::Fix),
        Some(l) if l == LABEL_CONTEXTUALIZE => Some(Command::Contextualize),
        _ => None,
    }
}

/// A bugbot label added to an issue or a pull request.
fn labeled(
    policy: &AccessPolicy,
    command: Command,
    trigger: Trigger<'_>,
    job_id: impl FnOnce() -> Result<JobId, InvalidDelivery>,
    now_ms: u64,
) -> Result<Decision, InvalidDelivery> {
    if trigger.requester.is_bot(policy) {
        return Ok(Decision::Ignored(
            "labels added by bots never trigger bugbot",
        ));
    }
    if !policy.serves_repo(&trigger.repository.full_name) {
        return Ok(Decision::Ignored("this repository is not served by bugbot"));
    }
    let text = trigger.issue.body.clone().unwrap_or_default();
    Ok(Decision::Enqueue(Box::new(job(
        job_id()?,
        command,
        trigger,
        &text,
        now_ms,
    ))))
}

/// Who asked for a GitHub job, where, and how.
struct Trigger<'a> {
    requester: &'a Account,
    repository: &'a Repository,
    issue: &'a Issue,
    comment_id: Option<u64>,
    installation: Option<&'a Installation>,
    verify_permission: bool,
}

impl<'a> Trigger<'a> {
    /// A label added by `sender`. Labeling takes triage access, less than write: GitHub is asked
    /// for the sender's permission, as for comments from untrusted associations.
    fn label(
        sender: &'a Account,
        repository: &'a Repository,
        issue: &'a Issue,
        installation: Option<&'a Installation>,
    ) -> Self {
        Self {
            requester: sender,
            repository,
            issue,
            comment_id: None,
            installation,
            verify_permission: true,
        }
    }
}

fn payload<T: serde::de::DeserializeOwned>(
    event: &'static str,
    value: serde_json::Value,
) -> Result<T, InvalidDelivery> {
    serde_json::from_value(value).map_err(|e| InvalidDelivery::Payload {
        event,
        detail: e.to_string(),
    })
}

fn job(id: JobId, command: Command, trigger: Trigger<'_>, text: &str, now_ms: u64) -> JobMessage {
    let Trigger {
        requester,
        repository: repo,
        issue,
        ..
    } = trigger;
    let report = Report::new(Some(issue.title.clone()), text.trim());
    let references = references::extract(&format!("{}\n{}", issue.title, report.text));
    JobMessage {
        v: JOB_MESSAGE_VERSION,
        id,
        command,
        requester: Requester {
            id: requester.id.to_string(),
            name: requester.login.clone(),
        },
        source: Source::Github {
            repo: repo.full_name.clone(),
            number: issue.number,
            is_pull_request: issue.pull_request.is_some(),
            comment_id: trigger.comment_id,
            installation_id: trigger.installation.map(|i| i.id),
            html_url: issue.html_url.clone(),
            verify_permission: trigger.verify_permission,
        },
        report,
        references,
        enqueued_at_ms: now_ms,
        replay: 0,
        resume: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::PolicySettings;
    use serde_json::{Value, json};

    fn policy() -> AccessPolicy {
        AccessPolicy::from_settings(&PolicySettings {
            github_repos: Some("acme/web-app"),
            github_bot_login: Some("bugbot-app[bot]"),
            ..Default::default()
        })
        .unwrap()
    }

    fn comment(body: &str, association: &str, user_type: &str) -> Value {
        json!({
            "action": "created",
            "issue": {"number": 7, "title": "Cart total wrong", "body": "Totals are off by one. ENG-3",
                      "html_url": "https://github.com/acme/web-app/issues/7"},
            "comment": {"id": 99, "body": body, "author_association": association,
                        "user": {"login": "jane", "id": 5, "type": user_type}},
            "repository": {"full_name": "acme/web-app"},
            "installation": {"id": 1234},
            "sender": {"login": "jane", "id": 5, "type": user_type}
        })
    }

    fn run(event: &str, v: &Value) -> Result<Decision, InvalidDelivery> {
        decide(
            Some(event),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            v.to_string().as_bytes(),
            &policy(),
            DEFAULT_MENTION,
            1,
        )
    }

    #[test]
    fn reviews_of_bugbots_pull_requests_become_review_jobs() {
        let on_pull = |author: &str, body: &str| {
            let mut v = comment(body, "MEMBER", "User");
            v["issue"]["pull_request"] =
                json!({"url": "https://api.github.com/repos/acme/web-app/pulls/7"});
            v["issue"]["user"] = json!({"login": author, "id": 9, "type": "Bot"});
            run("issue_comment", &v).unwrap()
        };
        let Decision::Enqueue(job) = on_pull("bugbot-app[bot]", "@bugbot name it `subtotal`")
        else {
            panic!("an instruction on bugbot's pull request is a review")
        };
        assert_eq!(job.command, Command::Review);
        assert!(job.report.text.contains("name it `subtotal`"));
        assert!(matches!(
            on_pull("bugbot-app[bot]", "@bugbot fix the naming"),
            Decision::Enqueue(j) if j.command == Command::Review
        ));
        assert!(matches!(
            on_pull("bugbot-app[bot]", "@bugbot stop"),
            Decision::Steer { .. }
        ));
        assert!(matches!(
            on_pull("octocat", "@bugbot name it `subtotal`"),
            Decision::Ignored(_)
        ));

        let review = |state: &str, reviewer_type: &str, author: &str| {
            json!({
                "action": "submitted",
                "review": {"body": "Cover empty carts.", "state": state, "author_association": "MEMBER",
                           "user": {"login": "lead", "id": 8, "type": reviewer_type}},
                "pull_request": {"number": 101, "title": "BUG-7: Cart", "html_url": "https://github.com/acme/web-app/pull/101",
                                 "user": {"login": author, "id": 9, "type": "Bot"}},
                "repository": {"full_name": "acme/web-app"},
                "installation": {"id": 1234}
            })
        };
        let Decision::Enqueue(job) = run(
            "pull_request_review",
            &review("changes_requested", "User", "bugbot-app[bot]"),
        )
        .unwrap() else {
            panic!("changes requested on bugbot's pull request")
        };
        assert_eq!(job.command, Command::Review);
        assert!(matches!(
            &job.source,
            Source::Github {
                number: 101,
                is_pull_request: true,
                verify_permission: false,
                ..
            }
        ));
        for (state, kind, author) in [
            ("commented", "User", "bugbot-app[bot]"),
            ("changes_requested", "Bot", "bugbot-app[bot]"),
            ("changes_requested", "User", "octocat"),
        ] {
            assert!(
                matches!(
                    run("pull_request_review", &review(state, kind, author)).unwrap(),
                    Decision::Ignored(_)
                ),
                "{state} {kind} {author}"
            );
        }
    }

    #[test]
    fn mentions() {
        assert_eq!(
            command_in_comment("@bugbot fix", "@bugbot"),
            Some(Command::Fix)
        );
        assert_eq!(
            command_in_comment("Hey @BugBot   contextualize please", "@bugbot"),
            Some(Command::Contextualize)
        );
        assert_eq!(command_in_comment("email@bugbot fix", "@bugbot"), None);
        assert_eq!(command_in_comment("@bugbotx fix", "@bugbot"), None);
        assert_eq!(command_in_comment("@bugbot please", "@bugbot"), None);
        assert_eq!(
            command_in_comment("cc @bugbot\n@bugbot fix", "@bugbot"),
            Some(Command::Fix)
        );
        assert_eq!(command_in_comment("", "@bugbot"), None);
        assert_eq!(
            ask_in_comment("@bugbot stop, please", "@bugbot"),
            Some(Asked::Steer(crate::steer::Action::Stop))
        );
        assert_eq!(
            ask_in_comment("ok @bugbot Continue", "@bugbot"),
            Some(Asked::Steer(crate::steer::Action::Continue))
        );
        assert_eq!(command_in_comment("@bugbot retry", "@bugbot"), None);
    }

    #[test]
    fn member_comment_becomes_a_job() {
        let Decision::Enqueue(job) =
            run("issue_comment", &comment("@bugbot fix", "MEMBER", "User")).unwrap()
        else {
            panic!("expected a job")
        };
        assert_eq!(job.id.as_str(), "gh-72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(job.command, Command::Fix);
        assert_eq!(job.report.title.as_deref(), Some("Cart total wrong"));
        assert!(job.report.text.contains("jane commented:\n@bugbot fix"));
        assert_eq!(job.references.linear_issues, vec!["ENG-3"]);
        assert!(matches!(
            job.source,
            Source::Github {
                number: 7,
                comment_id: Some(99),
                installation_id: Some(1234),
                ..
            }
        ));
    }

    #[test]
    fn who_and_where() {
        let verify = |d: Decision| match d {
            Decision::Enqueue(job) => match job.source {
                Source::Github {
                    verify_permission, ..
                } => Some(verify_permission),
                _ => None,
            },
            _ => None,
        };
        assert_eq!(
            verify(run("issue_comment", &comment("@bugbot fix", "MEMBER", "User")).unwrap()),
            Some(false),
            "a member is trusted"
        );
        for association in ["CONTRIBUTOR", "NONE"] {
            assert_eq!(
                verify(
                    run(
                        "issue_comment",
                        &comment("@bugbot fix", association, "User")
                    )
                    .unwrap()
                ),
                Some(true),
                "{association}: GitHub is asked for the permission"
            );
        }
        assert!(matches!(
            run("issue_comment", &comment("@bugbot fix", "OWNER", "Bot")).unwrap(),
            Decision::Ignored(_)
        ));
        let mut own = comment("@bugbot fix", "OWNER", "User");
        own["comment"]["user"]["login"] = "bugbot-app[bot]".into();
        assert!(matches!(
            run("issue_comment", &own).unwrap(),
            Decision::Ignored(_)
        ));
        let mut other_repo = comment("@bugbot fix", "OWNER", "User");
        other_repo["repository"]["full_name"] = "acme/other".into();
        assert!(matches!(
            run("issue_comment", &other_repo).unwrap(),
            Decision::Ignored(_)
        ));
        let mut edited = comment("@bugbot fix", "OWNER", "User");
        edited["action"] = "edited".into();
        assert!(matches!(
            run("issue_comment", &edited).unwrap(),
            Decision::Ignored(_)
        ));
        assert!(matches!(
            run("issue_comment", &comment("thanks!", "OWNER", "User")).unwrap(),
            Decision::Ignored(_)
        ));
    }

    #[test]
    fn labels() {
        let labeled = |name: &str| {
            json!({
                "action": "labeled",
                "issue": {"number": 8, "title": "Broken", "body": null, "html_url": "https://github.com/acme/web-app/issues/8"},
                "label": {"name": name},
                "repository": {"full_name": "acme/web-app"},
                "sender": {"login": "jane", "id": 5, "type": "User"}
            })
        };
        assert!(matches!(
            run("issues", &labeled("bugbot:fix")).unwrap(),
            Decision::Enqueue(j) if j.command == Command::Fix
        ));
        assert!(matches!(
            run("issues", &labeled("bugbot:contextualize")).unwrap(),
            Decision::Enqueue(j) if j.command == Command::Contextualize
        ));
        assert!(matches!(
            run("issues", &labeled("bug")).unwrap(),
            Decision::Ignored(_)
        ));
        let mut on_pull = labeled("bugbot:fix");
        on_pull["pull_request"] = on_pull["issue"].take();
        let Decision::Enqueue(job) = run("pull_request", &on_pull).unwrap() else {
            panic!("a pull request's label is a job")
        };
        assert!(matches!(
            job.source,
            Source::Github {
                number: 8,
                is_pull_request: true,
                verify_permission: true,
                ..
            }
        ));
        let mut by_bot = labeled("bugbot:fix");
        by_bot["sender"]["type"] = "Bot".into();
        assert!(matches!(
            run("issues", &by_bot).unwrap(),
            Decision::Ignored(_)
        ));
    }

    #[test]
    fn bad_deliveries() {
        let v = comment("@bugbot fix", "MEMBER", "User");
        let body = v.to_string();
        let p = policy();
        assert_eq!(
            decide(None, Some("d"), body.as_bytes(), &p, DEFAULT_MENTION, 1),
            Err(InvalidDelivery::MissingHeader("X-GitHub-Event"))
        );
        assert_eq!(
            decide(Some("ping"), None, body.as_bytes(), &p, DEFAULT_MENTION, 1),
            Err(InvalidDelivery::MissingHeader("X-GitHub-Delivery"))
        );
        assert_eq!(
            decide(Some("ping"), Some("d"), b"nope", &p, DEFAULT_MENTION, 1),
            Err(InvalidDelivery::NotJson)
        );
        assert!(matches!(
            decide(
                Some("issue_comment"),
                Some("d-1"),
                b"{}",
                &p,
                DEFAULT_MENTION,
                1
            ),
            Err(InvalidDelivery::Payload { .. })
        ));
        assert!(matches!(
            decide(
                Some("issue_comment"),
                Some("bad id!"),
                body.as_bytes(),
                &p,
                DEFAULT_MENTION,
                1
            ),
            Err(InvalidDelivery::DeliveryId(_))
        ));
    }

    /// Every real example payload GitHub publishes (the pinned npm package
    /// `@octokit/webhooks-examples`, installed by `scripts/bootstrap`) is read without an error.
    #[test]
    fn every_published_example_is_decided() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../node_modules/@octokit/webhooks-examples/api.github.com/index.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            panic!("fixture {path} is missing: run scripts/bootstrap")
        };
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        let mut n = 0;
        for event in &all {
            let name = event["name"].as_str().unwrap();
            for example in event["examples"].as_array().unwrap() {
                let d = decide(
                    Some(name),
                    Some("00000000-0000-0000-0000-000000000000"),
                    example.to_string().as_bytes(),
                    &policy(),
                    DEFAULT_MENTION,
                    1,
                );
                assert!(d.is_ok(), "{name}: {d:?}");
                n += 1;
            }
        }
        assert!(n > 300, "only {n} examples");
    }
}
