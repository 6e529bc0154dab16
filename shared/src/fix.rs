//! The fix flow's decisions: which repository, which files to point Claude Code at, the branch,
//! the pull request's title and body, and what to tell the requester at each step.

use crate::executor::{FixResult, Outcome};
use crate::github_api::PullRequest;
use crate::ids::{JobId, RepoFullName};
use crate::job::{JobMessage, Source};
use crate::linear::Issue;
use crate::references::References;
use std::fmt::Write;

/// At most this many file hints go to the executor.
pub const MAX_FILE_HINTS: usize = 8;

/// Which repository a Discord channel's reports belong to (`DISCORD_CHANNEL_REPOS`), and the
/// fallback (`GITHUB_DEFAULT_REPO`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoRouting {
    /// Channel (or parent channel of a thread) → repository.
    pub channels: Vec<(String, RepoFullName)>,
    /// Used when nothing else decides.
    pub default: Option<RepoFullName>,
}

impl RepoRouting {
    /// Parses `channel=owner/repo,channel=owner/repo` and the default.
    pub fn parse(channels: Option<&str>, default: Option<&str>) -> Result<Self, String> {
        let mut out = Self::default();
        for pair in channels
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (channel, repo) = pair.split_once('=').ok_or_else(|| {
                format!("DISCORD_CHANNEL_REPOS: {pair:?} is not channel=owner/repo")
            })?;
            let repo = RepoFullName::parse(repo.trim())
                .map_err(|e| format!("DISCORD_CHANNEL_REPOS: {e}"))?;
            out.channels.push((channel.trim().to_owned(), repo));
        }
        if let Some(d) = default.map(str::trim).filter(|d| !d.is_empty()) {
            out.default =
                Some(RepoFullName::parse(d).map_err(|e| format!("GITHUB_DEFAULT_REPO: {e}"))?);
        }
        Ok(out)
    }
}

/// Decides the repository: one named in the report (if bugbot serves it), else the GitHub issue's
/// own, else the Discord channel's (or, for a thread, its parent channel's: `thread_parent` for
/// mentions, whose events do not carry it), else the default. `served` empty means "any".
pub fn choose_repo(
    job: &JobMessage,
    references: &References,
    routing: &RepoRouting,
    served: &[RepoFullName],
    thread_parent: Option<&str>,
) -> Result<RepoFullName, String> {
    let is_served = |r: &RepoFullName| served.is_empty() || served.contains(r);
    let named = references
        .github_repos
        .iter()
        .cloned()
        .chain(references.github_issues.iter().map(|i| i.repo.clone()))
        .filter_map(|r| RepoFullName::parse(&r).ok())
        .find(|r| is_served(r));
    if let Some(r) = named {
        return Ok(r);
    }
    match &job.source {
        Source::Github { repo, .. } => return Ok(repo.clone()),
        Source::Discord {
            channel_id,
            parent_channel_id,
            ..
        } => {
            for id in std::iter::once(channel_id).chain(parent_channel_id.as_ref()) {
                if let Some((_, r)) = routing.channels.iter().find(|(c, _)| c == id.as_str()) {
                    return Ok(r.clone());
                }
            }
        }
        Source::DiscordMention { channel_id, .. } => {
            for id in std::iter::once(channel_id.as_str()).chain(thread_parent) {
                if let Some((_, r)) = routing.channels.iter().find(|(c, _)| c == id) {
                    return Ok(r.clone());
                }
            }
        }
        Source::Admin => {}
    }
    routing.default.clone().ok_or_else(|| {
        "no repository is configured for this channel (set DISCORD_CHANNEL_REPOS or GITHUB_DEFAULT_REPO), and the report names none".to_owned()
    })
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "when", "that", "this", "from", "are", "was", "but", "not",
    "have", "has", "its", "it's", "into", "than", "then", "there", "which", "what", "wrong", "bug",
    "issue", "fix", "please", "should", "would", "could", "does", "doesn't", "items", "page",
    "user", "users",
];

/// The words of a report that may name code (lower case, 3+ letters, no stop words).
pub fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .map(str::to_lowercase)
        .filter(|w| w.len() >= 3 && !w.chars().all(|c| c.is_ascii_digit()))
    {
        if !STOPWORDS.contains(&w.as_str()) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The repository's files most likely involved: allowed paths only, scored by how many of the
/// report's keywords (or their stems) their path names. Files no keyword names are left out.
pub fn relevant_files(paths: &[String], text: &str, allowed: &[String]) -> Vec<String> {
    let words = keywords(text);
    let mut scored: Vec<(usize, &String)> = paths
        .iter()
        .filter(|p| crate::path_policy::is_allowed(p, allowed))
        .map(|p| {
            let lower = p.to_lowercase();
            let parts: Vec<&str> = lower
                .split(|c: char| !c.is_alphanumeric())
                .filter(|s| s.len() >= 3)
                .collect();
            let score = words
                .iter()
                .filter(|w| {
                    parts.iter().any(|part| {
                        part == *w
                            || (part.len() >= 4 && w.starts_with(part))
                            || (w.len() >= 4 && part.starts_with(w.as_str()))
                    })
                })
                .count();
            (score, p)
        })
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(MAX_FILE_HINTS)
        .map(|(_, p)| p.clone())
        .collect()
}

/// Subtrees listed one by one at most, when GitHub cut a recursive listing.
pub const MAX_SUBTREES: usize = 8;

/// When GitHub cut the recursive listing of a branch (`truncated: true`), the narrower listing to
/// ask for instead: the top-level directories (name, SHA) the allowed paths lie in, from the
/// branch's non-recursive `root` listing. An allowed path with no directory (`""`, `*`) stands for
/// every top-level directory. At most [`MAX_SUBTREES`].
pub fn subtrees_to_list(
    root: &crate::github_api::TreeListing,
    allowed: &[String],
) -> Vec<(String, String)> {
    let wanted: Vec<&str> = allowed
        .iter()
        .map(|a| a.trim_start_matches('/'))
        .map(|a| a.split('/').next().unwrap_or_default())
        .collect();
    let everything = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w.is_empty() || w.contains(['*', '?', '[']));
    root.tree
        .iter()
        .filter(|e| e.kind == "tree")
        .filter(|e| everything || wanted.contains(&e.path.as_str()))
        .take(MAX_SUBTREES)
        .map(|e| (e.path.clone(), e.sha.clone()))
        .collect()
}

/// The branch of a job's fix: stable for the job, so a retry pushes to (and finds) the same one.
pub fn branch_name(issue: &Issue, job: &JobId) -> String {
    let slug: String = issue
        .identifier
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let job: String = job
        .as_str()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("bugbot/{slug}-{job}")
}

/// The pull request's title.
pub fn pr_title(issue: &Issue) -> String {
    format!("{}: {}", issue.identifier, issue.title)
}

/// The pull request's body: the Linear link, the context, what Claude Code did, the changed files,
/// cost and turns, and `Fixes ID` so that Linear links the pull request to the issue.
pub fn pr_body(issue: &Issue, context_summary: &str, result: &FixResult, job: &JobId) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Fixes {} — [{}]({})\n",
        issue.identifier, issue.title, issue.url
    );
    let _ = writeln!(md, "### Report\n\n{context_summary}\n");
    let _ = writeln!(md, "### What Claude Code did\n");
    let summary = result.summary.trim();
    let _ = writeln!(
        md,
        "{}\n",
        if summary.is_empty() {
            "(no summary was given)"
        } else {
            summary
        }
    );
    if result.outcome.hit_limit() {
        let _ = writeln!(
            md,
            "### What is left\n\nClaude Code {} before it finished: this draft holds its checked \
             partial work. Ask bugbot to **continue** (the Continue button in Discord, or a comment \
             `@bugbot continue`): the next run carries on on this branch with a fresh budget and \
             marks this pull request ready for review.\n",
            limit_reached(result)
        );
    }
    if !result.changed_files.is_empty() {
        let _ = writeln!(md, "### Changed files\n\n| file | + | − |\n|---|---|---|");
        for f in &result.changed_files {
            let _ = writeln!(md, "| `{}` | {} | {} |", f.path, f.added, f.removed);
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "<sub>bugbot · job `{job}` · {} turns · {} · {:.1} s. Review before merging: the change was made by a model and only its paths were checked.</sub>",
        result.turns,
        result.cost_text(),
        result.duration_ms as f64 / 1000.0
    );
    md
}

/// Progress texts, shown while a fix runs.
pub mod progress {
    /// The executor is cloning.
    pub fn cloning(repo: &str) -> String {
        format!("🛠️ Cloning `{repo}`…")
    }
    /// Claude Code is at turn `n`.
    pub fn turn(n: u32, summary: &str) -> String {
        let (s, _) = crate::job::truncate(summary.trim(), 200);
        if s.is_empty() {
            format!("🤖 Claude Code is working — turn {n}")
        } else {
            format!("🤖 Claude Code is working — turn {n}: {s}")
        }
    }
    /// The executor checks the changed paths.
    pub fn checking_paths() -> String {
        "🔍 Checking which paths changed…".into()
    }
    /// The executor pushes.
    pub fn pushing(branch: &str) -> String {
        format!("⬆️ Pushing `{branch}`…")
    }
}

/// The final answer of a fix, with what its model use cost.
pub fn outcome_text(issue: &Issue, result: &FixResult, pr: Option<&PullRequest>) -> String {
    format!(
        "{} · model cost {}",
        outcome_line(issue, result, pr),
        result.cost_text()
    )
}

/// A continue's result as the whole fix: it builds on the earlier run's branch (kept when this
/// run had nothing more to push, which then means the work was complete), with both runs' files,
/// turns and cost. A run that went wrong (rejected, failed, stopped) is left as it is.
pub fn carried_on(earlier: &FixResult, now: &FixResult) -> FixResult {
    let mut whole = now.clone();
    let builds_on = now.outcome == Outcome::Pushed
        || now.outcome == Outcome::NoChanges
        || now.outcome.hit_limit();
    if !builds_on || earlier.branch.is_none() {
        return whole;
    }
    if whole.branch.is_none() {
        whole.branch.clone_from(&earlier.branch);
        whole.commit_sha.clone_from(&earlier.commit_sha);
        if whole.outcome == Outcome::NoChanges {
            whole.outcome = Outcome::Pushed;
        }
    }
    let mut files = earlier.changed_files.clone();
    for f in &now.changed_files {
        match files.iter_mut().find(|e| e.path == f.path) {
            Some(e) => {
                e.added += f.added;
                e.removed += f.removed;
            }
            None => files.push(f.clone()),
        }
    }
    whole.changed_files = files;
    whole.turns += earlier.turns;
    whole.cost_usd += earlier.cost_usd;
    whole.cost_unreported |= earlier.cost_unreported;
    whole.duration_ms += earlier.duration_ms;
    whole
}

/// Which limit a run reached, as words ("used all its turns (30)").
pub fn limit_reached(result: &FixResult) -> String {
    match result.outcome {
        Outcome::MaxTurns => format!("used all its turns ({})", result.turns),
        Outcome::BudgetExceeded => format!("reached its cost limit (${:.2})", result.cost_usd),
        _ => format!(
            "ran out of time ({:.0} s)",
            result.duration_ms as f64 / 1000.0
        ),
    }
}

fn outcome_line(issue: &Issue, result: &FixResult, pr: Option<&PullRequest>) -> String {
    let linear = format!("[{}]({})", issue.identifier, issue.url);
    match (result.outcome, pr) {
        (o, Some(pr)) if o.hit_limit() => format!(
            "⏸️ Draft pull request: {} — Claude Code {} before it finished; its partial change ({} file(s)) is there. **Continue** carries on with a fresh budget. Linear: {linear}",
            pr.html_url,
            limit_reached(result),
            result.changed_files.len()
        ),
        (o, None) if o.hit_limit() => format!(
            "⏸️ No pull request yet: Claude Code {} before it changed anything. **Continue** carries on with a fresh budget. Linear: {linear}",
            limit_reached(result)
        ),
        (Outcome::Stopped, _) => format!(
            "⏹️ The fix was {}. Nothing was pushed and its workspace was removed. Linear: {linear}",
            result.error.as_deref().unwrap_or("stopped")
        ),
        (Outcome::Pushed, Some(pr)) => format!(
            "✅ Pull request opened: {} — {} file(s) changed, {} turns. Linear: {linear}",
            pr.html_url,
            result.changed_files.len(),
            result.turns
        ),
        (Outcome::Rejected, _) => {
            let paths: Vec<String> = result
                .rejected_paths
                .iter()
                .map(|v| format!("`{}` ({})", v.path, v.reason))
                .collect();
            format!(
                "🚫 No pull request: the change touched paths bugbot may not change: {}. Nothing was pushed. Linear: {linear}",
                paths.join(", ")
            )
        }
        (Outcome::NoChanges, _) => format!(
            "🤷 No pull request: Claude Code made no changes. {} Linear: {linear}",
            one_line(&result.summary)
        ),
        (Outcome::Failed | Outcome::TimedOut | Outcome::MaxTurns | Outcome::BudgetExceeded, _)
        | (Outcome::Pushed, None) => format!(
            "❌ The fix failed: {}. Nothing was opened. Linear: {linear}",
            result.error.as_deref().unwrap_or("no reason was given")
        ),
    }
}

fn one_line(text: &str) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::job::truncate(&t, 300).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::ChangedFile;
    use crate::path_policy::Violation;

    #[test]
    fn a_cut_listing_is_narrowed_to_the_allowed_directories() {
        let entry = |path: &str, kind: &str| crate::github_api::TreeEntry {
            path: path.into(),
            kind: kind.into(),
            sha: format!("sha-{path}"),
        };
        let root = crate::github_api::TreeListing {
            tree: vec![
                entry("README.md", "blob"),
                entry("assets", "tree"),
                entry("src", "tree"),
                entry("vendor", "commit"),
            ],
            truncated: false,
        };
        assert_eq!(
            subtrees_to_list(&root, &["src/".into(), "src/deep/".into()]),
            vec![("src".to_owned(), "sha-src".to_owned())]
        );
        assert_eq!(
            subtrees_to_list(&root, &["*".into()]).len(),
            2,
            "a glob stands for every directory (never a submodule)"
        );
        assert!(subtrees_to_list(&root, &["app/".into()]).is_empty());
        let files: Vec<String> = crate::github_api::TreeListing {
            tree: vec![entry("cart.js", "blob"), entry("ui", "tree")],
            truncated: false,
        }
        .files_under("src/")
        .collect();
        assert_eq!(files, vec!["src/cart.js"]);
    }

    fn issue() -> Issue {
        Issue {
            id: "u".into(),
            identifier: "BUG-7".into(),
            title: "Cart total is off by one".into(),
            url: "https://linear.app/acme/issue/BUG-7".into(),
        }
    }

    fn result(outcome: Outcome) -> FixResult {
        FixResult {
            outcome,
            branch: Some("bugbot/bug-7".into()),
            commit_sha: Some("abc".into()),
            changed_files: vec![ChangedFile {
                path: "src/cart.js".into(),
                added: 1,
                removed: 1,
            }],
            rejected_paths: vec![Violation {
                path: "package.json".into(),
                reason: "package manifests and lock files are never changed".into(),
            }],
            summary: "Start the sum at 0.".into(),
            turns: 3,
            cost_usd: 0.01,
            cost_unreported: false,
            duration_ms: 4200,
            error: None,
        }
    }

    #[test]
    fn repo_choice() {
        let job: JobMessage = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "dc-1", "command": "fix", "requester": {"id": "1", "name": "j"},
            "source": {"kind": "discord", "guild_id": "1", "channel_id": "20", "parent_channel_id": "10",
                       "interaction_id": "5", "interaction_token": "t", "application_id": "3"},
            "report": {"text": "x"}, "references": {}, "enqueued_at_ms": 1
        })).unwrap();
        let routing =
            RepoRouting::parse(Some("10=acme/web-app, 99=acme/other"), Some("acme/default"))
                .unwrap();
        let served = vec![RepoFullName::parse("acme/web-app").unwrap()];
        assert_eq!(
            choose_repo(&job, &References::default(), &routing, &served, None)
                .unwrap()
                .as_str(),
            "acme/web-app"
        );
        let refs = References {
            github_repos: vec!["evil/elsewhere".into(), "acme/web-app".into()],
            ..Default::default()
        };
        assert_eq!(
            choose_repo(&job, &refs, &RepoRouting::default(), &served, None)
                .unwrap()
                .as_str(),
            "acme/web-app"
        );
        assert!(
            choose_repo(
                &job,
                &References::default(),
                &RepoRouting::default(),
                &served,
                None
            )
            .is_err()
        );
        assert!(RepoRouting::parse(Some("nonsense"), None).is_err());

        // A mention in a thread: the thread's parent decides.
        let mention: JobMessage = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "dm-1", "command": "fix", "requester": {"id": "1", "name": "j"},
            "source": {"kind": "discord_mention", "guild_id": "1", "channel_id": "20", "message_id": "5"},
            "report": {"text": "x"}, "references": {}, "enqueued_at_ms": 1
        }))
        .unwrap();
        let only_channels = RepoRouting::parse(Some("10=acme/web-app"), None).unwrap();
        assert!(
            choose_repo(
                &mention,
                &References::default(),
                &only_channels,
                &served,
                None
            )
            .is_err()
        );
        assert_eq!(
            choose_repo(
                &mention,
                &References::default(),
                &only_channels,
                &served,
                Some("10")
            )
            .unwrap()
            .as_str(),
            "acme/web-app"
        );
    }

    #[test]
    fn file_hints_follow_the_report_and_the_allowed_paths() {
        let paths: Vec<String> = [
            "src/cart.js",
            "src/checkout/total.ts",
            "package.json",
            "docs/cart.md",
            "src/user.js",
            "src/.env.cart",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let allowed = vec!["src/".to_owned()];
        let hints = relevant_files(&paths, "The cart total is wrong at checkout", &allowed);
        assert_eq!(hints, vec!["src/checkout/total.ts", "src/cart.js"]);
        assert!(relevant_files(&paths, "nothing matches here", &allowed).is_empty());
    }

    #[test]
    fn branch_body_and_answers() {
        let job = JobId::parse("dc-123").unwrap();
        assert_eq!(branch_name(&issue(), &job), "bugbot/bug-7-dc-123");
        assert!(crate::executor::valid_branch(&branch_name(&issue(), &job)));
        let body = pr_body(&issue(), "Cart total wrong", &result(Outcome::Pushed), &job);
        assert!(body.starts_with("Fixes BUG-7"));
        assert!(body.contains("| `src/cart.js` | 1 | 1 |") && body.contains("3 turns"));
        let pr = PullRequest {
            number: 1,
            html_url: "https://github.com/acme/web-app/pull/1".into(),
            node_id: "PR_1".into(),
            draft: false,
        };
        assert!(outcome_text(&issue(), &result(Outcome::Pushed), Some(&pr)).contains("/pull/1"));
        assert!(
            outcome_text(&issue(), &result(Outcome::Rejected), None).contains("`package.json`")
        );
        assert!(outcome_text(&issue(), &result(Outcome::TimedOut), None).contains("out of time"));
        let partial = result(Outcome::MaxTurns);
        let draft = outcome_text(&issue(), &partial, Some(&pr));
        assert!(draft.starts_with("⏸️ Draft pull request") && draft.contains("**Continue**"));
        assert!(pr_body(&issue(), "s", &partial, &job).contains("### What is left"));
        let mut stopped = result(Outcome::Stopped);
        stopped.error = Some("stopped by jane".into());
        assert!(
            outcome_text(&issue(), &stopped, None)
                .contains("was stopped by jane. Nothing was pushed")
        );
        let mut rest = result(Outcome::Pushed);
        rest.changed_files[0].path = "src/total.js".into();
        let mut partial_pushed = partial.clone();
        partial_pushed.branch = Some("bugbot/bug-7-dc-123".into());
        let whole = carried_on(&partial_pushed, &rest);
        assert_eq!(whole.changed_files.len(), 2);
        assert_eq!(whole.turns, 6);
        let unpushed = |o| FixResult {
            branch: None,
            commit_sha: None,
            ..result(o)
        };
        let nothing_more = carried_on(&partial_pushed, &unpushed(Outcome::NoChanges));
        assert_eq!(nothing_more.outcome, Outcome::Pushed);
        assert_eq!(nothing_more.branch, partial_pushed.branch);
        assert_eq!(
            carried_on(&partial_pushed, &unpushed(Outcome::Rejected)).branch,
            None
        );
        let mut costly = result(Outcome::Pushed);
        costly.cost_usd = 0.1234;
        assert!(outcome_text(&issue(), &costly, Some(&pr)).ends_with(" · model cost $0.12"));
    }

    #[test]
    fn a_cost_claude_code_never_reported_is_shown_as_the_limit_counted() {
        let mut cut_off = result(Outcome::TimedOut);
        cut_off.cost_usd = 2.0;
        cut_off.cost_unreported = true;
        let text = outcome_text(&issue(), &cut_off, None);
        assert!(text.contains("model cost up to $2.00"), "{text}");
        assert!(text.contains("the whole limit is counted"), "{text}");
        // A continue after it carries the flag: its total is still an upper bound.
        let whole = carried_on(&cut_off, &result(Outcome::Pushed));
        assert!(whole.cost_unreported);
        assert!((whole.cost_usd - 2.01).abs() < 1e-9);
        // Said only when true, so the executor's answer stays as it was otherwise.
        let json = serde_json::to_value(result(Outcome::Pushed)).unwrap_or_default();
        assert!(json.get("cost_unreported").is_none());
    }
}
