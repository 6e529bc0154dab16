//! The consumer's read-mostly state in Workers KV: thread → Linear issue mappings (written once per
//! thread) and dead jobs (written once per dead job). Job records live in each job's Durable
//! Object (`job_state`), which KV's consistency and write rate could not serve.
//!
//! KV failures are transient for the job (the queue redelivers it).

use bugbot_shared::http::{ApiError, Service};
use bugbot_shared::job::DeadJob;
use bugbot_shared::kv;
use bugbot_shared::linear::Issue;
use worker::Env;

/// KV namespace binding shared with the gateway.
pub const KV_BINDING: &str = "BUGBOT_KV";

/// Thread mappings live as long as a thread is likely to be asked about again.
const MAPPING_TTL_SECONDS: u64 = 180 * 24 * 3600;

fn kv_error(e: impl std::fmt::Display) -> ApiError {
    // A KV failure behaves like a service's: retry later.
    ApiError::Transient {
        service: Service::Kv,
        status: None,
        retry_after_secs: None,
        message: format!("KV: {e}"),
    }
}

fn store(env: &Env) -> Result<worker::kv::KvStore, ApiError> {
    env.kv(KV_BINDING).map_err(kv_error)
}

/// The Linear issue a thread was mapped to.
pub async fn load_mapping(env: &Env, key: &str) -> Result<Option<Issue>, ApiError> {
    store(env)?.get(key).json::<Issue>().await.map_err(kv_error)
}

/// Remembers the thread's Linear issue.
pub async fn save_mapping(env: &Env, key: &str, issue: &Issue) -> Result<(), ApiError> {
    store(env)?
        .put(key, issue)
        .map_err(kv_error)?
        .expiration_ttl(MAPPING_TTL_SECONDS)
        .execute()
        .await
        .map_err(kv_error)
}

/// Records a dead job.
pub async fn save_dead(env: &Env, dead: &DeadJob) -> Result<(), ApiError> {
    store(env)?
        .put(&kv::dead(&dead.id), dead)
        .map_err(kv_error)?
        .metadata(dead.summary())
        .map_err(kv_error)?
        .expiration_ttl(kv::DEAD_TTL_SECONDS)
        .execute()
        .await
        .map_err(kv_error)
}

/// A short text kept under `key` for `ttl` seconds (caches and markers).
pub async fn put_text(env: &Env, key: &str, value: &str, ttl: u64) -> Result<(), ApiError> {
    store(env)?
        .put(key, value)
        .map_err(kv_error)?
        .expiration_ttl(ttl)
        .execute()
        .await
        .map_err(kv_error)
}

/// The text under `key`, if any.
pub async fn get_text(env: &Env, key: &str) -> Result<Option<String>, ApiError> {
    store(env)?.get(key).text().await.map_err(kv_error)
}
