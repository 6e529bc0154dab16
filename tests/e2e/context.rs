//! What every end-to-end case gets: the stack's addresses and test-only secrets, an HTTP client,
//! and helpers that talk to the stack the way Discord, GitHub and an operator do.

use anyhow::{Context, Result, bail};
use bugbot_tests::localenv::LocalEnv;
use bugbot_tests::signing;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A case's future.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
/// A case.
pub type Case = fn(Arc<E2e>) -> CaseFuture;

macro_rules! cases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$(
            (
                concat!(stringify!($module), "::", stringify!($name)),
                (|ctx| Box::pin($module::$name(ctx))) as Case,
            )
        ),*]
    };
}

/// Every case, by name.
pub fn all_cases() -> Vec<(&'static str, Case)> {
    use crate::{
        container, contextualize, delivery, executor, fix, foundation, gateway, hostile, mentions,
        operations, steer,
    };
    cases![
        foundation::gateway_health,
        foundation::discord_ping_signed_gets_pong,
        foundation::discord_ping_with_a_wrong_signature_is_401,
        foundation::queue_message_reaches_the_consumer,
        foundation::executor_and_sandbox_answer,
        gateway::discord_slash_fix_gets_a_deferred_answer_and_one_job,
        gateway::discord_fix_without_the_role_is_refused_politely,
        gateway::discord_unknown_command_gets_an_ephemeral_answer,
        gateway::discord_command_during_a_ledger_outage_is_answered_and_can_be_asked_again,
        gateway::github_every_published_example_gets_a_2xx,
        gateway::github_tampered_byte_is_401,
        gateway::github_member_comment_delivered_three_times_is_one_job,
        gateway::github_permission_decides_for_untrusted_associations_and_refusals_are_said_once,
        gateway::a_label_on_a_pull_request_asks_like_a_label_on_an_issue,
        gateway::webhooks_arriving_together_are_each_answered_and_each_one_job,
        gateway::bad_input_gets_clear_4xx_answers,
        gateway::per_user_limit_stops_floods,
        executor::executor_pushes_a_correct_fix,
        executor::executor_rejects_forbidden_paths_and_pushes_nothing,
        executor::executor_without_edits_is_no_changes,
        executor::executor_stops_a_model_that_never_stops,
        executor::executor_refuses_bad_requests,
        executor::executor_uses_the_token_only_through_git,
        hostile::a_repositorys_claude_settings_run_nothing,
        hostile::a_secret_in_the_change_or_the_summary_is_refused_and_never_repeated,
        hostile::an_agent_running_code_reaches_no_secret_and_leaves_nothing_running,
        hostile::two_fixes_at_once_cannot_read_each_others_workspace,
        hostile::git_tricks_in_the_tree_push_nothing_and_run_nothing,
        hostile::a_caller_that_goes_away_stops_the_run,
        hostile::a_stopped_run_leaves_no_process_no_workspace_and_pushes_nothing,
        hostile::outside_local_development_only_https_remotes,
        hostile::a_request_for_a_running_job_follows_it_instead_of_starting_another,
        contextualize::contextualize_in_a_thread_makes_one_issue_one_packet_and_answers,
        contextualize::an_expired_interaction_token_answers_in_the_channel,
        contextualize::linear_failing_twice_still_makes_one_issue_and_one_comment,
        contextualize::linear_429_retry_waits_for_retry_after,
        contextualize::linear_down_for_good_ends_in_the_dlq_and_replay_completes_once,
        contextualize::github_contextualize_comments_on_the_issue,
        contextualize::deleted_users_are_shown_as_ghost,
        contextualize::a_long_issue_keeps_its_latest_comments,
        contextualize::posthog_finds_reporters_as_written_within_the_reports_window,
        contextualize::without_the_message_content_intent_the_packet_says_so,
        contextualize::malformed_queue_messages_are_acked_and_recorded,
        contextualize::admin_lists_jobs_newest_first,
        contextualize::mention_jobs_reply_to_the_mention_and_edit_that_reply,
        fix::discord_fix_opens_one_pull_request_linked_on_linear,
        fix::a_fix_touching_package_json_opens_nothing_and_says_why,
        fix::github_member_fix_comment_opens_a_pull_request,
        fix::github_502_on_pull_request_creation_still_opens_one,
        fix::a_cut_tree_listing_is_narrowed_to_the_allowed_directories,
        fix::repository_settings_narrow_the_paths_and_a_bad_file_fails_naming_its_line,
        fix::a_fix_past_the_requesters_daily_budget_is_refused_politely,
        steer::a_fix_is_stopped_and_retried_with_discords_buttons,
        steer::a_fix_stopped_before_it_reaches_the_model_costs_nothing,
        steer::a_fix_at_its_turn_limit_opens_a_draft_that_continue_finishes,
        steer::a_review_comment_on_bugbots_pull_request_adds_a_commit_to_it,
        container::a_fix_runs_in_the_executor_container_with_its_agent_unprivileged_and_no_secret_in_reach,
        container::the_container_reaches_only_the_git_host_and_the_model_api_and_reports_the_rest,
        delivery::one_job_delivered_twice_at_once_runs_once,
        delivery::calls_that_succeeded_but_lost_their_answer_are_not_repeated,
        delivery::a_lost_discord_post_is_not_posted_twice,
        delivery::githubs_secondary_rate_limit_is_waited_out,
        delivery::an_outage_longer_than_a_few_retries_is_outlived,
        delivery::a_queue_outage_delays_jobs_and_loses_none,
        delivery::a_poison_outbox_message_does_not_hold_up_later_jobs,
        operations::register_commands_is_idempotent,
        operations::dlq_script_lists_and_replays_a_dead_job,
        mentions::a_mention_contextualizes_and_replies_in_the_thread,
        mentions::a_mention_replayed_after_a_drop_is_one_job,
        mentions::missed_heartbeat_acks_reconnect_and_mentions_still_arrive,
        mentions::a_mention_without_the_fix_role_is_refused_politely,
        mentions::a_fix_mention_in_a_thread_opens_a_pull_request_for_the_parent_channels_repo,
        mentions::a_refusal_is_not_repeated_after_a_resume,
        mentions::a_mention_that_cannot_be_admitted_is_answered,
        mentions::the_keepalive_survives_a_storage_error,
        mentions::a_fatal_close_stops_the_connection_until_an_operator_starts_it,
        // Last: it makes both Workers panic (they recover, and the case checks it).
        operations::a_panic_reaches_the_structured_logs_and_the_workers_recover,
    ]
}

/// Shared context of the end-to-end cases.
#[derive(Debug)]
pub struct E2e {
    /// The stack's local environment (addresses, test-only secrets).
    pub env: LocalEnv,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Where the stack's parts write their logs.
    pub log_dir: std::path::PathBuf,
    /// The stack's state directory (the executor's workspaces are under `executor/`).
    pub state_dir: std::path::PathBuf,
    #[allow(dead_code)]
    rt: Arc<tokio::runtime::Runtime>,
}

/// An HTTP answer, read in full.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// Body as text.
    pub text: String,
}

impl E2e {
    /// What the executors printed: the executor process's log and, when the stack runs the
    /// executor in Containers, each executor container's output.
    pub fn executor_log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.log_dir.join("executor.log")).unwrap_or_default();
        if bugbot_tests::stack::containers_wanted() {
            log.push_str(&bugbot_tests::stack::container_logs());
        }
        log
    }

    /// Builds the context.
    pub fn new(
        env: LocalEnv,
        log_dir: std::path::PathBuf,
        state_dir: std::path::PathBuf,
        rt: Arc<tokio::runtime::Runtime>,
    ) -> Self {
        Self {
            env,
            log_dir,
            state_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            rt,
        }
    }

    /// The gateway's URL for a path.
    pub fn gateway(&self, path: &str) -> String {
        format!("{}{path}", self.env.get("GATEWAY_URL"))
    }

    /// Reads a response in full.
    pub async fn answer(response: reqwest::Response) -> Result<Answer> {
        let status = response.status().as_u16();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, json, text })
    }

    /// Posts a body to the Discord interactions endpoint, signed as Discord signs it.
    pub async fn discord_interaction(&self, body: &Value) -> Result<Answer> {
        let body = serde_json::to_vec(body)?;
        let (sig, ts) = signing::discord_headers(
            &self.env.get("DISCORD_TEST_SIGNING_SEED"),
            &signing::unix_timestamp(),
            &body,
        );
        self.discord_raw(body, Some(&sig), Some(&ts)).await
    }

    /// Posts raw bytes to the Discord endpoint with the given signature headers.
    pub async fn discord_raw(
        &self,
        body: Vec<u8>,
        sig: Option<&str>,
        ts: Option<&str>,
    ) -> Result<Answer> {
        let mut req = self
            .http
            .post(self.gateway("/discord/interactions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("x-signature-ed25519", sig);
        }
        if let Some(ts) = ts {
            req = req.header("x-signature-timestamp", ts);
        }
        Self::answer(req.send().await?).await
    }

    /// Posts a webhook delivery signed as GitHub signs it.
    pub async fn github_delivery(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> Result<Answer> {
        let sig = signing::github_signature(&self.env.get("GITHUB_WEBHOOK_SECRET"), body);
        self.github_raw(Some(event), Some(delivery), Some(&sig), body.to_vec())
            .await
    }

    /// Posts raw bytes to the webhook endpoint with the given headers.
    pub async fn github_raw(
        &self,
        event: Option<&str>,
        delivery: Option<&str>,
        signature: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer> {
        let mut req = self
            .http
            .post(self.gateway("/github/webhook"))
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/e2e")
            .body(body);
        for (name, value) in [
            ("x-github-event", event),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", signature),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        Self::answer(req.send().await?).await
    }

    /// A GitHub delivery sent with `Transfer-Encoding: chunked` (no `Content-Length`), in chunks of
    /// `chunk` bytes, over a plain socket: reqwest sends a length for every in-memory body. The
    /// gateway's answers carry a `Content-Length`, so the body after the headers is the answer's.
    pub async fn github_chunked(
        &self,
        event: &str,
        signature: &str,
        body: &[u8],
        chunk: usize,
    ) -> Result<Answer> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let base = self.env.get("GATEWAY_URL");
        let host = base
            .strip_prefix("http://")
            .context("GATEWAY_URL is http://host:port")?
            .trim_end_matches('/');
        let mut socket = tokio::net::TcpStream::connect(host).await?;
        let mut request = format!(
            "POST /github/webhook HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\nx-github-event: {event}\r\n\
             x-github-delivery: {}\r\nx-hub-signature-256: {signature}\r\n\r\n",
            crate::gateway::fresh_id()
        )
        .into_bytes();
        for part in body.chunks(chunk.max(1)) {
            request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            request.extend_from_slice(part);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The gateway reads a chunked body to its end, even past the limit, before it answers.
        socket.write_all(&request).await?;
        let mut raw = Vec::new();
        socket.read_to_end(&mut raw).await?;
        let raw = String::from_utf8_lossy(&raw);
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no HTTP status in {raw:.200}"))?;
        let text = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, json, text })
    }

    /// GET on the admin API with the test admin token.
    pub async fn admin_get(&self, path: &str) -> Result<Answer> {
        let r = self
            .http
            .get(self.gateway(path))
            .bearer_auth(self.env.get("ADMIN_TOKEN"))
            .send()
            .await?;
        Self::answer(r).await
    }

    /// POST on the admin API with the test admin token.
    pub async fn admin_post(&self, path: &str) -> Result<Answer> {
        let r = self
            .http
            .post(self.gateway(path))
            .bearer_auth(self.env.get("ADMIN_TOKEN"))
            .send()
            .await?;
        Self::answer(r).await
    }

    /// Takes the gateway's admission ledger down for `seconds` (`POST /v1/dev/ledger-outage`) and
    /// returns the instant by which it is surely back: the ledger sets its end from its own clock
    /// while handling the call, so the end is counted from the answer, not from the request, with a
    /// margin for the clocks' granularity.
    pub async fn ledger_outage(&self, seconds: u64) -> Result<Instant> {
        let r = self
            .admin_post(&format!("/v1/dev/ledger-outage?seconds={seconds}"))
            .await?;
        if r.status != 202 {
            bail!("ledger outage not taken: {} {}", r.status, r.text);
        }
        Ok(Instant::now() + Duration::from_secs(seconds) + Duration::from_millis(500))
    }

    /// Polls a job's record until `done` says so, or fails after `timeout` with the last record.
    pub async fn wait_for_job(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let a = self.admin_get(&format!("/v1/jobs/{id}")).await?;
            if a.status == 200 {
                if done(&a.json) {
                    return Ok(a.json);
                }
                last = a.json;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("job {id} did not reach the expected state in {timeout:?}; last record: {last}")
    }

    /// How many times the consumer received a job's message, from the Workers' log (independent of
    /// the job record, which the gateway writes).
    pub fn consumer_receipts(&self, job: &str) -> usize {
        let log = std::fs::read_to_string(self.log_dir.join("workers.log")).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains("\"msg\":\"job received\"") && l.contains(&format!("\"job\":\"{job}\""))
            })
            .count()
    }

    /// POST to one of the sandbox's control endpoints (`/_sandbox/...`); fails on a non-2xx.
    pub async fn sandbox_post(&self, path: &str, body: &Value) -> Result<Answer> {
        let r = self
            .http
            .post(format!("{}{path}", self.env.get("SANDBOX_URL")))
            .json(body)
            .send()
            .await?;
        let a = Self::answer(r).await?;
        if !(200..300).contains(&a.status) {
            bail!("sandbox {path} answered {}: {}", a.status, a.text);
        }
        Ok(a)
    }

    /// Puts a JSON value on the queue as it is (`POST /v1/dev/enqueue-raw`, a local test hook):
    /// a redelivery, a malformed message, a job made by the Gateway connection.
    pub async fn enqueue_raw(&self, message: &Value) -> Result<()> {
        let r = self
            .http
            .post(self.gateway("/v1/dev/enqueue-raw"))
            .bearer_auth(self.env.get("ADMIN_TOKEN"))
            .json(message)
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("enqueue-raw answered {}: {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    /// Disarms every injected fault.
    pub async fn clear_faults(&self) -> Result<()> {
        self.http
            .delete(format!("{}/_sandbox/faults", self.env.get("SANDBOX_URL")))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Waits until no job is queued, running or waiting for a retry, so that a case's injected
    /// faults meet only its own job (earlier cases' jobs may still be on their way).
    pub async fn wait_idle(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let a = self.admin_get("/v1/jobs?limit=100").await?;
            let busy: Vec<String> = a.json["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| {
                    matches!(
                        j["status"].as_str(),
                        Some("queued" | "running" | "retrying")
                    )
                })
                .map(|j| format!("{} {}", j["id"], j["status"]))
                .collect();
            if busy.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("jobs still busy after 60 s: {busy:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The sandbox's recorded state.
    pub async fn sandbox_state(&self) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}/_sandbox/state", self.env.get("SANDBOX_URL")))
            .send()
            .await
            .context("sandbox state")?;
        Ok(r.json().await?)
    }
}

/// Fails the case with both values (and an optional explanation) when they differ.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {
        $crate::ensure_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        match (&$left, &$right) {
            (l, r) => if l != r {
            anyhow::bail!(
                "expected {} == {}: {:?} != {:?} {}",
                stringify!($left),
                stringify!($right),
                l,
                r,
                format!($($msg)+)
            );
        }}
    }};
}

/// The contents of every edit of one interaction's deferred answer, in order.
pub fn answers_for(state: &Value, interaction: &str) -> Vec<String> {
    state["discord"]["answer_edits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["interaction"] == interaction)
        .filter_map(|e| e["content"].as_str().map(str::to_owned))
        .collect()
}

/// Fails when a stand-in refused a request the real service would have refused.
pub fn no_violations(state: &Value) -> Result<()> {
    let v = &state["violations"];
    if !v.as_array().is_none_or(Vec::is_empty) {
        bail!("a stand-in refused a request the real service would refuse: {v}");
    }
    Ok(())
}
