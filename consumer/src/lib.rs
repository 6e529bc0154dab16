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
mod log;
mod reply;
mod run;
mod store;

use bugbot_shared::http::{ApiError, Service, backoff_seconds};
use bugbot_shared::job::{Command, JobDecodeError, JobMessage, JobRecord, JobStatus};
use bugbot_shared::{replies, thread};
use run::{Run, now_ms};
use worker::{Context, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage, event};

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
    match process(env, &job).await {
        Settled::Done => message.ack(),
        Settled::RetryIn(seconds) => message.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(seconds)
                .build(),
        ),
    }
}

/// How a delivery ends.
enum Settled {
    /// Ack: finished, failed for good, or nothing to do.
    Done,
    /// Retry after this many seconds.
    RetryIn(u32),
}

async fn process(env: &Env, job: &JobMessage) -> Settled {
    let (base, cap) = config::retry_timing(env);
    let record = match store::load_record(env, &job.id).await {
        Ok(r) => r,
        Err(e) => return retry_after_bookkeeping(job, &e, base),
    };
    let mut record = record.unwrap_or_else(|| JobRecord::queued(job));
    if job.replay > record.replay {
        // An operator replayed a dead job: run it again, keeping what it already did.
        record.replay = job.replay;
        record.last_error = None;
        record.record(
            now_ms(),
            JobStatus::Queued,
            "replayed",
            "replayed from the dead-letter queue",
        );
    } else if record.status.is_final() {
        // At-least-once delivery: a job that already finished is not run again.
        let attempts = record.attempts + 1;
        record.attempts = attempts;
        record.record(
            now_ms(),
            record.status,
            "delivered",
            format!("delivery {attempts} ignored: the job already finished"),
        );
        return match store::save_record(env, &record).await {
            Ok(()) => Settled::Done,
            Err(e) => retry_after_bookkeeping(job, &e, base),
        };
    }
    record.attempts += 1;
    let attempt = record.attempts;
    let mut run = Run::new(env, job, record);
    if let Err(e) = run.step("started", format!("attempt {attempt}")).await {
        return retry_after_bookkeeping(job, &e, base);
    }

    let settled = match execute(&mut run, attempt).await {
        Ok(()) => run
            .end(JobStatus::Succeeded, "done", "finished")
            .await
            .map(|()| Settled::Done),
        Err(e) if e.is_transient() => {
            let delay = backoff_seconds(
                attempt,
                base,
                cap,
                e.retry_after_secs(),
                worker::js_sys::Math::random(),
            );
            run.record.last_error = Some(e.to_string());
            log::info(
                "job will be retried",
                &[("job", job.id.as_str()), ("delay_s", &delay.to_string())],
            );
            run.end(
                JobStatus::Retrying,
                "retrying",
                format!("{e}; next attempt in {delay} s"),
            )
            .await
            .map(|()| Settled::RetryIn(delay))
        }
        Err(e) => {
            run.record.last_error = Some(e.to_string());
            let text = replies::failed(job.id.as_str(), what(job.command), &e.to_string());
            if let Err(told) =
                reply::say(env, job, &mut run.record, &text, reply::Urgency::Outcome).await
            {
                log::error(
                    "requester not told",
                    &[("job", job.id.as_str()), ("error", &told.to_string())],
                );
            }
            run.end(JobStatus::Failed, "failed", e.to_string())
                .await
                .map(|()| Settled::Done)
        }
    };
    settled.unwrap_or_else(|e| retry_after_bookkeeping(job, &e, base))
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
        Command::Selftest => "run the self-test",
    }
}

async fn execute(run: &mut Run<'_>, attempt: u32) -> Result<(), ApiError> {
    if run.job.command == Command::Selftest {
        return Ok(());
    }
    let origin = thread::origin(run.job).ok_or_else(|| {
        ApiError::permanent(Service::Linear, "this job belongs to no conversation")
    })?;
    if attempt == 1 {
        reply::progress(run, &replies::gathering(run.job.id.as_str())).await;
    }
    match run.job.command {
        Command::Fix => fix::fix(run, &origin).await,
        Command::Contextualize => contextualize::contextualize(run, &origin).await,
        Command::Selftest => Ok(()),
    }
}
