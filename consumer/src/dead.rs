//! The dead-letter queue's consumer: a job whose retries ran out is recorded under `dead:{id}`
//! (its message, last error and attempts), its record is marked `dead`, and the requester is told.

use crate::run::now_ms;
use crate::{decode, log, reply, store};
use bugbot_shared::job::{DeadJob, JobRecord, JobStatus, truncate};
use bugbot_shared::replies;
use worker::{Env, MessageExt, RawMessage};

/// Raw text kept of an unreadable message.
const MAX_RAW_BYTES: usize = 4096;

/// Handles one message of the dead-letter queue.
pub async fn handle(env: &Env, message: &RawMessage) {
    let job = match decode(message) {
        Ok(job) => job,
        Err((error, raw)) => {
            record_malformed(env, &message.id(), &raw, &error.to_string()).await;
            message.ack();
            return;
        }
    };
    let mut record = match store::load_record(env, &job.id).await {
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
    let error = record
        .last_error
        .clone()
        .unwrap_or_else(|| "the job could not be completed".to_owned());
    let dead = DeadJob {
        id: job.id.to_string(),
        message: Some(job.clone()),
        raw: None,
        error: error.clone(),
        attempts: record.attempts,
        died_at_ms: now_ms(),
        replayed_at_ms: None,
    };
    record.record(
        now_ms(),
        JobStatus::Dead,
        "dead",
        format!(
            "retries ran out after {} attempts; kept in the dead-letter queue",
            record.attempts
        ),
    );
    let saved = async {
        store::save_dead(env, &dead).await?;
        store::save_record(env, &record).await
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
    log::info(
        "job dead",
        &[
            ("job", job.id.as_str()),
            ("attempts", &record.attempts.to_string()),
        ],
    );
    let text = replies::dead(job.id.as_str(), record.attempts, &error);
    if let Err(e) = reply::say(env, &job, &mut record, &text, reply::Urgency::Outcome).await {
        log::error(
            "requester not told",
            &[("job", job.id.as_str()), ("error", &e.to_string())],
        );
    }
    message.ack();
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
