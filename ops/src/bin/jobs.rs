//! `scripts/jobs` and `scripts/dlq`: bugbot's run history and dead-letter queue, for humans.
//!
//! Talks to the gateway's admin API (`Authorization: Bearer $ADMIN_TOKEN`). Against the local stack
//! it needs nothing; for a deployment set `BUGBOT_URL` and `ADMIN_TOKEN`.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "List bugbot's jobs and dead jobs, show a job's timeline, replay a dead job")]
struct Args {
    /// The gateway (default: the local stack's GATEWAY_URL).
    #[arg(long, env = "BUGBOT_URL")]
    url: Option<String>,
    /// The admin token (default: the local stack's test-only ADMIN_TOKEN).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Recent jobs, newest first.
    List {
        /// How many (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One job: status, links and step timeline.
    Show {
        /// Job id (`dc-…`, `gh-…`, `st-…`).
        id: String,
    },
    /// Dead jobs (retries ran out, or unreadable messages).
    Dlq {
        /// How many (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One dead job: its message summary, last error and attempts.
    DlqShow {
        /// Job id.
        id: String,
    },
    /// Puts a dead job back on the queue (it keeps what it already did).
    Replay {
        /// Job id.
        id: String,
    },
    /// Deletes a dead job for good (nothing is run).
    Purge {
        /// Job id.
        id: String,
    },
    /// Today's model spend (UTC): settled, reserved by running fixes, per user.
    Spend,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let url = args
        .url
        .or_else(|| bugbot_ops::local_value("GATEWAY_URL"))
        .context("no gateway URL: pass --url or set BUGBOT_URL")?;
    let token = args
        .token
        .or_else(|| bugbot_ops::local_value("ADMIN_TOKEN"))
        .context("no admin token: pass --token or set ADMIN_TOKEN")?;
    let http = reqwest::Client::new();
    let (method, path) = match &args.command {
        Cmd::List { limit } => ("GET", format!("/v1/jobs?limit={limit}")),
        Cmd::Show { id } => ("GET", format!("/v1/jobs/{id}")),
        Cmd::Dlq { limit } => ("GET", format!("/v1/dlq?limit={limit}")),
        Cmd::DlqShow { id } => ("GET", format!("/v1/dlq/{id}")),
        Cmd::Replay { id } => ("POST", format!("/v1/dlq/{id}/replay")),
        Cmd::Purge { id } => ("DELETE", format!("/v1/dlq/{id}")),
        Cmd::Spend => ("GET", "/v1/spend".to_owned()),
    };
    let request = match method {
        "GET" => http.get(format!("{url}{path}")),
        "DELETE" => http.delete(format!("{url}{path}")),
        _ => http.post(format!("{url}{path}")),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = body["error"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned);
        bail!("{method} {path}: {status}: {why}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    match args.command {
        Cmd::Spend => {
            let usd = |v: &Value| v.as_f64().unwrap_or(0.0);
            println!(
                "{} (UTC): ${:.2} spent, ${:.2} reserved by running fixes, {} job(s)",
                s(&body["day"]),
                usd(&body["spent_usd"]),
                usd(&body["reserved_usd"]),
                body["jobs"]
            );
            for (user, spent) in body["users"].as_object().into_iter().flatten() {
                println!("  {user:<40} ${:.2}", usd(spent));
            }
        }
        Cmd::List { .. } => {
            println!(
                "{:<44} {:<13} {:<10} {:<17} SOURCE",
                "JOB", "COMMAND", "STATUS", "CREATED (UTC)"
            );
            for j in body["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{:<44} {:<13} {:<10} {:<17} {}",
                    s(&j["id"]),
                    s(&j["command"]),
                    s(&j["status"]),
                    when(&j["created_at_ms"]),
                    s(&j["source"])
                );
            }
        }
        Cmd::Show { .. } => {
            println!("job       {}", s(&body["id"]));
            println!("command   {}", s(&body["command"]));
            println!("status    {}", s(&body["status"]));
            println!("requester {}", s(&body["requester"]));
            println!("source    {}", s(&body["source"]));
            println!("attempts  {}", body["attempts"]);
            if let Some(e) = body["last_error"].as_str() {
                println!("error     {e}");
            }
            for l in body["links"].as_array().into_iter().flatten() {
                println!("link      {}", s(l));
            }
            println!("\ntimeline:");
            for e in body["events"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {:<16} {}",
                    when(&e["at_ms"]),
                    s(&e["step"]),
                    s(&e["detail"])
                );
            }
        }
        Cmd::Dlq { .. } => {
            println!(
                "{:<44} {:<13} {:<8} {:<17} LAST ERROR",
                "JOB", "COMMAND", "ATTEMPTS", "DIED (UTC)"
            );
            for d in body["dead"].as_array().into_iter().flatten() {
                println!(
                    "{:<44} {:<13} {:<8} {:<17} {}",
                    s(&d["id"]),
                    d["command"].as_str().unwrap_or("(unreadable)"),
                    d["attempts"],
                    when(&d["died_at_ms"]),
                    s(&d["error"])
                );
            }
        }
        Cmd::DlqShow { .. } => {
            for key in [
                "id",
                "command",
                "source",
                "requester",
                "attempts",
                "error",
                "died_at_ms",
                "replayable",
            ] {
                println!("{key:<11} {}", s(&body[key]));
            }
        }
        Cmd::Replay { id } => println!("{id} is back on the queue (replay {}).", body["replay"]),
        Cmd::Purge { id } => println!("{id} was removed from the dead-letter queue."),
    }
    Ok(())
}

fn s(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn when(ms: &Value) -> String {
    ms.as_u64().map_or_else(
        || "?".into(),
        |ms| {
            bugbot_shared::packet::format_ms(ms)
                .trim_end_matches(" UTC")
                .to_owned()
        },
    )
}
