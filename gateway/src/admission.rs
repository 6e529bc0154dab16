//! Admitting a job: dedupe, the per-user limit, the queue, and the `queued` record.
//!
//! The request path does only what must happen before the sender is answered: reads (dedupe,
//! rate count, concurrently) and the queue send — an answered request is never lost. Writes
//! (the `accepted:{id}` record, the rate count) go to `wait_until`, after the answer: KV writes are
//! round trips that would otherwise dominate a signed command's time. Because a KV write lands a
//! moment after the answer, this isolate also remembers recent job ids and counts in memory, so a
//! redelivery arriving right behind the first is still caught.
//!
//! The gateway writes `accepted:{id}`; the consumer alone writes `job:{id}`. Keeping them apart means
//! a late gateway write can never overwrite the consumer's progress.

use crate::config;
use crate::error::GatewayError;
use crate::log;
use bugbot_shared::authz::{self, AccessPolicy, Refusal};
use bugbot_shared::job::{JobMessage, JobRecord};
use bugbot_shared::kv;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use worker::{Context, Env};

/// What became of a job the decision wanted enqueued.
pub enum Admission {
    /// On the queue.
    Enqueued,
    /// The same trigger was already enqueued (a redelivery); nothing was done.
    Duplicate,
    /// Not allowed now (the per-user limit).
    Refused(Refusal),
}

/// Recent job ids and rate counts of this isolate (bounded).
#[derive(Default)]
struct Recent {
    ids: HashSet<String>,
    order: VecDeque<String>,
    counts: HashMap<String, u32>,
}

const RECENT_CAPACITY: usize = 4096;

impl Recent {
    fn remember(&mut self, id: &str, bucket: &str, count: u32) {
        if self.ids.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
        }
        if self.order.len() > RECENT_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        if self.counts.len() > RECENT_CAPACITY {
            self.counts.clear();
        }
        self.counts.insert(bucket.to_owned(), count);
    }
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::new(Recent::default());
}

/// Dedupe, rate limit, enqueue; record afterwards. The job id derives from the trigger's own id
/// (interaction id, `X-GitHub-Delivery`), so a known id means this is a redelivery.
pub async fn admit(
    env: &Env,
    ctx: Option<&Context>,
    job: &JobMessage,
    policy: &AccessPolicy,
    platform: &str,
) -> Result<Admission, GatewayError> {
    let id = job.id.as_str();
    let bucket = authz::rate_bucket(platform, &job.requester.id, job.enqueued_at_ms);
    let (seen_here, counted_here) = RECENT.with_borrow(|r| {
        (
            r.ids.contains(id),
            r.counts.get(&bucket).copied().unwrap_or(0),
        )
    });
    if seen_here {
        log::info("duplicate delivery", &[("job", id)]);
        return Ok(Admission::Duplicate);
    }
    let store = env.kv(config::KV_BINDING)?;
    let accepted_key = kv::accepted(&job.id);
    let (existing, stored_count) =
        futures_util::future::join(store.get(&accepted_key).text(), store.get(&bucket).text())
            .await;
    if existing?.is_some() {
        log::info("duplicate delivery", &[("job", id)]);
        return Ok(Admission::Duplicate);
    }
    let stored_count: u32 = stored_count?.and_then(|n| n.parse().ok()).unwrap_or(0);
    let already = stored_count.max(counted_here);
    if let Err(refusal) = authz::within_rate_limit(policy, already) {
        log::info("rate limited", &[("job", id), ("platform", platform)]);
        return Ok(Admission::Refused(refusal));
    }

    env.queue(config::QUEUE_BINDING)?.send(job).await?;
    RECENT.with_borrow_mut(|r| r.remember(id, &bucket, already + 1));
    log::info(
        "job queued",
        &[("job", id), ("command", job.command.as_str())],
    );

    // After the answer. KV has no atomic increment; under a burst across isolates the count may
    // lag, which only softens the limit.
    let record = JobRecord::queued(job);
    let writes = async move {
        let count = (already + 1).to_string();
        let listed = kv::ListedJob::of(&record);
        let writes = futures_util::future::join(
            put(
                &store,
                &accepted_key,
                &record,
                Some(&listed),
                kv::JOB_TTL_SECONDS,
            ),
            put(
                &store,
                &bucket,
                &count,
                None,
                authz::RATE_BUCKET_TTL_SECONDS,
            ),
        )
        .await;
        if let (Err(e), _) | (_, Err(e)) = writes {
            log::error(
                "could not record an accepted job",
                &[("key", &accepted_key), ("error", &e)],
            );
        }
    };
    // Requests: after the answer. The Gateway connection has no answer to hurry: write now.
    match ctx {
        Some(ctx) => ctx.wait_until(writes),
        None => writes.await,
    }
    Ok(Admission::Enqueued)
}

async fn put<T: serde::Serialize>(
    store: &worker::kv::KvStore,
    key: &str,
    value: &T,
    metadata: Option<&kv::ListedJob>,
    ttl: u64,
) -> Result<(), String> {
    let mut put = store.put(key, value).map_err(|e| e.to_string())?;
    if let Some(m) = metadata {
        put = put.metadata(m).map_err(|e| e.to_string())?;
    }
    put.expiration_ttl(ttl)
        .execute()
        .await
        .map_err(|e| e.to_string())
}
