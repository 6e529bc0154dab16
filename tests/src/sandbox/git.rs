//! A git remote over smart HTTP (`git http-backend`), standing in for `https://github.com/{owner}/{repo}.git`.
//!
//! Like GitHub with an installation token, it wants HTTP Basic auth with any user name and a token it
//! knows as the password — so a clone or push only works if the executor's askpass hands git the token.
//! Repositories are created with `POST /_sandbox/git/repos`.

use super::{Sandbox, error};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

fn git(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    crate::fixtures::git(dir, args).map_err(|e| e.to_string())
}

/// The remote's state: where repositories live, and the tokens that open them.
#[derive(Debug, Default)]
pub struct GitState {
    /// Directory holding `{owner}/{repo}.git` bare repositories.
    pub root: Option<PathBuf>,
    /// Accepted tokens.
    pub tokens: Vec<String>,
}

/// `POST /_sandbox/git/repos` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRepo {
    /// `owner/name`.
    pub repo: String,
    /// Files of the initial commit on `main` (path → content).
    pub files: BTreeMap<String, String>,
    /// A token that may clone and push (added to the accepted tokens).
    #[serde(default)]
    pub token: Option<String>,
}

impl Sandbox {
    fn git_root(&self) -> Result<PathBuf, String> {
        let mut s = self.lock();
        if let Some(root) = &s.git.root {
            return Ok(root.clone());
        }
        let root = std::env::temp_dir().join(format!("bugbot-sandbox-git-{}", std::process::id()));
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        s.git.root = Some(root.clone());
        Ok(root)
    }

    /// The bare repository of `owner/name`, if the remote has it.
    pub fn bare_repo(&self, repo: &str) -> Option<PathBuf> {
        let (owner, name) = repo.split_once('/')?;
        let path = self
            .lock()
            .git
            .root
            .clone()?
            .join(owner)
            .join(format!("{name}.git"));
        path.is_dir().then_some(path)
    }

    /// Runs git in a bare repository of the remote.
    pub fn git_in(&self, repo: &str, args: &[&str]) -> Result<String, String> {
        let path = self
            .bare_repo(repo)
            .ok_or_else(|| format!("no repository {repo}"))?;
        git(&path, args)
    }

    /// Branches of every repository (`owner/name` → branch → commit), for the state view.
    pub fn git_branches(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        // Reading the state never creates the directory.
        let Some(root) = self.lock().git.root.clone() else {
            return BTreeMap::new();
        };
        let mut all = BTreeMap::new();
        for owner in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for repo in std::fs::read_dir(owner.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = format!(
                    "{}/{}",
                    owner.file_name().to_string_lossy(),
                    repo.file_name().to_string_lossy().trim_end_matches(".git")
                );
                let refs = git(
                    &repo.path(),
                    &[
                        "for-each-ref",
                        "--format=%(refname:short) %(objectname)",
                        "refs/heads",
                    ],
                )
                .unwrap_or_default();
                let branches = refs
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(b, sha)| (b.to_owned(), sha.to_owned()))
                    .collect();
                all.insert(name, branches);
            }
        }
        all
    }
}

/// `POST /_sandbox/git/show` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Show {
    /// `owner/name`.
    pub repo: String,
    /// A branch (or any revision).
    pub rev: String,
}

/// What a branch holds, for assertions: its commits' subjects (newest first) and its files.
pub async fn show(State(sb): State<Sandbox>, Json(show): Json<Show>) -> Response {
    let log = sb.git_in(&show.repo, &["log", "--format=%s", &show.rev, "--"]);
    let files = sb.git_in(&show.repo, &["ls-tree", "-r", "--name-only", &show.rev]);
    match (log, files) {
        (Ok(log), Ok(files)) => axum::Json(serde_json::json!({
            "subjects": log.lines().collect::<Vec<_>>(),
            "files": files.lines().collect::<Vec<_>>(),
        }))
        .into_response(),
        (Err(e), _) | (_, Err(e)) => error(StatusCode::NOT_FOUND, &e),
    }
}

/// Creates a repository with one commit on `main`.
pub async fn create_repo(State(sb): State<Sandbox>, Json(new): Json<NewRepo>) -> Response {
    let Ok(repo) = bugbot_shared::ids::RepoFullName::parse(&new.repo) else {
        return error(StatusCode::BAD_REQUEST, "repo must be owner/name");
    };
    let root = match sb.git_root() {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let bare = root.join(repo.owner()).join(format!("{}.git", repo.name()));
    let result = (|| -> Result<(), String> {
        let _ = std::fs::remove_dir_all(&bare);
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        for (path, content) in &new.files {
            let file = work.path().join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&file, content).map_err(|e| e.to_string())?;
        }
        git(work.path(), &["init", "-q"])?;
        git(work.path(), &["add", "-A"])?;
        git(work.path(), &["commit", "-q", "-m", "initial commit"])?;
        std::fs::create_dir_all(bare.parent().unwrap_or(&root)).map_err(|e| e.to_string())?;
        let bare_str = bare.to_string_lossy().into_owned();
        git(work.path(), &["clone", "-q", "--bare", ".", &bare_str])?;
        git(&bare, &["config", "http.receivepack", "true"])?;
        Ok(())
    })();
    if let Err(e) = result {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e);
    }
    if let Some(t) = new.token {
        sb.lock().git.tokens.push(t);
    }
    (
        StatusCode::CREATED,
        Json(serde_json::json!({ "repo": repo, "path": format!("/git/{repo}.git") })),
    )
        .into_response()
}

fn authorized(sb: &Sandbox, headers: &HeaderMap) -> bool {
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    let Some((_, password)) = decoded.split_once(':') else {
        return false;
    };
    sb.lock().git.tokens.iter().any(|t| t == password)
}

/// `/git/{owner}/{rest}`: the smart HTTP protocol through `git http-backend`.
pub async fn serve(
    State(sb): State<Sandbox>,
    Path((owner, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    if !authorized(&sb, req.headers()) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"sandbox git\"")
            .body(Body::from("authentication required"))
            .unwrap_or_else(|_| error(StatusCode::UNAUTHORIZED, "authentication required"));
    }
    let root = match sb.git_root() {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if owner.contains("..") || rest.contains("..") {
        return error(StatusCode::BAD_REQUEST, "bad path");
    }
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = req.headers().clone();
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 256 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let header_str = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{owner}/{rest}"))
        .env("REQUEST_METHOD", &method)
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", header_str(header::CONTENT_TYPE))
        .env(
            "HTTP_CONTENT_ENCODING",
            header_str(header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            headers
                .get("git-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    cgi_response(&out.stdout)
}

/// Turns CGI output (headers, blank line, body) into a response.
fn cgi_response(output: &[u8]) -> Response {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return error(StatusCode::BAD_GATEWAY, "git http-backend gave no headers");
    };
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&output[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder
        .body(Body::from(output[end + sep..].to_vec()))
        .unwrap_or_else(|_| error(StatusCode::BAD_GATEWAY, "bad CGI headers"))
}
