//! bugbot's executor: an HTTP service that runs git and Claude Code in a throwaway workspace.
//!
//! `POST /v1/fix` (Bearer `EXECUTOR_TOKEN`) takes a [`FixRequest`] and answers with a stream of
//! newline-delimited JSON events ending with the result (`bugbot_shared::executor`).
//!
//! The repository and the agent are treated as hostile: Claude Code loads bugbot's settings only
//! and runs as a user of its own with nothing secret in reach (`agent`); it talks to the model
//! through a forwarder that holds the API key (`forwarder`); the executor pushes only a commit it
//! built itself on the base commit from checked changes (`workspace`). Locally it runs as a plain
//! process (`scripts/dev`); in production the same binary is the Cloudflare Container built from
//! `executor-container/Dockerfile`. `docs/security.md` says what holds and where the boundary is.

mod agent;
mod claude;
mod forwarder;
mod process;
mod run;
mod runs;
mod workspace;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bugbot_shared::executor::{FixRequest, Remotes};
use bugbot_shared::mask::Masker;
use bugbot_shared::signature::bearer_matches;
use clap::Parser;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(about = "Runs git and Claude Code for bugbot's fix jobs")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EXECUTOR_ADDR", default_value = "127.0.0.1:8790")]
    addr: std::net::SocketAddr,
    /// Bearer token callers must present.
    #[arg(long, env = "EXECUTOR_TOKEN", hide_env_values = true)]
    token: String,
    /// The Claude Code CLI binary.
    #[arg(long, env = "CLAUDE_BIN", default_value = "claude")]
    claude_bin: PathBuf,
    /// Anthropic API base URL (unset: Anthropic's).
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    anthropic_base_url: Option<String>,
    /// Anthropic API key, attached by the model forwarder (never given to Claude Code). In the
    /// Container it is the run's stand-in, which the egress swaps for the real one.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    anthropic_api_key: String,
    /// Model for Claude Code (unset: its default).
    #[arg(long, env = "CLAUDE_MODEL")]
    model: Option<String>,
    /// Directory for workspaces (each request gets a fresh one, removed afterwards). The agent's
    /// user must be able to pass through it (every folder above it `o+x`).
    #[arg(long, env = "EXECUTOR_WORK_DIR", default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// The first uid (and gid) agents run as; each running fix has its own, up to `max_runs`.
    #[arg(long, env = "EXECUTOR_AGENT_UID_BASE", default_value_t = 61_000)]
    agent_uid_base: u32,
    /// How many fixes may run at once (more are answered 503).
    #[arg(long, env = "EXECUTOR_MAX_RUNS", default_value_t = 4)]
    max_runs: usize,
    /// How long a run whose callers all went away waits for one to come back (a redelivered job
    /// follows it by its `run_id`) before it is stopped.
    #[arg(long, env = "EXECUTOR_DETACHED_GRACE_SECS", default_value_t = 120)]
    detached_grace_secs: u64,
    /// Local development: allows `http://` and `file://` repositories, and, when the executor is not
    /// root, runs the agent as the executor's own user (with none of the isolation guarantees).
    #[arg(long, env = "EXECUTOR_DEV_MODE", default_value_t = false)]
    dev_mode: bool,
    /// The executor's Container: the runtime hands its plain HTTP (port 80) to the consumer Worker,
    /// which allows only the git host and the model API and swaps in their credentials. Accepts
    /// `http://` repositories without a port.
    #[arg(long, env = "EXECUTOR_EGRESS_INTERCEPTED", default_value_t = false)]
    egress_intercepted: bool,
}

/// The executor's shared state: its configuration and its runs.
#[derive(Debug, Clone)]
struct AppState {
    config: Arc<run::Config>,
    runs: runs::Runs,
}

fn app(config: run::Config) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async {
                Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
            }),
        )
        .route("/v1/fix", post(fix))
        .route("/v1/runs/{id}/stop", post(stop))
        .with_state(AppState {
            config: Arc::new(config),
            runs: runs::Runs::default(),
        })
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn fix(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let config = &app.config;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(auth, &config.token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        );
    }
    let mut request: FixRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                config.masker.mask(&format!("invalid fix request: {e}")),
            );
        }
    };
    if let Err(e) = request.validate(config.remotes) {
        return error(
            StatusCode::BAD_REQUEST,
            config.masker.mask(&format!("invalid fix request: {e}")),
        );
    }
    // Without a run id the run is its own; with one, a run already going is followed.
    let run_id = request
        .run_id
        .clone()
        .unwrap_or_else(|| format!("anonymous-{}", random_hex()));
    let hub = match app.runs.claim(&run_id) {
        runs::Claim::Follow(hub) => {
            tracing::info!(run = %run_id, "following the run already going (or finished)");
            return stream(&hub);
        }
        runs::Claim::Start(hub) => hub,
    };
    let Some(agent) = config.pool.acquire() else {
        app.runs.forget(&run_id);
        let mut busy = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "every agent slot is running a fix; try again shortly".into(),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        return busy;
    };
    tracing::info!(repo = %request.repo_url, branch = %request.branch, issue = %request.task.issue_id, run = %run_id, uid = ?agent.ids, "fix requested");
    // The caller follows before the run starts, so the run is never without a follower at first.
    let answer = stream(&hub);
    let emitter = run::Emitter::new(hub, config.masker.clone());
    tokio::spawn(run::run(
        (**config).clone(),
        request,
        agent,
        emitter,
        app.runs.clone(),
        run_id,
    ));
    answer
}

/// `POST /v1/runs/{id}/stop` `{"reason": "stopped by jane"}`: kills the run (its agent and
/// workspace go, nothing is pushed) and ends its stream with a `stopped` result. A run that has
/// not started yet ends that way as soon as it is asked for; one already pushing finishes.
async fn stop(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(auth, &app.config.token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        );
    }
    #[derive(serde::Deserialize)]
    struct StopRequest {
        reason: String,
    }
    let reason = match serde_json::from_slice::<StopRequest>(&body) {
        Ok(r) => bugbot_shared::job::truncate(r.reason.trim(), 200).0,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid stop request: {e}"),
            );
        }
    };
    let stopping = app.runs.stop(&id, &reason, || run::stopped_line(&reason));
    tracing::info!(run = %id, ?stopping, "stop requested");
    let state = match stopping {
        runs::Stopping::Running => "stopping",
        runs::Stopping::Finished => "finished",
        runs::Stopping::BeforeStart => "stopped_before_start",
    };
    Json(serde_json::json!({ "run_id": id, "state": state })).into_response()
}

/// The NDJSON answer that follows a run.
fn stream(hub: &Arc<runs::Hub>) -> Response {
    let lines = futures_util::StreamExt::map(hub.follow(), Ok::<_, std::convert::Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not start the stream".into(),
            )
        })
}

fn random_hex() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the id is still unique enough with the time in it.
    let _ = getrandom::getrandom(&mut bytes);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", hex::encode(bytes))
}

/// How the agent will be separated: its own users when the executor is root; otherwise only in
/// local development, as the executor's own user.
fn isolation(args: &Args) -> anyhow::Result<agent::Isolation> {
    if agent::can_switch_users() {
        return Ok(agent::Isolation::OwnUser {
            base: args.agent_uid_base,
        });
    }
    anyhow::ensure!(
        args.dev_mode,
        "the executor must run as root to run each agent as a user of its own (only EXECUTOR_DEV_MODE=true allows otherwise)"
    );
    tracing::warn!(
        "not root: agents run as the executor's own user, so a compromised agent could read the executor's secrets (local development only)"
    );
    Ok(agent::Isolation::SameUser)
}

/// Makes sure an agent's user can run Claude Code and reach the work folder. A Claude Code binary
/// the agent cannot reach (an installation under a private folder) is linked, or copied, into
/// `<work>/.bugbot-bin/`.
async fn prepare_for_agents(args: &Args, isolation: agent::Isolation) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let agent::Isolation::OwnUser { base } = isolation else {
        return Ok(args.claude_bin.clone());
    };
    let can = |path: &std::path::Path, test: &str| {
        std::process::Command::new("/bin/sh")
            .args(["-c", &format!("test {test} \"$1\""), "sh"])
            .arg(path)
            .env_clear()
            .current_dir("/")
            .uid(base)
            .gid(base)
            .status()
            .is_ok_and(|s| s.success())
    };
    anyhow::ensure!(
        can(&args.work_dir, "-x"),
        "the agent's user cannot reach EXECUTOR_WORK_DIR {} (every folder above it must be o+x)",
        args.work_dir.display()
    );
    let claude = which(&args.claude_bin);
    if can(&claude, "-x") {
        return Ok(claude);
    }
    let bin = args.work_dir.join(".bugbot-bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let staged = bin.join("claude");
    let _ = std::fs::remove_file(&staged);
    if std::fs::hard_link(&claude, &staged).is_err() {
        std::fs::copy(&claude, &staged)
            .with_context(|| format!("copying {} for the agent", claude.display()))?;
    }
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))?;
    tracing::info!(from = %claude.display(), to = %staged.display(), "Claude Code staged where the agent's user can run it");
    Ok(staged)
}

/// A program name resolved on PATH (a path with a slash is taken as it is).
fn which(program: &std::path::Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.token.len() >= 16,
        "EXECUTOR_TOKEN must be at least 16 characters"
    );
    let remotes = if args.dev_mode {
        Remotes::Local
    } else if args.egress_intercepted {
        Remotes::Intercepted
    } else {
        Remotes::HttpsOnly
    };
    let isolation = isolation(&args)?;
    let claude_bin = prepare_for_agents(&args, isolation).await?;
    let forwarder = forwarder::Forwarder::start(
        args.anthropic_base_url.clone(),
        args.anthropic_api_key.clone(),
    )
    .await
    .context("starting the model forwarder")?;
    let config = run::Config {
        masker: Masker::new([args.token.clone(), args.anthropic_api_key.clone()]),
        token: args.token.clone(),
        claude_bin,
        model: args.model.clone(),
        work_root: args.work_dir.clone(),
        pool: agent::AgentPool::new(isolation, args.max_runs),
        forwarder,
        dev: args.dev_mode,
        remotes,
        detached_grace: std::time::Duration::from_secs(args.detached_grace_secs),
    };
    tracing::info!(?isolation, dev = args.dev_mode, "executor ready");
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    tracing::info!(addr = %args.addr, "executor listening");
    axum::serve(listener, app(config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
