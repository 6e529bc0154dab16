//! bugbot's consumer Worker: takes job messages off the queue, runs them, and records each step on
//! the job's record in KV.
//!
//! Decisions (what to do next, what an error means) live in `bugbot_shared`; this crate performs
//! them: KV, the queue's ack/retry, and calls to outside services.

mod container;
mod log;

use bugbot_shared::ids::JobId;
use bugbot_shared::job::{Command, JobDecodeError, JobMessage, JobRecord, JobStatus};
use bugbot_shared::kv;
use worker::{Context, Env, MessageBatch, MessageExt, event};

/// KV namespace binding shared with the gateway.
const KV_BINDING: &str = "BUGBOT_KV";

#[event(queue)]
async fn queue(
    batch: MessageBatch<serde_json::Value>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    // max_batch_size is 1 in wrangler.toml; a larger batch is still handled one job at a time.
    for message in batch.raw_iter() {
        let decoded = serde_wasm_bindgen::from_value::<serde_json::Value>(message.body())
            .map_err(|e| JobDecodeError::Malformed(e.to_string()))
            .and_then(JobMessage::from_json_value);
        match decoded {
            Ok(job) => {
                log::info(
                    "job received",
                    &[("job", job.id.as_str()), ("message", &message.id())],
                );
                // A failure to even record progress is transient: let the queue redeliver.
                match run(&env, &job).await {
                    Ok(()) => message.ack(),
                    Err(e) => {
                        log::error(
                            "job bookkeeping failed",
                            &[("job", job.id.as_str()), ("error", &e.to_string())],
                        );
                        message.retry();
                    }
                }
            }
            Err(e) => {
                // Permanent: a message we cannot read will not become readable. Log it, ack it.
                log::error(
                    "malformed queue message",
                    &[("message", &message.id()), ("error", &e.to_string())],
                );
                message.ack();
            }
        }
    }
    Ok(())
}

async fn run(env: &Env, job: &JobMessage) -> worker::Result<()> {
    let store = env.kv(KV_BINDING)?;
    let key = kv::job(&job.id);
    let mut record = store
        .get(&key)
        .json::<JobRecord>()
        .await?
        .unwrap_or_else(|| JobRecord::queued(job));
    record.attempts += 1;
    if record.status.is_final() {
        // At-least-once delivery: a job that already finished is not run again.
        record.record(
            now_ms(),
            record.status,
            "delivered",
            format!(
                "delivery {} ignored: the job already finished",
                record.attempts
            ),
        );
        save(env, &job.id, &record).await?;
        return Ok(());
    }
    record.record(
        now_ms(),
        JobStatus::Running,
        "started",
        format!("attempt {}", record.attempts),
    );
    save(env, &job.id, &record).await?;

    match job.command {
        Command::Selftest => {
            record.record(
                now_ms(),
                JobStatus::Succeeded,
                "done",
                "queue and consumer are working",
            );
        }
        Command::Contextualize | Command::Fix => {
            record.last_error = Some("this build of bugbot cannot run this command yet".into());
            record.record(
                now_ms(),
                JobStatus::Failed,
                "failed",
                "command not available in this build",
            );
        }
    }
    save(env, &job.id, &record).await?;
    log::info(
        "job finished",
        &[
            ("job", job.id.as_str()),
            ("status", &format!("{:?}", record.status)),
        ],
    );
    Ok(())
}

async fn save(env: &Env, id: &JobId, record: &JobRecord) -> worker::Result<()> {
    env.kv(KV_BINDING)?
        .put(&kv::job(id), record)?
        .expiration_ttl(kv::JOB_TTL_SECONDS)
        .execute()
        .await?;
    Ok(())
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
