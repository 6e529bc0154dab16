//! Iterating on review: a reviewer's `@bugbot <instruction>` on a pull request bugbot opened, or a
//! review requesting changes on it, runs a fix on the pull request's own branch with the
//! instruction and every review comment as context, and pushes new commits to the same pull
//! request. Pure: the pull request and its reviews as GitHub answers them, the checks that the
//! pull request is bugbot's, and the texts.

use crate::executor::{FixResult, Outcome};
use crate::http::{ApiError, HttpResponse, Service};
use crate::ids::RepoFullName;
use serde::Deserialize;
use std::fmt::Write;

/// Branches bugbot pushes (`fix::branch_name`): a review may only change one of these.
pub const BRANCH_PREFIX: &str = "bugbot/";

/// Most text of reviews and comments the model is given (the newest are kept).
pub const MAX_REVIEW_TEXT: usize = 24 * 1024;

/// A user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Login.
    pub login: String,
    /// `User` or `Bot`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A branch end of a pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct Branch {
    /// Branch name.
    #[serde(rename = "ref")]
    pub name: String,
    /// Its repository (`None` when the fork was deleted).
    #[serde(default)]
    pub repo: Option<BranchRepo>,
}

/// The repository a branch lives in.
#[derive(Debug, Clone, Deserialize)]
pub struct BranchRepo {
    /// `owner/name`.
    pub full_name: String,
}

/// A pull request, as `GET /pulls/{number}` answers (what a review needs).
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    /// Number.
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Web URL.
    pub html_url: String,
    /// Author (`None`: a deleted account).
    #[serde(default)]
    pub user: Option<User>,
    /// The branch with the changes.
    pub head: Branch,
    /// The branch it goes into.
    pub base: Branch,
}

/// Parses a pull request.
pub fn parse_pull(response: &HttpResponse) -> Result<PullRequest, ApiError> {
    response.json(Service::Github)
}

/// A review comment on a line.
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewComment {
    /// File.
    pub path: String,
    /// Line (`None` when it is outdated).
    #[serde(default)]
    pub line: Option<u64>,
    /// Text.
    #[serde(default)]
    pub body: String,
    /// Author.
    #[serde(default)]
    pub user: Option<User>,
}

/// Parses review comments.
pub fn parse_review_comments(response: &HttpResponse) -> Result<Vec<ReviewComment>, ApiError> {
    response.json(Service::Github)
}

/// A review.
#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    /// Its summary text.
    #[serde(default)]
    pub body: Option<String>,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, ...
    #[serde(default)]
    pub state: String,
    /// Author.
    #[serde(default)]
    pub user: Option<User>,
}

/// Parses reviews.
pub fn parse_reviews(response: &HttpResponse) -> Result<Vec<Review>, ApiError> {
    response.json(Service::Github)
}

fn login(user: Option<&User>) -> &str {
    user.map_or(crate::github_api::GHOST, |u| u.login.as_str())
}

fn is_bot(user: Option<&User>, bot_login: Option<&str>) -> bool {
    user.is_some_and(|u| {
        u.kind.eq_ignore_ascii_case("bot")
            || u.login.ends_with("[bot]")
            || bot_login.is_some_and(|b| b.eq_ignore_ascii_case(&u.login))
    })
}

/// Why bugbot will not work on this pull request (`None`: it may). Only an open pull request
/// bugbot opened, from one of its own branches in the repository itself.
pub fn refusal(pr: &PullRequest, repo: &RepoFullName, bot_login: Option<&str>) -> Option<String> {
    if pr.state != "open" {
        return Some(format!("pull request #{} is not open", pr.number));
    }
    let same_repo = pr
        .head
        .repo
        .as_ref()
        .is_some_and(|r| r.full_name.eq_ignore_ascii_case(repo.as_str()));
    if !same_repo || !pr.head.name.starts_with(BRANCH_PREFIX) {
        return Some(format!(
            "pull request #{} is not on a bugbot branch of {repo}",
            pr.number
        ));
    }
    let author_is_bugbot = match bot_login {
        Some(bot) => login(pr.user.as_ref()).eq_ignore_ascii_case(bot),
        None => is_bot(pr.user.as_ref(), None),
    };
    if !author_is_bugbot {
        return Some(format!(
            "pull request #{} was not opened by bugbot",
            pr.number
        ));
    }
    None
}

/// The Linear identifier a bugbot pull request's title starts with (`BUG-7: …`), else `PR-{n}`.
pub fn issue_id(pr: &PullRequest) -> String {
    pr.title
        .split_once(':')
        .map(|(id, _)| id.trim())
        .filter(|id| {
            id.split_once('-').is_some_and(|(team, n)| {
                !team.is_empty()
                    && team.chars().all(|c| c.is_ascii_alphanumeric())
                    && !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_digit())
            })
        })
        .map_or_else(|| format!("PR-{}", pr.number), str::to_owned)
}

/// What the run is asked to do: the reviewer's instruction, then every review and review comment
/// (bots' left out), oldest first, cut to [`MAX_REVIEW_TEXT`] keeping the newest.
pub fn follow_up(
    instruction: &str,
    requester: &str,
    reviews: &[Review],
    comments: &[ReviewComment],
    bot_login: Option<&str>,
) -> String {
    let mut threads = Vec::new();
    for r in reviews {
        let body = r.body.as_deref().unwrap_or("").trim();
        if body.is_empty() || is_bot(r.user.as_ref(), bot_login) {
            continue;
        }
        threads.push(format!(
            "- review by {} ({}): {body}",
            login(r.user.as_ref()),
            r.state.to_ascii_lowercase().replace('_', " ")
        ));
    }
    for c in comments {
        if c.body.trim().is_empty() || is_bot(c.user.as_ref(), bot_login) {
            continue;
        }
        let at = c
            .line
            .map_or_else(|| c.path.clone(), |l| format!("{}:{l}", c.path));
        threads.push(format!(
            "- {} on `{at}`: {}",
            login(c.user.as_ref()),
            c.body.trim()
        ));
    }
    let mut kept = Vec::new();
    let mut size = 0;
    for t in threads.iter().rev() {
        size += t.len() + 1;
        if size > MAX_REVIEW_TEXT {
            break;
        }
        kept.push(t.as_str());
    }
    kept.reverse();
    let mut text = format!(
        "This branch is bugbot's pull request under review. {requester} asks for changes. Change the \
         code as asked, keep the earlier fix working, and end with a short summary of what you \
         changed.\n\n### The request\n\n{}\n",
        crate::job::truncate(instruction.trim(), 4000).0
    );
    if !kept.is_empty() {
        let _ = write!(text, "\n### The review so far (oldest first)\n\n");
        if kept.len() < threads.len() {
            text.push_str("(earlier comments left out for length)\n");
        }
        for t in kept {
            text.push_str(t);
            text.push('\n');
        }
    }
    text
}

/// The answer on the pull request once the review's run ended.
pub fn outcome_text(pr: &PullRequest, result: &FixResult) -> String {
    let line = match result.outcome {
        Outcome::Pushed => format!(
            "✅ Pushed {} to this pull request — {} file(s) changed, {} turns. {}",
            result.commit_sha.as_deref().map_or_else(
                || "a commit".to_owned(),
                |s| format!("`{}`", &s[..s.len().min(7)])
            ),
            result.changed_files.len(),
            result.turns,
            one_line(&result.summary)
        ),
        Outcome::NoChanges => format!(
            "🤷 No new commit: Claude Code changed nothing. {}",
            one_line(&result.summary)
        ),
        Outcome::Rejected => format!(
            "🚫 No new commit: the change touched paths bugbot may not change: {}. Nothing was pushed.",
            result
                .rejected_paths
                .iter()
                .map(|v| format!("`{}` ({})", v.path, v.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        o if o.hit_limit() => match &result.commit_sha {
            Some(_) => format!(
                "⏸️ Claude Code {} before it finished; its partial change is pushed here. **Continue** carries on.",
                crate::fix::limit_reached(result)
            ),
            None => format!(
                "⏸️ Claude Code {} before it changed anything. **Continue** carries on.",
                crate::fix::limit_reached(result)
            ),
        },
        Outcome::Stopped => format!(
            "⏹️ The review's run was {}. Nothing was pushed.",
            result.error.as_deref().unwrap_or("stopped")
        ),
        _ => format!(
            "❌ The review's run failed: {}. Nothing was pushed.",
            result.error.as_deref().unwrap_or("no reason was given")
        ),
    };
    format!(
        "{line} ({}) · model cost {}",
        pr.html_url,
        result.cost_text()
    )
}

fn one_line(text: &str) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::job::truncate(&t, 300).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pr(author: &str, head: &str, head_repo: &str) -> PullRequest {
        serde_json::from_value(json!({
            "number": 101, "state": "open", "title": "BUG-7: Cart total", "body": "Fixes BUG-7",
            "html_url": "https://github.com/acme/web-app/pull/101",
            "user": {"login": author, "type": "Bot"},
            "head": {"ref": head, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": "acme/web-app"}}
        }))
        .unwrap()
    }

    #[test]
    fn only_bugbots_own_open_pull_requests() {
        let repo = RepoFullName::parse("acme/web-app").unwrap();
        let bot = Some("bugbot-app[bot]");
        assert_eq!(
            refusal(
                &pr("bugbot-app[bot]", "bugbot/bug-7-gh-1", "acme/web-app"),
                &repo,
                bot
            ),
            None
        );
        assert!(
            refusal(
                &pr("octocat", "bugbot/bug-7-gh-1", "acme/web-app"),
                &repo,
                bot
            )
            .is_some()
        );
        assert!(
            refusal(
                &pr("bugbot-app[bot]", "feature", "acme/web-app"),
                &repo,
                bot
            )
            .is_some()
        );
        assert!(
            refusal(
                &pr("bugbot-app[bot]", "bugbot/x", "evil/web-app"),
                &repo,
                bot
            )
            .is_some(),
            "a fork's branch is never pushed to"
        );
        let mut closed = pr("bugbot-app[bot]", "bugbot/x", "acme/web-app");
        closed.state = "closed".into();
        assert!(refusal(&closed, &repo, bot).is_some());
        assert_eq!(issue_id(&closed), "BUG-7");
        closed.title = "Something else".into();
        assert_eq!(issue_id(&closed), "PR-101");
    }

    #[test]
    fn the_follow_up_holds_the_instruction_and_the_reviews_without_bots() {
        let reviews: Vec<Review> = serde_json::from_value(json!([
            {"body": "Please also cover empty carts.", "state": "CHANGES_REQUESTED", "user": {"login": "lead", "type": "User"}},
            {"body": "Automated check", "state": "COMMENTED", "user": {"login": "ci[bot]", "type": "Bot"}}
        ]))
        .unwrap();
        let comments: Vec<ReviewComment> = serde_json::from_value(json!([
            {"path": "src/cart.js", "line": 2, "body": "Name this `subtotal`.", "user": {"login": "lead", "type": "User"}}
        ]))
        .unwrap();
        let text = follow_up("@bugbot rename the sum", "lead", &reviews, &comments, None);
        assert!(text.contains("rename the sum"));
        assert!(
            text.contains("review by lead (changes requested): Please also cover empty carts.")
        );
        assert!(text.contains("lead on `src/cart.js:2`: Name this `subtotal`."));
        assert!(!text.contains("Automated check"));
        let many: Vec<ReviewComment> = (0..2000)
            .map(|i| ReviewComment {
                path: "src/a.js".into(),
                line: Some(i),
                body: format!("comment {i} {}", "x".repeat(40)),
                user: None,
            })
            .collect();
        let cut = follow_up("do it", "lead", &[], &many, None);
        assert!(cut.len() < MAX_REVIEW_TEXT + 1024);
        assert!(cut.contains("comment 1999") && !cut.contains("comment 0 "));
    }
}
