//! Runs the whole local stack in the foreground (what `scripts/dev` starts): the sandbox, the
//! executor, and `wrangler dev` with the gateway and consumer. Ctrl-C stops everything.

use bugbot_tests::localenv::repo_root;
use bugbot_tests::stack::{Ports, Stack, StackOptions};
use clap::Parser;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Run bugbot's local stack in the foreground")]
struct Args {
    /// Gateway port.
    #[arg(long, default_value_t = Ports::defaults().gateway)]
    gateway_port: u16,
    /// Executor port.
    #[arg(long, default_value_t = Ports::defaults().executor)]
    executor_port: u16,
    /// Sandbox port.
    #[arg(long, default_value_t = Ports::defaults().sandbox)]
    sandbox_port: u16,
    /// wrangler's inspector port.
    #[arg(long, default_value_t = Ports::defaults().inspector)]
    inspector_port: u16,
    /// Start with empty local KV and queues.
    #[arg(long)]
    fresh: bool,
    /// Print the parts' output too (it always goes to .run/logs/).
    #[arg(long)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = repo_root().join(".run");
    let state_dir = run.join("state");
    if args.fresh {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let opts = StackOptions {
        ports: Ports {
            gateway: args.gateway_port,
            executor: args.executor_port,
            sandbox: args.sandbox_port,
            inspector: args.inspector_port,
        },
        state_dir,
        log_dir: run.join("logs"),
        echo: args.verbose,
        ready_timeout: Duration::from_secs(900),
        with_consumer: true,
        inspector: true,
        containers: bugbot_tests::stack::containers_wanted(),
    };
    eprintln!(
        "bugbot: starting the local stack (the first start compiles the Workers; logs in .run/logs/)"
    );
    // Ctrl-C during start-up drops the half-started stack, which stops what already runs.
    let mut stack = tokio::select! {
        stack = Stack::start(opts) => stack?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nbugbot: interrupted while starting; stopped");
            return Ok(());
        }
    };
    eprintln!(
        "bugbot: local stack is up\n  gateway   {}  (Workers: gateway + consumer, local Queue, DLQ and KV)\n  executor  {}\n  sandbox   {}  (stand-ins; see {}/_sandbox/state)\n  logs      {}\nPress Ctrl-C to stop.",
        stack.env.get("GATEWAY_URL"),
        stack.env.get("EXECUTOR_URL"),
        stack.env.get("SANDBOX_URL"),
        stack.env.get("SANDBOX_URL"),
        stack.log_dir.display(),
    );
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("\nbugbot: stopping"),
        _ = sigterm.recv() => eprintln!("bugbot: stopping"),
        part = stack.wait_any_exit() => {
            eprintln!("bugbot: {part} exited unexpectedly; its log:\n{}", stack.log_tail(part, 40));
            stack.stop();
            anyhow::bail!("{part} exited");
        }
    }
    stack.stop();
    Ok(())
}
