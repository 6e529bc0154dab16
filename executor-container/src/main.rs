//! bugbot's executor: an HTTP service that runs git and Claude Code in a throwaway workspace.
//!
//! `POST /v1/fix` (Bearer `EXECUTOR_TOKEN`) takes a [`FixRequest`] and answers with a stream of
//! newline-delimited JSON events ending with the result (`bugbot_shared::executor`). Claude Code never
//! sees the GitHub token: the executor pushes after Claude Code has exited, and only if every changed
//! path is allowed. Locally it runs as a plain process (`scripts/dev`); in production the same binary
//! is the Cloudflare Container built from `executor-container/Dockerfile`.

mod claude;
mod process;
mod run;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bugbot_shared::executor::FixRequest;
use bugbot_shared::mask::Masker;
use bugbot_shared::signature::bearer_matches;
use clap::Parser;
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
    /// Anthropic API key, given to Claude Code.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    anthropic_api_key: String,
    /// Model for Claude Code (unset: its default).
    #[arg(long, env = "CLAUDE_MODEL")]
    model: Option<String>,
    /// Directory for workspaces (each request gets a fresh one, removed afterwards).
    #[arg(long, env = "EXECUTOR_WORK_DIR", default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
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
        .with_state(Arc::new(config))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn fix(State(config): State<Arc<run::Config>>, headers: HeaderMap, body: Bytes) -> Response {
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
    if let Err(e) = request.validate() {
        return error(
            StatusCode::BAD_REQUEST,
            config.masker.mask(&format!("invalid fix request: {e}")),
        );
    }
    tracing::info!(repo = %request.repo_url, branch = %request.branch, issue = %request.task.issue_id, "fix requested");
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let emitter = run::Emitter::new(tx, config.masker.clone());
    tokio::spawn(run::run((*config).clone(), request, emitter));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not start the stream".into(),
            )
        })
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
    let config = run::Config {
        masker: Masker::new([args.token.clone(), args.anthropic_api_key.clone()]),
        token: args.token,
        claude_bin: args.claude_bin,
        anthropic_base_url: args.anthropic_base_url,
        anthropic_api_key: args.anthropic_api_key,
        model: args.model,
        work_root: args.work_dir,
    };
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
