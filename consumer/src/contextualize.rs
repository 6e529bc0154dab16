//! contextualize: resolve the Linear issue, gather the conversation and recordings, post the context
//! packet, answer where asked. Each side effect is checkpointed on the job record, and the creates
//! carry ids derived from the thread or the job, so a redelivered job repeats nothing.

use crate::http::call;
use crate::reply;
use crate::run::Run;
use crate::{config, store};
use bugbot_shared::discord_api;
use bugbot_shared::github_api;
use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::ids::stable_uuid;
use bugbot_shared::job::Source;
use bugbot_shared::linear::{self, Comment, Issue, LinearApi};
use bugbot_shared::packet::{ContextPacket, ConversationMessage, RecordingSummary};
use bugbot_shared::posthog::{self, PosthogApi};
use bugbot_shared::references::{self, References};
use bugbot_shared::thread::Origin;

/// Named recordings looked up at most (a pasted list should not fan out into many calls).
const MAX_NAMED_RECORDINGS: usize = 3;
/// E-mail addresses looked up at most.
const MAX_EMAILS: usize = 2;

/// What contextualize produced, for the answer (and for `fix`).
#[derive(Debug, Clone)]
pub struct Contextualized {
    /// The Linear issue.
    pub issue: Issue,
    /// The context packet comment.
    pub comment: Comment,
    /// How many recordings the packet names.
    pub recordings: usize,
    /// The packet's Markdown (absent when an earlier attempt posted it).
    pub packet: Option<String>,
}

/// Runs the contextualize steps (without the final answer).
pub async fn gather(run: &mut Run<'_>, origin: &Origin) -> Result<Contextualized, ApiError> {
    let (linear_api, team_key) = config::linear(run.env)?;

    // The Linear issue and the conversation do not depend on each other.
    // The conversation only feeds the packet: a retry that already posted it does not read it again.
    let packet_posted = run.record.checkpoints.packet_comment.is_some();
    let (issue, conversation) =
        futures::join!(resolve_issue(run, &linear_api, &team_key, origin), async {
            if packet_posted {
                Ok(Vec::new())
            } else {
                conversation(run).await
            }
        });
    let issue = issue?;
    // A conversation bugbot may not read (missing access, deleted thread) is a gap in the packet,
    // not a reason to fail; an unavailable service is retried like any other.
    let mut unknowns = Vec::new();
    let conversation = match conversation {
        Ok(c) => c,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            unknowns.push(format!("The conversation could not be read ({e})."));
            Vec::new()
        }
    };
    run.record.checkpoints.linear_issue = Some(issue.clone());
    run.step(
        "linear.issue",
        format!("{} {}", issue.identifier, issue.url),
    )
    .await?;
    run.link(&issue.url);

    if !run.record.checkpoints.source_attached {
        call(
            linear_api.attachment_create(
                &stable_uuid("attachment", &format!("{}|{}", issue.id, origin.url)),
                &issue.id,
                &origin.url,
                &origin.label,
            ),
            linear::parse_attachment_create,
        )
        .await?;
        store::save_mapping(run.env, &origin.mapping_key, &issue).await?;
        run.record.checkpoints.source_attached = true;
        run.step("linear.attach", format!("{} linked", origin.label))
            .await?;
    }

    let summary = linear::issue_title(run.job.report.title.as_deref(), &run.job.report.text);
    if let Some(comment) = run.record.checkpoints.packet_comment.clone() {
        return Ok(Contextualized {
            issue,
            comment,
            recordings: 0,
            packet: None,
        });
    }

    // References: the report's, and whatever the conversation adds.
    let mut refs = run.job.references.clone();
    let all_text: String = conversation
        .iter()
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    merge(&mut refs, references::extract(&all_text));

    let recordings = recordings(run, &refs, &mut unknowns).await?;

    let packet = ContextPacket {
        job_id: run.job.id.to_string(),
        requester: run.job.requester.name.clone(),
        requested_at_ms: run.job.enqueued_at_ms,
        source_label: origin.label.clone(),
        source_url: origin.url.clone(),
        report: run.job.report.clone(),
        conversation,
        references: refs,
        recordings: recordings.clone(),
        unknowns,
    };
    let comment_id = stable_uuid("packet", run.job.id.as_str());
    let markdown = packet.render();
    let comment = comment_once(&linear_api, &comment_id, &issue.id, &markdown).await?;
    run.record.checkpoints.packet_comment = Some(comment.clone());
    run.record.checkpoints.summary = Some(summary);
    run.link(&comment.url);
    run.step(
        "linear.comment",
        format!("context packet posted ({} recordings)", recordings.len()),
    )
    .await?;
    Ok(Contextualized {
        issue,
        comment,
        recordings: recordings.len(),
        packet: Some(markdown),
    })
}

/// Runs contextualize and answers.
pub async fn contextualize(run: &mut Run<'_>, origin: &Origin) -> Result<(), ApiError> {
    let done = gather(run, origin).await?;
    let text = bugbot_shared::replies::contextualized(&done.issue, &done.comment, done.recordings);
    reply::finish(run, &text).await
}

/// Posts a Linear comment with a client-chosen id. When the create is refused, the comment may
/// already exist (an earlier attempt whose answer was lost): the id finds it.
pub async fn comment_once(
    api: &LinearApi,
    id: &str,
    issue_id: &str,
    body: &str,
) -> Result<Comment, ApiError> {
    match call(
        api.comment_create(id, issue_id, body),
        linear::parse_comment_create,
    )
    .await
    {
        Ok(c) => Ok(c),
        Err(e) if !e.is_transient() => call(api.comment(id), linear::parse_comment).await?.ok_or(e),
        Err(e) => Err(e),
    }
}

fn merge(into: &mut References, more: References) {
    fn add<T: PartialEq>(to: &mut Vec<T>, from: Vec<T>) {
        for x in from {
            if !to.contains(&x) && to.len() < references::MAX_PER_KIND {
                to.push(x);
            }
        }
    }
    add(&mut into.linear_issues, more.linear_issues);
    add(&mut into.github_repos, more.github_repos);
    add(&mut into.github_issues, more.github_issues);
    add(&mut into.posthog_sessions, more.posthog_sessions);
    add(&mut into.emails, more.emails);
}

/// Finds the Linear issue: the checkpoint; an issue named in the report; the cached mapping; the
/// issue the thread is attached to; else a new one (with an id derived from the thread).
async fn resolve_issue(
    run: &Run<'_>,
    api: &LinearApi,
    team_key: &str,
    origin: &Origin,
) -> Result<Issue, ApiError> {
    if let Some(issue) = &run.record.checkpoints.linear_issue {
        return Ok(issue.clone());
    }
    for id in run.job.references.linear_issues.iter().take(3) {
        if let Some(issue) = call(api.issue(id), linear::parse_issue).await? {
            return Ok(issue);
        }
    }
    if let Some(issue) = store::load_mapping(run.env, &origin.mapping_key).await? {
        return Ok(issue);
    }
    if let Some(issue) = call(
        api.attachments_for_url(&origin.url),
        linear::parse_attached_issue,
    )
    .await?
    {
        return Ok(issue);
    }
    let team = call(api.team_by_key(team_key), |r| {
        linear::parse_team(r, team_key)
    })
    .await?;
    let id = stable_uuid("issue", &origin.url);
    let title = linear::issue_title(run.job.report.title.as_deref(), &run.job.report.text);
    let description = format!(
        "Reported by {} in [{}]({}). bugbot adds the context as a comment.\n\n{}",
        run.job.requester.name,
        origin.label,
        origin.url,
        quote(&run.job.report.text)
    );
    match call(
        api.issue_create(&id, &team.id, &title, &description),
        linear::parse_issue_create,
    )
    .await
    {
        Ok(issue) => Ok(issue),
        // Created by an earlier attempt whose answer was lost: the derived id finds it.
        Err(e) if !e.is_transient() => call(api.issue(&id), linear::parse_issue).await?.ok_or(e),
        Err(e) => Err(e),
    }
}

fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The conversation, oldest first: the Discord thread's recent messages, or the GitHub issue and
/// its comments. Bots' messages (bugbot's own progress among them) are left out.
async fn conversation(run: &Run<'_>) -> Result<Vec<ConversationMessage>, ApiError> {
    match &run.job.source {
        Source::Discord { channel_id, .. } | Source::DiscordMention { channel_id, .. } => {
            let api = config::discord(run.env)?;
            let mut messages = call(
                api.channel_messages(channel_id),
                discord_api::parse_messages,
            )
            .await?;
            if discord_api::content_withheld(&messages) {
                return Err(ApiError::permanent(
                    Service::Discord,
                    discord_api::CONTENT_WITHHELD,
                ));
            }
            messages.reverse();
            Ok(messages
                .into_iter()
                .filter(|m| !m.author.bot && !m.content.trim().is_empty())
                .map(|m| ConversationMessage {
                    author: m.author.global_name.unwrap_or(m.author.username),
                    at: m.timestamp,
                    text: m.content,
                })
                .collect())
        }
        Source::Github {
            repo,
            number,
            installation_id,
            ..
        } => {
            let (api, _) = crate::github::client(run.env, repo, *installation_id).await?;
            // The latest comments: GitHub lists them oldest first, so read the issue's count,
            // then its last page (and the one before when the last is not full).
            let issue = call(api.issue(repo, *number), github_api::parse_issue).await?;
            let pages = github_api::latest_comment_pages(issue.comments);
            let read = futures::future::join_all(pages.iter().map(|page| {
                call(
                    api.issue_comments(repo, *number, *page),
                    github_api::parse_comments,
                )
            }))
            .await;
            let comments = read
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map(|pages| github_api::latest_comments(pages.concat()));
            let mut out = vec![ConversationMessage {
                author: github_api::login_of(issue.user.as_ref()).to_owned(),
                at: issue.created_at,
                text: format!("{}\n{}", issue.title, issue.body.unwrap_or_default()),
            }];
            out.extend(
                comments?
                    .into_iter()
                    .filter(|c| !github_api::login_of(c.user.as_ref()).ends_with("[bot]"))
                    .map(|c| ConversationMessage {
                        author: github_api::login_of(c.user.as_ref()).to_owned(),
                        at: c.created_at,
                        text: c.body.unwrap_or_default(),
                    }),
            );
            Ok(out)
        }
        Source::Admin => Ok(Vec::new()),
    }
}

/// Recordings named in the report; else the recent recordings of the reporter's e-mail addresses.
/// A permanent PostHog failure only becomes an "unknown"; a transient one retries the job.
async fn recordings(
    run: &Run<'_>,
    refs: &References,
    unknowns: &mut Vec<String>,
) -> Result<Vec<RecordingSummary>, ApiError> {
    let Some(api) = config::posthog(run.env) else {
        unknowns.push("PostHog is not configured, so no session recordings were looked up.".into());
        return Ok(Vec::new());
    };
    let named: Vec<_> = refs
        .posthog_sessions
        .iter()
        .filter(|s| {
            s.project_id
                .as_deref()
                .is_none_or(|p| p == api.project_id())
        })
        .take(MAX_NAMED_RECORDINGS)
        .collect();
    if !named.is_empty() {
        let lookups = named
            .iter()
            .map(|s| call(api.recording(&s.session_id), posthog::parse_recording));
        let results = futures::future::join_all(lookups).await;
        let mut out = Vec::new();
        for (session, result) in named.iter().zip(results) {
            match result {
                Ok(Some(r)) => out.push(summarize(&api, r, "named in the report".into())),
                Ok(None) => unknowns.push(format!(
                    "PostHog has no recording `{}` (named in the report).",
                    session.session_id
                )),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => unknowns.push(format!("PostHog lookup failed: {e}")),
            }
        }
        return Ok(out);
    }
    if refs.emails.is_empty() {
        unknowns.push(
            "No PostHog session or e-mail address was mentioned, so no recordings were looked up."
                .into(),
        );
        return Ok(Vec::new());
    }
    let lookups = refs
        .emails
        .iter()
        .take(MAX_EMAILS)
        .map(|email| recent_for(&api, email, run.job.enqueued_at_ms));
    let mut out = Vec::new();
    for (email, result) in refs
        .emails
        .iter()
        .zip(futures::future::join_all(lookups).await)
    {
        match result {
            Ok(Some(recs)) if !recs.is_empty() => out.extend(recs),
            Ok(Some(_)) => unknowns.push(format!("PostHog has no recordings of {email}.")),
            Ok(None) => unknowns.push(format!("No PostHog person has the e-mail {email}.")),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => unknowns.push(format!("PostHog lookup for {email} failed: {e}")),
        }
    }
    Ok(out)
}

/// The recordings of the person with this e-mail, around the report (`report_ms`). The address is
/// tried as written, then lowercased ([`posthog::email_candidates`]).
async fn recent_for(
    api: &PosthogApi,
    email: &str,
    report_ms: u64,
) -> Result<Option<Vec<RecordingSummary>>, ApiError> {
    let mut person = None;
    for candidate in posthog::email_candidates(email) {
        person = call(
            api.persons_by_email(&candidate),
            posthog::parse_first_person,
        )
        .await?;
        if person.is_some() {
            break;
        }
    }
    let Some(person) = person else {
        return Ok(None);
    };
    let window = posthog::RecordingWindow::around(report_ms);
    let recs = call(
        api.recordings_for_person(&person.id, &window),
        posthog::parse_recordings,
    )
    .await?;
    Ok(Some(
        recs.into_iter()
            .map(|r| summarize(api, r, format!("recent session of {email}")))
            .collect(),
    ))
}

fn summarize(api: &PosthogApi, r: posthog::Recording, found_by: String) -> RecordingSummary {
    RecordingSummary {
        replay_url: api.replay_url(&r.id),
        session_id: r.id,
        started_at: r.start_time,
        duration_secs: r.recording_duration,
        console_errors: r.console_error_count,
        clicks: r.click_count,
        start_url: r.start_url,
        found_by,
    }
}
