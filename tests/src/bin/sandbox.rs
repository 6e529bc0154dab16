//! Runs the sandbox: local stand-ins for Discord, Linear, PostHog, GitHub, a git remote and the
//! Anthropic API. See `bugbot_tests::sandbox`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Local stand-ins for the outside services bugbot talks to")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8791")]
    addr: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let sandbox = bugbot_tests::sandbox::Sandbox::new();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %args.addr, "sandbox listening");
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
