//! review: a reviewer's instruction on a pull request bugbot opened (`@bugbot <instruction>`, or a
//! review requesting changes). The pull request must be bugbot's, open, on one of its branches of
//! the repository itself (`bugbot_shared::review::refusal`); the executor then runs on that branch
//! with the instruction and every review comment as context, and pushes new commits to it; the
//! answer is bugbot's status comment on the pull request. The requester's write permission was
//! checked like a fix's (`github::refused_permission`), and bots never get here (the gateway).

use crate::fix::{FixEnd, end_stopped, follow, record_result, repository_settings, reserve_budget};
use crate::http::call;
use crate::run::Run;
use crate::{config, github, reply};
use bugbot_shared::executor::{FixRequest, Limits, Outcome, Task};
use bugbot_shared::github_api;
use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::job::{JobStatus, Source};
use bugbot_shared::review;
use bugbot_shared::steer;

/// The pull request's body given to the model as context is cut to this many bytes.
const MAX_CONTEXT: usize = 16 * 1024;

/// Runs a review's fix on its pull request's branch.
pub async fn review(run: &mut Run<'_>) -> Result<FixEnd, ApiError> {
    let Source::Github {
        repo,
        number,
        installation_id,
        ..
    } = run.job.source.clone()
    else {
        return Err(ApiError::permanent(
            Service::Github,
            "a review comes from a GitHub pull request",
        ));
    };
    let run_secs = Limits::default().wall_time_secs + crate::fix::TOKEN_MARGIN_SECS;
    let (gh, token) = github::client_valid_for(run.env, &repo, installation_id, run_secs).await?;
    let pr = call(gh.pull(&repo, number), review::parse_pull).await?;
    let bot = config::var(run.env, "GITHUB_BOT_LOGIN");
    if let Some(why) = review::refusal(&pr, &repo, bot.as_deref()) {
        return Err(ApiError::permanent(Service::Github, why));
    }
    let continued = run.record.checkpoints.continued_from.clone();
    let result = match run.record.checkpoints.fix_result.clone() {
        Some(result) => result,
        None => {
            let (reviews, comments) = futures::future::join(
                call(gh.pull_reviews(&repo, number), review::parse_reviews),
                call(
                    gh.pull_review_comments(&repo, number),
                    review::parse_review_comments,
                ),
            )
            .await;
            let (reviews, comments) = (reviews?, comments?);
            let settings =
                repository_settings(&gh, &repo, &pr.base.name, &config::allowed_paths(run.env))
                    .await?;
            let most = settings.limits.max_budget_usd;
            let user = match reserve_budget(run, "No new commit", most).await? {
                Ok(user) => user,
                Err(why) => return Ok(FixEnd::Refused(why)),
            };
            let repository = call(gh.repository(&repo), github_api::parse_repository).await?;
            run.step(
                "review.start",
                format!(
                    "{repo}#{number}: branch {} with {} review(s) and {} line comment(s)",
                    pr.head.name,
                    reviews.len(),
                    comments.len()
                ),
            )
            .await?;
            let mut follow_up = review::follow_up(
                &run.job.report.text,
                &run.job.requester.name,
                &reviews,
                &comments,
                bot.as_deref(),
            );
            if let Some(earlier) = &continued {
                let changed: Vec<String> = earlier
                    .changed_files
                    .iter()
                    .map(|f| f.path.clone())
                    .collect();
                follow_up = format!(
                    "{}\n{follow_up}",
                    steer::continue_follow_up(&earlier.summary, &changed)
                );
            }
            let request = FixRequest {
                repo_url: repository.clone_url,
                base_branch: pr.base.name.clone(),
                branch: pr.head.name.clone(),
                task: Task {
                    issue_id: review::issue_id(&pr),
                    title: pr.title.clone(),
                    context: bugbot_shared::job::truncate(
                        pr.body.as_deref().unwrap_or_default(),
                        MAX_CONTEXT,
                    )
                    .0,
                    file_hints: Vec::new(),
                    instructions: settings.instructions,
                    follow_up,
                },
                allowed_paths: settings.allowed_paths,
                limits: settings.limits,
                github_token: Some(token),
                run_id: Some(steer::run_id(run.job)),
                on_branch: true,
            };
            let result = follow(run, &repo, &request).await?;
            record_result(run, &user, &result).await?;
            result
        }
    };
    match result.outcome {
        Outcome::Failed => Err(ApiError::permanent(
            Service::Executor,
            result
                .error
                .clone()
                .unwrap_or_else(|| "the executor failed".into()),
        )),
        Outcome::Stopped => end_stopped(run, &result, &review::outcome_text(&pr, &result)).await,
        outcome => {
            if let Some(sha) = &result.commit_sha {
                run.link(&pr.html_url);
                run.step("github.pushed", format!("{sha} on {}", pr.head.name))
                    .await?;
            }
            let buttons = steer::buttons_after(JobStatus::Succeeded, Some(outcome));
            reply::finish_with(run, &review::outcome_text(&pr, &result), &buttons).await?;
            Ok(FixEnd::Done)
        }
    }
}
