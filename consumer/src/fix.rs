//! fix: contextualize, decide the repository and the files, run the executor (its progress shown
//! where the fix was asked), open the pull request (or find the one already open for the branch),
//! link it on Linear, and say how it ended. The executor's result and the pull request are
//! checkpointed, so a retry neither runs Claude Code again nor opens a second pull request.

use crate::contextualize::{self, Contextualized};
use crate::http::call;
use crate::run::{Run, now_ms};
use crate::spend;
use crate::{config, executor, github, reply};
use bugbot_shared::executor::{Event, FixRequest, FixResult, Limits, Outcome, Task};
use bugbot_shared::fix::{self as decide, progress};
use bugbot_shared::github_api::{self, PullRequest};
use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::ids::stable_uuid;
use bugbot_shared::job::{JobStatus, Source};
use bugbot_shared::linear;
use bugbot_shared::repo_settings;
use bugbot_shared::steer::{self, Action};
use bugbot_shared::thread::Origin;

/// Progress edits for Claude Code's turns come at most this often (each is one API call).
const TURN_PROGRESS_EVERY_MS: u64 = 2000;

/// A token handed to the executor stays valid this long after the run's wall time.
pub(crate) const TOKEN_MARGIN_SECS: u64 = 300;

/// While the executor runs, the job's lease is renewed at least this often (well within
/// `bugbot_shared::runner::LEASE_MS`).
const LEASE_RENEW_EVERY_MS: u64 = 30_000;

/// The requester's key in the daily budgets: their platform and id.
fn budget_user(run: &Run<'_>) -> String {
    let platform = match run.job.source {
        Source::Github { .. } => "github",
        _ => "discord",
    };
    format!("{platform}:{}", run.job.requester.id)
}

/// How a fix that did not fail ended.
#[derive(Debug)]
pub enum FixEnd {
    /// It answered (a pull request, a draft at a limit, or why there is none).
    Done,
    /// The day's budget refused it (why); the requester was told.
    Refused(String),
    /// Someone stopped it (who); the requester was told.
    Stopped(String),
}

/// Runs a fix, or carries on one that stopped at a limit (`continued_from`).
pub async fn fix(run: &mut Run<'_>, origin: &Origin) -> Result<FixEnd, ApiError> {
    let context = contextualize::gather(run, origin).await?;
    let issue = context.issue.clone();

    let routing = config::repo_routing(run.env)?;
    let served = config::served_repos(run.env);
    // A mention's event does not say which channel its thread belongs to: ask Discord.
    let thread_parent = match &run.job.source {
        Source::DiscordMention { channel_id, .. } => {
            let api = config::discord(run.env)?;
            call(
                api.channel(channel_id),
                bugbot_shared::discord_api::parse_parent,
            )
            .await?
        }
        _ => None,
    };
    let repo = decide::choose_repo(
        run.job,
        &run.job.references,
        &routing,
        &served,
        thread_parent.as_deref(),
    )
    .map_err(|why| ApiError::permanent(Service::Github, why))?;
    let installation = match &run.job.source {
        Source::Github {
            installation_id, ..
        } => *installation_id,
        _ => None,
    };
    // The executor pushes with this token at the end of its run: it must outlast the wall time.
    let run_secs = Limits::default().wall_time_secs + TOKEN_MARGIN_SECS;
    let (gh, token) = github::client_valid_for(run.env, &repo, installation, run_secs).await?;

    // The base branch, once this delivery has read it (a retry past the executor reads it only
    // if it still has a pull request to open).
    let mut base_branch = None;
    let continued = run.record.checkpoints.continued_from.clone();
    let result = match run.record.checkpoints.fix_result.clone() {
        Some(result) => result,
        None => {
            let repository = call(gh.repository(&repo), github_api::parse_repository).await?;
            base_branch = Some(repository.default_branch.clone());
            let settings = repository_settings(
                &gh,
                &repo,
                &repository.default_branch,
                &config::allowed_paths(run.env),
            )
            .await?;
            let user = match reserve_budget(run, "No fix", settings.limits.max_budget_usd).await? {
                Ok(user) => user,
                Err(why) => return Ok(FixEnd::Refused(why)),
            };
            let result = execute(
                run,
                &gh,
                &repo,
                FixTarget {
                    repository,
                    settings,
                },
                token,
                &context,
                continued.as_ref(),
            )
            .await?;
            record_result(run, &user, &result).await?;
            result
        }
    };

    if result.outcome == Outcome::Failed {
        return Err(ApiError::permanent(
            Service::Executor,
            result
                .error
                .clone()
                .unwrap_or_else(|| "the executor failed".into()),
        ));
    }
    if result.outcome == Outcome::Stopped {
        let text = decide::outcome_text(&issue, &result, None);
        return end_stopped(run, &result, &text).await;
    }
    // A continue builds on its draft pull request, even when it had nothing more to push.
    let result = match &continued {
        Some(earlier) => decide::carried_on(earlier, &result),
        None => result,
    };
    let pr = if result.branch.is_some() {
        Some(open_pull_request(run, &gh, &repo, base_branch, &issue, &result).await?)
    } else {
        None
    };
    if let Some(pr) = &pr {
        if pr.draft && !result.outcome.hit_limit() {
            mark_ready(run, &gh, &repo, &issue, pr, &result).await?;
        }
        link_on_linear(run, &issue, pr).await?;
    }
    let buttons = steer::buttons_after(JobStatus::Succeeded, Some(result.outcome));
    reply::finish_with(
        run,
        &decide::outcome_text(&issue, &result, pr.as_ref()),
        &buttons,
    )
    .await?;
    Ok(FixEnd::Done)
}

/// The day's budgets: a run reserves the most it may cost (`most`: its budget, the repository's
/// where that is lower) before it starts. `Ok(Err(why))` when the budgets refuse it (the requester
/// was told, `refused` leading the answer); else the requester's key in the budgets, for
/// [`record_result`].
pub(crate) async fn reserve_budget(
    run: &mut Run<'_>,
    refused: &str,
    most: f64,
) -> Result<Result<String, String>, ApiError> {
    let user = budget_user(run);
    if let Err(why) = spend::reserve(run.env, run.job.id.as_str(), &user, most).await? {
        reply::finish(run, &format!("💸 {refused}: {why}")).await?;
        return Ok(Err(why));
    }
    Ok(Ok(user))
}

/// Ends a run someone stopped: says `text` with a Retry button (or its hint) and records who.
pub(crate) async fn end_stopped(
    run: &mut Run<'_>,
    result: &FixResult,
    text: &str,
) -> Result<FixEnd, ApiError> {
    let who = result.error.clone().unwrap_or_else(|| "stopped".into());
    reply::finish_with(run, text, &[Action::Retry]).await?;
    Ok(FixEnd::Stopped(who))
}

/// Settles the run's cost on the day's budgets and checkpoints its result, so a retry never runs
/// the executor again for it.
pub(crate) async fn record_result(
    run: &mut Run<'_>,
    user: &str,
    result: &FixResult,
) -> Result<(), ApiError> {
    spend::settle(run.env, run.job.id.as_str(), user, result.cost_usd).await?;
    run.record.checkpoints.fix_result = Some(result.clone());
    run.step(
        "executor.done",
        format!(
            "{:?}: {} file(s), {} turns, model cost {}",
            result.outcome,
            result.changed_files.len(),
            result.turns,
            result.cost_text()
        ),
    )
    .await?;
    // Recorded: a redelivery no longer needs the executor's copy of the result.
    executor::run_over(run.env, run.job.id.as_str()).await;
    Ok(())
}

/// A continue finished what its draft began: the pull request gets the whole fix's description
/// and is marked ready for review.
async fn mark_ready(
    run: &mut Run<'_>,
    gh: &github_api::GithubApi,
    repo: &bugbot_shared::ids::RepoFullName,
    issue: &linear::Issue,
    pr: &PullRequest,
    result: &FixResult,
) -> Result<(), ApiError> {
    let summary = report_summary(run, issue);
    call(
        gh.update_pull_body(
            repo,
            pr.number,
            &decide::pr_body(issue, &summary, result, &run.job.id),
        ),
        github_api::parse_pull,
    )
    .await?;
    call(
        gh.mark_ready_for_review(&pr.node_id),
        github_api::parse_marked_ready,
    )
    .await?;
    if let Some(kept) = run.record.checkpoints.pull_request.as_mut() {
        kept.draft = false;
    }
    run.step(
        "github.ready_for_review",
        format!("{} is ready for review", pr.html_url),
    )
    .await
}

/// The repository's settings on its base branch applied to the deployment's (`repo_settings`): an
/// invalid settings file fails the job, naming the line.
pub(crate) async fn repository_settings(
    gh: &github_api::GithubApi,
    repo: &bugbot_shared::ids::RepoFullName,
    branch: &str,
    allowed: &[String],
) -> Result<repo_settings::Effective, ApiError> {
    let read = |path: &'static str| {
        call(
            gh.file_contents(repo, path, branch),
            github_api::parse_file_contents,
        )
    };
    let settings = read(repo_settings::SETTINGS_PATH).await?;
    let mut instructions = Vec::new();
    for name in repo_settings::INSTRUCTION_FILES {
        if let Some(text) = read(name).await? {
            instructions.push((*name, text));
        }
    }
    let files: Vec<(&str, &str)> = instructions.iter().map(|(n, t)| (*n, t.as_str())).collect();
    repo_settings::apply(settings.as_deref(), &files, allowed, &Limits::default())
        .map_err(|e| ApiError::permanent(Service::Github, e.to_string()))
}

/// The files of a branch, for the agent's hints. GitHub cuts recursive listings of very large
/// trees (`truncated: true`); then the top-level directories the allowed paths lie in are listed
/// one by one (`decide::subtrees_to_list`). The second value says when the list is incomplete.
async fn list_files(
    gh: &github_api::GithubApi,
    repo: &bugbot_shared::ids::RepoFullName,
    branch: &str,
    allowed: &[String],
) -> Result<(Vec<String>, &'static str), ApiError> {
    let full = call(gh.tree(repo, branch, true), github_api::parse_tree).await?;
    if !full.truncated {
        return Ok((full.files_under("").collect(), ""));
    }
    let root = call(gh.tree(repo, branch, false), github_api::parse_tree).await?;
    let mut files: Vec<String> = root.files_under("").collect();
    let mut cut = false;
    for (dir, sha) in decide::subtrees_to_list(&root, allowed) {
        let sub = call(gh.tree(repo, &sha, true), github_api::parse_tree).await?;
        cut |= sub.truncated;
        files.extend(sub.files_under(&dir));
    }
    let note = if cut {
        " (the repository is too large for GitHub to list in full; the hints are from part of it)"
    } else {
        " (listed by directory: the repository is too large for one listing)"
    };
    Ok((files, note))
}

/// The repository a fix runs on and its settings, read before the fix's budget is reserved (the
/// settings may lower it).
struct FixTarget {
    repository: github_api::Repository,
    settings: repo_settings::Effective,
}

async fn execute(
    run: &mut Run<'_>,
    gh: &github_api::GithubApi,
    repo: &bugbot_shared::ids::RepoFullName,
    target: FixTarget,
    token: String,
    context: &Contextualized,
    continued: Option<&FixResult>,
) -> Result<FixResult, ApiError> {
    let FixTarget {
        repository,
        settings,
    } = target;
    if !settings.applied.is_empty() {
        run.step(
            "repository.settings",
            format!(
                "{}: {}",
                repo_settings::SETTINGS_PATH,
                settings.applied.join("; ")
            ),
        )
        .await?;
    }
    let allowed = settings.allowed_paths.clone();
    let (paths, listing_note) = list_files(gh, repo, &repository.default_branch, &allowed).await?;
    let report = format!(
        "{}\n{}",
        run.job.report.title.clone().unwrap_or_default(),
        run.job.report.text
    );
    let hints = decide::relevant_files(
        &paths,
        &format!("{report}\n{}", context.issue.title),
        &allowed,
    );
    let branch = decide::branch_name(&context.issue, &run.job.id);
    // A continue carries on on the branch its earlier run pushed (if it pushed anything).
    let on_branch = continued.is_some_and(|c| c.branch.is_some());
    run.step(
        "executor.start",
        format!(
            "{repo}: branch {branch} from {}, file hints: {}{listing_note}",
            if on_branch {
                branch.as_str()
            } else {
                repository.default_branch.as_str()
            },
            if hints.is_empty() {
                "none".to_owned()
            } else {
                hints.join(", ")
            }
        ),
    )
    .await?;
    // A retry after an earlier attempt pushed (but lost its result) must not run Claude Code again:
    // the branch is this job's own, so its existence means the fix is there (a continue's branch
    // exists by design).
    if !on_branch && call(gh.branch(repo, &branch), github_api::parse_branch_exists).await? {
        run.step(
            "executor.skipped",
            format!("{branch} was pushed by an earlier attempt"),
        )
        .await?;
        return Ok(FixResult {
            outcome: Outcome::Pushed,
            branch: Some(branch),
            commit_sha: None,
            changed_files: Vec::new(),
            rejected_paths: Vec::new(),
            summary: "The fix was pushed by an earlier attempt of this job; its details were not recorded.".into(),
            turns: 0,
            cost_usd: 0.0,
            cost_unreported: false,
            duration_ms: 0,
            error: None,
        });
    }
    let request = FixRequest {
        repo_url: repository.clone_url,
        base_branch: repository.default_branch,
        branch,
        task: Task {
            issue_id: context.issue.identifier.clone(),
            title: context.issue.title.clone(),
            context: context.packet.clone().unwrap_or(report),
            file_hints: hints,
            instructions: settings.instructions,
            follow_up: continued.map_or_else(String::new, |c| {
                let changed: Vec<String> = c.changed_files.iter().map(|f| f.path.clone()).collect();
                steer::continue_follow_up(&c.summary, &changed)
            }),
        },
        allowed_paths: allowed,
        limits: settings.limits,
        github_token: Some(token),
        // A redelivery of this job follows the run already going (or collects its result).
        run_id: Some(steer::run_id(run.job)),
        on_branch,
    };
    follow(run, repo, &request).await
}

/// Runs `request` on the executor and follows it: its progress shown (with a Stop button), the
/// job's lease renewed on its heartbeats, and its result (with refused network requests noted).
pub(crate) async fn follow(
    run: &mut Run<'_>,
    repo: &bugbot_shared::ids::RepoFullName,
    request: &FixRequest,
) -> Result<FixResult, ApiError> {
    let mut events = executor::start(run.env, run.job.id.as_str(), request).await?;
    let mut last_turn_shown = 0u64;
    let mut last_saved = now_ms();
    while let Some(event) = events.next().await? {
        let text = match &event {
            Event::Cloning { .. } => progress::cloning(repo.as_str()),
            Event::Running => "🤖 Claude Code is reading the code…".to_owned(),
            Event::Turn { n, summary } => {
                let now = now_ms();
                if now.saturating_sub(last_turn_shown) < TURN_PROGRESS_EVERY_MS {
                    continue;
                }
                last_turn_shown = now;
                progress::turn(*n, summary)
            }
            Event::CheckingPaths => progress::checking_paths(),
            Event::Pushing { branch } => progress::pushing(branch),
            Event::Heartbeat => {
                // A long run keeps its hold on the job (the lease lapses without saves).
                if now_ms().saturating_sub(last_saved) >= LEASE_RENEW_EVERY_MS {
                    run.save().await?;
                    last_saved = now_ms();
                }
                continue;
            }
            Event::Done { result } => {
                let mut result = result.clone();
                if let Some(note) = executor::refused_egress(run.env, run.job.id.as_str()).await {
                    run.step("executor.egress_refused", note.clone()).await?;
                    result.summary = format!("{}\n\n{note}", result.summary);
                }
                return Ok(result);
            }
        };
        reply::progress_with(run, &text, &[Action::Stop]).await;
    }
    Err(ApiError::network(
        Service::Executor,
        "the executor's stream ended without a result",
    ))
}

async fn open_pull_request(
    run: &mut Run<'_>,
    gh: &github_api::GithubApi,
    repo: &bugbot_shared::ids::RepoFullName,
    base_branch: Option<String>,
    issue: &linear::Issue,
    result: &FixResult,
) -> Result<PullRequest, ApiError> {
    if let Some(pr) = run.record.checkpoints.pull_request.clone() {
        return Ok(pr);
    }
    let branch = result
        .branch
        .clone()
        .unwrap_or_else(|| decide::branch_name(issue, &run.job.id));
    // An earlier attempt may have opened it and lost the answer: look before creating.
    let pr = match call(
        gh.open_pulls_for(repo, &branch),
        github_api::parse_first_pull,
    )
    .await?
    {
        Some(pr) => pr,
        None => {
            let base = match base_branch {
                Some(base) => base,
                None => {
                    call(gh.repository(repo), github_api::parse_repository)
                        .await?
                        .default_branch
                }
            };
            let summary = report_summary(run, issue);
            let created = call(
                gh.create_pull(
                    repo,
                    &decide::pr_title(issue),
                    &branch,
                    &base,
                    &decide::pr_body(issue, &summary, result, &run.job.id),
                    // Partial work at a limit: a draft, until a continue finishes it.
                    result.outcome.hit_limit(),
                ),
                github_api::parse_pull,
            )
            .await;
            match created {
                Ok(pr) => pr,
                // "A pull request already exists" for the branch: it is this job's; use it.
                Err(e) if e.status() == Some(422) => call(
                    gh.open_pulls_for(repo, &branch),
                    github_api::parse_first_pull,
                )
                .await?
                .ok_or(e)?,
                Err(e) => return Err(e),
            }
        }
    };
    run.record.checkpoints.pull_request = Some(pr.clone());
    run.link(&pr.html_url);
    run.step("github.pull_request", pr.html_url.clone()).await?;
    Ok(pr)
}

/// The report's one-line summary for the pull request (the Linear issue's title when none was made).
fn report_summary(run: &Run<'_>, issue: &linear::Issue) -> String {
    run.record
        .checkpoints
        .summary
        .clone()
        .unwrap_or_else(|| issue.title.clone())
}

async fn link_on_linear(
    run: &mut Run<'_>,
    issue: &linear::Issue,
    pr: &PullRequest,
) -> Result<(), ApiError> {
    if run.record.checkpoints.pull_request_linked {
        return Ok(());
    }
    let (api, _) = config::linear(run.env)?;
    call(
        api.attachment_create(
            &stable_uuid("attachment", &format!("{}|{}", issue.id, pr.html_url)),
            &issue.id,
            &pr.html_url,
            &format!("Pull request #{}", pr.number),
        ),
        linear::parse_attachment_create,
    )
    .await?;
    let comment_id = stable_uuid("pr-comment", run.job.id.as_str());
    let body = format!(
        "🔧 bugbot opened a pull request: {} (job `{}`)",
        pr.html_url, run.job.id
    );
    contextualize::comment_once(&api, &comment_id, &issue.id, &body).await?;
    run.record.checkpoints.pull_request_linked = true;
    run.step("linear.pull_request", "attached and announced on Linear")
        .await
}
