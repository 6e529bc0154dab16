//! GitHub REST stand-in (`/github/...`): issues and issue comments.
//!
//! Every request is checked against `github-openapi.json` (path, method, query, body) and needs
//! `Authorization: Bearer <GITHUB_TOKEN>`.

use super::Sandbox;
use super::openapi::{self, OpenApi, Refusal, query_value};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What the GitHub stand-in holds.
#[derive(Debug, Default, Serialize)]
pub struct GithubState {
    /// Issues.
    pub issues: Vec<GhIssue>,
    /// Issue comments, in creation order.
    pub comments: Vec<GhComment>,
    /// Pull requests, in creation order.
    pub pulls: Vec<GhPull>,
    /// Installation tokens handed out (how many; the tokens themselves are not shown).
    pub installation_tokens_issued: u32,
    /// Tokens that open the API (installation tokens handed out).
    #[serde(skip)]
    pub tokens: Vec<String>,
    /// How the stand-in behaves (`POST /_sandbox/github/config`).
    pub config: GithubConfig,
    /// People's permissions on the served repositories, by lowercase login.
    pub permissions: BTreeMap<String, String>,
    /// Permission lookups answered.
    pub permission_lookups: u32,
    /// Reviews per pull request (`owner/name#number`), oldest first.
    pub reviews: BTreeMap<String, Vec<Value>>,
    /// Line comments per pull request (`owner/name#number`), oldest first.
    pub review_comments: BTreeMap<String, Vec<Value>>,
}

impl GithubState {
    /// Whether `number` is an issue of `repo` — or a pull request, which GitHub treats as an issue
    /// too (its conversation is the issue's comments).
    fn is_issue(&self, repo: &str, number: u64) -> bool {
        self.issues
            .iter()
            .any(|i| i.repo == repo && i.number == number)
            || self
                .pulls
                .iter()
                .any(|p| p.repo == repo && p.number == number)
    }
}

/// `POST /_sandbox/github/reviews`: a pull request's reviews and line comments, as reviewers left
/// them (GitHub's shapes: `{"body", "state", "user": {"login"}}` and `{"path", "line", "body",
/// "user": {"login"}}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSeed {
    /// `owner/name`.
    pub repo: String,
    /// Pull request number.
    pub number: u64,
    /// Reviews.
    #[serde(default)]
    pub reviews: Vec<Value>,
    /// Line comments.
    #[serde(default)]
    pub comments: Vec<Value>,
}

/// Adds reviews and line comments to a pull request.
pub async fn seed_reviews(State(sb): State<Sandbox>, Json(seed): Json<ReviewSeed>) -> StatusCode {
    let key = format!("{}#{}", seed.repo, seed.number);
    let mut s = sb.lock();
    let next = s.github.reviews.len() as u64;
    for (i, mut r) in seed.reviews.into_iter().enumerate() {
        r["id"] = (80_000 + next + i as u64).into();
        r["node_id"] = "PRR_x".into();
        r["user"] = user(r["user"]["login"].as_str());
        r["html_url"] =
            format!("{WEB}/{}/pull/{}#pullrequestreview", seed.repo, seed.number).into();
        r["pull_request_url"] = format!(
            "https://api.github.com/repos/{}/pulls/{}",
            seed.repo, seed.number
        )
        .into();
        r["commit_id"] = "0000000000000000000000000000000000000000".into();
        r["author_association"] = "MEMBER".into();
        r["_links"] = json!({"html": {"href": ""}, "pull_request": {"href": ""}});
        if r.get("body").is_none() {
            r["body"] = "".into();
        }
        s.github.reviews.entry(key.clone()).or_default().push(r);
    }
    let next = s.github.review_comments.len() as u64;
    for (i, mut c) in seed.comments.into_iter().enumerate() {
        let id = 90_000 + next + i as u64;
        c["id"] = id.into();
        c["node_id"] = "PRRC_x".into();
        c["user"] = user(c["user"]["login"].as_str());
        c["pull_request_review_id"] = Value::Null;
        c["diff_hunk"] = "@@ -1,3 +1,3 @@".into();
        c["commit_id"] = "0000000000000000000000000000000000000000".into();
        c["original_commit_id"] = "0000000000000000000000000000000000000000".into();
        c["url"] = format!(
            "https://api.github.com/repos/{}/pulls/comments/{id}",
            seed.repo
        )
        .into();
        c["html_url"] = format!("{WEB}/{}/pull/{}#discussion_r{id}", seed.repo, seed.number).into();
        c["pull_request_url"] = format!(
            "https://api.github.com/repos/{}/pulls/{}",
            seed.repo, seed.number
        )
        .into();
        c["author_association"] = "MEMBER".into();
        c["created_at"] = CREATED.into();
        c["updated_at"] = CREATED.into();
        c["_links"] =
            json!({"self": {"href": ""}, "html": {"href": ""}, "pull_request": {"href": ""}});
        s.github
            .review_comments
            .entry(key.clone())
            .or_default()
            .push(c);
    }
    StatusCode::NO_CONTENT
}

/// `POST /_sandbox/github/config`: how the GitHub stand-in behaves (each call replaces it all).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// Entries a recursive tree listing holds at most before it is answered `truncated: true`
    /// (GitHub's own limit is 100,000 entries or 7 MB; unset: no limit).
    #[serde(default)]
    pub tree_limit: Option<usize>,
}

/// Replaces the stand-in's configuration.
pub async fn configure(State(sb): State<Sandbox>, Json(config): Json<GithubConfig>) -> StatusCode {
    sb.lock().github.config = config;
    StatusCode::NO_CONTENT
}

/// A pull request.
#[derive(Debug, Clone, Serialize)]
pub struct GhPull {
    /// `owner/name`.
    pub repo: String,
    /// Number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Head branch.
    pub head: String,
    /// Head commit when opened.
    pub head_sha: String,
    /// Base branch.
    pub base: String,
    /// `git diff base...head` when opened.
    pub diff: String,
    /// Web URL.
    pub html_url: String,
    /// Opened as a draft, and not yet marked ready for review.
    pub draft: bool,
    /// Who opened it (bugbot's App).
    pub author: String,
}

/// An issue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GhIssue {
    /// `owner/name`.
    pub repo: String,
    /// Number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Author's login (`null`: a deleted account, which GitHub answers as a null user).
    pub user: Option<String>,
    /// Comments on it, oldest first.
    #[serde(default)]
    pub comments: Vec<SeedComment>,
}

/// A comment seeded with its issue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedComment {
    /// Author's login (`null`: a deleted account).
    pub user: Option<String>,
    /// Body.
    pub body: String,
}

/// A comment.
#[derive(Debug, Clone, Serialize)]
pub struct GhComment {
    /// Id.
    pub id: u64,
    /// `owner/name`.
    pub repo: String,
    /// Issue number.
    pub number: u64,
    /// Author's login (`None`: a deleted account).
    pub user: Option<String>,
    /// Body.
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
    /// Created and last updated (ISO 8601, seconds, UTC).
    pub at: String,
}

const WEB: &str = "https://github.com";
const CREATED: &str = "2026-11-20T09:00:00Z";

fn spec() -> Result<&'static OpenApi, String> {
    static SPEC: OnceLock<Result<OpenApi, String>> = OnceLock::new();
    SPEC.get_or_init(|| {
        OpenApi::load("GitHub", crate::localenv::Spec::GitHubOpenApi).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn gh_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_u16().to_string() })),
    )
        .into_response()
}

/// A user as GitHub shows one; a deleted account is `null`.
fn user(login: Option<&str>) -> Value {
    let Some(login) = login else {
        return Value::Null;
    };
    let bot = login.ends_with("[bot]");
    json!({ "login": login, "id": 1000 + login.len(), "type": if bot { "Bot" } else { "User" }, "site_admin": false,
            "html_url": format!("{WEB}/{login}"), "avatar_url": "https://avatars.githubusercontent.com/u/1" })
}

fn issue_json(i: &GhIssue, comments: usize) -> Value {
    json!({
        "id": 2_000_000 + i.number, "node_id": "I_x", "number": i.number, "title": i.title, "body": i.body,
        "user": user(i.user.as_deref()), "state": "open", "locked": false, "labels": [], "assignees": [],
        "comments": comments, "created_at": CREATED, "updated_at": CREATED, "closed_at": null,
        "author_association": "MEMBER",
        "url": format!("https://api.github.com/repos/{}/issues/{}", i.repo, i.number),
        "html_url": format!("{WEB}/{}/issues/{}", i.repo, i.number),
    })
}

fn comment_json(c: &GhComment) -> Value {
    json!({
        "id": c.id, "node_id": "IC_x", "body": c.body, "user": user(c.user.as_deref()),
        "created_at": c.at, "updated_at": c.at, "author_association": "NONE",
        "url": format!("https://api.github.com/repos/{}/issues/comments/{}", c.repo, c.id),
        "html_url": format!("{WEB}/{}/issues/{}#issuecomment-{}", c.repo, c.number, c.id),
        "issue_url": format!("https://api.github.com/repos/{}/issues/{}", c.repo, c.number),
    })
}

/// The REST API version the stand-in serves (GitHub answers 400 to a version it does not support).
const API_VERSION: &str = "2022-11-28";

/// A header GitHub requires, missing or wrong.
#[derive(Debug)]
enum HeaderRule {
    /// GitHub refuses requests without a `User-Agent` (403).
    UserAgent(String),
    /// GitHub's REST reference asks for `Accept: application/vnd.github+json`.
    Accept(String),
    /// `X-GitHub-Api-Version` names the API version the caller was written for.
    ApiVersion(String),
}

impl std::fmt::Display for HeaderRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UserAgent(v) => write!(
                f,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header ({v:?})"
            ),
            Self::Accept(v) => write!(f, "Accept must be application/vnd.github+json, not {v:?}"),
            Self::ApiVersion(v) => {
                write!(f, "X-GitHub-Api-Version must be {API_VERSION}, not {v:?}")
            }
        }
    }
}

fn header_rule_broken(headers: &HeaderMap) -> Option<HeaderRule> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let agent = get("user-agent");
    if agent.trim().is_empty() {
        return Some(HeaderRule::UserAgent(agent));
    }
    let accept = get("accept");
    if accept != "application/vnd.github+json" {
        return Some(HeaderRule::Accept(accept));
    }
    let version = get("x-github-api-version");
    (version != API_VERSION).then_some(HeaderRule::ApiVersion(version))
}

/// `POST /_sandbox/github/permissions`: `{login: permission}` (`admin`, `write`, `read`, `none`;
/// anyone else reads `read`, as on a public repository).
pub async fn seed_permissions(
    State(sb): State<Sandbox>,
    Json(permissions): Json<BTreeMap<String, String>>,
) -> StatusCode {
    let mut s = sb.lock();
    for (login, permission) in permissions {
        s.github
            .permissions
            .insert(login.to_ascii_lowercase(), permission);
    }
    StatusCode::NO_CONTENT
}

/// Every GitHub REST call: checked against the spec, then answered.
pub async fn api(
    State(sb): State<Sandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/github")
        .unwrap_or_default()
        .to_owned();
    if path == "/graphql" && method == Method::POST {
        return graphql(&sb, &headers, &body);
    }
    let (matched, body) =
        match openapi::admit(&sb, spec(), method.as_str(), &path, uri.query(), &body) {
            Ok(ok) => ok,
            Err(Refusal::NotJson) => {
                return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
            }
            Err(Refusal::Violation(why)) => {
                return gh_error(StatusCode::UNPROCESSABLE_ENTITY, &why);
            }
            Err(Refusal::NoSpec(e)) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        };
    if let Some(why) = header_rule_broken(&headers) {
        sb.lock().violations.push(format!("github: {why}"));
        return match why {
            HeaderRule::UserAgent(_) => gh_error(StatusCode::FORBIDDEN, &why.to_string()),
            _ => gh_error(StatusCode::BAD_REQUEST, &why.to_string()),
        };
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let p = |k: &str| matched.params.get(k).cloned().unwrap_or_default();
    // The App's own endpoints want its JWT; everything else a token.
    if matches!(
        matched.template.as_str(),
        "/app/installations/{installation_id}/access_tokens" | "/repos/{owner}/{repo}/installation"
    ) {
        return app_endpoint(
            &sb,
            &method,
            &matched.template,
            &bearer,
            &p("installation_id"),
            &format!("{}/{}", p("owner"), p("repo")),
        );
    }
    let authorized = !bearer.is_empty()
        && ((!sb.credentials.github_token.is_empty() && bearer == sb.credentials.github_token)
            || sb.lock().github.tokens.contains(&bearer));
    if !authorized {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let repo_name = format!("{}/{}", p("owner"), p("repo"));
    match (method.as_str(), matched.template.as_str()) {
        ("GET", "/repos/{owner}/{repo}") => {
            return match sb.bare_repo(&repo_name) {
                Some(_) => Json(repository_json(&repo_name, &host)).into_response(),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
        ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}") => {
            // GitHub lists subtrees' contents for `recursive` set to any value.
            let recursive = query_value(uri.query(), "recursive").is_some();
            let tree_sha = percent_decode(&p("tree_sha"));
            let mut args = vec!["ls-tree", "--full-tree"];
            if recursive {
                args.extend(["-r", "-t"]);
            }
            args.push(&tree_sha);
            return match sb.git_in(&repo_name, &args) {
                Ok(text) => {
                    let mut tree: Vec<Value> = text
                        .lines()
                        .filter_map(|l| {
                            let (meta, path) = l.split_once('\t')?;
                            let mut m = meta.split_whitespace();
                            let (mode, kind, sha) = (m.next()?, m.next()?, m.next()?);
                            Some(json!({"path": path, "mode": mode, "type": kind, "sha": sha,
                                        "url": format!("https://api.github.com/repos/{repo_name}/git/blobs/{sha}")}))
                        })
                        .collect();
                    let limit = sb.lock().github.config.tree_limit.filter(|_| recursive);
                    let truncated = limit.is_some_and(|n| tree.len() > n);
                    if let Some(n) = limit {
                        tree.truncate(n);
                    }
                    Json(json!({"sha": tree_sha, "url": "", "tree": tree, "truncated": truncated}))
                        .into_response()
                }
                Err(_) => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
        ("GET", "/repos/{owner}/{repo}/contents/{path}") => {
            let path = percent_decode(&p("path"));
            let git_ref = query_value(uri.query(), "ref").unwrap_or_else(|| "main".into());
            let object = format!("{git_ref}:{path}");
            return match sb
                .git_in(&repo_name, &["cat-file", "-t", &object])
                .as_deref()
                .map(str::trim)
            {
                Ok("blob") => {
                    let text = sb
                        .git_in(&repo_name, &["show", &object])
                        .unwrap_or_default();
                    let sha = sb
                        .git_in(&repo_name, &["rev-parse", &object])
                        .unwrap_or_default();
                    let sha = sha.trim();
                    // GitHub wraps the base64 at 60 characters.
                    let encoded = base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        text.as_bytes(),
                    );
                    let wrapped: Vec<String> = encoded
                        .as_bytes()
                        .chunks(60)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect();
                    let name = path.rsplit('/').next().unwrap_or_default();
                    let url = format!(
                        "https://api.github.com/repos/{repo_name}/contents/{path}?ref={git_ref}"
                    );
                    let html = format!("https://github.com/{repo_name}/blob/{git_ref}/{path}");
                    let git_url =
                        format!("https://api.github.com/repos/{repo_name}/git/blobs/{sha}");
                    Json(json!({
                        "type": "file", "encoding": "base64", "size": text.len(), "name": name,
                        "path": path, "content": format!("{}\n", wrapped.join("\n")), "sha": sha,
                        "url": url, "git_url": git_url, "html_url": html,
                        "download_url": format!("https://raw.githubusercontent.com/{repo_name}/{git_ref}/{path}"),
                        "_links": {"self": url, "git": git_url, "html": html}
                    }))
                    .into_response()
                }
                // A directory's listing; bugbot reads files only.
                Ok("tree") => Json(json!([])).into_response(),
                _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
        ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission") => {
            let login = percent_decode(&p("username"));
            let mut s = sb.lock();
            s.github.permission_lookups += 1;
            let permission = s
                .github
                .permissions
                .get(&login.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| "read".into());
            let role = if permission == "none" {
                "read"
            } else {
                permission.as_str()
            };
            return Json(
                json!({"permission": permission, "role_name": role, "user": user(Some(&login))}),
            )
            .into_response();
        }
        ("GET", "/repos/{owner}/{repo}/branches/{branch}") => {
            let branch = percent_decode(&p("branch"));
            return match sb.git_in(
                &repo_name,
                &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
            ) {
                Ok(sha) => {
                    Json(json!({"name": branch, "commit": {"sha": sha.trim()}, "protected": false}))
                        .into_response()
                }
                Err(_) => gh_error(StatusCode::NOT_FOUND, "Branch not found"),
            };
        }
        ("GET", "/repos/{owner}/{repo}/pulls") => {
            let head = query_value(uri.query(), "head").map(|h| percent_decode(&h));
            let s = sb.lock();
            let list: Vec<Value> = s
                .github
                .pulls
                .iter()
                .filter(|pr| pr.repo == repo_name)
                .filter(|pr| {
                    head.as_ref()
                        .is_none_or(|h| *h == format!("{}:{}", p("owner"), pr.head))
                })
                .map(pull_json)
                .collect();
            return Json(list).into_response();
        }
        ("POST", "/repos/{owner}/{repo}/pulls") => {
            let field = |k: &str| {
                body.as_ref()
                    .and_then(|b| b[k].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (head, base) = (field("head"), field("base"));
            let head_sha = match sb.git_in(
                &repo_name,
                &["rev-parse", "--verify", &format!("refs/heads/{head}")],
            ) {
                Ok(sha) => sha.trim().to_owned(),
                Err(_) => {
                    return gh_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Validation Failed: head does not exist",
                    );
                }
            };
            if sb
                .git_in(
                    &repo_name,
                    &["rev-parse", "--verify", &format!("refs/heads/{base}")],
                )
                .is_err()
            {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: base does not exist",
                );
            }
            let diff = sb
                .git_in(&repo_name, &["diff", &format!("{base}...{head}")])
                .unwrap_or_default();
            let mut s = sb.lock();
            if s.github
                .pulls
                .iter()
                .any(|pr| pr.repo == repo_name && pr.head == head)
            {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!(
                        "Validation Failed: A pull request already exists for {}:{head}.",
                        p("owner")
                    ),
                );
            }
            let number = 100 + s.github.pulls.len() as u64 + 1;
            let draft = body
                .as_ref()
                .and_then(|b| b["draft"].as_bool())
                .unwrap_or(false);
            let pr = GhPull {
                author: sb.credentials.github_bot_login.clone(),
                draft,
                html_url: format!("{WEB}/{repo_name}/pull/{number}"),
                repo: repo_name,
                number,
                title: field("title"),
                body: field("body"),
                head,
                head_sha,
                base,
                diff,
            };
            let json = pull_json(&pr);
            s.github.pulls.push(pr);
            return (StatusCode::CREATED, Json(json)).into_response();
        }
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            let number: u64 = p("pull_number").parse().unwrap_or(0);
            let s = sb.lock();
            return match s
                .github
                .pulls
                .iter()
                .find(|pr| pr.repo == repo_name && pr.number == number)
            {
                Some(pr) => Json(pull_json(pr)).into_response(),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
        (
            "GET",
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"
            | "/repos/{owner}/{repo}/pulls/{pull_number}/comments",
        ) => {
            let number: u64 = p("pull_number").parse().unwrap_or(0);
            let s = sb.lock();
            if !s
                .github
                .pulls
                .iter()
                .any(|pr| pr.repo == repo_name && pr.number == number)
            {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let key = format!("{repo_name}#{number}");
            let list = if matched.template.ends_with("/reviews") {
                s.github.reviews.get(&key)
            } else {
                s.github.review_comments.get(&key)
            };
            return Json(list.cloned().unwrap_or_default()).into_response();
        }
        ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}") => {
            let number: u64 = p("pull_number").parse().unwrap_or(0);
            let mut s = sb.lock();
            let Some(pr) = s
                .github
                .pulls
                .iter_mut()
                .find(|pr| pr.repo == repo_name && pr.number == number)
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if let Some(text) = body.as_ref().and_then(|b| b["body"].as_str()) {
                pr.body = text.to_owned();
            }
            if let Some(text) = body.as_ref().and_then(|b| b["title"].as_str()) {
                pr.title = text.to_owned();
            }
            return Json(pull_json(pr)).into_response();
        }
        _ => {}
    }
    let repo = format!("{}/{}", p("owner"), p("repo"));
    let number: u64 = p("issue_number").parse().unwrap_or(0);
    let mut s = sb.lock();
    let gh = &mut s.github;
    match (method.as_str(), matched.template.as_str()) {
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}") => {
            let count = gh
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.number == number)
                .count();
            match gh
                .issues
                .iter()
                .find(|i| i.repo == repo && i.number == number)
            {
                Some(i) => Json(issue_json(i, count)).into_response(),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            if !gh.is_issue(&repo, number) {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            // As GitHub: `since` keeps comments updated at or after it; `per_page` (default 30,
            // at most 100) and `page` (from 1) pick the page, oldest first.
            let query: Vec<(String, String)> = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
                .collect();
            let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
            let since = get("since").unwrap_or_default();
            let per_page = get("per_page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page = get("page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let list: Vec<Value> = gh
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.number == number && c.at >= since)
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(comment_json)
                .collect();
            Json(list).into_response()
        }
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            if !gh.is_issue(&repo, number) {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let c = GhComment {
                id: 5_000_000 + gh.comments.len() as u64 + 1,
                repo,
                number,
                user: Some(sb.credentials.github_bot_login.clone()),
                body: body
                    .as_ref()
                    .and_then(|b| b["body"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                edits: 0,
                at: now_iso(),
            };
            let json = comment_json(&c);
            gh.comments.push(c);
            (StatusCode::CREATED, Json(json)).into_response()
        }
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
            let id: u64 = p("comment_id").parse().unwrap_or(0);
            match gh
                .comments
                .iter_mut()
                .find(|c| c.id == id && c.repo == repo)
            {
                Some(c) => {
                    c.body = body
                        .as_ref()
                        .and_then(|b| b["body"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    c.edits += 1;
                    c.at = now_iso();
                    Json(comment_json(c)).into_response()
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (m, t) => {
            let why = format!("the GitHub stand-in does not implement {m} {t}");
            s.violations.push(why.clone());
            gh_error(StatusCode::NOT_FOUND, &why)
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn repository_json(repo: &str, host: &str) -> Value {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
    json!({
        "id": 9000, "node_id": "R_x", "name": name, "full_name": repo, "private": false,
        "owner": user(Some(owner)), "html_url": format!("{WEB}/{repo}"),
        "default_branch": "main",
        // The sandbox's git remote stands in for github.com's.
        "clone_url": format!("http://{host}/git/{repo}.git"),
    })
}

fn pull_json(pr: &GhPull) -> Value {
    json!({
        "id": 3_000_000 + pr.number, "number": pr.number, "state": "open", "title": pr.title, "body": pr.body,
        "html_url": pr.html_url, "url": format!("https://api.github.com/repos/{}/pulls/{}", pr.repo, pr.number),
        "head": {"ref": pr.head, "sha": pr.head_sha, "label": format!("{}:{}", pr.repo.split('/').next().unwrap_or_default(), pr.head),
                 "repo": {"full_name": pr.repo}},
        "base": {"ref": pr.base, "repo": {"full_name": pr.repo}},
        "node_id": pull_node_id(pr.number),
        "user": bot_user(&pr.author), "draft": pr.draft, "merged": false,
        "created_at": CREATED, "updated_at": CREATED,
    })
}

/// bugbot's App as GitHub shows it.
fn bot_user(login: &str) -> Value {
    let mut u = user(Some(login));
    u["type"] = "Bot".into();
    u
}

/// A pull request's GraphQL id in the stand-in.
fn pull_node_id(number: u64) -> String {
    format!("PR_sandbox{number}")
}

fn graphql_schema() -> Result<&'static Valid<Schema>, String> {
    static SCHEMA: OnceLock<Result<Valid<Schema>, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let sdl = crate::localenv::Spec::GitHubGraphqlSchema
                .read()
                .map_err(|e| format!("{e:#}"))?;
            // GitHub's published schema is taken as GitHub serves it: it repeats a few fields
            // (the first definition holds), which a strict build would refuse.
            let schema = Schema::parse(sdl, "github-schema.graphql").unwrap_or_else(|e| e.partial);
            Ok(Valid::assume_valid(schema))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `POST /github/graphql`: GitHub's GraphQL API. Every operation is validated against GitHub's
/// published schema; the one mutation bugbot uses (`markPullRequestReadyForReview`; the REST API
/// cannot undraft a pull request) is carried out, anything else is a violation.
fn graphql(sb: &Sandbox, headers: &HeaderMap, body: &Bytes) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let authorized = !bearer.is_empty()
        && ((!sb.credentials.github_token.is_empty() && bearer == sb.credentials.github_token)
            || sb.lock().github.tokens.contains(&bearer));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"})),
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let query = request["query"].as_str().unwrap_or_default();
    let gql_errors =
        |message: String| Json(json!({ "errors": [{ "message": message }] })).into_response();
    let schema = match graphql_schema() {
        Ok(schema) => schema,
        Err(e) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if let Err(e) = ExecutableDocument::parse_and_validate(schema, query, "operation.graphql") {
        let why = format!("github graphql: invalid operation: {}", e.errors);
        sb.lock().violations.push(why.clone());
        return gql_errors(why);
    }
    if !query.contains("markPullRequestReadyForReview") {
        let why =
            "github graphql: the stand-in implements markPullRequestReadyForReview only".to_owned();
        sb.lock().violations.push(why.clone());
        return gql_errors(why);
    }
    let id = request["variables"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut s = sb.lock();
    let Some(pr) = s
        .github
        .pulls
        .iter_mut()
        .find(|pr| pull_node_id(pr.number) == id)
    else {
        return gql_errors(format!(
            "Could not resolve to a node with the global id of '{id}'"
        ));
    };
    pr.draft = false;
    Json(json!({ "data": { "markPullRequestReadyForReview": { "pullRequest": { "isDraft": false } } } }))
        .into_response()
}

/// The App's endpoints: a valid JWT (RS256 with the App's key, `iss` = the App id, at most 10
/// minutes long, not expired) is required.
fn app_endpoint(
    sb: &Sandbox,
    method: &Method,
    template: &str,
    jwt: &str,
    installation: &str,
    repo: &str,
) -> Response {
    if let Err(why) = verify_jwt(sb, jwt) {
        return gh_error(StatusCode::UNAUTHORIZED, &why);
    }
    let ours = sb.credentials.github_installation_id;
    match (method.as_str(), template) {
        ("GET", "/repos/{owner}/{repo}/installation") => {
            if sb.bare_repo(repo).is_none()
                && !sb.lock().github.issues.iter().any(|i| i.repo == repo)
            {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            Json(json!({"id": ours, "app_id": sb.credentials.github_app_id.parse::<u64>().unwrap_or(0),
                        "account": user(Some(repo.split('/').next().unwrap_or_default())),
                        "repository_selection": "all", "target_type": "Organization",
                        "permissions": {"contents": "write", "issues": "write", "pull_requests": "write"}}))
            .into_response()
        }
        ("POST", "/app/installations/{installation_id}/access_tokens") => {
            if installation != ours.to_string() {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let token = format!("ghs_{:032x}", rand::random::<u128>());
            let mut s = sb.lock();
            s.github.tokens.push(token.clone());
            s.github.installation_tokens_issued += 1;
            // The same token opens the git remote, as an installation token opens github.com.
            s.git.tokens.push(token.clone());
            let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
            let expires_at = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                expires.year(),
                u8::from(expires.month()),
                expires.day(),
                expires.hour(),
                expires.minute(),
                expires.second()
            );
            (
                StatusCode::CREATED,
                Json(json!({"token": token, "expires_at": expires_at,
                "permissions": {"contents": "write", "issues": "write", "pull_requests": "write"},
                "repository_selection": "all"})),
            )
                .into_response()
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn verify_jwt(sb: &Sandbox, jwt: &str) -> Result<(), String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    let bad = |why: &str| Err(format!("A JSON web token could not be decoded: {why}"));
    let Some(key) = sb.credentials.github_app_public_key.clone() else {
        return bad("the sandbox has no App key (GITHUB_APP_PRIVATE_KEY)");
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return bad("not a JWT");
    }
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| "bad base64url".to_owned())
    };
    let header: Value = serde_json::from_slice(&decode(parts[0])?).map_err(|_| "bad header")?;
    if header["alg"] != "RS256" {
        return bad("alg must be RS256");
    }
    let signature =
        Signature::try_from(decode(parts[2])?.as_slice()).map_err(|_| "bad signature")?;
    VerifyingKey::<sha2::Sha256>::new(key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| {
            "'Issuer' claim ('iss') must be an Integer; signature does not verify".to_owned()
        })?;
    let claims: Value = serde_json::from_slice(&decode(parts[1])?).map_err(|_| "bad claims")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let iss = claims["iss"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| claims["iss"].as_u64().map(|n| n.to_string()));
    if iss.as_deref() != Some(sb.credentials.github_app_id.as_str()) {
        return bad("iss is not this App's id");
    }
    if exp <= now || iat > now + 60 || exp - iat > 600 {
        return bad("'Expiration time' claim ('exp') is too far in the future, or expired");
    }
    Ok(())
}

/// `POST /_sandbox/github/issues`: adds issues.
pub async fn seed_issues(
    State(sb): State<Sandbox>,
    Json(issues): Json<Vec<GhIssue>>,
) -> StatusCode {
    let mut s = sb.lock();
    for issue in issues {
        for c in &issue.comments {
            let id = 5_000_000 + s.github.comments.len() as u64 + 1;
            s.github.comments.push(GhComment {
                id,
                repo: issue.repo.clone(),
                number: issue.number,
                user: c.user.clone(),
                body: c.body.clone(),
                edits: 0,
                at: now_iso(),
            });
        }
        s.github.issues.push(issue);
    }
    StatusCode::NO_CONTENT
}

/// Now, as GitHub writes times (seconds, UTC).
fn now_iso() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    bugbot_shared::github_api::iso_seconds(ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ready_for_review_mutation_bugbot_sends_fits_githubs_schema() {
        let api = bugbot_shared::github_api::GithubApi::new("https://api.github.com", "t");
        let request = api.mark_ready_for_review("PR_1");
        assert!(request.url.ends_with("/graphql"));
        let body: serde_json::Value =
            serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
        let schema = super::graphql_schema().unwrap();
        apollo_compiler::ExecutableDocument::parse_and_validate(
            schema,
            body["query"].as_str().unwrap(),
            "operation.graphql",
        )
        .unwrap();
        // A wrong field is caught: the check is real.
        assert!(
            apollo_compiler::ExecutableDocument::parse_and_validate(
                schema,
                "mutation { markPullRequestReadyForReview(input: {pullRequestId: \"x\"}) { isDraft } }",
                "bad.graphql",
            )
            .is_err()
        );
    }
}
