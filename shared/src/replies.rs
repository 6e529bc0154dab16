//! What bugbot says to the requester, in Discord or on GitHub. Plain words, a link where there is
//! one, the job id when something went wrong (operators find the job by it). Never a secret: the
//! errors passed in are already classified, secret-free messages.

use crate::linear::{Comment, Issue};

/// Shown while context is being gathered.
pub fn gathering(job_id: &str) -> String {
    format!("🔎 Gathering context for this report… (job `{job_id}`)")
}

/// Contextualize finished.
pub fn contextualized(issue: &Issue, comment: &Comment, recordings: usize) -> String {
    let recs = match recordings {
        0 => "no session recordings".to_owned(),
        1 => "1 session recording".to_owned(),
        n => format!("{n} session recordings"),
    };
    format!(
        "📋 Context is on Linear: **{}** {} — [{}]({}) ({recs}; [context comment]({}))",
        issue.identifier, issue.title, issue.identifier, issue.url, comment.url
    )
}

/// A permanent failure ended the job.
pub fn failed(job_id: &str, what: &str, error: &str) -> String {
    format!("❌ bugbot could not {what}: {error}\n(job `{job_id}`)")
}

/// Retries ran out; the job is in the dead-letter queue.
pub fn dead(job_id: &str, attempts: u32, error: &str) -> String {
    format!(
        "❌ bugbot gave up after {attempts} attempts: {error}\nThe job is kept as `{job_id}`; an operator can replay it once the problem is fixed."
    )
}

/// The one answer to someone on GitHub who may not ask bugbot for work on a repository.
pub fn github_not_allowed(login: &str, repo: &str, permission: &str) -> String {
    format!(
        "Thanks @{login}! bugbot takes requests on {repo} only from people with write access, and \
         GitHub shows yours as `{permission}`, so bugbot has not acted on this. A maintainer can ask \
         for it with an `@bugbot` comment or a `bugbot:` label. (bugbot says this once per issue.)"
    )
}

/// A mention bugbot could not take (its own storage unreachable after a few tries).
pub fn mention_not_taken() -> String {
    "Sorry — bugbot could not take this request just now (a temporary problem on its side). \
     Please mention it again in a few minutes."
        .to_owned()
}

/// A slash command bugbot could not admit (its ledger did not answer). Discord does not send an
/// interaction again, so this is its answer; the ledger may have recorded the job before its answer
/// was lost, hence "if it does not start".
pub fn command_not_taken() -> String {
    "Sorry — bugbot could not confirm it took this request (a temporary problem on its side). \
     If it does not start within a minute, please ask again in a few minutes."
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_link_and_name_the_job() {
        let issue = Issue {
            id: "u".into(),
            identifier: "BUG-1".into(),
            title: "Cart total".into(),
            url: "https://linear.app/a/issue/BUG-1".into(),
        };
        let comment = Comment {
            id: "c".into(),
            url: "https://linear.app/a/issue/BUG-1#comment-c".into(),
        };
        let t = contextualized(&issue, &comment, 1);
        assert!(
            t.contains("https://linear.app/a/issue/BUG-1") && t.contains("1 session recording;")
        );
        assert!(failed("dc-1", "contextualize this report", "linear refused").contains("`dc-1`"));
        assert!(dead("dc-1", 4, "linear is unavailable").contains("4 attempts"));
    }
}
