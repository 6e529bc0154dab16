//! `scripts/demo`: drives a report through the local stack and shows what came out.
//!
//! Uses a running stack (`scripts/dev`) if one answers at GATEWAY_URL, else starts its own on the
//! default ports and stops it afterwards.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use bugbot_tests::fixtures::{CART_FIX, read_then_edit, web_app_files};
use bugbot_tests::localenv::{LocalEnv, repo_root};
use bugbot_tests::signing;
use bugbot_tests::stack::{Ports, Stack, StackOptions};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<()> {
    let containers = bugbot_tests::stack::containers_wanted();
    let ports = Ports::defaults();
    // The stack's addresses: its sandbox is on the Docker bridge when the executor runs in Containers.
    let env = LocalEnv::load_with_urls(
        &format!("http://127.0.0.1:{}", ports.gateway),
        &format!("http://127.0.0.1:{}", ports.executor),
        &format!(
            "http://{}:{}",
            bugbot_tests::stack::sandbox_host(containers)?,
            ports.sandbox
        ),
    )?;
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
                ports,
                state_dir: run.join("demo-state"),
                log_dir: run.join("logs"),
                echo: false,
                ready_timeout: Duration::from_secs(900),
                with_consumer: true,
                inspector: true,
                containers,
            })
            .await?,
        )
    };

    let demo = Demo {
        http,
        gateway: gateway.clone(),
        sandbox: env.get("SANDBOX_URL"),
        admin: env.get("ADMIN_TOKEN"),
        env,
    };
    demo.run().await
}

struct Demo {
    http: reqwest::Client,
    env: LocalEnv,
    gateway: String,
    sandbox: String,
    admin: String,
}

impl Demo {
    async fn run(&self) -> Result<()> {
        // 1. Discord checks the endpoint with a signed PING before it sends anything else.
        let ping = json!({
            "id": "1200000000000000001", "application_id": self.env.get("DISCORD_APPLICATION_ID"),
            "type": 1, "token": "demo", "version": 1
        });
        let r = self.signed_interaction(&ping).await?;
        println!("\n1. Signed Discord PING -> {} {}", r.0, r.1);

        // 2. The world the report lives in, in the sandbox's stand-ins.
        let n = unique();
        let repo = self.env.get("GITHUB_TEST_REPO");
        let thread = format!("14{n:017}");
        let email = "jane@acme.io";
        let session = format!("0193-demo-{n}");
        self.sandbox_post(
            "/_sandbox/git/repos",
            &json!({"repo": repo, "files": web_app_files()}),
        )
        .await?;
        self.sandbox_post(
            "/_sandbox/posthog/seed",
            &json!({"persons": [{"email": email, "distinct_id": format!("demo-{n}")}],
                    "recordings": [{"id": session, "distinct_id": format!("demo-{n}"),
                                    "start_time": bugbot_shared::github_api::iso_seconds(now_ms() - 3_600_000), "duration": 212.0,
                                    "console_errors": 2, "clicks": 23, "start_url": "https://shop.acme.io/cart"}]}),
        )
        .await?;
        self.sandbox_post(
            &format!("/_sandbox/discord/channels/{thread}/messages"),
            &json!([
                {"author_id": "1200000000000000001", "username": "jane", "global_name": "Jane",
                 "content": format!("Checkout charges $31 for three $10 items. I'm {email}, it happened just now.")},
                {"author_id": "1200000000000000002", "username": "sam", "global_name": "Sam",
                 "content": "Reproduced: the cart total is always one dollar too high."},
            ]),
        )
        .await?;
        self.sandbox_post(
            "/_sandbox/anthropic/scenario",
            &read_then_edit("src/cart.js", CART_FIX.0, CART_FIX.1),
        )
        .await?;
        let interaction_id = format!("13{n:017}");
        let token = format!("demo-interaction-token-{n}");
        self.register_interaction(&interaction_id, &token).await?;
        println!(
            "2. Seeded the sandbox: repository {repo} (src/cart.js starts its sum at 1), a Discord thread \
             where Jane reports it, her PostHog recording {session}, and a scripted model that fixes it."
        );

        // 3. Jane's teammate types `/bugbot fix` in the thread; Discord sends it, signed.
        let before = self.sandbox_state().await?;
        let interaction = self.sams_fix(
            &interaction_id,
            &token,
            &thread,
            "Cart total is one dollar too high at checkout",
        );
        let started = Instant::now();
        let (status, answer) = self.signed_interaction(&interaction).await?;
        let job = format!("dc-{interaction_id}");
        println!("3. Signed `/bugbot fix` -> {status} {answer} (deferred answer); job {job}");

        // 4. Follow the job until it ends, printing each step as it is recorded.
        println!("4. Following the job:");
        let mut shown = 0;
        let mut pr_at: Option<Duration> = None;
        let deadline = Instant::now() + Duration::from_secs(180);
        let record = loop {
            let rec = self.admin_get(&format!("/v1/jobs/{job}")).await?;
            let events = rec["events"].as_array().cloned().unwrap_or_default();
            for e in events.iter().skip(shown) {
                if e["step"] == "github.pull_request" && pr_at.is_none() {
                    pr_at = Some(started.elapsed());
                }
                println!(
                    "   {:>6.2}s  {:<20} {}",
                    started.elapsed().as_secs_f64(),
                    e["step"].as_str().unwrap_or(""),
                    e["detail"].as_str().unwrap_or("")
                );
            }
            shown = shown.max(events.len());
            if matches!(
                rec["status"].as_str(),
                Some("succeeded" | "failed" | "dead")
            ) {
                break rec;
            }
            if Instant::now() > deadline {
                bail!("job {job} did not finish in 180 s: {rec}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!("   status: {}", record["status"]);
        if record["status"] != "succeeded" {
            bail!("the job did not succeed: {}", record["last_error"]);
        }

        // 5. What came out.
        let state = self.sandbox_state().await?;
        let url = format!(
            "https://discord.com/channels/{}/{thread}",
            self.env.get("DISCORD_TEST_GUILD_ID")
        );
        let issue_id = state["linear"]["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["url"] == url.as_str())
            .and_then(|a| a["issue_id"].as_str())
            .context("no Linear issue is attached to the thread")?;
        let issue = state["linear"]["issues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == issue_id)
            .context("the attached issue is missing")?;
        println!(
            "\n5. Linear issue {}: {}\n   attached: {url}",
            issue["identifier"].as_str().unwrap_or("?"),
            issue["title"].as_str().unwrap_or("?")
        );
        for c in state["linear"]["comments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["issue_id"] == issue_id)
        {
            println!("\n   --- Linear comment ---");
            for line in c["body"].as_str().unwrap_or_default().lines() {
                println!("   | {line}");
            }
        }
        let pr = state["github"]["pulls"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["head"].as_str().is_some_and(|h| h.ends_with(&job)))
            .context("no pull request was opened")?;
        println!(
            "\n6. Pull request #{} {} ({} <- {})\n   {}",
            pr["number"],
            pr["html_url"].as_str().unwrap_or(""),
            pr["base"].as_str().unwrap_or(""),
            pr["head"].as_str().unwrap_or(""),
            pr["title"].as_str().unwrap_or("")
        );
        println!("\n   --- body ---");
        for line in pr["body"].as_str().unwrap_or_default().lines() {
            println!("   | {line}");
        }
        println!("\n   --- diff ---");
        for line in pr["diff"].as_str().unwrap_or_default().lines() {
            println!("   | {line}");
        }
        println!(
            "\n7. What the Discord thread saw (the deferred answer, edited as the job went on):"
        );
        for e in state["discord"]["answer_edits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["interaction"] == interaction_id.as_str())
        {
            println!("   > {}", e["content"].as_str().unwrap_or(""));
        }

        // 8. Speed and calls.
        println!("\n8. Figures");
        match pr_at {
            Some(t) => println!(
                "   signed request -> pull request recorded: {:.2} s (target < 10 s)",
                t.as_secs_f64()
            ),
            None => println!("   the pull request step was not seen"),
        }
        println!("   HTTP calls this job made, per service (sandbox count, before -> after):");
        for service in ["discord", "linear", "posthog", "github", "git", "anthropic"] {
            let count = |s: &Value| s["requests"][service].as_array().map_or(0, Vec::len);
            println!(
                "     {service:<10} {}",
                count(&state) - count(&before).min(count(&state))
            );
        }
        println!(
            "   Why: discord = the thread's messages + one edit of the answer per step; linear = attachment \
             lookup, team, issue create, thread attachment, packet comment, PR attachment, PR comment; \
             posthog = person by e-mail + their recordings; github = installation + token, repository, \
             tree (file hints), branch check (a retry never reruns a pushed fix), PR lookup, PR create; git = clone + push (smart \
             HTTP round trips); anthropic = one request per model turn."
        );
        println!("\nThe job's record: scripts/jobs show {job}");
        self.steering().await
    }

    /// 9. Stop, Retry and Continue with the buttons on the job's message.
    async fn steering(&self) -> Result<()> {
        println!("\n9. Steering a fix with the buttons on its message");
        let n = unique();
        let repo = self.env.get("GITHUB_TEST_REPO");
        let mut files = web_app_files();
        // The repository limits its fixes to 3 model turns (its own .github/bugbot.toml).
        files.insert(
            ".github/bugbot.toml".into(),
            "[limits]\nmax_turns = 3\n".into(),
        );
        self.sandbox_post(
            "/_sandbox/git/repos",
            &json!({"repo": repo, "files": files}),
        )
        .await?;
        // A model that never finishes: it reads the same file again and again.
        self.sandbox_post(
            "/_sandbox/anthropic/scenario",
            &json!({"repeat_last": true, "steps": [
                {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}}]}),
        )
        .await?;
        let thread = format!("14{n:017}");
        self.sandbox_post(
            &format!("/_sandbox/discord/channels/{thread}/messages"),
            &json!([{"author_id": "1200000000000000001", "username": "jane",
                     "content": "The cart total is one dollar too high."}]),
        )
        .await?;
        let id = format!("13{n:017}");
        let token = format!("demo-steer-token-{n}");
        self.register_interaction(&id, &token).await?;
        let interaction = self.sams_fix(&id, &token, &thread, "Cart total is one dollar too high");
        self.signed_interaction(&interaction).await?;
        let job = format!("dc-{id}");
        let mut interactions = vec![id.clone()];
        let stop = format!("bugbot:stop:{job}");
        let (text, _) = self.wait_for_button(&interactions, &stop).await?;
        println!("   a) `/bugbot fix` (job {job}); its message shows [Stop]: {text}");
        let (pressed, answer) = self.press(&thread, &stop).await?;
        interactions.push(pressed);
        println!("      Sam presses Stop -> {answer}");
        self.wait_status(&job, &["stopped"]).await?;
        let (text, buttons) = self.last_answer(&interactions).await?;
        println!("      the message now: {text}  {buttons:?}");

        // Retry with a model that fixes the cart, then reads on until the 3-turn limit stops it.
        self.sandbox_post(
            "/_sandbox/anthropic/scenario",
            &json!({"repeat_last": true, "steps": [
                {"tool_use": {"name": "Read", "input": {"file_path": "src/cart.js"}}},
                {"tool_use": {"name": "Edit", "input": {"file_path": "src/cart.js", "old_string": CART_FIX.0, "new_string": CART_FIX.1}}},
                {"tool_use": {"name": "Read", "input": {"file_path": "src/checkout.js"}}}]}),
        )
        .await?;
        let (pressed, answer) = self.press(&thread, &format!("bugbot:retry:{job}")).await?;
        interactions.push(pressed);
        println!("   b) Sam presses Retry -> {answer}");
        let continue_id = format!("bugbot:continue:{job}");
        let (text, buttons) = self.wait_for_button(&interactions, &continue_id).await?;
        let pr = self.pull_of(&job).await?;
        println!(
            "      the turn limit stopped it; its work is kept: {text}  {buttons:?}\n      pull request #{} draft={}",
            pr["number"], pr["draft"]
        );

        // Continue with a fresh budget: the model adds a test and finishes.
        self.sandbox_post(
            "/_sandbox/anthropic/scenario",
            &json!({"steps": [
                {"tool_use": {"name": "Write", "input": {"file_path": "src/cart.test.js", "content": "import { total } from './cart.js';\n"}}},
                {"text": "Added a test for the cart total; the fix is complete."}]}),
        )
        .await?;
        let (pressed, answer) = self.press(&thread, &continue_id).await?;
        interactions.push(pressed);
        println!("   c) Sam presses Continue -> {answer}");
        let deadline = Instant::now() + Duration::from_secs(120);
        let pr = loop {
            let pr = self.pull_of(&job).await?;
            if pr["draft"] == false {
                break pr;
            }
            if Instant::now() > deadline {
                bail!("the continued fix did not finish: {pr}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        self.wait_status(&job, &["succeeded"]).await?;
        let (text, _) = self.last_answer(&interactions).await?;
        println!(
            "      the same pull request #{} is now ready for review (draft={}): {text}",
            pr["number"], pr["draft"]
        );
        let record = self.admin_get(&format!("/v1/jobs/{job}")).await?;
        let steps: Vec<&str> = record["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["step"].as_str())
            .filter(|s| {
                matches!(
                    *s,
                    "stop"
                        | "stopped"
                        | "retry"
                        | "continue"
                        | "github.pull_request"
                        | "github.ready_for_review"
                )
            })
            .collect();
        println!("      one job, one history: {}", steps.join(" -> "));
        Ok(())
    }

    /// The sandbox's Discord learns of an interaction token (as Discord issues one with each
    /// interaction), so the answer's edits through it are accepted and shown.
    async fn register_interaction(&self, id: &str, token: &str) -> Result<()> {
        self.sandbox_post(
            "/_sandbox/discord/interactions",
            &json!({"token": token, "interaction_id": id}),
        )
        .await
    }

    /// Sam's `/bugbot fix` in `thread`, as Discord sends it (Sam has the fix role).
    fn sams_fix(&self, id: &str, token: &str, thread: &str, details: &str) -> Value {
        json!({
            "id": id, "application_id": self.env.get("DISCORD_APPLICATION_ID"),
            "type": 2, "token": token, "version": 1,
            "guild_id": self.env.get("DISCORD_TEST_GUILD_ID"), "channel_id": thread,
            "channel": {"id": thread, "type": 11, "parent_id": self.env.get("DISCORD_TEST_CHANNEL_ID")},
            "member": {"user": {"id": "1200000000000000002", "username": "sam", "global_name": "Sam"},
                       "roles": [self.env.get("DISCORD_TEST_FIX_ROLE_ID")]},
            "data": {"id": "1100000000000000050", "name": "bugbot", "type": 1,
                     "options": [{"name": "fix", "type": 1, "options": [
                         {"name": "details", "type": 3, "value": details}]}]}
        })
    }

    /// A signed press of button `custom_id` by Sam (who has the fix role); the press's interaction
    /// id and Discord's answer.
    async fn press(&self, thread: &str, custom_id: &str) -> Result<(String, String)> {
        let n = unique();
        let id = format!("15{n:017}");
        let token = format!("demo-press-token-{n}");
        self.register_interaction(&id, &token).await?;
        let press = json!({
            "id": id, "application_id": self.env.get("DISCORD_APPLICATION_ID"),
            "type": 3, "token": token, "version": 1,
            "guild_id": self.env.get("DISCORD_TEST_GUILD_ID"), "channel_id": thread,
            "member": {"user": {"id": "1200000000000000002", "username": "sam", "global_name": "Sam"},
                       "roles": [self.env.get("DISCORD_TEST_FIX_ROLE_ID")]},
            "data": {"custom_id": custom_id, "component_type": 2}
        });
        let (_, answer) = self.signed_interaction(&press).await?;
        // Distinct ids for presses in the same millisecond.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok((id, answer))
    }

    /// The latest edit of the job's message (through any of its interactions): text and buttons.
    async fn last_answer(&self, interactions: &[String]) -> Result<(String, Vec<String>)> {
        let state = self.sandbox_state().await?;
        let edit = state["discord"]["answer_edits"]
            .as_array()
            .into_iter()
            .flatten()
            .rfind(|e| interactions.iter().any(|i| e["interaction"] == i.as_str()))
            .cloned()
            .context("the message was never edited")?;
        let buttons = edit["components"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["label"].as_str().map(|l| format!("[{l}]")))
            .collect();
        Ok((
            edit["content"].as_str().unwrap_or_default().to_owned(),
            buttons,
        ))
    }

    async fn wait_for_button(
        &self,
        interactions: &[String],
        custom_id: &str,
    ) -> Result<(String, Vec<String>)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let state = self.sandbox_state().await?;
            let shown = state["discord"]["answer_edits"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| interactions.iter().any(|i| e["interaction"] == i.as_str()))
                .any(|e| e["components"].to_string().contains(custom_id));
            if shown {
                return self.last_answer(interactions).await;
            }
            if Instant::now() > deadline {
                bail!("no {custom_id} button appeared");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_status(&self, job: &str, wanted: &[&str]) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let rec = self.admin_get(&format!("/v1/jobs/{job}")).await?;
            if wanted.iter().any(|w| rec["status"] == *w) {
                return Ok(rec);
            }
            if Instant::now() > deadline {
                bail!("job {job} did not reach {wanted:?}: {rec}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn pull_of(&self, job: &str) -> Result<Value> {
        self.sandbox_state().await?["github"]["pulls"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["head"].as_str().is_some_and(|h| h.ends_with(job)))
            .cloned()
            .context("no pull request for the job")
    }

    async fn signed_interaction(&self, body: &Value) -> Result<(u16, String)> {
        let bytes = serde_json::to_vec(body)?;
        let (sig, ts) = signing::discord_headers(
            &self.env.get("DISCORD_TEST_SIGNING_SEED"),
            &signing::unix_timestamp(),
            &bytes,
        );
        let r = self
            .http
            .post(format!("{}/discord/interactions", self.gateway))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(bytes)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    async fn sandbox_post(&self, path: &str, body: &Value) -> Result<()> {
        let r = self
            .http
            .post(format!("{}{path}", self.sandbox))
            .json(body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("sandbox {path}: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    async fn sandbox_state(&self) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}/_sandbox/state", self.sandbox))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn admin_get(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(&self.admin)
            .send()
            .await?
            .json()
            .await?)
    }
}

/// A number that differs between demo runs (ids must be new each time: dedupe is real).
fn unique() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 % 100_000_000_000_000_000)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch (recordings are seeded relative to now: PostHog lists a window).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
