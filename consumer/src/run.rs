//! One delivery of one job: the record it updates as it goes, and how its outcome is settled
//! (done, failed for good, or retried later).

use crate::job_state::Holder;
use crate::{http, log};
use bugbot_shared::http::ApiError;
use bugbot_shared::job::{JobMessage, JobRecord, JobStatus};
use worker::Env;

/// A job being run.
pub struct Run<'a> {
    /// The Worker's bindings and vars.
    pub env: &'a Env,
    /// The message.
    pub job: &'a JobMessage,
    /// Its record, saved after every step.
    pub record: JobRecord,
    /// This delivery's lease on the job: every save is fenced by it.
    holder: Holder,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Run({})", self.job.id)
    }
}

impl<'a> Run<'a> {
    /// Starts a run on the job's current record, holding its lease.
    pub fn new(env: &'a Env, job: &'a JobMessage, record: JobRecord, holder: Holder) -> Self {
        Self {
            env,
            job,
            record,
            holder,
        }
    }

    /// Records a step (status `running`) and saves the record (renewing the lease).
    pub async fn step(&mut self, step: &str, detail: impl Into<String>) -> Result<(), ApiError> {
        self.record
            .record(now_ms(), JobStatus::Running, step, detail.into());
        self.save().await
    }

    /// Saves the record as it is (renewing the lease). Fails with a lost lease when another
    /// delivery took the job over.
    pub async fn save(&self) -> Result<(), ApiError> {
        self.holder.save(self.env, &self.record, false).await
    }

    /// Adds a link to what the job produced (once).
    pub fn link(&mut self, url: &str) {
        if !self.record.links.iter().any(|l| l == url) {
            self.record.links.push(url.to_owned());
        }
    }

    /// Ends this delivery: the record gets `status` and is saved, and the lease released.
    pub async fn end(
        &mut self,
        status: JobStatus,
        step: &str,
        detail: impl Into<String>,
    ) -> Result<(), ApiError> {
        self.record.record(now_ms(), status, step, detail.into());
        self.holder.save(self.env, &self.record, true).await?;
        log::info(
            "job finished",
            &[
                ("job", self.job.id.as_str()),
                ("status", &format!("{:?}", self.record.status)),
                ("calls", &http::counts()),
            ],
        );
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}
