//! Finds the things a bug report points at: Linear issues, GitHub repositories and issues,
//! PostHog recordings and e-mail addresses.

use regex_lite::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// At most this many references of each kind are kept, so a pasted log cannot bloat a job.
pub const MAX_PER_KIND: usize = 20;

/// A GitHub issue or pull request named by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubIssueRef {
    /// `owner/name`.
    pub repo: String,
    /// Issue or pull request number.
    pub number: u64,
}

/// A PostHog session recording named in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosthogSessionRef {
    /// The recording's session id.
    pub session_id: String,
    /// The PostHog project, when the reference was a replay URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// Everything referenced by a report, deduplicated, in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct References {
    /// Linear issue identifiers such as `ENG-123`, from bare text or Linear URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linear_issues: Vec<String>,
    /// GitHub repositories (`owner/name`) named by URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub github_repos: Vec<String>,
    /// GitHub issues and pull requests named by URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub github_issues: Vec<GithubIssueRef>,
    /// PostHog recordings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub posthog_sessions: Vec<PosthogSessionRef>,
    /// E-mail addresses as written (used to find the reporter's PostHog person).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
}

impl References {
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.linear_issues.is_empty()
            && self.github_repos.is_empty()
            && self.github_issues.is_empty()
            && self.posthog_sessions.is_empty()
            && self.emails.is_empty()
    }
}

/// Words shaped like issue keys that are almost never Linear issues.
const NOT_ISSUE_PREFIXES: &[&str] = &[
    "UTF", "SHA", "ISO", "HTTP", "HTTPS", "RFC", "CVE", "TLS", "SSL", "MD", "AES", "RSA", "ECDSA",
    "GPT", "PR", "IPV", "COVID", "WIN", "ES", "X", "Y", "Z",
];

struct Patterns {
    linear_url: Regex,
    linear_key: Regex,
    github_issue: Regex,
    github_repo: Regex,
    posthog_replay: Regex,
    posthog_param: Regex,
    session_uuid: Regex,
    email: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("bad built-in pattern {s}: {e}"));
        Patterns {
            linear_url: re(r"https?://linear\.app/[A-Za-z0-9_-]+/issue/([A-Za-z][A-Za-z0-9]{0,9}-[0-9]{1,7})"),
            linear_key: re(r"\b([A-Z][A-Z0-9]{0,9})-([0-9]{1,7})\b"),
            github_issue: re(
                r"https?://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/(?:issues|pull)/([0-9]{1,10})",
            ),
            github_repo: re(r"https?://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)"),
            posthog_replay: re(
                r"https?://[A-Za-z0-9.-]*posthog\.com/project/([0-9A-Za-z_-]+)/replay/([0-9A-Za-z-]{8,64})",
            ),
            posthog_param: re(r"sessionRecordingId=([0-9A-Za-z-]{8,64})"),
            session_uuid: re(
                r"(?i)session[ _-]?(?:id|recording)?\s*[:=#]?\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
            ),
            email: re(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        }
    })
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if list.len() < MAX_PER_KIND && !list.contains(&item) {
        list.push(item);
    }
}

/// GitHub paths that are not repositories (`github.com/orgs/...`, `github.com/settings/...`).
const NOT_GITHUB_OWNERS: &[&str] = &[
    "orgs",
    "settings",
    "apps",
    "marketplace",
    "features",
    "about",
    "login",
    "notifications",
    "sponsors",
    "topics",
    "search",
    "users",
];

/// Whether `text` holds `needle` (ASCII), in any case.
fn contains_ignore_ascii_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `re`'s matches in `text`; none, without a scan, where `present` is false (the text lacks a
/// literal that every match contains).
fn captures_if<'r, 't>(
    present: bool,
    re: &'r Regex,
    text: &'t str,
) -> impl Iterator<Item = regex_lite::Captures<'t>> + use<'r, 't> {
    present
        .then(|| re.captures_iter(text))
        .into_iter()
        .flatten()
}

/// Extracts references from free text.
///
/// Each pattern runs only where the text holds a literal that every match of it contains
/// (`regex-lite`, small in wasm, has no such prefilter of its own, and most reports mention few
/// kinds of reference: a pattern per kind scanned the whole text on every request).
pub fn extract(text: &str) -> References {
    let p = patterns();
    let mut refs = References::default();
    let has_dash = text.contains('-');

    for c in captures_if(text.contains("linear.app/"), &p.linear_url, text) {
        push_unique(&mut refs.linear_issues, c[1].to_ascii_uppercase());
    }
    // Bare keys: skip the ones inside URLs (a GitHub branch name, say) and well-known non-issues.
    for c in captures_if(has_dash, &p.linear_key, text) {
        let Some(whole) = c.get(0) else { continue };
        let prefix = &c[1];
        if NOT_ISSUE_PREFIXES.contains(&prefix) || inside_url(text, whole.start()) {
            continue;
        }
        push_unique(&mut refs.linear_issues, whole.as_str().to_owned());
    }

    let has_github = text.contains("github.com/");
    for c in captures_if(has_github, &p.github_issue, text) {
        if let Ok(number) = c[3].parse() {
            push_unique(
                &mut refs.github_issues,
                GithubIssueRef {
                    repo: format!("{}/{}", &c[1], trim_git_suffix(&c[2])),
                    number,
                },
            );
        }
    }
    for c in captures_if(has_github, &p.github_repo, text) {
        if NOT_GITHUB_OWNERS.contains(&&c[1]) {
            continue;
        }
        push_unique(
            &mut refs.github_repos,
            format!("{}/{}", &c[1], trim_git_suffix(&c[2])),
        );
    }

    for c in captures_if(text.contains("posthog.com/"), &p.posthog_replay, text) {
        push_unique(
            &mut refs.posthog_sessions,
            PosthogSessionRef {
                session_id: c[2].to_owned(),
                project_id: Some(c[1].to_owned()),
            },
        );
    }
    let params = captures_if(text.contains("sessionRecordingId="), &p.posthog_param, text);
    let uuids = captures_if(
        has_dash && contains_ignore_ascii_case(text, "session"),
        &p.session_uuid,
        text,
    );
    for c in params.chain(uuids) {
        let id = c[1].to_ascii_lowercase();
        if !refs.posthog_sessions.iter().any(|s| s.session_id == id) {
            push_unique(
                &mut refs.posthog_sessions,
                PosthogSessionRef {
                    session_id: id,
                    project_id: None,
                },
            );
        }
    }

    // As written: PostHog matches e-mail exactly (`posthog::email_candidates` adds the lowercase).
    for c in captures_if(text.contains('@'), &p.email, text) {
        if !refs.emails.iter().any(|e| e.eq_ignore_ascii_case(&c[0])) {
            push_unique(&mut refs.emails, c[0].to_owned());
        }
    }
    refs
}

fn trim_git_suffix(name: &str) -> &str {
    name.strip_suffix(".git").unwrap_or(name)
}

/// Whether byte offset `at` lies inside a URL-like word (preceded by `://` without whitespace between).
fn inside_url(text: &str, at: usize) -> bool {
    let word_start = text[..at]
        .rfind(|c: char| c.is_whitespace() || c == '(' || c == '<')
        .map_or(0, |i| i + 1);
    text[word_start..at].contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_kind() {
        let text = "Checkout breaks, see ENG-42 and https://linear.app/acme/issue/WEB-7/cart-total. \
            Repo https://github.com/acme/web-app, issue https://github.com/acme/web-app/issues/12. \
            Replay: https://us.posthog.com/project/1234/replay/01932f5e-8b7a-7c4e-9d1a-2b3c4d5e6f70 \
            Reported by Jane.Doe@Example.com";
        let r = extract(text);
        assert_eq!(r.linear_issues, vec!["WEB-7", "ENG-42"]);
        assert_eq!(r.github_repos, vec!["acme/web-app"]);
        assert_eq!(
            r.github_issues,
            vec![GithubIssueRef {
                repo: "acme/web-app".into(),
                number: 12
            }]
        );
        assert_eq!(
            r.posthog_sessions,
            vec![PosthogSessionRef {
                session_id: "01932f5e-8b7a-7c4e-9d1a-2b3c4d5e6f70".into(),
                project_id: Some("1234".into())
            }]
        );
        assert_eq!(r.emails, vec!["Jane.Doe@Example.com"], "as written");
        assert_eq!(
            extract("a@b.io and A@B.io").emails,
            vec!["a@b.io"],
            "one address, whatever its case"
        );
    }

    #[test]
    fn ignores_lookalikes() {
        let r = extract("UTF-8 and SHA-256, HTTP-500, https://example.com/branch/ENG-1 eng-2");
        assert!(r.linear_issues.is_empty(), "{:?}", r.linear_issues);
        let r = extract("https://github.com/orgs/acme/people");
        assert!(r.github_repos.is_empty());
    }

    #[test]
    fn bare_session_ids_and_query_params() {
        let r = extract(
            "session id: 01932F5E-8B7A-7C4E-9D1A-2B3C4D5E6F70, also \
             https://app.posthog.com/replay?sessionRecordingId=abc12345-1111",
        );
        let ids: Vec<_> = r
            .posthog_sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect();
        assert_eq!(
            ids,
            vec!["abc12345-1111", "01932f5e-8b7a-7c4e-9d1a-2b3c4d5e6f70"]
        );
        // A UUID that is not called a session is not taken for one.
        assert!(
            extract("request 01932f5e-8b7a-7c4e-9d1a-2b3c4d5e6f70 failed")
                .posthog_sessions
                .is_empty()
        );
    }

    #[test]
    fn each_kind_alone_passes_its_prefilter() {
        assert_eq!(extract("see BUG-3").linear_issues, vec!["BUG-3"]);
        assert_eq!(
            extract("https://linear.app/acme/issue/web-7").linear_issues,
            vec!["WEB-7"]
        );
        assert_eq!(
            extract("https://github.com/acme/api").github_repos,
            vec!["acme/api"]
        );
        assert_eq!(
            extract("https://github.com/a/b/pull/9").github_issues.len(),
            1
        );
        assert_eq!(
            extract("https://eu.posthog.com/project/7/replay/abcdef123456").posthog_sessions[0]
                .session_id,
            "abcdef123456"
        );
        assert_eq!(
            extract("?sessionRecordingId=abcdef123456").posthog_sessions[0].session_id,
            "abcdef123456"
        );
        assert_eq!(
            extract("SESSION RECORDING: 01932F5E-8B7A-7C4E-9D1A-2B3C4D5E6F70").posthog_sessions[0]
                .session_id,
            "01932f5e-8b7a-7c4e-9d1a-2b3c4d5e6f70"
        );
        assert_eq!(extract("mail ops@acme.io").emails, vec!["ops@acme.io"]);
        assert!(extract("nothing to see here, no links, no keys").is_empty());
    }

    #[test]
    fn deduplicates_and_caps() {
        let text =
            "ENG-1 ENG-1 ".repeat(3) + &(0..50).map(|i| format!("ENG-{i} ")).collect::<String>();
        let r = extract(&text);
        assert_eq!(r.linear_issues.len(), MAX_PER_KIND);
        assert_eq!(r.linear_issues[0], "ENG-1");
        assert!(extract("").is_empty());
    }

    #[test]
    fn git_suffix_is_trimmed() {
        assert_eq!(
            extract("clone https://github.com/acme/api.git").github_repos,
            vec!["acme/api"]
        );
    }
}
