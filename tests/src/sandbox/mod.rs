//! The sandbox: one local process that stands in for every outside service bugbot talks to.
//!
//! Each stand-in lives under its own path prefix (`/discord`, `/linear`, `/posthog`, `/github`,
//! `/git`, `/anthropic`), so a base URL in configuration is all that points bugbot at it. The
//! sandbox records what it received, can be told to misbehave (`/_sandbox/faults`), and shows all
//! of it at `/_sandbox/state`.

pub mod anthropic;
pub mod discord;
pub mod discord_gateway;
mod faults;
pub mod git;
pub mod github;
pub mod linear;
mod openapi;
pub mod posthog;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use faults::{Fault, FaultRequest};

/// The outside services the sandbox stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Discord's HTTP API (`/discord/api/v10/...`).
    Discord,
    /// Linear's GraphQL API (`/linear/graphql`).
    Linear,
    /// PostHog's REST API (`/posthog/api/...`).
    Posthog,
    /// GitHub's REST API (`/github/...`).
    Github,
    /// Git smart-HTTP remote (`/git/{owner}/{repo}.git`).
    Git,
    /// Anthropic's Messages API (`/anthropic/v1/messages`).
    Anthropic,
}

impl Service {
    /// All services, in state order.
    pub const ALL: [Service; 6] = [
        Self::Discord,
        Self::Linear,
        Self::Posthog,
        Self::Github,
        Self::Git,
        Self::Anthropic,
    ];

    /// The path prefix (without slashes).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Discord => "discord",
            Self::Linear => "linear",
            Self::Posthog => "posthog",
            Self::Github => "github",
            Self::Git => "git",
            Self::Anthropic => "anthropic",
        }
    }

    fn of_path(path: &str) -> Option<Self> {
        let first = path.trim_start_matches('/').split('/').next()?;
        Self::ALL.into_iter().find(|s| s.prefix() == first)
    }
}

/// One request a stand-in received, as it answered it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, without the service prefix.
    pub path: String,
    /// Status the sandbox answered.
    pub status: u16,
    /// True when an injected fault produced the answer.
    pub faulted: bool,
    /// Milliseconds since the sandbox started.
    pub at_ms: u64,
}

/// Everything the sandbox knows. Services add their own records in later issues.
#[derive(Debug, Default, Serialize)]
pub struct SandboxState {
    /// Every request, grouped by service.
    pub requests: BTreeMap<Service, Vec<RecordedRequest>>,
    /// Faults still armed.
    pub faults: Vec<Fault>,
    /// Requests under a service prefix that no stand-in route matched (a strictness failure).
    pub unmatched: Vec<RecordedRequest>,
    /// The Anthropic stand-in's scenario and received requests.
    pub anthropic: anthropic::AnthropicState,
    /// The git remote's repositories and tokens.
    #[serde(skip)]
    pub git: git::GitState,
    /// Discord: channels, answers, posts.
    pub discord: discord::DiscordState,
    /// Discord's Gateway (WebSocket) stand-in.
    pub discord_gateway: discord_gateway::GatewayState,
    /// Interaction tokens tests registered → interaction ids (tokens never appear in the state).
    #[serde(skip)]
    pub discord_tokens: BTreeMap<String, String>,
    /// Linear: teams, issues, attachments, comments.
    pub linear: linear::LinearState,
    /// PostHog: persons and recordings.
    pub posthog: posthog::PosthogState,
    /// GitHub: issues and comments.
    pub github: github::GithubState,
    /// Requests a stand-in refused because the real service would (spec or schema violations).
    pub violations: Vec<String>,
}

/// The credentials the stand-ins expect, from `dev/local.env` (test-only values).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `DISCORD_BOT_TOKEN`.
    pub discord_bot_token: String,
    /// `DISCORD_APPLICATION_ID`.
    pub discord_application_id: String,
    /// `LINEAR_API_KEY`.
    pub linear_api_key: String,
    /// `POSTHOG_API_KEY`.
    pub posthog_api_key: String,
    /// `POSTHOG_PROJECT_ID`.
    pub posthog_project_id: String,
    /// `GITHUB_TOKEN`.
    pub github_token: String,
    /// `GITHUB_BOT_LOGIN`: the author of comments made with the token.
    pub github_bot_login: String,
    /// `GITHUB_APP_ID`.
    pub github_app_id: String,
    /// The App's public key (from `GITHUB_APP_PRIVATE_KEY`, as GitHub keeps it), to verify JWTs.
    pub github_app_public_key: Option<rsa::RsaPublicKey>,
    /// `GITHUB_TEST_INSTALLATION_ID`: the App's one installation, on every repository.
    pub github_installation_id: u64,
    /// `ANTHROPIC_API_KEY`: the only key the Anthropic stand-in accepts (the executor's forwarder
    /// adds it; Claude Code itself holds a placeholder).
    pub anthropic_api_key: String,
}

impl Credentials {
    /// Reads them from `dev/local.env`.
    pub fn from_local_env() -> Self {
        let env = crate::localenv::LocalEnv::load().unwrap_or_default();
        let get = |k: &str| env.try_get(k).unwrap_or_default();
        Self {
            discord_bot_token: get("DISCORD_BOT_TOKEN"),
            discord_application_id: get("DISCORD_APPLICATION_ID"),
            linear_api_key: get("LINEAR_API_KEY"),
            posthog_api_key: get("POSTHOG_API_KEY"),
            posthog_project_id: get("POSTHOG_PROJECT_ID"),
            github_token: get("GITHUB_TOKEN"),
            github_bot_login: get("GITHUB_BOT_LOGIN"),
            github_app_id: get("GITHUB_APP_ID"),
            github_app_public_key: bugbot_shared::github_app::parse_key(&get(
                "GITHUB_APP_PRIVATE_KEY",
            ))
            .ok()
            .map(|k| k.to_public_key()),
            github_installation_id: get("GITHUB_TEST_INSTALLATION_ID").parse().unwrap_or(0),
            anthropic_api_key: get("ANTHROPIC_API_KEY"),
        }
    }
}

/// Shared handle to the sandbox's state.
#[derive(Debug, Clone)]
pub struct Sandbox {
    state: Arc<Mutex<SandboxState>>,
    started: std::time::Instant,
    /// What the stand-ins accept as credentials.
    pub credentials: Arc<Credentials>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A sandbox with empty state.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(SandboxState::default())),
            started: std::time::Instant::now(),
            credentials: Arc::new(Credentials::from_local_env()),
        }
    }

    /// Locks the state. A panic while holding the lock only poisons test data, so recover it.
    pub fn lock(&self) -> MutexGuard<'_, SandboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The HTTP application.
    pub fn router(&self) -> Router {
        let services = Router::new()
            .route("/anthropic/v1/messages", post(anthropic::messages))
            .route("/git/{owner}/{*rest}", get(git::serve).post(git::serve))
            .route("/discord/api/v10/{*rest}", any(discord::api))
            .route("/linear/graphql", post(linear::graphql))
            .route(
                "/posthog/api/environments/{project}/persons/",
                get(posthog::persons),
            )
            .route(
                "/posthog/api/environments/{project}/session_recordings/",
                get(posthog::recordings),
            )
            .route(
                "/posthog/api/environments/{project}/session_recordings/{session}/",
                get(posthog::recording),
            )
            .route("/github/{*rest}", any(github::api))
            .fallback(unmatched)
            .layer(middleware::from_fn_with_state(
                self.clone(),
                record_and_fault,
            ));
        Router::new()
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/_sandbox/state", get(state))
            .route("/_sandbox/reset", post(reset))
            .route(
                "/_sandbox/faults",
                post(add_fault).get(list_faults).delete(clear_faults),
            )
            .route(
                "/_sandbox/discord/channels/{channel}/messages",
                post(discord::seed_messages),
            )
            .route(
                "/_sandbox/discord/interactions",
                post(discord::seed_interaction),
            )
            .route("/_sandbox/linear/seed", post(linear::seed))
            .route(
                "/_sandbox/discord/gateway/dispatch",
                post(discord_gateway::dispatch),
            )
            .route(
                "/_sandbox/discord/gateway/drop",
                post(discord_gateway::drop_connection),
            )
            .route(
                "/_sandbox/discord/gateway/skip-acks",
                post(discord_gateway::skip_acks),
            )
            .route(
                "/_sandbox/discord/gateway/close",
                post(discord_gateway::close),
            )
            .route("/_sandbox/discord/app", post(discord::configure_app))
            .route(
                "/_sandbox/discord/gateway/reconnect",
                post(discord_gateway::reconnect),
            )
            .route("/discord-gateway", get(discord_gateway::connect))
            // Clients append `/?v=10&encoding=json` to the URL, as to Discord's.
            .route("/discord-gateway/", get(discord_gateway::connect))
            .route("/_sandbox/posthog/seed", post(posthog::seed))
            .route("/_sandbox/github/issues", post(github::seed_issues))
            .route("/_sandbox/github/config", post(github::configure))
            .route("/_sandbox/github/reviews", post(github::seed_reviews))
            .route(
                "/_sandbox/github/permissions",
                post(github::seed_permissions),
            )
            .route("/_sandbox/git/repos", post(git::create_repo))
            .route("/_sandbox/git/show", post(git::show))
            .route(
                "/_sandbox/anthropic/scenario",
                post(anthropic::set_scenario),
            )
            .merge(services)
            .with_state(self.clone())
    }
}

async fn state(State(sb): State<Sandbox>) -> Json<serde_json::Value> {
    let branches = sb.git_branches();
    let s = sb.lock();
    let mut requests = serde_json::Map::new();
    for service in Service::ALL {
        let list = s.requests.get(&service).cloned().unwrap_or_default();
        requests.insert(
            service.prefix().into(),
            serde_json::to_value(list).unwrap_or_default(),
        );
    }
    Json(serde_json::json!({
        "requests": requests,
        "faults": s.faults,
        "unmatched": s.unmatched,
        "anthropic": s.anthropic,
        "git": { "branches": branches },
        "discord": s.discord,
        "discord_gateway": s.discord_gateway,
        "linear": s.linear,
        "posthog": s.posthog,
        "github": s.github,
        "violations": s.violations,
    }))
}

async fn reset(State(sb): State<Sandbox>) -> StatusCode {
    let mut s = sb.lock();
    // Repositories stay where they are (the directory), their tokens and all records go.
    let root = s.git.root.take();
    *s = SandboxState::default();
    s.git.root = root;
    StatusCode::NO_CONTENT
}

async fn add_fault(
    State(sb): State<Sandbox>,
    body: Result<Json<FaultRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body
        .map_err(|e| e.body_text())
        .and_then(|Json(f)| f.validate())
    {
        Ok(fault) => {
            sb.lock().faults.push(fault.clone());
            (StatusCode::CREATED, Json(fault)).into_response()
        }
        Err(why) => error(StatusCode::BAD_REQUEST, &why),
    }
}

async fn clear_faults(State(sb): State<Sandbox>) -> StatusCode {
    sb.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(sb): State<Sandbox>) -> Json<Vec<Fault>> {
    Json(sb.lock().faults.clone())
}

async fn unmatched(State(sb): State<Sandbox>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let record = RecordedRequest {
        method: req.method().to_string(),
        path: path.clone(),
        status: 404,
        faulted: false,
        at_ms: sb.elapsed_ms(),
    };
    sb.lock().unmatched.push(record);
    error(
        StatusCode::NOT_FOUND,
        &format!("the sandbox has no stand-in for {} {path}", req.method()),
    )
}

/// A JSON error body, as the stand-ins answer.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "message": message }))).into_response()
}

/// Applies armed faults to a service's requests and records every request with its answer.
async fn record_and_fault(State(sb): State<Sandbox>, req: Request, next: Next) -> Response {
    let Some(service) = Service::of_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = path
        .strip_prefix(&format!("/{}", service.prefix()))
        .unwrap_or(&path)
        .to_owned();

    // The body is read here (requests to the stand-ins are small) so faults can match on it.
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let armed = sb.lock().take_fault(service, &method, &path, &body);
    let req = Request::from_parts(parts, axum::body::Body::from(body));
    let (response, faulted) = match armed {
        Some(fault) => {
            if fault.delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(fault.delay_ms)).await;
            }
            match fault.response() {
                Some(r) if fault.lose_answer => {
                    // The stand-in acts; the caller never hears of it.
                    let _performed = next.run(req).await;
                    (r, true)
                }
                Some(r) => (r, true),
                None => (next.run(req).await, false),
            }
        }
        None => (next.run(req).await, false),
    };
    let record = RecordedRequest {
        method,
        path,
        status: response.status().as_u16(),
        faulted,
        at_ms: sb.elapsed_ms(),
    };
    sb.lock().requests.entry(service).or_default().push(record);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sandbox_state(http: &reqwest::Client, base: &str) -> serde_json::Value {
        let r = http
            .get(format!("{base}/_sandbox/state"))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, Sandbox::new().router()).into_future());
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn stand_ins_require_the_headers_their_services_require() {
        let base = serve().await;
        let http = reqwest::Client::new();
        let repo = format!("{base}/github/repos/acme/web-app");
        // GitHub: no User-Agent is 403; without Accept or the API version, 400; with all three the
        // call gets as far as the credentials.
        let r = http.get(&repo).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .get(&repo)
            .header("user-agent", "t")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http
            .get(&repo)
            .header("user-agent", "t")
            .header("accept", "application/vnd.github+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "no X-GitHub-Api-Version");
        let r = http
            .get(&repo)
            .header("user-agent", "t")
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Linear: an authenticated POST that is not JSON is blocked.
        let r = http
            .post(format!("{base}/linear/graphql"))
            .header(
                "authorization",
                Credentials::from_local_env().linear_api_key,
            )
            .header("content-type", "text/plain")
            .body("{\"query\": \"{ viewer { id } }\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let state = sandbox_state(&http, &base).await;
        assert_eq!(state["violations"].as_array().unwrap().len(), 4, "{state}");
    }

    #[tokio::test]
    async fn faults_answer_the_next_calls_then_disarm_and_everything_is_recorded() {
        let base = serve().await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/_sandbox/faults"))
            .json(&serde_json::json!({"service": "linear", "count": 2, "status": 503, "retry_after": 7}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);

        for _ in 0..2 {
            let r = http
                .post(format!("{base}/linear/graphql"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()["retry-after"], "7");
        }
        // Disarmed: the call reaches the stand-in, which wants an API key as Linear does.
        let r = http
            .post(format!("{base}/linear/graphql"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // Other services were never affected; a path no stand-in serves is flagged unmatched.
        let r = http
            .get(format!("{base}/posthog/api/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        // A path the real API does not have is a violation.
        let r = http
            .get(format!("{base}/discord/api/v10/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        let state = sandbox_state(&http, &base).await;
        let linear = state["requests"]["linear"].as_array().unwrap();
        assert_eq!(linear.len(), 3);
        assert_eq!(linear[0]["faulted"], true);
        assert_eq!(linear[0]["path"], "/graphql");
        assert_eq!(linear[2]["faulted"], false);
        assert_eq!(state["unmatched"].as_array().unwrap().len(), 1);
        assert_eq!(state["violations"].as_array().unwrap().len(), 1);
        assert_eq!(state["faults"].as_array().unwrap().len(), 0);

        let r = http
            .post(format!("{base}/_sandbox/reset"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let state = sandbox_state(&http, &base).await;
        assert_eq!(state["requests"]["linear"].as_array().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn slow_faults_delay_and_bad_fault_requests_are_refused() {
        let base = serve().await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/_sandbox/faults"))
            .json(&serde_json::json!({"service": "github", "delay_ms": 300}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let t = std::time::Instant::now();
        let r = http.get(format!("{base}/github/x")).send().await.unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(300));
        assert_eq!(r.status(), 422, "GitHub has no path /x");

        for bad in [
            serde_json::json!({"service": "nope", "status": 500}),
            serde_json::json!({"service": "linear"}),
            serde_json::json!({"service": "linear", "status": 1000}),
            serde_json::json!({"service": "linear", "status": 500, "count": 0}),
            serde_json::json!({"service": "linear", "status": 500, "surprise": 1}),
        ] {
            let r = http
                .post(format!("{base}/_sandbox/faults"))
                .json(&bad)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }
    }
}
