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
    // Git repositories live in a directory removed when the sandbox stops.
    let git_root = tempfile::Builder::new()
        .prefix("bugbot-sandbox-git-")
        .tempdir()?;
    let sandbox = bugbot_tests::sandbox::Sandbox::new();
    sandbox.lock().git.root = Some(git_root.path().to_path_buf());
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %args.addr, "sandbox listening");
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .unwrap_or_else(|e| panic!("cannot listen for SIGTERM: {e}"));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    drop(git_root);
    Ok(())
}
