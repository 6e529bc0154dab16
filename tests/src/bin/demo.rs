//! `scripts/demo`: drives a report through the local stack and shows what came out.
//!
//! Uses a running stack (`scripts/dev`) if one answers at GATEWAY_URL, else starts its own on the
//! default ports and stops it afterwards.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use bugbot_tests::localenv::{LocalEnv, repo_root};
use bugbot_tests::signing;
use bugbot_tests::stack::{Ports, Stack, StackOptions};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<()> {
    let env = LocalEnv::load()?;
    let http = reqwest::Client::new();
    let gateway = env.get("GATEWAY_URL");
    let running = http
        .get(format!("{gateway}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let _stack = if running {
        println!("Using the local stack already running at {gateway}.");
        None
    } else {
        println!("Starting the local stack (the first start compiles the Workers)...");
        let run = repo_root().join(".run");
        Some(
            Stack::start(StackOptions {
                ports: Ports::defaults(),
                state_dir: run.join("demo-state"),
                log_dir: run.join("logs"),
                echo: false,
                ready_timeout: Duration::from_secs(900),
            })
            .await?,
        )
    };

    // 1. Discord checks the endpoint with a signed PING before it sends anything else.
    let ping = serde_json::to_vec(&serde_json::json!({
        "id": "1200000000000000001", "application_id": env.get("DISCORD_APPLICATION_ID"),
        "type": 1, "token": "demo", "version": 1
    }))?;
    let (sig, ts) = signing::discord_headers(
        &env.get("DISCORD_TEST_SIGNING_SEED"),
        &signing::unix_timestamp(),
        &ping,
    );
    let r = http
        .post(format!("{gateway}/discord/interactions"))
        .header("x-signature-ed25519", sig)
        .header("x-signature-timestamp", ts)
        .body(ping)
        .send()
        .await?;
    println!(
        "\n1. Signed Discord PING -> {} {}",
        r.status(),
        r.text().await?
    );

    // 2. A job through the queue to the consumer, followed in its run history.
    let admin = env.get("ADMIN_TOKEN");
    let r: serde_json::Value = http
        .post(format!("{gateway}/v1/selftest"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    let id = r["job_id"].as_str().context("no job id")?.to_owned();
    println!("2. Self-test job {id} queued; following it:");
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let rec: serde_json::Value = http
            .get(format!("{gateway}/v1/jobs/{id}"))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        if rec["status"] == "succeeded" || rec["status"] == "failed" {
            break rec;
        }
        if Instant::now() > deadline {
            bail!("job {id} did not finish: {rec}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for event in record["events"].as_array().into_iter().flatten() {
        println!(
            "   - {:<8} {}",
            event["step"].as_str().unwrap_or(""),
            event["detail"].as_str().unwrap_or("")
        );
    }
    println!("   status: {}", record["status"]);

    println!(
        "\n3. Report -> Linear comment -> pull request: not yet. The contextualize and fix flows are \
         being built (see the README's status section); this demo will drive a signed `/bugbot fix` \
         through them once they land."
    );
    Ok(())
}
