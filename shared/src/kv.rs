//! Key names in Workers KV, in one place so the gateway, the consumer and the tools agree; and the
//! listing entry of a job. KV holds read-mostly data only: dead jobs and thread → issue mappings.

use crate::job::{Command, JobRecord, JobStatus};
use serde::{Deserialize, Serialize};

/// How long the admission ledger remembers a job (30 days): it is the run history's index.
pub const JOB_TTL_SECONDS: u64 = 30 * 24 * 3600;

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

/// `github-permission:{owner}/{repo}:{login}` → the permission GitHub showed for that person (a
/// cache, [`GITHUB_PERMISSION_TTL_SECONDS`]). Logins are case-insensitive on GitHub.
pub fn github_permission(repo: &crate::ids::RepoFullName, login: &str) -> String {
    format!(
        "github-permission:{}:{}",
        repo.as_str().to_ascii_lowercase(),
        login.to_ascii_lowercase()
    )
}

/// How long a permission GitHub showed is trusted.
pub const GITHUB_PERMISSION_TTL_SECONDS: u64 = 600;

/// `github-told:{owner}/{repo}#{number}:{login}`: that person was told on that issue that they
/// may not ask bugbot for work (so they are not told again).
pub fn github_told(repo: &crate::ids::RepoFullName, number: u64, login: &str) -> String {
    format!(
        "github-told:{}#{number}:{}",
        repo.as_str().to_ascii_lowercase(),
        login.to_ascii_lowercase()
    )
}

/// How long "already told" is remembered.
pub const GITHUB_TOLD_TTL_SECONDS: u64 = 90 * 24 * 3600;

/// A job as `GET /v1/jobs` lists it. Small by design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedJob {
    /// Job id.
    pub id: String,
    /// Command.
    pub command: Command,
    /// Status.
    pub status: JobStatus,
    /// Requester's display name (cut).
    pub requester: String,
    /// Source description (cut).
    pub source: String,
    /// Created (ms).
    pub created_at_ms: u64,
    /// Last change (ms).
    pub updated_at_ms: u64,
}

impl ListedJob {
    /// The listing entry of a record.
    pub fn of(record: &JobRecord) -> Self {
        Self {
            id: record.id.to_string(),
            command: record.command,
            status: record.status,
            requester: crate::job::truncate(&record.requester, 100).0,
            source: crate::job::truncate(&record.source, 200).0,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
        }
    }
}

/// Merges the admission ledger's jobs and the consumer's records of them (the consumer's win),
/// newest first, at most `limit`.
pub fn newest_first(
    admitted: Vec<ListedJob>,
    jobs: Vec<ListedJob>,
    limit: usize,
) -> Vec<ListedJob> {
    let mut by_id: std::collections::HashMap<String, ListedJob> =
        admitted.into_iter().map(|j| (j.id.clone(), j)).collect();
    for j in jobs {
        by_id.insert(j.id.clone(), j);
    }
    let mut all: Vec<ListedJob> = by_id.into_values().collect();
    all.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
    all.truncate(limit);
    all
}
