//! bugbot's executor: an HTTP service that runs git and Claude Code in a throwaway workspace.
//!
//! Locally it runs as a plain process (`scripts/dev`); in production the same binary is the
//! Cloudflare Container built from `executor-container/Dockerfile`.

use anyhow::Context;
use axum::{Json, Router, routing::get};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Runs git and Claude Code for bugbot's fix jobs")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EXECUTOR_ADDR", default_value = "127.0.0.1:8790")]
    addr: std::net::SocketAddr,
}

fn app() -> Router {
    Router::new().route(
        "/healthz",
        get(|| async {
            Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
        }),
    )
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
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    tracing::info!(addr = %args.addr, "executor listening");
    axum::serve(listener, app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
