//! The dead-letter queue's consumer: a job whose retries ran out is recorded under `dead:{id}`
//! (its message, last error and attempts), its record is marked `dead`, and the requester is told.

use crate::run::{Run, now_ms};
use crate::{decode, job_state, log, reply, store};
use bugbot_shared::http::ApiError;
use bugbot_shared::job::{DeadJob, JobMessage, JobRecord, JobStatus, truncate};
use bugbot_shared::replies;
use worker::{Env, MessageExt, RawMessage};

/// Raw text kept of an unreadable message.
const MAX_RAW_BYTES: usize = 4096;

/// Handles one message of the dead-letter queue: a job whose deliveries ran out (the queue's
/// `max_retries`, a backstop behind the runner's own give-up time). Its bookkeeping is retried
/// until it is done, so no job is lost without a record.
pub async fn handle(env: &Env, message: &RawMessage) {
    let job = match decode(message) {
        Ok(job) => job,
        Err((error, raw)) => {
            record_malformed(env, &message.id(), &raw, &error.to_string()).await;
            message.ack();
            return;
        }
    };
    let mut record = match job_state::load(env, &job.id).await {
        Ok(r) => r.unwrap_or_else(|| JobRecord::queued(&job)),
        Err(e) => {
            log::error(
                "dead job not recorded",
                &[("job", job.id.as_str()), ("error", &e.to_string())],
            );
            message.retry();
            return;
        }
    };
    if record.status.is_final() && job.replay <= record.replay {
        // It finished (or was buried by its runner) after all: nothing to record.
        message.ack();
        return;
    }
    let error = record
        .last_error
        .clone()
        .unwrap_or_else(|| "the job could not be completed".to_owned());
    let saved = async {
        bury(env, &job, &record, &error).await?;
        record.record(
            now_ms(),
            JobStatus::Dead,
            "dead",
            format!(
                "its deliveries ran out after {} attempts; kept in the dead-letter list for replay",
                record.attempts
            ),
        );
        job_state::force_save(env, &record).await
    }
    .await;
    if let Err(e) = saved {
        log::error(
            "dead job not recorded",
            &[("job", job.id.as_str()), ("error", &e.to_string())],
        );
        message.retry();
        return;
    }
    tell(env, &job, &mut record, &error).await;
    message.ack();
}

/// The runner gives up on a job that has been failing too long: it is kept for replay, its record
/// ends `dead`, and the requester is told.
pub async fn give_up(run: &mut Run<'_>, error: &str) -> Result<(), ApiError> {
    bury(run.env, run.job, &run.record, error).await?;
    run.end(
        JobStatus::Dead,
        "dead",
        format!(
            "gave up after {} attempts; kept in the dead-letter list for replay",
            run.record.attempts
        ),
    )
    .await?;
    let (env, job) = (run.env, run.job);
    tell(env, job, &mut run.record, error).await;
    Ok(())
}

/// Keeps the job in the dead-letter list (`dead:{id}` in KV).
async fn bury(
    env: &Env,
    job: &JobMessage,
    record: &JobRecord,
    error: &str,
) -> Result<(), ApiError> {
    let dead = DeadJob {
        id: job.id.to_string(),
        message: Some(job.clone()),
        raw: None,
        error: error.to_owned(),
        attempts: record.attempts,
        died_at_ms: now_ms(),
        replayed_at_ms: None,
    };
    store::save_dead(env, &dead).await?;
    log::info(
        "job dead",
        &[
            ("job", job.id.as_str()),
            ("attempts", &record.attempts.to_string()),
        ],
    );
    Ok(())
}

async fn tell(env: &Env, job: &JobMessage, record: &mut JobRecord, error: &str) {
    let text = replies::dead(job.id.as_str(), record.attempts, error);
    if let Err(e) = reply::say(env, job, record, &text, reply::Urgency::Outcome).await {
        log::error(
            "requester not told",
            &[("job", job.id.as_str()), ("error", &e.to_string())],
        );
    }
}

/// Records a message that is not a job, so that it shows in the dead-letter listing (it cannot be
/// replayed). A failure to record is logged; the message is acked either way, never retried forever.
pub async fn record_malformed(env: &Env, message_id: &str, raw: &str, error: &str) {
    let dead = DeadJob {
        id: format!("malformed-{message_id}"),
        message: None,
        raw: Some(truncate(raw, MAX_RAW_BYTES).0),
        error: error.to_owned(),
        attempts: 1,
        died_at_ms: now_ms(),
        replayed_at_ms: None,
    };
    if let Err(e) = store::save_dead(env, &dead).await {
        log::error(
            "malformed message not recorded",
            &[("message", message_id), ("error", &e.to_string())],
        );
    }
}
