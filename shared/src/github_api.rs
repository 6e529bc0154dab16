//! GitHub's REST API, the calls the consumer makes: read an issue and its comments, and post or
//! edit bugbot's status comment.

use crate::http::{ApiError, HttpRequest, HttpResponse, Method, Service};
use crate::ids::RepoFullName;
use serde::Deserialize;
use serde_json::json;

/// How many of an issue's comments the context packet looks at.
pub const COMMENTS_LIMIT: u32 = 50;

/// The API version bugbot is written against.
pub const API_VERSION: &str = "2022-11-28";

/// Where and how to reach GitHub.
#[derive(Debug, Clone)]
pub struct GithubApi {
    base_url: String,
    token: String,
}

impl GithubApi {
    /// A client for `base_url` (`https://api.github.com`, or the sandbox's) with a token
    /// (an installation token or a personal access token).
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    fn request(&self, method: Method, path: &str) -> HttpRequest {
        HttpRequest::new(Service::Github, method, format!("{}{path}", self.base_url))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
    }

    /// `GET /repos/{owner}/{repo}/issues/{number}`.
    pub fn issue(&self, repo: &RepoFullName, number: u64) -> HttpRequest {
        self.request(Method::Get, &format!("/repos/{repo}/issues/{number}"))
    }

    /// `GET /repos/{owner}/{repo}/issues/{number}/comments?page=` (oldest first,
    /// [`COMMENTS_LIMIT`] a page).
    pub fn issue_comments(&self, repo: &RepoFullName, number: u64, page: u64) -> HttpRequest {
        self.request(
            Method::Get,
            &format!(
                "/repos/{repo}/issues/{number}/comments?per_page={COMMENTS_LIMIT}&page={page}"
            ),
        )
    }

    /// `GET /repos/{owner}/{repo}/issues/{number}/comments?since=` (at most 100, oldest first):
    /// the comments made or updated since a time (ISO 8601).
    pub fn comments_since(&self, repo: &RepoFullName, number: u64, since: &str) -> HttpRequest {
        self.request(
            Method::Get,
            &format!(
                "/repos/{repo}/issues/{number}/comments?since={}&per_page=100",
                crate::http::encode(since)
            ),
        )
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments`.
    pub fn create_comment(&self, repo: &RepoFullName, number: u64, body: &str) -> HttpRequest {
        self.request(
            Method::Post,
            &format!("/repos/{repo}/issues/{number}/comments"),
        )
        .json(&json!({ "body": body }))
    }

    /// `PATCH /repos/{owner}/{repo}/issues/comments/{id}`.
    pub fn update_comment(&self, repo: &RepoFullName, comment_id: u64, body: &str) -> HttpRequest {
        self.request(
            Method::Patch,
            &format!("/repos/{repo}/issues/comments/{comment_id}"),
        )
        .json(&json!({ "body": body }))
    }
}

impl GithubApi {
    /// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`: what `login` may do on the
    /// repository (GitHub answers for anyone, collaborator or not).
    pub fn permission(&self, repo: &RepoFullName, login: &str) -> HttpRequest {
        self.request(
            Method::Get,
            &format!(
                "/repos/{repo}/collaborators/{}/permission",
                crate::http::encode(login)
            ),
        )
    }

    /// `GET /repos/{owner}/{repo}` (for the default branch).
    pub fn repository(&self, repo: &RepoFullName) -> HttpRequest {
        self.request(Method::Get, &format!("/repos/{repo}"))
    }

    /// `GET /repos/{owner}/{repo}/git/trees/{tree}`: a tree by branch name or SHA, with every
    /// path under it when `recursive` (GitHub may cut that list: [`TreeListing::truncated`]).
    pub fn tree(&self, repo: &RepoFullName, tree: &str, recursive: bool) -> HttpRequest {
        self.request(
            Method::Get,
            &format!(
                "/repos/{repo}/git/trees/{}{}",
                crate::http::encode(tree),
                if recursive { "?recursive=1" } else { "" }
            ),
        )
    }

    /// `GET /repos/{owner}/{repo}/contents/{path}?ref={git_ref}`: a file's content on a branch.
    pub fn file_contents(&self, repo: &RepoFullName, path: &str, git_ref: &str) -> HttpRequest {
        let path: Vec<String> = path.split('/').map(crate::http::encode).collect();
        self.request(
            Method::Get,
            &format!(
                "/repos/{repo}/contents/{}?ref={}",
                path.join("/"),
                crate::http::encode(git_ref)
            ),
        )
    }

    /// `GET /repos/{owner}/{repo}/branches/{branch}`: whether a branch exists (404: it does not).
    pub fn branch(&self, repo: &RepoFullName, branch: &str) -> HttpRequest {
        self.request(
            Method::Get,
            &format!("/repos/{repo}/branches/{}", crate::http::encode(branch)),
        )
    }

    /// `GET /repos/{owner}/{repo}/pulls?head={owner}:{branch}&state=open`: the open pull request
    /// of a branch, if any.
    pub fn open_pulls_for(&self, repo: &RepoFullName, branch: &str) -> HttpRequest {
        self.request(
            Method::Get,
            &format!(
                "/repos/{repo}/pulls?head={}&state=open",
                crate::http::encode(&format!("{}:{branch}", repo.owner()))
            ),
        )
    }

    /// `POST /repos/{owner}/{repo}/pulls`.
    pub fn create_pull(
        &self,
        repo: &RepoFullName,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
        draft: bool,
    ) -> HttpRequest {
        self.request(Method::Post, &format!("/repos/{repo}/pulls")).json(
            &json!({ "title": title, "head": head, "base": base, "body": body, "draft": draft }),
        )
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`.
    pub fn pull(&self, repo: &RepoFullName, number: u64) -> HttpRequest {
        self.request(Method::Get, &format!("/repos/{repo}/pulls/{number}"))
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}/comments` (review comments on lines; the first
    /// 100, oldest first).
    pub fn pull_review_comments(&self, repo: &RepoFullName, number: u64) -> HttpRequest {
        self.request(
            Method::Get,
            &format!("/repos/{repo}/pulls/{number}/comments?per_page=100"),
        )
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}/reviews` (the first 100, oldest first).
    pub fn pull_reviews(&self, repo: &RepoFullName, number: u64) -> HttpRequest {
        self.request(
            Method::Get,
            &format!("/repos/{repo}/pulls/{number}/reviews?per_page=100"),
        )
    }

    /// Replaces a pull request's body.
    pub fn update_pull_body(&self, repo: &RepoFullName, number: u64, body: &str) -> HttpRequest {
        self.request(Method::Patch, &format!("/repos/{repo}/pulls/{number}"))
            .json(&json!({ "body": body }))
    }

    /// Marks a draft pull request ready for review. The REST API cannot; GraphQL's
    /// `markPullRequestReadyForReview` can (`node_id` is the pull request's GraphQL id).
    pub fn mark_ready_for_review(&self, node_id: &str) -> HttpRequest {
        self.request(Method::Post, "/graphql").json(&json!({
            "query": MARK_READY,
            "variables": { "id": node_id },
        }))
    }
}

const MARK_READY: &str = "mutation MarkReady($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }";

/// Parses `markPullRequestReadyForReview`'s answer: GraphQL reports errors with status 200.
pub fn parse_marked_ready(response: &HttpResponse) -> Result<(), ApiError> {
    let value: serde_json::Value = response.json(Service::Github)?;
    if let Some(errors) = value["errors"].as_array().filter(|e| !e.is_empty()) {
        let message = errors[0]["message"].as_str().unwrap_or("GraphQL error");
        return Err(ApiError::permanent(
            Service::Github,
            format!("marking the pull request ready failed: {message}"),
        ));
    }
    if value["data"]["markPullRequestReadyForReview"]["pullRequest"]["isDraft"] == json!(false) {
        Ok(())
    } else {
        Err(ApiError::permanent(
            Service::Github,
            "marking the pull request ready failed: it is still a draft",
        ))
    }
}

/// A repository (the fields bugbot uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// The branch pull requests go to.
    pub default_branch: String,
    /// The git URL (`https://github.com/{owner}/{repo}.git`).
    pub clone_url: String,
}

/// Parses a repository.
pub fn parse_repository(response: &HttpResponse) -> Result<Repository, ApiError> {
    response.json(Service::Github)
}

/// The permission `GET …/collaborators/{username}/permission` answers (`admin`, `write`, `read`
/// or `none`; the maintain role reads `write`, triage reads `read`). A 404 (no such user) is `none`.
pub fn parse_permission(response: &HttpResponse) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Answer {
        permission: String,
    }
    if response.status == 404 {
        return Ok("none".into());
    }
    Ok(response.json::<Answer>(Service::Github)?.permission)
}

/// Whether a repository permission may ask bugbot for work: write or above.
pub fn may_trigger(permission: &str) -> bool {
    matches!(permission, "admin" | "maintain" | "write")
}

/// A tree listing (`GET …/git/trees/{tree}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TreeListing {
    /// The entries, paths relative to the listed tree.
    pub tree: Vec<TreeEntry>,
    /// GitHub cut the list (a recursive listing over its limit of 100,000 entries or 7 MB).
    #[serde(default)]
    pub truncated: bool,
}

/// One entry of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    /// Path, relative to the listed tree.
    pub path: String,
    /// `blob`, `tree` or `commit` (a submodule).
    #[serde(rename = "type")]
    pub kind: String,
    /// The object's SHA (a subtree is listed by it).
    pub sha: String,
}

impl TreeListing {
    /// The paths of its files (blobs), under `prefix` (a directory, or `""`).
    pub fn files_under(&self, prefix: &str) -> impl Iterator<Item = String> + '_ {
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", prefix.trim_end_matches('/'))
        };
        self.tree
            .iter()
            .filter(|e| e.kind == "blob")
            .map(move |e| format!("{prefix}{}", e.path))
    }
}

/// Parses a tree listing.
pub fn parse_tree(response: &HttpResponse) -> Result<TreeListing, ApiError> {
    response.json(Service::Github)
}

/// Parses a branch lookup: `true` when it exists.
pub fn parse_branch_exists(response: &HttpResponse) -> Result<bool, ApiError> {
    match response.status {
        404 => Ok(false),
        _ => response
            .json::<serde_json::Value>(Service::Github)
            .map(|_| true),
    }
}

/// Parses a file's content (`None`: there is no such file, or the path is not a file). GitHub
/// sends files up to 1 MB base64-encoded; a larger one or one that is not UTF-8 is an error.
pub fn parse_file_contents(response: &HttpResponse) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Contents {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        encoding: String,
        #[serde(default)]
        content: String,
    }
    if response.status == 404 {
        return Ok(None);
    }
    // A directory answers with a list.
    let value: serde_json::Value = response.json(Service::Github)?;
    if !value.is_object() {
        return Ok(None);
    }
    let file: Contents = serde_json::from_value(value)
        .map_err(|e| ApiError::permanent(Service::Github, format!("unreadable contents: {e}")))?;
    if file.kind != "file" {
        return Ok(None);
    }
    if file.encoding != "base64" {
        return Err(ApiError::permanent(
            Service::Github,
            "the file is too large to read through the contents API",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file.content.replace(['\n', '\r'], ""))
        .map_err(|_| ApiError::permanent(Service::Github, "the file's content is not base64"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ApiError::permanent(Service::Github, "the file is not UTF-8 text"))
}

/// A pull request (the fields bugbot uses).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PullRequest {
    /// Number.
    pub number: u64,
    /// Web URL.
    pub html_url: String,
    /// GraphQL id (for marking a draft ready).
    #[serde(default)]
    pub node_id: String,
    /// True while it is a draft.
    #[serde(default)]
    pub draft: bool,
}

/// Parses a pull request list: the first one.
pub fn parse_first_pull(response: &HttpResponse) -> Result<Option<PullRequest>, ApiError> {
    let list: Vec<PullRequest> = response.json(Service::Github)?;
    Ok(list.into_iter().next())
}

/// Parses a created pull request.
pub fn parse_pull(response: &HttpResponse) -> Result<PullRequest, ApiError> {
    response.json(Service::Github)
}

/// A user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Login.
    pub login: String,
}

/// What GitHub itself calls a deleted account.
pub const GHOST: &str = "ghost";

/// The login of a user that may be `null` (GitHub answers a deleted account's user as `null`).
pub fn login_of(user: Option<&User>) -> &str {
    user.map_or(GHOST, |u| u.login.as_str())
}

/// An issue (the fields the packet uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Author (`None`: a deleted account).
    #[serde(default)]
    pub user: Option<User>,
    /// How many comments it has.
    #[serde(default)]
    pub comments: u64,
    /// Created (ISO 8601).
    pub created_at: String,
    /// Web URL.
    pub html_url: String,
}

/// An issue comment.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    /// Id.
    pub id: u64,
    /// Text.
    #[serde(default)]
    pub body: Option<String>,
    /// Author (`None`: a deleted account).
    #[serde(default)]
    pub user: Option<User>,
    /// Created (ISO 8601).
    pub created_at: String,
    /// Web URL.
    pub html_url: String,
}

/// The pages that hold an issue's latest [`COMMENTS_LIMIT`] comments, given how many it has
/// (GitHub lists them oldest first, with no other order): the last page, and the one before it
/// when the last is not full.
pub fn latest_comment_pages(total: u64) -> Vec<u64> {
    let per_page = u64::from(COMMENTS_LIMIT);
    let last = total.div_ceil(per_page).max(1);
    if last > 1 && !total.is_multiple_of(per_page) {
        vec![last - 1, last]
    } else {
        vec![last]
    }
}

/// The latest [`COMMENTS_LIMIT`] of the comments read from [`latest_comment_pages`], oldest first.
pub fn latest_comments(mut pages: Vec<Comment>) -> Vec<Comment> {
    let keep = usize::try_from(COMMENTS_LIMIT).unwrap_or(usize::MAX);
    let skip = pages.len().saturating_sub(keep);
    pages.drain(..skip);
    pages
}

/// The line that ends bugbot's status comment for a job: it names the job, and finds the comment
/// again when the answer to its creation was lost.
pub fn status_marker(job_id: &str) -> String {
    format!("<sub>bugbot · job `{job_id}`</sub>")
}

/// `2026-11-30T10:04:05Z` from milliseconds since the Unix epoch.
pub fn iso_seconds(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".into(),
    }
}

/// Parses an issue.
pub fn parse_issue(response: &HttpResponse) -> Result<Issue, ApiError> {
    response.json(Service::Github)
}

/// Parses a comment list.
pub fn parse_comments(response: &HttpResponse) -> Result<Vec<Comment>, ApiError> {
    response.json(Service::Github)
}

/// Parses a created or updated comment.
pub fn parse_comment(response: &HttpResponse) -> Result<Comment, ApiError> {
    response.json(Service::Github)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_contents_are_decoded_and_absent_files_are_none() {
        let api = GithubApi::new("https://api.github.com", "t");
        let repo = RepoFullName::parse("acme/web").unwrap();
        assert_eq!(
            api.file_contents(&repo, ".github/bugbot.toml", "main").url,
            "https://api.github.com/repos/acme/web/contents/.github/bugbot.toml?ref=main"
        );
        let answer = |status: u16, body: serde_json::Value| HttpResponse {
            status,
            body: body.to_string(),
            ..Default::default()
        };
        let file = answer(
            200,
            serde_json::json!({"type": "file", "encoding": "base64", "content": "aGVs\nbG8=\n", "path": "x"}),
        );
        assert_eq!(
            parse_file_contents(&file).unwrap().as_deref(),
            Some("hello")
        );
        assert_eq!(
            parse_file_contents(&answer(404, serde_json::json!({"message": "Not Found"}))).unwrap(),
            None
        );
        assert_eq!(
            parse_file_contents(&answer(200, serde_json::json!([]))).unwrap(),
            None
        );
        assert!(
            parse_file_contents(&answer(
                200,
                serde_json::json!({"type": "file", "encoding": "none", "content": ""})
            ))
            .is_err()
        );
    }

    #[test]
    fn permissions() {
        let answer = |status: u16, body: &str| HttpResponse {
            status,
            body: body.into(),
            ..Default::default()
        };
        let p = parse_permission(&answer(
            200,
            r#"{"permission":"write","role_name":"maintain"}"#,
        ));
        assert_eq!(p.unwrap(), "write");
        assert_eq!(parse_permission(&answer(404, "{}")).unwrap(), "none");
        assert!(may_trigger("admin") && may_trigger("write"));
        assert!(!may_trigger("read") && !may_trigger("none") && !may_trigger("triage"));
    }

    #[test]
    fn requests() {
        let api = GithubApi::new("http://sb/github/", "ghs_x");
        let repo = RepoFullName::parse("acme/web-app").unwrap();
        let r = api.issue_comments(&repo, 7, 2);
        assert_eq!(
            r.url,
            "http://sb/github/repos/acme/web-app/issues/7/comments?per_page=50&page=2"
        );
        assert!(
            r.headers
                .contains(&("authorization".into(), "Bearer ghs_x".into()))
        );
        let b = api.branch(&repo, "bugbot/bug-1-dc-2");
        assert_eq!(
            b.url,
            "http://sb/github/repos/acme/web-app/branches/bugbot%2Fbug-1-dc-2"
        );
        let answer = |status, body: &str| HttpResponse {
            status,
            retry_after: None,
            body: body.into(),
            ..Default::default()
        };
        assert!(parse_branch_exists(&answer(200, r#"{"name":"x"}"#)).unwrap());
        assert!(!parse_branch_exists(&answer(404, r#"{"message":"Branch not found"}"#)).unwrap());
        assert!(
            parse_branch_exists(&answer(502, ""))
                .unwrap_err()
                .is_transient()
        );
        let c = api.update_comment(&repo, 99, "done");
        assert_eq!(
            c.url,
            "http://sb/github/repos/acme/web-app/issues/comments/99"
        );
    }

    #[test]
    fn the_latest_comments_come_from_the_last_pages() {
        assert_eq!(latest_comment_pages(0), vec![1]);
        assert_eq!(latest_comment_pages(30), vec![1]);
        assert_eq!(latest_comment_pages(50), vec![1]);
        assert_eq!(latest_comment_pages(100), vec![2]);
        assert_eq!(latest_comment_pages(120), vec![2, 3]);
        let comment = |id| Comment {
            id,
            body: None,
            user: None,
            created_at: String::new(),
            html_url: String::new(),
        };
        let read: Vec<Comment> = (51..=120).map(comment).collect();
        let kept = latest_comments(read);
        assert_eq!(kept.len(), 50);
        assert_eq!((kept[0].id, kept[49].id), (71, 120));
    }
}
