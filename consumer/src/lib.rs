//! bugbot's consumer Worker: takes job messages off the queue, runs them, and records each step on
//! the job's record in KV. It also consumes the dead-letter queue, recording each dead job so that
//! operators can list and replay it, and telling the requester.
//!
//! Decisions (what an error means, how long to wait, what to say) live in `bugbot_shared`; this
//! crate performs them: KV, the queue's ack/retry, and calls to outside services.

mod config;
mod container;
mod contextualize;
mod dead;
mod executor;
mod fix;
mod github;
mod http;
mod job_state;

pub use job_state::JobState;
mod log;
mod reply;
mod review;
mod run;
mod spend;
mod steer;
mod store;

pub use spend::SpendLedger;

use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::job::{Command, JobDecodeError, JobMessage, JobStatus, ResumeKind};
use bugbot_shared::runner::{self, Settlement};
use bugbot_shared::steer::Action;
use bugbot_shared::{replies, thread};
use job_state::{Begun, Holder};
use run::{Run, now_ms};
use worker::{
    Context, Env, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder, RawMessage, Request,
    Response, event,
};

/// The dead-letter queue's name suffix (`bugbot-jobs-dlq`).
const DLQ_SUFFIX: &str = "-dlq";

#[event(queue)]
async fn queue(
    batch: MessageBatch<serde_json::Value>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    let from_dlq = batch.queue().ends_with(DLQ_SUFFIX);
    // max_batch_size is 1 in wrangler.toml; a larger batch is still handled one job at a time.
    for message in batch.raw_iter() {
        if from_dlq {
            dead::handle(&env, &message).await;
        } else {
            handle(&env, &message).await;
        }
    }
    Ok(())
}

/// Reads a queue message as JSON.
fn body(message: &RawMessage) -> Result<serde_json::Value, (JobDecodeError, String)> {
    serde_wasm_bindgen::from_value::<serde_json::Value>(message.body())
        .map_err(|e| (JobDecodeError::Malformed(e.to_string()), String::new()))
}

/// Reads a queue message as a job.
pub(crate) fn decode(message: &RawMessage) -> Result<JobMessage, (JobDecodeError, String)> {
    let value = body(message)?;
    let raw = value.to_string();
    JobMessage::from_json_value(value).map_err(|e| (e, raw))
}

/// The consumer's internal HTTP routes, reached only through the gateway's `CONSUMER` service
/// binding (the consumer has no public route: `workers_dev = false`):
/// - `GET /internal/jobs/{id}`: a job's record (404 if the consumer never saw it);
/// - `POST /internal/jobs` `{"ids": [...]}`: the listing entries of those jobs it has records of;
/// - `POST /internal/steer`: a Stop, Retry or Continue (`steer`), answered with its plan;
/// - `POST /internal/dev/deliver` (only with `BUGBOT_DEV_ENDPOINTS=true`): runs a job message
///   through the same code as a queue delivery and answers how it settled — so tests can hand
///   one job to the consumer twice at the same moment, which the local queue never does.
///
/// A request the runtime hands over from an executor container (the entrypoint's props carry the
/// run's grant; nothing else can set them) goes to [`container::egress`].
#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    if let Some(grant) = container::egress_grant(&ctx) {
        return container::egress(req, &env, grant).await;
    }
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["internal", "jobs", id]) => {
            let Ok(id) = bugbot_shared::ids::JobId::parse(id) else {
                return Response::error("bad job id", 400);
            };
            match job_state::load(&env, &id).await {
                Ok(Some(record)) => Response::from_json(&record),
                Ok(None) => Response::error("no record", 404),
                Err(e) => Response::error(e.to_string(), 503),
            }
        }
        (Method::Post, ["internal", "jobs"]) => {
            #[derive(serde::Deserialize)]
            struct Ids {
                ids: Vec<String>,
            }
            let Ok(Ids { ids }) = req.json::<Ids>().await else {
                return Response::error("expected {\"ids\": [...]}", 400);
            };
            let ids: Vec<_> = ids
                .iter()
                .take(100)
                .filter_map(|id| bugbot_shared::ids::JobId::parse(id).ok())
                .collect();
            let records =
                futures::future::join_all(ids.iter().map(|id| job_state::load(&env, id))).await;
            let jobs: Vec<bugbot_shared::kv::ListedJob> = records
                .into_iter()
                .filter_map(|r| r.ok().flatten())
                .map(|r| bugbot_shared::kv::ListedJob::of(&r))
                .collect();
            Response::from_json(&serde_json::json!({ "jobs": jobs }))
        }
        (Method::Post, ["internal", "steer"]) => {
            let request = match req.json::<steer::SteerRequest>().await {
                Ok(r) => r,
                Err(e) => return Response::error(format!("not a steer request: {e}"), 400),
            };
            match steer::handle(&env, &request).await {
                Ok(plan) => Response::from_json(&plan),
                Err(e) => {
                    log::error("steer failed", &[("error", &e.to_string())]);
                    Response::error(e.to_string(), 503)
                }
            }
        }
        (Method::Get, ["internal", "spend"]) => match spend::totals(&env).await {
            Ok(totals) => Response::from_json(&totals),
            Err(e) => Response::error(e.to_string(), 503),
        },
        (Method::Post, ["internal", "dev", "spend"]) if config::dev_endpoints(&env) => {
            #[derive(serde::Deserialize)]
            struct Add {
                user: String,
                usd: f64,
            }
            let Ok(add) = req.json::<Add>().await else {
                return Response::error("expected {\"user\": \"...\", \"usd\": 1.5}", 400);
            };
            match spend::add(&env, &add.user, add.usd).await {
                Ok(totals) => Response::from_json(&totals),
                Err(e) => Response::error(e.to_string(), 503),
            }
        }
        (Method::Post, ["internal", "dev", "deliver"]) if config::dev_endpoints(&env) => {
            let Ok(value) = req.json::<serde_json::Value>().await else {
                return Response::error("the body must be a job message", 400);
            };
            let job = match JobMessage::from_json_value(value) {
                Ok(job) => job,
                Err(e) => return Response::error(e.to_string(), 400),
            };
            let settled = process(&env, &job, &delivery_id("dev")).await;
            Response::from_json(&match settled {
                Settled::Done => serde_json::json!({ "settled": "done" }),
                Settled::RetryIn(secs) => {
                    serde_json::json!({ "settled": "retry", "delay_s": secs })
                }
            })
        }
        _ => Response::error("not found", 404),
    }
}

/// Runs once when the runtime instantiates the Worker.
#[event(start)]
fn start() {
    bugbot_edge::install_panic_hook("consumer");
}

async fn handle(env: &Env, message: &RawMessage) {
    if config::dev_endpoints(env)
        && body(message).is_ok_and(|v| bugbot_shared::job::is_dev_panic(&v))
    {
        // Acked first: the panic is the point, a redelivery is not.
        message.ack();
        panic!("a panic asked for by POST /v1/dev/panic?worker=consumer");
    }
    let job = match decode(message) {
        Ok(job) => job,
        Err((error, raw)) => {
            // Permanent: a message we cannot read will not become readable. Record it, ack it.
            log::error(
                "malformed queue message",
                &[("message", &message.id()), ("error", &error.to_string())],
            );
            dead::record_malformed(env, &message.id(), &raw, &error.to_string()).await;
            message.ack();
            return;
        }
    };
    log::info(
        "job received",
        &[("job", job.id.as_str()), ("message", &message.id())],
    );
    http::reset_counts();
    match process(env, &job, &delivery_id(&message.id())).await {
        Settled::Done => message.ack(),
        Settled::RetryIn(seconds) => message.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(seconds)
                .build(),
        ),
    }
}

/// A delivery's own id (a message is redelivered under the same message id).
fn delivery_id(message_id: &str) -> String {
    let random = (worker::js_sys::Math::random() * 1e12) as u64;
    format!("{message_id}-{random:x}")
}

/// How a delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Ack: finished, failed for good, or nothing to do.
    Done,
    /// Retry after this many seconds.
    RetryIn(u32),
}

/// One delivery of a job: take its lease (or find it running elsewhere, or finished), run it, and
/// settle — done, retry later (the requester is told what bugbot waits for), or give up.
async fn process(env: &Env, job: &JobMessage, holder: &str) -> Settled {
    let policy = config::retry_policy(env);
    let holder = Holder::new(job.id.clone(), holder.to_owned());
    let mut record = match holder.begin(env, job).await {
        Ok(Begun::Run(record)) => record,
        Ok(Begun::Wait(secs)) => {
            // At-least-once delivery: another delivery of this job is running it right now.
            log::info(
                "job is running elsewhere",
                &[("job", job.id.as_str()), ("retry_in_s", &secs.to_string())],
            );
            return Settled::RetryIn(secs);
        }
        Ok(Begun::Finished(record)) => {
            log::info(
                "delivery ignored: the job already finished",
                &[
                    ("job", job.id.as_str()),
                    ("status", &format!("{:?}", record.status)),
                ],
            );
            return Settled::Done;
        }
        Err(e) => return retry_after_bookkeeping(job, &e, policy.base_secs),
    };
    let resumed = job.replay > record.replay;
    if resumed {
        // Run an ended job again, keeping what it already did: an operator replayed it from the
        // dead-letter queue, or someone asked to retry or continue it.
        record.replay = job.replay;
        record.last_error = None;
        record.first_failure_at_ms = None;
        let (step, detail) = match &job.resume {
            Some(resume) => {
                record.checkpoints.resume(resume.kind);
                let step = match resume.kind {
                    ResumeKind::Retry => "retry",
                    ResumeKind::Continue => "continue",
                };
                (step, format!("{step} asked by {}", resume.by))
            }
            None => ("replayed", "replayed from the dead-letter queue".to_owned()),
        };
        record.record(now_ms(), JobStatus::Queued, step, detail);
    }
    record.attempts += 1;
    let attempt = record.attempts;
    let mut run = Run::new(env, job, record, holder);
    if let Err(e) = run.step("started", format!("attempt {attempt}")).await {
        return retry_after_bookkeeping(job, &e, policy.base_secs);
    }

    if let (Some(resume), true) = (&job.resume, resumed) {
        let text = bugbot_shared::steer::resuming_text(resume);
        reply::progress_with(&mut run, &text, stoppable(job.command)).await;
    }
    remember_latest_fix(env, job).await;

    let outcome = execute(&mut run, attempt).await;
    // Ended without failing, and not done: refused, or stopped by someone.
    let ended = match &outcome {
        Ok(Ended::Stopped(why)) => Some((JobStatus::Stopped, "stopped", why.clone())),
        Ok(Ended::Refused(why)) => Some((JobStatus::Refused, "refused", why.clone())),
        _ => None,
    };
    if let Some((status, step, why)) = ended {
        return run.end(status, step, why).await.map_or_else(
            |e| {
                if job_state::lost_lease(&e) {
                    Settled::Done
                } else {
                    retry_after_bookkeeping(job, &e, policy.base_secs)
                }
            },
            |()| Settled::Done,
        );
    }
    let now = now_ms();
    if let Err(e) = &outcome {
        run.record.last_error = Some(e.to_string());
        if e.is_transient() {
            run.record.first_failure_at_ms.get_or_insert(now);
        }
    }
    let first_failure = run.record.first_failure_at_ms.unwrap_or(now);
    let lost = outcome.as_ref().is_err_and(job_state::lost_lease);
    let settlement = runner::settle(
        outcome.as_ref().map(|_| ()),
        lost,
        &policy,
        attempt,
        first_failure,
        now,
        worker::js_sys::Math::random(),
    );
    let error = outcome.err().map(|e| e.to_string()).unwrap_or_default();
    let settled = match settlement {
        Settlement::Succeeded => run
            .end(JobStatus::Succeeded, "done", "finished")
            .await
            .map(|()| Settled::Done),
        Settlement::TakenOver => {
            // Another delivery took the job over (this one was too slow to renew): it goes on.
            log::info(
                "delivery stopped: the job was taken over",
                &[("job", job.id.as_str())],
            );
            return Settled::Done;
        }
        Settlement::RetryIn { secs, notice } => {
            log::info(
                "job will be retried",
                &[("job", job.id.as_str()), ("delay_s", &secs.to_string())],
            );
            reply::progress(&mut run, &notice).await;
            run.end(
                JobStatus::Retrying,
                "retrying",
                format!("{error}; next attempt in {secs} s"),
            )
            .await
            .map(|()| Settled::RetryIn(secs))
        }
        Settlement::GiveUp => dead::give_up(&mut run, &error)
            .await
            .map(|()| Settled::Done),
        Settlement::Fail => {
            let text = replies::failed(job.id.as_str(), what(job.command), &error);
            let buttons: &[Action] = if matches!(job.command, Command::Fix | Command::Review) {
                &[Action::Retry]
            } else {
                &[]
            };
            if let Err(told) = reply::say_with(
                env,
                job,
                &mut run.record,
                &text,
                buttons,
                reply::Urgency::Outcome,
            )
            .await
            {
                log::error(
                    "requester not told",
                    &[("job", job.id.as_str()), ("error", &told.to_string())],
                );
            }
            run.end(JobStatus::Failed, "failed", error)
                .await
                .map(|()| Settled::Done)
        }
    };
    settled.unwrap_or_else(|e| {
        if job_state::lost_lease(&e) {
            Settled::Done
        } else {
            retry_after_bookkeeping(job, &e, policy.base_secs)
        }
    })
}

/// The record itself could not be read or written: retry soon.
fn retry_after_bookkeeping(job: &JobMessage, e: &ApiError, base: u32) -> Settled {
    log::error(
        "job bookkeeping failed",
        &[("job", job.id.as_str()), ("error", &e.to_string())],
    );
    Settled::RetryIn(base)
}

/// What the command does, for messages ("could not …").
fn what(command: Command) -> &'static str {
    match command {
        Command::Contextualize => "contextualize this report",
        Command::Fix => "fix this report",
        Command::Review => "apply this review",
        Command::Selftest => "run the self-test",
    }
}

/// How a job that did not fail ended.
#[derive(Debug)]
enum Ended {
    /// It did its work.
    Done,
    /// The requester may not ask for it (why, for the record); they were told once.
    Refused(String),
    /// Someone stopped it (who, for the record); the requester was told.
    Stopped(String),
}

/// A fix asked for on a GitHub issue or pull request is its latest: `@bugbot stop|retry|continue`
/// there mean this job. A failure is logged (the comment then finds an earlier fix, or none).
async fn remember_latest_fix(env: &Env, job: &JobMessage) {
    let bugbot_shared::job::Source::Github { repo, number, .. } = &job.source else {
        return;
    };
    if !matches!(job.command, Command::Fix | Command::Review) {
        return;
    }
    let thread = bugbot_shared::github::GithubThread {
        repo: repo.clone(),
        number: *number,
    };
    if let Err(e) = job_state::remember_latest(env, &thread, &job.id).await {
        log::error(
            "latest fix not remembered",
            &[("job", job.id.as_str()), ("error", &e.to_string())],
        );
    }
}

async fn execute(run: &mut Run<'_>, attempt: u32) -> Result<Ended, ApiError> {
    if run.job.command == Command::Selftest {
        return Ok(Ended::Done);
    }
    if let Some(permission) = github::refused_permission(run.env, run.job).await? {
        return refuse(run, &permission).await.map(Ended::Refused);
    }
    if run.job.command == Command::Review {
        if attempt == 1 {
            reply::progress_with(
                run,
                &format!("👀 Working on the review… (job `{}`)", run.job.id),
                stoppable(run.job.command),
            )
            .await;
        }
        return review::review(run).await.map(ended);
    }
    let origin = thread::origin(run.job).ok_or_else(|| {
        ApiError::permanent(Service::Linear, "this job belongs to no conversation")
    })?;
    if attempt == 1 {
        let text = replies::gathering(run.job.id.as_str());
        reply::progress_with(run, &text, stoppable(run.job.command)).await;
    }
    match run.job.command {
        Command::Fix => fix::fix(run, &origin).await.map(ended),
        Command::Contextualize => contextualize::contextualize(run, &origin)
            .await
            .map(|()| Ended::Done),
        Command::Selftest | Command::Review => Ok(Ended::Done),
    }
}

/// The buttons of a job's first messages: a fix or a review can be stopped from the start (a stop
/// before its run reaches the executor ends the run there before Claude Code starts).
fn stoppable(command: Command) -> &'static [Action] {
    match command {
        Command::Fix | Command::Review => &[Action::Stop],
        Command::Contextualize | Command::Selftest => &[],
    }
}

fn ended(end: fix::FixEnd) -> Ended {
    match end {
        fix::FixEnd::Done => Ended::Done,
        fix::FixEnd::Refused(why) => Ended::Refused(why),
        fix::FixEnd::Stopped(who) => Ended::Stopped(who),
    }
}

/// Tells a GitHub requester without write access, once per issue, that bugbot will not act.
async fn refuse(run: &mut Run<'_>, permission: &str) -> Result<String, ApiError> {
    let job = run.job;
    let repo = match &job.source {
        bugbot_shared::job::Source::Github { repo, .. } => repo.as_str(),
        _ => "",
    };
    let login = job.requester.name.as_str();
    let why = format!("{login} has `{permission}` permission on {repo}; write is needed");
    if github::already_told(run.env, job).await? {
        return Ok(format!("{why} (already told on this issue)"));
    }
    let text = replies::github_not_allowed(login, repo, permission);
    reply::say(
        run.env,
        job,
        &mut run.record,
        &text,
        reply::Urgency::Outcome,
    )
    .await?;
    github::remember_told(run.env, job).await?;
    Ok(why)
}
