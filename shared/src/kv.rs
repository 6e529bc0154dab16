//! Key names in Workers KV, in one place so the gateway, the consumer and the tools agree.

use crate::ids::JobId;

/// Job records expire after this long (30 days): KV is the run history, not an archive.
pub const JOB_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// Prefix of every job record, for listing.
pub const JOB_PREFIX: &str = "job:";

/// `job:{id}` → [`crate::job::JobRecord`], the progress the consumer records.
pub fn job(id: &JobId) -> String {
    format!("{JOB_PREFIX}{id}")
}

/// `accepted:{id}` → the [`crate::job::JobRecord`] the gateway wrote when it enqueued the job
/// (status `queued`). Only the gateway writes it; only the consumer writes `job:{id}`.
pub fn accepted(id: &JobId) -> String {
    format!("accepted:{id}")
}

/// Prefix of dead jobs ([`crate::job::DeadJob`]), for listing.
pub const DEAD_PREFIX: &str = "dead:";

/// Dead jobs are kept this long (30 days).
pub const DEAD_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// `dead:{id}` → [`crate::job::DeadJob`].
pub fn dead(id: &str) -> String {
    format!("{DEAD_PREFIX}{id}")
}

/// `discord:{threadId}` → the Linear issue of that thread (a cache: the authoritative link is the
/// thread URL attached to the issue).
pub fn discord_thread(channel: &crate::ids::Snowflake) -> String {
    format!("discord:{channel}")
}

/// `github:{owner}/{repo}#{number}` → the Linear issue of that GitHub issue (a cache, as above).
pub fn github_issue(repo: &crate::ids::RepoFullName, number: u64) -> String {
    format!("github:{repo}#{number}")
}
