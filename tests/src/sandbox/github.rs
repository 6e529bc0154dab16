//! GitHub REST stand-in (`/github/...`): issues and issue comments.
//!
//! Every request is checked against `github-openapi.json` (path, method, query, body) and needs
//! `Authorization: Bearer <GITHUB_TOKEN>`.

use super::{Sandbox, openapi::OpenApi};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::OnceLock;

/// What the GitHub stand-in holds.
#[derive(Debug, Default, Serialize)]
pub struct GithubState {
    /// Issues.
    pub issues: Vec<GhIssue>,
    /// Issue comments, in creation order.
    pub comments: Vec<GhComment>,
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
    /// Author's login.
    pub user: String,
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
    /// Author's login.
    pub user: String,
    /// Body.
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
}

const WEB: &str = "https://github.com";
const CREATED: &str = "2026-11-20T09:00:00Z";

fn spec() -> Result<&'static OpenApi, String> {
    static SPEC: OnceLock<Result<OpenApi, String>> = OnceLock::new();
    SPEC.get_or_init(|| OpenApi::load("GitHub", "github-openapi.json").map_err(|e| e.to_string()))
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

fn user(login: &str) -> Value {
    let bot = login.ends_with("[bot]");
    json!({ "login": login, "id": 1000 + login.len(), "type": if bot { "Bot" } else { "User" }, "site_admin": false,
            "html_url": format!("{WEB}/{login}"), "avatar_url": "https://avatars.githubusercontent.com/u/1" })
}

fn issue_json(i: &GhIssue, comments: usize) -> Value {
    json!({
        "id": 2_000_000 + i.number, "node_id": "I_x", "number": i.number, "title": i.title, "body": i.body,
        "user": user(&i.user), "state": "open", "locked": false, "labels": [], "assignees": [],
        "comments": comments, "created_at": CREATED, "updated_at": CREATED, "closed_at": null,
        "author_association": "MEMBER",
        "url": format!("https://api.github.com/repos/{}/issues/{}", i.repo, i.number),
        "html_url": format!("{WEB}/{}/issues/{}", i.repo, i.number),
    })
}

fn comment_json(c: &GhComment) -> Value {
    json!({
        "id": c.id, "node_id": "IC_x", "body": c.body, "user": user(&c.user),
        "created_at": CREATED, "updated_at": CREATED, "author_association": "NONE",
        "url": format!("https://api.github.com/repos/{}/issues/comments/{}", c.repo, c.id),
        "html_url": format!("{WEB}/{}/issues/{}#issuecomment-{}", c.repo, c.number, c.id),
        "issue_url": format!("https://api.github.com/repos/{}/issues/{}", c.repo, c.number),
    })
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
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) => return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    };
    let spec = match spec() {
        Ok(s) => s,
        Err(e) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let matched = match spec.check(method.as_str(), &path, uri.query(), body.as_ref()) {
        Ok(m) => m,
        Err(why) => {
            sb.lock().violations.push(why.clone());
            return gh_error(StatusCode::UNPROCESSABLE_ENTITY, &why);
        }
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", sb.credentials.github_token));
    if !authorized {
        return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let p = |k: &str| matched.params.get(k).cloned().unwrap_or_default();
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
            if !gh
                .issues
                .iter()
                .any(|i| i.repo == repo && i.number == number)
            {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let list: Vec<Value> = gh
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.number == number)
                .map(comment_json)
                .collect();
            Json(list).into_response()
        }
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
            if !gh
                .issues
                .iter()
                .any(|i| i.repo == repo && i.number == number)
            {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let c = GhComment {
                id: 5_000_000 + gh.comments.len() as u64 + 1,
                repo,
                number,
                user: sb.credentials.github_bot_login.clone(),
                body: body
                    .as_ref()
                    .and_then(|b| b["body"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                edits: 0,
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

/// `POST /_sandbox/github/issues`: adds issues.
pub async fn seed_issues(
    State(sb): State<Sandbox>,
    Json(issues): Json<Vec<GhIssue>>,
) -> StatusCode {
    sb.lock().github.issues.extend(issues);
    StatusCode::NO_CONTENT
}
